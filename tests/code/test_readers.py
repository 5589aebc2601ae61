"""Unit tests of features.readers: folder (parquet, csv) and SQL round trips, and every way a
source can be broken (each a one-line ContractError naming the file, with nothing written)."""

from __future__ import annotations

import decimal
import errno
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import contract as ct
from features import readers
from features.outputs import MARKER, OutputError
from features.readers import ids_as_text, read_crm, write_crm
from features.urls import display_url
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
        [*(f"{t}.{fmt}" for t in ct.TABLES), MARKER]
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


def test_a_field_history_of_an_earlier_write_does_not_outlive_it(tmp_path):
    history = pd.DataFrame(
        {
            "entity": ["leads"],
            "entity_id": ["L1"],
            "field": ["budget"],
            "value": ["under_10k"],
            "changed_at": [pd.Timestamp("2024-01-02")],
        }
    )
    write_crm({**tiny_crm(), "field_history": history}, tmp_path)
    assert "field_history" in read_crm(tmp_path)
    write_crm(tiny_crm(), tmp_path)  # the same folder, a CRM without history
    assert "field_history" not in read_crm(tmp_path)
    # A history leadscore did not write is never removed.
    history.to_parquet(tmp_path / "field_history.parquet")
    write_crm(tiny_crm(), tmp_path)
    assert (tmp_path / "field_history.parquet").exists()


def test_parquet_keeps_types_and_reads_categories_as_dictionaries(tmp_path):
    clean = validate_crm(tiny_crm(), EXTRACTED_AT).tables
    write_crm(clean, tmp_path)
    back = read_crm(tmp_path)
    assert back["events"]["timestamp"].dtype.kind == "M"
    assert isinstance(back["events"]["event_type"].dtype, pd.CategoricalDtype)
    assert back["accounts"]["employee_count"].dtype == "Int64"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_database_round_trip(tmp_path, request, database):
    url = (
        f"sqlite:///{tmp_path}/crm.db"
        if database == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
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


def _values(series: pd.Series) -> list:
    """The values as a list, missing as None (a ``str`` Series keeps NaN in ``where``)."""
    return series.astype(object).where(series.notna(), None).tolist()


def _listing(folder: Path) -> list[str]:
    """The folder's files, but the marker of the files leadscore wrote there."""
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


def _one_line_error(source, names: str, folder: Path | None = None, **kwargs) -> ContractError:
    """read_crm(source) fails with a one-line ContractError naming ``names``; nothing written."""
    before = _listing(folder) if folder is not None else None
    with pytest.raises(ContractError) as err:
        read_crm(source, **kwargs)
    message = str(err.value)
    assert "\n" not in message and names in message, message
    if folder is not None:
        assert _listing(folder) == before
    return err.value


def _crm_folder(tmp_path: Path, fmt: str = "csv") -> Path:
    folder = tmp_path / "crm"
    write_crm(tiny_crm(), folder, fmt=fmt)
    return folder


# ------------------------------------------------------------------------------------------------
# Parquet beside CSV; progress
# ------------------------------------------------------------------------------------------------
def test_parquet_preferred_over_csv_with_a_warning(tmp_path, caplog):
    raw = tiny_crm()
    write_crm({**raw, "accounts": raw["accounts"].iloc[:1]}, tmp_path, fmt="parquet")
    raw["accounts"].to_csv(tmp_path / "accounts.csv", index=False)  # e.g. a copy left by hand
    with caplog.at_level(logging.WARNING, logger="features.readers"):
        assert len(read_crm(tmp_path)["accounts"]) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{tmp_path / 'accounts.csv'} ignored: {tmp_path / 'accounts.parquet'} is read"
    ]


@pytest.mark.parametrize("kind", ["folder", "sqlite"])
def test_progress_is_called_after_each_table(tmp_path, kind):
    source = _crm_folder(tmp_path) if kind == "folder" else f"sqlite:///{tmp_path}/crm.db"
    if kind == "sqlite":
        write_crm(tiny_crm(), source)
    calls = []
    read_crm(source, progress=lambda task, done, total: calls.append((task, done, total)))
    assert calls == [("read", i, len(ct.TABLES)) for i in range(1, len(ct.TABLES) + 1)]


# ------------------------------------------------------------------------------------------------
# 1. corrupt Parquet, duplicate columns
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_parquet(tmp_path, damage):
    folder = _crm_folder(tmp_path, fmt="parquet")
    path = folder / "events.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not parquet at all\n")
    err = _one_line_error(folder, "events.parquet", folder)
    assert err.table == "events"
    assert f"{path} is not a readable Parquet file (" in str(err)
    assert str(err).endswith("): re-export it")


def test_parquet_with_a_duplicate_column(tmp_path):
    folder = _crm_folder(tmp_path, fmt="parquet")
    table = pq.read_table(folder / "events.parquet")
    pq.write_table(
        table.append_column("lead_id", pa.array(["L9", "L9"])), folder / "events.parquet"
    )
    err = _one_line_error(folder, "events.parquet", folder)
    assert "duplicate column name(s) 'lead_id'" in str(err)
    assert (err.table, err.column) == ("events", "lead_id")


def test_csv_with_a_duplicate_header(tmp_path):
    folder = _crm_folder(tmp_path)
    path = folder / "events.csv"
    path.write_text("lead_id,timestamp,event_type,lead_id\nL1,2024-01-02,demo,L2\n")
    err = _one_line_error(folder, "events.csv", folder)
    assert "duplicate column header(s) 'lead_id'" in str(err)  # not silently renamed lead_id.1
    assert (err.table, err.column) == ("events", "lead_id")


# ------------------------------------------------------------------------------------------------
# 2. encodings
# ------------------------------------------------------------------------------------------------
LATIN1_EVENTS = "lead_id,timestamp,event_type\nL1,2024-01-02,Müller\n"


@pytest.mark.parametrize("block", [readers.DECODE_BLOCK, 7])  # 7: errors and é across blocks
def test_csv_not_in_the_configured_encoding(tmp_path, monkeypatch, block):
    monkeypatch.setattr(readers, "DECODE_BLOCK", block)
    folder = _crm_folder(tmp_path)
    valid = "lead_id,timestamp,event_type\n" + "L1,2024-01-02,café\n" * 20  # é is 2 bytes
    data = valid.encode("utf-8") + LATIN1_EVENTS.split("\n", 1)[1].encode("latin-1")
    (folder / "events.csv").write_bytes(data)
    position = data.index("ü".encode("latin-1"))
    err = _one_line_error(folder, "events.csv", folder)
    assert f"events.csv is not UTF-8 (byte 0xfc at position {position}, line 22)" in str(err)
    assert str(err).endswith("re-export as UTF-8 or set crm.encoding")


def test_undecodable_sequence_split_across_blocks(tmp_path, monkeypatch):
    folder = _crm_folder(tmp_path)
    data = b"lead_id,timestamp,event_type\nL1,2024-01-02,\xc3A\n"  # cp1252 "Ã" then "A"
    (folder / "events.csv").write_bytes(data)
    position = data.index(b"\xc3")
    monkeypatch.setattr(readers, "DECODE_BLOCK", position + 1)  # 0xc3 ends the first block
    _one_line_error(
        folder, f"events.csv is not UTF-8 (byte 0xc3 at position {position}, line 2)", folder
    )


def test_csv_in_a_configured_encoding_and_an_unknown_one(tmp_path):
    folder = _crm_folder(tmp_path)
    (folder / "events.csv").write_bytes(LATIN1_EVENTS.encode("latin-1"))
    assert read_crm(folder, encoding="latin-1")["events"]["event_type"].tolist() == ["Müller"]
    err = _one_line_error(folder, "'utf-9'", folder, encoding="utf-9")
    assert "crm.encoding" in str(err)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_utf8_byte_order_mark_is_accepted(tmp_path, encoding):
    folder = _crm_folder(tmp_path)
    text = (folder / "events.csv").read_text(encoding="utf-8")
    (folder / "events.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    events = read_crm(folder, encoding=encoding)["events"]
    assert events.columns.tolist() == ["lead_id", "timestamp", "event_type"]  # no "\ufefflead_id"
    assert events["lead_id"].tolist() == ["L1", "L2"]


# ------------------------------------------------------------------------------------------------
# 3. empty, folder, unreadable, links, missing folder
# ------------------------------------------------------------------------------------------------
def test_empty_csv_is_refused_but_a_header_only_csv_is_read(tmp_path):
    folder = _crm_folder(tmp_path)
    (folder / "events.csv").write_bytes(b"")
    err = _one_line_error(folder, "events.csv is empty (0 bytes)", folder)
    assert err.table == "events"
    (folder / "events.csv").write_text("lead_id,timestamp,event_type\n")
    events = read_crm(folder)["events"]
    assert len(events) == 0 and events.columns.tolist() == ["lead_id", "timestamp", "event_type"]


def test_table_path_that_is_a_folder(tmp_path):
    folder = _crm_folder(tmp_path)
    (folder / "events.parquet").mkdir()  # e.g. a partitioned Spark export
    (folder / "events.parquet" / "part-0.parquet").write_bytes(b"")
    err = _one_line_error(folder, "events.parquet is a folder, not a file", folder)
    assert err.table == "events"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_unreadable_file_simulated(tmp_path, monkeypatch, fmt):
    folder = _crm_folder(tmp_path, fmt=fmt)

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    # Tests may run as root, who reads any file: raise what open() raises for everyone else.
    monkeypatch.setattr(
        pq if fmt == "parquet" else pd, "read_schema" if fmt == "parquet" else "read_csv", denied
    )
    _one_line_error(folder, f"leads.{fmt} cannot be read (permission denied)", folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_unreadable_file_for_real(tmp_path, fmt):
    folder = _crm_folder(tmp_path, fmt=fmt)
    (folder / f"events.{fmt}").chmod(0)
    try:
        _one_line_error(folder, f"events.{fmt} cannot be read (permission denied)", folder)
    finally:
        (folder / f"events.{fmt}").chmod(0o644)


def test_symlink_loop(tmp_path):
    folder = _crm_folder(tmp_path)
    (folder / "events.csv").unlink()
    os.symlink("events.csv", folder / "events.csv")
    err = _one_line_error(folder, "events.csv is a symbolic link loop", folder)
    assert err.table == "events"


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_broken_symlink(tmp_path, suffix):
    folder = _crm_folder(tmp_path)  # events.csv is there: a broken events.parquet must not hide
    link = folder / f"events.{suffix}"
    link.unlink(missing_ok=True)
    os.symlink(tmp_path / f"gone.{suffix}", link)
    _one_line_error(
        folder,
        f"events.{suffix} is a broken symbolic link (to {tmp_path / f'gone.{suffix}'})",
        folder,
    )


def test_missing_folder_a_file_as_folder_and_bad_format(tmp_path):
    _one_line_error(tmp_path / "nope", f"CRM folder {tmp_path / 'nope'} does not exist", tmp_path)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "leads.csv").write_text("lead_id\n")
    _one_line_error(tmp_path / "leads.csv", "is not a folder", tmp_path)
    with pytest.raises(ValueError, match="fmt"):
        write_crm(tiny_crm(), tmp_path, fmt="xlsx")


# ------------------------------------------------------------------------------------------------
# 4. optional tables: accounts and events may be left out; leads and opportunities may not
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["csv", "parquet", "sqlite"])
def test_optional_tables_may_be_left_out(tmp_path, kind, caplog):
    required = {name: frame for name, frame in tiny_crm().items() if ct.TABLES[name].required}
    source = f"sqlite:///{tmp_path}/crm.db" if kind == "sqlite" else tmp_path / "crm"
    write_crm(required, source, **({} if kind == "sqlite" else {"fmt": kind}))
    calls = []
    with caplog.at_level(logging.INFO, logger="features.readers"):
        raw = read_crm(source, progress=lambda task, done, total: calls.append(done))
    assert sorted(raw) == ["leads", "opportunities"]
    assert calls == list(range(1, len(ct.TABLES) + 1))  # absent tables count too
    assert "optional table(s) not in " in caplog.text and ": accounts, events" in caplog.text
    result = validate_crm(raw, EXTRACTED_AT, nonempty_tables=("leads", "opportunities"))
    assert result.absent_tables == ("accounts", "events")
    assert result.counts["rows_rejected"].sum() == 0
    assert {name: len(frame) for name, frame in result.tables.items()} == {
        "accounts": 0,
        "leads": 2,
        "events": 0,
        "opportunities": 2,
    }


@pytest.mark.parametrize("kind", ["folder", "sqlite"])
def test_a_missing_required_table_is_one_line(tmp_path, kind):
    partial = {name: frame for name, frame in tiny_crm().items() if name != "opportunities"}
    if kind == "sqlite":
        source = f"sqlite:///{tmp_path}/crm.db"
        write_crm(partial, source)
        err = _one_line_error(source, "CRM table 'opportunities' not found in database")
    else:
        source = tmp_path / "crm"
        write_crm(partial, source, fmt="csv")
        err = _one_line_error(source, "CRM table 'opportunities' not found in folder", source)
    assert err.table == "opportunities"
    assert "Export leads and opportunities there (accounts and events optional)" in str(err)


# ------------------------------------------------------------------------------------------------
# 5. IDs as text, one rule for every table and source
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([12, 7], dtype="int64"), ["12", "7"]),
        (pd.Series([12.0, np.nan]), ["12", None]),
        (pd.Series(pd.arrays.ArrowExtensionArray(pa.array([12.0, np.nan]))), ["12", None]),
        (pd.Series([12, None], dtype="Int64"), ["12", None]),
        (pd.Series([1.5, -3.0]), ["1.5", "-3"]),  # non-integral: kept visible for validation
        (pd.Series([2.0**60]), ["1.152921504606847e+18"]),  # rounded: never posing as digits
        (
            pd.Series([decimal.Decimal("12.00"), decimal.Decimal("1.50"), None]),
            ["12", "1.50", None],
        ),
        (pd.Series(pd.Categorical([3, None, 3])), ["3", None, "3"]),
        (pd.Series(["0012", None], dtype="str"), ["0012", None]),  # text stays as it is
    ],
)
def test_ids_as_text(values, expected):
    out = ids_as_text(values.rename("lead_id"))
    assert out.name == "lead_id" and out.index.equals(values.index)
    assert out.dtype == "str" and _values(out) == expected


def _parquet_export(folder: Path, name: str, frame: pd.DataFrame, **ids: pa.Array) -> None:
    """Write ``frame`` as a non-pandas tool would (no pandas metadata), with typed id columns."""
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    for column, values in ids.items():
        table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table, folder / f"{name}.parquet")


@pytest.mark.parametrize("stored", ["int64", "int64 with a missing id", "double"])
def test_numeric_ids_in_parquet_match_text_ids(tmp_path, stored):
    """Reproduction: leads.lead_id stored as numbers, events.lead_id as text "1", "2".

    An integer column with a missing value (or a float export) came out as float64, whose text
    "1.0" matched no event: every event was quarantined as "unknown lead_id".
    """
    clean = validate_crm(tiny_crm(), EXTRACTED_AT).tables
    leads, accounts = clean["leads"], clean["accounts"]
    with_missing = stored == "int64 with a missing id"
    if with_missing:  # a third lead whose id is missing: validation rejects that row only
        leads = pd.concat([leads, leads.iloc[[0]]], ignore_index=True)
    ids = [1, 2, None] if with_missing else [1, 2]
    arrow_type = pa.float64() if stored == "double" else pa.int64()
    _parquet_export(
        tmp_path,
        "leads",
        leads,
        lead_id=pa.array(ids, arrow_type),
        account_id=pa.array([1] + [None] * (len(leads) - 1), arrow_type),  # float64 in pandas
    )
    _parquet_export(tmp_path, "accounts", accounts, account_id=pa.array([1, 2], arrow_type))
    events = clean["events"].assign(lead_id=["1", "2"])
    opportunities = clean["opportunities"].assign(lead_id=["1", "2"], opportunity_id=["O1", "O2"])
    write_crm({"events": events, "opportunities": opportunities}, tmp_path)

    raw = read_crm(tmp_path)
    assert raw["leads"]["lead_id"].dtype == "str"
    assert raw["leads"]["account_id"].tolist()[0] == "1"
    result = validate_crm(raw, EXTRACTED_AT)
    rejected = result.counts.set_index("table")["rows_rejected"].to_dict()
    assert rejected == {"accounts": 0, "leads": int(with_missing), "events": 0, "opportunities": 0}
    assert result.tables["events"]["lead_id"].tolist() == ["1", "2"]


def test_big_integer_ids_with_a_missing_value_stay_exact_in_parquet(tmp_path):
    big = 2**60 + 1  # not a float64: pandas alone would round it
    frame = pd.DataFrame({"lead_id": ["x", "y"], "timestamp": ["2024-01-02", None]})
    _parquet_export(tmp_path, "events", frame, lead_id=pa.array([big, None], pa.int64()))
    assert readers._read_parquet(tmp_path / "events.parquet", "events")[
        "lead_id"
    ].isna().tolist() == [False, True]
    out = readers._ids_to_text(
        readers._read_parquet(tmp_path / "events.parquet", "events"), "events"
    )
    assert out["lead_id"].tolist()[0] == str(big)


def test_csv_ids_are_kept_as_written(tmp_path):
    folder = _crm_folder(tmp_path)
    (folder / "events.csv").write_text(
        "lead_id,timestamp,event_type\n0012,2024-01-02,demo\n12.0,,\n"
    )
    assert read_crm(folder)["events"]["lead_id"].tolist() == ["0012", "12.0"]


def test_numeric_ids_in_sql_come_out_as_text(tmp_path):
    url = f"sqlite:///{tmp_path}/crm.db"
    clean = validate_crm(tiny_crm(), EXTRACTED_AT).tables
    write_crm(
        {
            **clean,
            "leads": clean["leads"].assign(lead_id=pd.array([1, 2], dtype="Int64")),
            "accounts": clean["accounts"].assign(account_id=[1.0, 2.0]),  # a REAL column
            "events": clean["events"].assign(lead_id=pd.array([1, None], dtype="Int64")),
        },
        url,
    )
    raw = read_crm(url)
    assert raw["leads"]["lead_id"].tolist() == ["1", "2"]
    assert raw["accounts"]["account_id"].tolist() == ["1", "2"]
    assert _values(raw["events"]["lead_id"]) == ["1", None]


# ------------------------------------------------------------------------------------------------
# 6. databases
# ------------------------------------------------------------------------------------------------
def test_missing_sqlite_database_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(
        "sqlite:///missing.db", f"CRM database {tmp_path / 'missing.db'} does not exist", tmp_path
    )
    assert str(err).endswith("check the path")
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("url", ["mysql://crm:hunter2@db/crm", "foo://somewhere"])
def test_unknown_scheme(url):
    scheme = url.split("://")[0]
    err = _one_line_error(url, f"unsupported CRM source scheme '{scheme}://'")
    assert "sqlite:///" in str(err) and "postgresql+psycopg://" in str(err) and "folder" in str(err)
    assert "hunter2" not in str(err)


def test_database_errors_are_one_line_without_the_password(tmp_path):
    (tmp_path / "crm.db").write_bytes(b"this is not a database" * 100)
    err = _one_line_error(
        f"sqlite:///{tmp_path}/crm.db", "cannot read CRM database sqlite:///", tmp_path
    )
    assert "file is not a database" in str(err)
    url = "postgresql+psycopg://crm:hunter2@127.0.0.1:1/crm?connect_timeout=5"  # nothing listens
    err = _one_line_error(
        url, "cannot read CRM database postgresql+psycopg://crm:***@127.0.0.1:1/crm"
    )
    assert "hunter2" not in str(err)
    assert display_url(url) in str(err)


# ------------------------------------------------------------------------------------------------
# write_crm: never deletes what it did not create; atomic
# ------------------------------------------------------------------------------------------------
def test_rewriting_in_the_other_format_removes_our_own_stale_file(tmp_path):
    raw = tiny_crm()
    write_crm(raw, tmp_path, fmt="parquet")
    write_crm(raw, tmp_path, fmt="csv")
    assert _listing(tmp_path) == sorted(f"{t}.csv" for t in ct.TABLES)


def test_files_not_written_by_leadscore_are_never_replaced(tmp_path):
    raw = tiny_crm()
    raw["events"].to_parquet(tmp_path / "events.parquet")  # the user's own file
    before = (tmp_path / "events.parquet").read_bytes()
    with pytest.raises(OutputError, match="not written by leadscore"):
        write_crm(raw, tmp_path, fmt="parquet")
    assert (tmp_path / "events.parquet").read_bytes() == before


def test_writing_beside_an_export_in_the_other_format_is_refused_and_nothing_is_written(tmp_path):
    """`generate --out <a real CSV export>` must not put synthetic Parquet beside it (readers
    prefer Parquet: the next nightly would score invented leads)."""
    raw = tiny_crm()
    for name, frame in raw.items():  # an export leadscore did not write
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match="not written by leadscore"):
        write_crm(raw, tmp_path, fmt="csv")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    raw = tiny_crm()
    write_crm(raw, tmp_path, fmt="csv")
    before = {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)}

    def half_then_fail(self, path, **kwargs):
        Path(path).write_text("lead_id\nL1\n")  # a partial file, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        write_crm(raw, tmp_path, fmt="csv")
    assert {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)} == before


@pytest.mark.parametrize("where", ["folder", "sqlite"])
def test_a_field_history_beside_the_tables_is_read_if_there_and_not_counted(tmp_path, where):
    raw = tiny_crm()
    history = pd.DataFrame(
        {
            "entity": ["leads"],
            "entity_id": ["L1"],
            "field": ["budget"],
            "value": ["10k_50k"],
            "changed_at": ["2024-03-01T00:00:00"],
        }
    )
    dest = tmp_path / "crm" if where == "folder" else f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm(raw, dest)
    calls = []
    without = read_crm(dest, progress=lambda task, done, total: calls.append((done, total)))
    assert "field_history" not in without
    write_crm({"field_history": history}, dest)
    with_history = read_crm(dest, progress=lambda task, done, total: calls.append((done, total)))
    assert with_history["field_history"]["entity_id"].tolist() == ["L1"]
    # The extra table is not a step of the progress count: 4 of 4 either way.
    assert calls == [(i, 4) for i in range(1, 5)] * 2
