"""The nightly job on a partitioned CRM: exactly once through a killed Dask worker and a killed
job, the whole-table checks over all partitions, quarantined rows by the export's rows."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from features.validation import ContractError
from pipelines import engines, partitioned_scoring, score_job
from pipelines.partition import run_partition
from pipelines.writeback.sql import SqlSink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world8(trained_world, tmp_path_factory):
    """The session's CRM in 8 partitions, and params scoring it with its model."""
    root, params = trained_world
    params = copy.deepcopy(params)
    params["score"].update(
        model_uri=str(root / "model"), older_leads="score", batch_size={"sql": 40}
    )
    out = tmp_path_factory.mktemp("partitioned8") / "crm"
    run_partition(params, root / "crm", out, 8)
    return root, params, out


def _params(params, tmp_path, engine: str = "pandas") -> dict:
    params = copy.deepcopy(params)
    params["score"].update(to=f"sqlite:///{tmp_path / 'crm.db'}", rejects=str(tmp_path / "rejects"))
    params["score"]["drift"] = {**params["score"]["drift"], "plot": None}
    params["engine"] = {"name": engine, "workers": 2, "memory_limit": "2GiB"}
    return params


def read_table(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_table(table, conn)
    finally:
        engine.dispose()


def _written_once(url: str, summary: dict) -> None:
    current, history = read_table(url, "lead_scores"), read_table(url, "lead_score_history")
    runs = read_table(url, "scoring_runs")
    assert runs["status"].tolist() == ["succeeded"]
    assert current["lead_id"].is_unique and not history.duplicated(["run_id", "lead_id"]).any()
    assert len(current) == len(history) == summary["counts"]["open"] > 300
    assert runs.loc[0, "leads_written"] == summary["counts"]["open"]


def test_a_worker_killed_mid_job_leaves_no_duplicate_and_no_gap(world8, tmp_path, monkeypatch):
    _, params, out = world8
    params = _params(params, tmp_path, "dask")
    killed: dict[str, object] = {}
    opened = engines.open_engine

    def open_and_kill_one(settings):
        runner = opened(settings)

        def kill_a_busy_worker() -> None:
            pids = runner.client.run(os.getpid)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and "pid" not in killed:
                busy = [w for w, tasks in runner.client.processing().items() if tasks]
                if busy:
                    killed["pid"], killed["tasks"] = (
                        pids[busy[0]],
                        runner.client.processing()[busy[0]],
                    )
                    os.kill(pids[busy[0]], signal.SIGKILL)
                time.sleep(0.05)

        threading.Thread(target=kill_a_busy_worker, daemon=True).start()
        return runner

    monkeypatch.setattr(partitioned_scoring, "open_engine", open_and_kill_one)
    summary = score_job.run_score(params, str(out), create=True)
    assert killed.get("pid"), "no worker was killed: the test did not test anything"
    assert killed["tasks"], "the killed worker held no task"
    assert summary["status"] == "succeeded" and summary["engine"]["partitions"] == 8
    _written_once(params["score"]["to"], summary)


def test_a_job_killed_while_writing_is_finished_by_the_next(world8, tmp_path, monkeypatch):
    _, params, out = world8
    params = _params(params, tmp_path)
    original = SqlSink.write_batch
    calls = {"n": 0}

    def dies_on_fourth_batch(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(SqlSink, "write_batch", dies_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        score_job.run_score(params, str(out), create=True)
    url = params["score"]["to"]
    assert read_table(url, "scoring_runs")["leads_written"].tolist() == [120]
    monkeypatch.setattr(SqlSink, "write_batch", original)
    resumed = score_job.run_score(params, str(out))
    assert resumed["counts"]["already_written"] == 120
    _written_once(url, {"counts": {"open": resumed["counts"]["open"]}})


def _break(out, table: str, column: str, rows, value) -> None:
    """Set ``column`` to ``value`` in the given export rows of a partitioned table."""
    for folder in (out / table).glob("part=*"):
        for chunk in folder.glob("chunk-*.parquet"):
            frame = pd.read_parquet(chunk)
            hit = frame["_source_row"].isin(rows)
            if hit.any():
                if isinstance(value, str):  # text among timestamps: the column as text
                    frame[column] = frame[column].astype(str)
                frame.loc[hit, column] = value
                frame.to_parquet(chunk, index=False)


@pytest.fixture
def broken(world8, tmp_path):
    """A copy of the partitioned CRM (the tests break it) and of the whole export."""
    import shutil

    root, params, out = world8
    copy_out = tmp_path / "parts"
    shutil.copytree(out, copy_out)
    whole = tmp_path / "whole"
    shutil.copytree(root / "crm", whole)
    return params, copy_out, whole


def _error(params, source, tmp_path) -> str:
    with pytest.raises(ContractError) as caught:
        score_job.run_score(_params(params, tmp_path / "x"), str(source), create=True)
    return str(caught.value)


def test_a_column_mostly_unreadable_stops_both_with_the_same_message(broken, tmp_path):
    params, parts, whole = broken
    leads = pd.read_parquet(whole / "leads.parquet")
    rows = list(range(0, len(leads), 2))  # half the leads: far above max_unparseable_fraction
    _break(parts, "leads", "created_at", rows, "last spring")
    leads["created_at"] = leads["created_at"].astype(str)
    leads.loc[rows, "created_at"] = "last spring"
    leads.to_parquet(whole / "leads.parquet", index=False)
    message = _error(params, whole, tmp_path / "w")
    assert "created_at has the wrong type" in message
    assert _error(params, parts, tmp_path / "p") == message


def test_the_quarantined_share_is_judged_over_all_partitions(broken, tmp_path):
    params, parts, whole = broken
    events = pd.read_parquet(whole / "events.parquet")
    rows = list(range(0, len(events), 10))  # 10% of the events in the future: > 5% quarantined
    _break(parts, "events", "timestamp", rows, pd.Timestamp("2099-01-01"))
    events.loc[rows, "timestamp"] = pd.Timestamp("2099-01-01")
    events.to_parquet(whole / "events.parquet", index=False)
    message = _error(params, whole, tmp_path / "w")
    assert "would be quarantined" in message
    assert _error(params, parts, tmp_path / "p") == message
