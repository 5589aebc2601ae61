"""Unit tests of the scoring job's parts on tiny frames: open leads, the model's population
(age cap, in_sales), the SQL sink's batches."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from models.cutoffs import STAGES
from pipelines.score_job import older_leads_setting
from pipelines.scoring import (
    IN_SALES,
    IN_SALES_REASON,
    SCORING_STAGES,
    Population,
    ScoringModel,
    open_leads,
    select_leads,
    stage_in_sales,
)
from pipelines.writeback.base import SCORE_COLUMNS, BatchWriteError, SinkConfigurationError
from pipelines.writeback.sql import SqlSink

AS_OF = pd.Timestamp("2024-06-01")


def crm() -> dict[str, pd.DataFrame]:
    leads = pd.DataFrame(
        {
            "lead_id": ["A", "B", "C", "D", "E", "F"],
            "created_at": pd.to_datetime(
                ["2024-01-01", "2024-01-01", "2024-01-01", "2024-05-30", "2024-07-01", "2023-01-01"]
            ),
        }
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": ["1", "2", "3", "4", "5"],
            "lead_id": ["A", "A", "B", "C", "D"],
            "created_at": pd.to_datetime(
                ["2024-02-01", "2024-05-01", "2024-02-01", "2024-02-01", "2024-05-31"]
            ),
            "closed_at": pd.to_datetime(
                ["2024-03-01", None, "2024-03-01", "2024-03-01", "2024-06-02"]
            ),
            "is_won": pd.array([False, None, False, True, True], dtype="boolean"),
        }
    )
    return {"leads": leads, "opportunities": opps}


def test_open_leads_follow_the_training_rule_for_won_and_lost():
    snapshots, counts = open_leads(crm(), AS_OF, max_lead_age_days=365)
    # A: lost one opportunity but has another open -> open. B: lost -> out. C: won -> out.
    # D: won only after as_of -> open. E: created later -> out. F: older than a year -> out.
    assert snapshots["lead_id"].tolist() == ["A", "D"]
    assert (snapshots["as_of"] == AS_OF).all()
    assert counts == {
        "leads_in_crm": 6, "open": 2, "already_won": 1, "already_lost": 1,
        "older_than_max_age": 1, "older_than_max_age_scored": 0, "created_after_as_of": 1,
    }  # fmt: skip


def aged(days: list[float]) -> dict[str, pd.DataFrame]:
    """Leads L0, L1, ... created ``days`` before AS_OF, no opportunity."""
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(len(days))],
            "created_at": [AS_OF - pd.Timedelta(days=d) for d in days],
        }
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.Series(dtype=str), "lead_id": pd.Series(dtype=str),
            "created_at": pd.Series(dtype="datetime64[ns]"),
            "closed_at": pd.Series(dtype="datetime64[ns]"), "is_won": pd.array([], dtype="boolean"),
        }
    )  # fmt: skip
    return {"leads": leads, "opportunities": opps}


def test_the_age_cap_keeps_a_lead_exactly_at_it_and_leaves_out_one_a_day_older():
    snapshots, counts = open_leads(aged([1, 90, 91, 400]), AS_OF, 90)
    assert snapshots["lead_id"].tolist() == ["L0", "L1"]
    assert (counts["open"], counts["older_than_max_age"], counts["older_than_max_age_scored"]) == (
        2, 2, 0,
    )  # fmt: skip
    # No cap (a model that does not record its population's age): every age is scored.
    everyone, counts = open_leads(aged([1, 90, 91, 400]), AS_OF, None)
    assert len(everyone) == 4 and counts["older_than_max_age"] == 0


def test_older_leads_score_keeps_the_older_leads_and_counts_them():
    snapshots, counts = open_leads(aged([1, 90, 91, 400]), AS_OF, 90, older_leads="score")
    assert snapshots["lead_id"].tolist() == ["L0", "L1", "L2", "L3"]
    assert (counts["open"], counts["older_than_max_age"], counts["older_than_max_age_scored"]) == (
        4, 0, 2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="score.older_leads must be one of leave_out, score"):
        open_leads(aged([1]), AS_OF, 90, older_leads="keep")


def test_older_leads_setting_reads_the_retired_max_lead_age_days_with_a_warning(caplog):
    assert older_leads_setting({}) == "leave_out"
    assert older_leads_setting({"older_leads": "score"}) == "score"
    with pytest.raises(ValueError, match="score.older_leads must be one of leave_out, score"):
        older_leads_setting({"older_leads": "drop"})
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="pipelines.score_job"):
        assert older_leads_setting({"max_lead_age_days": None}) == "score"  # null: no cap
        assert older_leads_setting({"max_lead_age_days": 180}) == "leave_out"  # model's cap
        assert older_leads_setting({"max_lead_age_days": None, "older_leads": "leave_out"}) == (
            "leave_out"
        )
    deprecations = [r for r in caplog.records if "max_lead_age_days is deprecated" in r.message]
    assert len(deprecations) == 3 and all(r.levelno == logging.WARNING for r in deprecations)
    assert "(180 days)" in deprecations[1].message


def model_with(meta: dict) -> ScoringModel:
    return ScoringModel(SimpleNamespace(meta=meta), "lead-conversion", "7", "models:/x/7")


def test_the_population_is_read_from_the_model_and_defaults_to_all_of_any_age():
    assert model_with({}).population == Population("all", None)  # trained before it was recorded
    meta = {"population": {"policy": "lead_scoring", "max_age_days": 90}}
    assert model_with(meta).population == Population("lead_scoring", 90)
    assert model_with({"population": {"policy": "all", "max_age_days": None}}).population == (
        Population("all", None)
    )
    with pytest.raises(ValueError, match="population policy 'sales'"):
        _ = model_with({"population": {"policy": "sales", "max_age_days": 90}}).population
    with pytest.raises(ValueError, match="max_age_days must be a whole number"):
        _ = model_with({"population": {"policy": "all", "max_age_days": -1}}).population


def test_in_sales_is_a_stage_of_every_scoring_summary():
    assert set(SCORING_STAGES) == set(STAGES) | {IN_SALES} and len(SCORING_STAGES) == 5


def test_a_lead_with_an_open_opportunity_is_staged_in_sales_and_keeps_its_score():
    tables = crm()
    # A: an opportunity open (another lost). D: opened before as_of, won only after: open then.
    # G: no opportunity. H: its only opportunity opens after as_of.
    opps = pd.concat(
        [
            tables["opportunities"],
            pd.DataFrame(
                {
                    "opportunity_id": ["6"], "lead_id": ["H"],
                    "created_at": pd.to_datetime(["2024-06-05"]), "closed_at": pd.NaT,
                    "is_won": pd.array([None], dtype="boolean"),
                }
            ),
        ],
        ignore_index=True,
    )  # fmt: skip
    scored = scores(["A", "D", "G", "H"])
    staged, n = stage_in_sales(scored, opps, AS_OF)
    assert n == 2
    assert staged["stage"].tolist() == [IN_SALES, IN_SALES, "MQL", "MQL"]
    assert staged.loc[staged["stage"] == IN_SALES, "stage_reason"].eq(IN_SALES_REASON).all()
    assert IN_SALES_REASON == "an opportunity is open: sales works this lead"
    # Everything else as scored (the sinks need no null handling); the input is not changed.
    others = [c for c in SCORE_COLUMNS if c not in ("stage", "stage_reason")]
    pd.testing.assert_frame_equal(staged[others], scored[others])
    assert scored["stage"].eq("MQL").all()
    empty, n = stage_in_sales(scored.iloc[:0], opps, AS_OF)
    assert empty.empty and n == 0


def test_select_leads_by_id_and_limit():
    snapshots, _ = open_leads(crm(), AS_OF)
    assert select_leads(snapshots, ["D"], None)["lead_id"].tolist() == ["D"]
    assert select_leads(snapshots, None, 1)["lead_id"].tolist() == ["A"]
    with pytest.raises(LookupError, match=r"\['B'\]"):
        select_leads(snapshots, ["B"], None)


def scores(ids: list[str], day: str = "2024-06-01", run: str = "r1") -> pd.DataFrame:
    n = len(ids)
    frame = pd.DataFrame(
        {
            "lead_id": ids, "score": [7] * n, "probability": [0.07] * n, "expected_amount": [float("nan")] * n,
            "expected_value": [float("nan")] * n, "stage": ["MQL"] * n,
            "stage_reason": ['score 0.070 >= MQL cutoff 0.050, "quoted", with commas\nand a newline'] * n,
            "bant_score": [2] * n, "gate_budget": ["pass"] * n, "gate_authority": ["unknown"] * n,
            "gate_need": ["fail"] * n, "gate_timeline": [""] * n, "reasons_for": ["Requested a demo 2 times; Seniority: vp"] * n,
            "reasons_against": [""] * n, "amount_reasons": [""] * n,
            "stage_since": pd.Timestamp(day), "last_sales_touch_at": pd.NaT,
            "follow_up_due": pd.array([False] * n, dtype="boolean"), "model_name": ["lead-conversion"] * n, "model_version": ["3"] * n,
            "scored_at": pd.Timestamp(day), "run_id": [run] * n,
        }
    )  # fmt: skip
    frame["scored_at"] = frame["scored_at"].astype("datetime64[us]")
    return frame[SCORE_COLUMNS]


@pytest.fixture(params=["sqlite", "postgresql"])
def sink(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for table in ("lead_scores", "lead_score_history"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()
    sink = SqlSink(url)
    sink.prepare()
    yield sink
    sink.close()


def read(sink: SqlSink, table: str) -> pd.DataFrame:
    with sink.engine.connect() as conn:
        return pd.read_sql_table(table, conn).sort_values("lead_id", ignore_index=True)


def test_a_bad_row_fails_alone_and_the_rest_of_its_batch_and_the_next_are_written(sink):
    sink.write_batch(scores(["L1", "L2"]))
    bad = scores(["L3", "L4"])
    bad["score"] = pd.array([7, None], dtype="Int64")  # NOT NULL: the database refuses L4's row
    with pytest.raises(BatchWriteError) as caught:
        sink.write_batch(bad)
    assert caught.value.lead_ids == ["L4"]  # bisected: L3 is written
    sink.write_batch(
        scores(["L5"])
    )  # the connection is clean again (SQLite keeps no staging table)
    assert read(sink, "lead_scores")["lead_id"].tolist() == ["L1", "L2", "L3", "L5"]
    assert read(sink, "lead_score_history")["lead_id"].tolist() == ["L1", "L2", "L3", "L5"]


def test_text_round_trips_and_empty_text_is_null_in_both_databases(sink):
    sink.write_batch(scores(["L1"]))
    row = read(sink, "lead_scores").iloc[0]
    assert (
        row["stage_reason"]
        == 'score 0.070 >= MQL cutoff 0.050, "quoted", with commas\nand a newline'
    )
    assert row["reasons_for"] == "Requested a demo 2 times; Seniority: vp"
    assert pd.isna(row["reasons_against"]) and pd.isna(row["gate_timeline"])
    assert row["scored_at"] == pd.Timestamp("2024-06-01") and row["probability"] == 0.07


def test_upsert_keeps_the_newest_score_and_history_has_one_row_per_run(sink):
    sink.write_batch(scores(["L1", "L2"], day="2024-06-02", run="new"))
    older = scores(["L1", "L3"], day="2024-06-01", run="old")
    older["score"] = 99
    sink.write_batch(older)
    sink.write_batch(older)  # the same batch again: no duplicate
    current = read(sink, "lead_scores").set_index("lead_id")
    assert current.loc["L1", "run_id"] == "new" and current.loc["L3", "score"] == 99
    history = read(sink, "lead_score_history")
    assert sorted(zip(history["run_id"], history["lead_id"], strict=True)) == [
        ("new", "L1"),
        ("new", "L2"),
        ("old", "L1"),
        ("old", "L3"),
    ]
    assert sink.written_lead_ids("old") == {"L1", "L3"}


def test_only_sqlite_and_postgresql_are_accepted(tmp_path):
    with pytest.raises(SinkConfigurationError, match="PostgreSQL or SQLite, not mysql"):
        SqlSink("mysql+pymysql://user:secret@db.example/crm")


def test_a_table_an_earlier_version_created_gains_the_new_columns_and_keeps_its_rows(sink):
    # lead_scores as written before expected value existed: its rows stay, the columns come.
    new = ("expected_amount", "expected_value", "amount_reasons", "stage_since")
    new += ("last_sales_touch_at", "follow_up_due")
    old = [c for c in SCORE_COLUMNS if c not in new]
    sink.write_batch(scores(["L1"]))
    with sink.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE lead_scores")
    legacy = sa.MetaData()
    sa.Table(
        "lead_scores",
        legacy,
        *(
            sa.Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key)
            for c in sink.current.columns
            if c.name in old
        ),
    )
    legacy.create_all(sink.engine)
    with sink.engine.begin() as conn:
        conn.execute(legacy.tables["lead_scores"].insert(), scores(["L0"])[old].to_dict("records"))
    again = SqlSink(sink.url)
    again.prepare()
    columns = {c["name"] for c in sa.inspect(again.engine).get_columns("lead_scores")}
    assert columns == set(SCORE_COLUMNS)
    batch = scores(["L2"]).assign(expected_amount=9_000.0, expected_value=630.0)
    again.write_batch(batch)
    table = read(again, "lead_scores")
    assert table["lead_id"].tolist() == ["L0", "L2"]
    assert table["expected_value"].isna().tolist() == [True, False]
    again.prepare()  # nothing left to add: a second run changes nothing
    again.close()


def test_floats_and_instants_round_trip_exactly_in_both_databases(sink):
    frame = scores(["L1", "L2", "L3"])
    frame["probability"] = [0.1 + 0.2, 1 / 3, 5e-324]  # the shortest text that reads back
    frame["expected_amount"] = [1e300, None, 12345.678901234567]
    stamp = pd.Timestamp("2024-06-01 12:34:56.123456789")  # PostgreSQL keeps microseconds
    frame["stage_since"] = pd.Series([stamp, pd.NaT, stamp], dtype="datetime64[ns]")
    sink.write_batch(frame)
    row = read(sink, "lead_scores")
    assert row["probability"].tolist() == [0.1 + 0.2, 1 / 3, 5e-324]
    assert row["expected_amount"].iloc[0] == 1e300 and pd.isna(row["expected_amount"].iloc[1])
    assert row["expected_amount"].iloc[2] == 12345.678901234567
    assert row["stage_since"].iloc[0] == pd.Timestamp("2024-06-01 12:34:56.123456")
    assert pd.isna(row["stage_since"].iloc[1])
