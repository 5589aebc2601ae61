"""Unit tests of features.readers: folder (parquet, csv) and SQL round trips."""

from __future__ import annotations

import pandas as pd
import pytest

from features import contract as ct
from features.readers import _display, read_crm, write_crm
from features.validation import ContractError, validate_crm

EXTRACTED_AT = pd.Timestamp("2024-06-01")


def tiny_crm() -> dict[str, pd.DataFrame]:
    """The four raw tables as text (as exported to CSV), 2 rows each, all valid."""

    def frame(columns: dict[str, list]) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(v, dtype="str") for c, v in columns.items()})

    n = [None, None]
    leads = {c: n for c in ct.LEADS.column_names}
    leads.update(
        lead_id=["L1", "L2"],
        created_at=["2024-01-01T10:00:00", "2024-02-01T09:30:00"],
        seniority=["Vice President", "manager"],
        account_id=["A1", None],
        consent=["true", "no"],
        email=["a@x.example", None],
        job_title=["  Head of IT ", ""],  # whitespace is data; empty is not
    )
    accounts = {
        "account_id": ["A1", "A2"],
        "industry": ["saas", None],
        "employee_count": ["12", None],
        "annual_revenue": ["1500.5", "0"],
        "country": ["US", "gb"],
        "region": ["north_america", "emea"],
        "is_customer": ["false", "true"],
    }
    events = {
        "lead_id": ["L1", "L2"],
        "timestamp": ["2024-01-02T00:00:00", "2024-02-02T00:00:00"],
        "event_type": ["page_view", "Demo"],
    }
    opportunities = {
        "opportunity_id": ["O1", "O2"],
        "lead_id": ["L1", "L2"],
        "created_at": ["2024-01-10T00:00:00", "2024-03-01T00:00:00"],
        "closed_at": ["2024-02-10T00:00:00", None],
        "is_won": ["true", None],
        "amount": ["1000", None],
    }
    raw = {
        "leads": frame(leads),
        "accounts": frame(accounts),
        "events": frame(events),
        "opportunities": frame(opportunities),
    }
    raw["leads"]["job_title"] = raw["leads"]["job_title"].mask(raw["leads"]["job_title"] == "")
    return raw


def _assert_same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert set(left) == set(right) == set(ct.TABLES)
    for name in ct.TABLES:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_folder_round_trip_of_raw_tables(tmp_path, fmt):
    raw = tiny_crm()
    write_crm(raw, tmp_path / "crm" / "nested", fmt=fmt)  # folder created
    assert sorted(p.name for p in (tmp_path / "crm" / "nested").iterdir()) == sorted(
        f"{t}.{fmt}" for t in ct.TABLES
    )
    back = read_crm(tmp_path / "crm" / "nested")
    if fmt == "parquet":  # category columns come back as dictionaries of the same text
        assert isinstance(back["events"]["event_type"].dtype, pd.CategoricalDtype)
        back = {name: frame.astype("str") for name, frame in back.items()}
    _assert_same_tables(back, raw)  # csv: all text, empty -> missing, whitespace kept


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_folder_round_trip_of_validated_tables(tmp_path, fmt):
    clean = validate_crm(tiny_crm(), EXTRACTED_AT).tables
    write_crm(clean, tmp_path, fmt=fmt)
    again = validate_crm(read_crm(str(tmp_path)), EXTRACTED_AT)
    assert again.counts["rows_rejected"].sum() == 0
    _assert_same_tables(again.tables, clean)


def test_parquet_keeps_types_and_reads_categories_as_dictionaries(tmp_path):
    clean = validate_crm(tiny_crm(), EXTRACTED_AT).tables
    write_crm(clean, tmp_path)
    back = read_crm(tmp_path)
    assert back["events"]["timestamp"].dtype.kind == "M"
    assert isinstance(back["events"]["event_type"].dtype, pd.CategoricalDtype)
    assert back["accounts"]["employee_count"].dtype == "Int64"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_database_round_trip(tmp_path, request, database):
    url = f"sqlite:///{tmp_path}/crm.db" if database == "sqlite" else request.getfixturevalue("postgres_url")
    clean = validate_crm(tiny_crm(), EXTRACTED_AT).tables
    write_crm(clean, url)
    write_crm(clean, url)  # replaces, does not append
    back = read_crm(url)
    assert {name: len(frame) for name, frame in back.items()} == {
        name: len(frame) for name, frame in clean.items()
    }
    again = validate_crm(back, EXTRACTED_AT)
    assert again.counts["rows_rejected"].sum() == 0
    _assert_same_tables(again.tables, clean)


def test_parquet_preferred_over_csv(tmp_path):
    raw = tiny_crm()
    write_crm({**raw, "accounts": raw["accounts"].iloc[:1]}, tmp_path, fmt="parquet")
    raw["accounts"].to_csv(tmp_path / "accounts.csv", index=False)  # e.g. a copy left by hand
    assert len(read_crm(tmp_path)["accounts"]) == 1


def test_extra_columns_are_kept(tmp_path):
    raw = tiny_crm()
    raw["leads"]["utm_campaign"] = pd.Series(["spring", None], dtype="str")
    write_crm(raw, tmp_path, fmt="csv")
    assert "utm_campaign" in read_crm(tmp_path)["leads"].columns


def test_missing_table_in_folder(tmp_path):
    raw = tiny_crm()
    write_crm({"leads": raw["leads"], "events": raw["events"]}, tmp_path, fmt="csv")
    with pytest.raises(ContractError) as err:
        read_crm(tmp_path)
    assert err.value.table == "accounts"
    message = str(err.value)
    assert "'accounts'" in message and str(tmp_path) in message
    assert "found: events.csv, leads.csv" in message


def test_missing_table_in_database(tmp_path):
    url = f"sqlite:///{tmp_path}/crm.db"
    raw = tiny_crm()
    write_crm({"leads": raw["leads"]}, url)
    with pytest.raises(ContractError, match=r"'accounts' not found in database .*found: leads"):
        read_crm(url)


def test_missing_folder_and_bad_format(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_crm(tmp_path / "nope")
    with pytest.raises(ValueError, match="fmt"):
        write_crm(tiny_crm(), tmp_path, fmt="xlsx")


def test_database_password_is_hidden():
    assert (
        _display("postgresql+psycopg://crm:hunter2@db/crm") == "postgresql+psycopg://crm:***@db/crm"
    )




def test_rewriting_in_the_other_format_leaves_no_stale_copy(tmp_path):
    raw = tiny_crm()
    write_crm(raw, tmp_path, fmt="parquet")
    changed = {**raw, "events": raw["events"].iloc[:1]}
    write_crm(changed, tmp_path, fmt="csv")
    assert not (tmp_path / "events.parquet").exists()
    assert len(read_crm(tmp_path)["events"]) == 1
