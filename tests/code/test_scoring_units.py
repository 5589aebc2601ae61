"""Unit tests of the scoring job's parts on tiny frames: open leads, the SQL sink's batches."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.scoring import open_leads, select_leads
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
        "older_than_max_age": 1, "created_after_as_of": 1,
    }  # fmt: skip


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
            "lead_id": ids, "score": [7] * n, "probability": [0.07] * n, "stage": ["MQL"] * n,
            "stage_reason": ['score 0.070 >= MQL cutoff 0.050, "quoted", with commas\nand a newline'] * n,
            "bant_score": [2] * n, "gate_budget": ["pass"] * n, "gate_authority": ["unknown"] * n,
            "gate_need": ["fail"] * n, "gate_timeline": [""] * n, "reasons_for": ["Requested a demo 2 times; Seniority: vp"] * n,
            "reasons_against": [""] * n, "model_name": ["lead-conversion"] * n, "model_version": ["3"] * n,
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
