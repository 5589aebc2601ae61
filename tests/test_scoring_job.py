"""The scoring job on the session's small synthetic CRM: exactly-once write-back, resumable runs,
SQLite, PostgreSQL and Parquet sinks, dry runs, and clear stops on bad input."""

from __future__ import annotations

import copy
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from pipelines import score_job
from pipelines.cli import app
from pipelines.follow_up import due_at
from pipelines.score_job import DriftRefused, NothingToScore, score_crm
from pipelines.scoring import IN_SALES, IN_SALES_REASON, load_scoring_model, open_leads
from pipelines.steps import _read_validated
from pipelines.writeback.base import SCORE_COLUMNS, BatchWriteError
from pipelines.writeback.sql import SqlSink

pytestmark = pytest.mark.slow


def run_score(*args, **kwargs):
    """The scoring job, allowed to create the test's fresh sink database (``--create``)."""
    return score_job.run_score(*args, **{"create": True, **kwargs})


@pytest.fixture
def world(trained_world, tmp_path):
    """Paths and params for one scoring test: the shared CRM and model, outputs in tmp_path."""
    root, params = trained_world
    params = copy.deepcopy(params)
    params["score"].update(
        model_uri=str(root / "model"),
        to=f"sqlite:///{tmp_path / 'crm.db'}",
        rejects=str(tmp_path / "rejects"),
        batch_size={"sql": 150, "files": 150},
        older_leads="score",  # every open lead, whatever the model's max_age_days
    )
    params["score"]["drift"] = {**params["score"]["drift"], "plot": str(tmp_path / "drift.png")}
    return root, params, tmp_path


def read_table(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_table(table, conn)
    finally:
        engine.dispose()


def test_every_open_lead_is_written_once_with_its_score_stage_and_reasons(world):
    root, params, tmp = world
    summary = run_score(params, str(root / "crm"))
    url = params["score"]["to"]
    current, history = read_table(url, "lead_scores"), read_table(url, "lead_score_history")
    runs = read_table(url, "scoring_runs")

    counts = summary["counts"]
    assert (
        summary["status"] == "succeeded"
        and summary["leads_written"] == counts["scored"] == counts["open"] > 300
    )
    assert (
        counts["leads_in_crm"]
        == counts["open"]
        + counts["already_won"]
        + counts["already_lost"]
        + counts["created_after_as_of"]
        + counts["older_than_max_age"]
    )
    assert len(current) == len(history) == counts["open"] and current["lead_id"].is_unique
    assert (history["run_id"] == summary["run_id"]).all()
    assert runs.loc[0, ["status", "leads_scored", "leads_written", "leads_failed"]].tolist() == [
        "succeeded",
        counts["open"],
        counts["open"],
        0,
    ]
    # The scores are the packaged model's scores of the open leads' features as of the run.
    model = load_scoring_model(params["score"]["model_uri"])
    assert set(current["model_version"]) == {model.version}
    # The score is the probability's percentile among the version's reference leads: 1-99,
    # in the probability's order, and spread (the best open leads in the 90s).
    scale = model.scorer.score_scale
    assert (current["score"] == scale.score(current["probability"].to_numpy())).all()
    assert current["score"].between(1, 99).all() and current["score"].max() >= 90
    ranked = current.sort_values("probability")
    assert ranked["score"].is_monotonic_increasing
    assert current["stage"].value_counts().to_dict() == {
        k: v for k, v in summary["stages"].items() if v
    }
    sql = current[current["stage"] == "SQL"]
    assert (sql["probability"] >= model.cutoffs["sql"]).all() and (
        sql["gate_authority"] == "pass"
    ).all()
    # Reasons: words, at most three each way, for nearly every lead.
    assert current["reasons_for"].notna().mean() > 0.9
    assert current["reasons_for"].dropna().str.count("; ").max() <= 2
    # Open means not already won or lost: none of the written leads has a closed opportunity.
    opps = pd.read_parquet(root / "crm" / "opportunities.parquet")
    closed = opps.loc[pd.to_datetime(opps["closed_at"]) < pd.Timestamp(summary["as_of"]), "lead_id"]
    assert not current["lead_id"].isin(closed).any()


def test_a_run_killed_half_way_is_finished_by_the_next_without_duplicates(world, monkeypatch):
    root, params, _ = world
    original = SqlSink.write_batch
    calls = {"n": 0}

    def dies_on_third_batch(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the job is killed while writing
        return original(self, batch)

    monkeypatch.setattr(SqlSink, "write_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run_score(params, str(root / "crm"))
    url = params["score"]["to"]
    runs = read_table(url, "scoring_runs")
    assert runs["status"].tolist() == ["failed"] and runs.loc[0, "leads_written"] == 300
    assert "KeyboardInterrupt" in runs.loc[0, "message"]

    monkeypatch.setattr(SqlSink, "write_batch", original)
    resumed = run_score(params, str(root / "crm"))
    history, runs = read_table(url, "lead_score_history"), read_table(url, "scoring_runs")
    assert resumed["run_id"] == runs.loc[0, "run_id"] and len(runs) == 1
    assert resumed["counts"]["already_written"] == 300 and resumed["status"] == "succeeded"
    assert not history.duplicated(["run_id", "lead_id"]).any()
    assert len(history) == len(read_table(url, "lead_scores")) == resumed["counts"]["open"]


def test_a_failed_batch_is_recorded_with_its_leads_and_retried_by_the_next_run(world, monkeypatch):
    root, params, _ = world
    original = SqlSink.write_batch
    lost: list[str] = []

    def second_batch_fails(self, batch):
        if not lost and batch.index[0] >= 150:
            lost.extend(batch["lead_id"])
            raise BatchWriteError("database said no", batch["lead_id"])
        return original(self, batch)

    monkeypatch.setattr(SqlSink, "write_batch", second_batch_fails)
    p = world[2] / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["-q", "score", str(root / "crm"), "-p", str(p), "--create"])
    assert result.exit_code == 2, result.output  # partial: not an error to hide in a green job
    url = params["score"]["to"]
    failures, runs = read_table(url, "scoring_failures"), read_table(url, "scoring_runs")
    assert runs.loc[0, "status"] == "partial" and runs.loc[0, "leads_failed"] == 150
    assert json.loads(failures.loc[0, "lead_ids"]) == lost and failures.loc[0, "batch_no"] == 1
    assert not read_table(url, "lead_scores")["lead_id"].isin(lost).any()

    monkeypatch.setattr(SqlSink, "write_batch", original)
    again = run_score(params, str(root / "crm"))
    assert (
        again["status"] == "succeeded"
        and again["leads_written"] == 150
        and again["run_id"] == runs.loc[0, "run_id"]
    )
    assert read_table(url, "lead_scores")["lead_id"].isin(lost).sum() == 150
    assert read_table(url, "scoring_failures").empty


def test_postgresql_receives_the_same_scores_as_sqlite(world, postgres_url):
    root, params, _ = world
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for table in ("lead_scores", "lead_score_history", "scoring_runs", "scoring_failures"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    on_sqlite = run_score(params, str(root / "crm"), as_of="2024-11-01")
    on_postgres = run_score(params, str(root / "crm"), to=postgres_url, as_of="2024-11-01")
    assert (
        on_postgres["status"] == "succeeded"
        and on_postgres["leads_written"] == on_sqlite["leads_written"]
    )
    a = (
        read_table(params["score"]["to"], "lead_scores")
        .drop(columns="run_id")
        .sort_values("lead_id", ignore_index=True)
    )
    b = (
        read_table(postgres_url, "lead_scores")
        .drop(columns="run_id")
        .sort_values("lead_id", ignore_index=True)
    )
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    # Scoring the same day again adds a run to the history, never a duplicate row within a run.
    run_score(params, str(root / "crm"), to=postgres_url, as_of="2024-11-01")
    history = read_table(postgres_url, "lead_score_history")
    assert len(history) == 2 * len(b) and not history.duplicated(["run_id", "lead_id"]).any()


def test_an_older_score_never_overwrites_a_newer_one(world):
    root, params, _ = world
    run_score(params, str(root / "crm"), as_of="2024-11-01", lead_ids=None)
    run_score(params, str(root / "crm"), as_of="2024-10-01")
    current = read_table(params["score"]["to"], "lead_scores")
    newer = current[current["scored_at"] == pd.Timestamp("2024-11-01")]
    older = current[current["scored_at"] == pd.Timestamp("2024-10-01")]
    open_then, _ = open_leads(
        {
            "leads": pd.read_parquet(root / "v" / "leads.parquet"),
            "opportunities": pd.read_parquet(root / "v" / "opportunities.parquet"),
        },
        pd.Timestamp("2024-11-01"),
    )
    assert set(newer["lead_id"]) == set(open_then["lead_id"])
    assert (
        not older["lead_id"].isin(newer["lead_id"]).any()
    )  # only leads not open on 1 Nov keep 1 Oct


def test_parquet_sink_writes_current_scores_and_history_and_resumes(world, monkeypatch):
    from pipelines.writeback.files import FileSink

    root, params, tmp = world
    folder = tmp / "scores"
    original = FileSink.write_batch
    calls = {"n": 0}

    def dies(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk unplugged")
        return original(self, batch)

    monkeypatch.setattr(FileSink, "write_batch", dies)
    with pytest.raises(RuntimeError):
        run_score(params, str(root / "crm"), to=str(folder))
    assert not (folder / "lead_scores.parquet").exists()
    monkeypatch.setattr(FileSink, "write_batch", original)
    done = run_score(params, str(root / "crm"), to=str(folder))
    current = pd.read_parquet(folder / "lead_scores.parquet")
    history = pd.concat(pd.read_parquet(p) for p in (folder / "history").rglob("*.parquet"))
    assert done["counts"]["already_written"] == 150
    assert list(current.columns) == SCORE_COLUMNS and len(current) == done["counts"]["open"] == len(
        history
    )
    assert history["lead_id"].is_unique


def test_dry_run_writes_nothing_and_limit_and_lead_ids_select(world):
    root, params, tmp = world
    preview = run_score(params, str(root / "crm"), dry_run=True, limit=5)
    assert len(preview["preview"]) == 5 and not (tmp / "crm.db").exists()
    some = preview["preview"]["lead_id"].tolist()[:2]
    picked = run_score(params, str(root / "crm"), lead_ids=some)
    assert picked["leads_written"] == 2
    assert sorted(read_table(params["score"]["to"], "lead_scores")["lead_id"]) == sorted(some)
    with pytest.raises(LookupError, match="NOT-A-LEAD"):
        run_score(params, str(root / "crm"), lead_ids=["NOT-A-LEAD"])


def test_bad_input_stops_before_anything_is_written(world):
    root, params, tmp = world
    broken = tmp / "broken"
    shutil.copytree(root / "crm", broken)
    events = pd.read_parquet(broken / "events.parquet").drop(columns="event_type")
    events.to_parquet(broken / "events.parquet")
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["score", str(broken), "-p", str(p), "--create"])
    assert result.exit_code == 1 and "events" in result.output and "event_type" in result.output
    assert not (tmp / "crm.db").exists()  # not even an empty database file

    with pytest.raises(NothingToScore, match="no open lead"):
        run_score(params, str(root / "crm"), as_of="2000-01-01")

    mismatched = copy.deepcopy(params)
    folder = tmp / "model"
    shutil.copytree(root / "model", folder)
    meta = json.loads((folder / "model_meta.json").read_text())
    meta["feature_config"]["builders"] = ["demographic", "firmographic"]
    (folder / "model_meta.json").write_text(json.dumps(meta))
    mismatched["score"]["model_uri"] = str(folder)
    with pytest.raises(ValueError, match="needs feature"):
        run_score(mismatched, str(root / "crm"))


def test_model_by_registry_uri_uses_the_cutoffs_of_that_version(world, monkeypatch):
    import mlflow

    from pipelines.registry import run_register

    root, params, tmp = world
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    monkeypatch.chdir(tmp)
    registered = run_register(
        params, root / "model", root / "eval", root / "sets", params_path=root / "params.yaml"
    )
    client = mlflow.MlflowClient()
    client.set_model_version_tag("lead-conversion", str(registered["version"]), "sql_cutoff", "0.5")
    model = load_scoring_model("models:/lead-conversion@champion")
    assert (model.name, model.version, model.cutoffs["sql"]) == ("lead-conversion", "1", 0.5)
    params["score"]["model_uri"] = "models:/lead-conversion@champion"
    summary = run_score(params, str(root / "crm"), dry_run=True)
    assert summary["model_version"] == "1"
    preview = summary["preview"]
    assert (preview.loc[preview["stage"] == "SQL", "probability"] >= 0.5).all()
    with pytest.raises(LookupError, match="not found in the registry"):
        load_scoring_model("models:/lead-conversion@nobody")
    # A real run of a registered model is tracked in MLflow beside the training runs.
    written = run_score(params, str(root / "crm"))
    tracked = mlflow.get_run(written["mlflow_run_id"])
    assert (
        tracked.data.tags["scoring_run_id"] == written["run_id"]
        and tracked.data.tags["model_version"] == "1"
    )
    assert tracked.data.metrics["leads_written"] == written["leads_written"] > 0
    assert "psi_probability" in tracked.data.metrics


def test_drift_is_measured_against_the_models_reference_and_can_refuse(world):
    root, params, tmp = world
    params["score"]["drift"]["plot"] = str(tmp / "drift.png")
    assert "drift" in run_score(params, str(root / "crm"), dry_run=True)
    assert not (tmp / "drift.png").exists()  # a dry run writes nothing, not even the plot
    summary = run_score(params, str(root / "crm"))
    assert (tmp / "drift.png").stat().st_size > 20_000
    drift = summary["drift"]
    assert drift["verdict"] in ("ok", "warn") and 0 <= drift["probability_psi"] < 0.25
    assert drift["top"][0]["psi"] >= drift["top"][-1]["psi"] >= 0
    strict = copy.deepcopy(params)
    strict["score"]["drift"] = {"warn_above": 0.0, "refuse_above": 0.0}
    strict["score"]["to"] = f"sqlite:///{tmp / 'strict.db'}"
    with pytest.raises(DriftRefused, match="PSI"):
        run_score(strict, str(root / "crm"))
    assert not (tmp / "strict.db").exists()


def test_an_unfinished_run_of_an_earlier_export_is_superseded_not_resumed(world, monkeypatch):
    root, params, _ = world
    original = SqlSink.write_batch

    def dies(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(SqlSink, "write_batch", dies)
    with pytest.raises(KeyboardInterrupt):
        run_score(params, str(root / "crm"), as_of="2024-10-01")
    monkeypatch.setattr(SqlSink, "write_batch", original)
    today = run_score(params, str(root / "crm"), as_of="2024-11-01")
    runs = read_table(params["score"]["to"], "scoring_runs").set_index("run_id")
    assert today["counts"].get("already_written", 0) == 0 and today["status"] == "succeeded"
    assert sorted(runs["status"]) == ["succeeded", "superseded"]
    assert today["run_id"] in runs.loc[runs["status"] == "superseded", "message"].iloc[0]


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_the_job_writes_every_open_lead_to_an_http_crm_through_its_official_client(
    world, monkeypatch, crm
):
    from fake_crm_server import FakeCRM

    root, params, tmp = world
    params["score"]["retry"] = {"max_attempts": 4, "base_delay_s": 0.001, "max_delay_s": 0.01}
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-test")
    monkeypatch.setenv("SALESFORCE_SESSION_ID", "pat-test")
    ledger = f"sqlite:///{tmp / 'ledger.db'}"
    with FakeCRM("pat-test") as server:
        server.script(429, times=1, retry_after=0)
        server.script(503, times=1)
        summary = run_score(
            params, str(root / "crm"), to=f"{crm}+http://127.0.0.1:{server.port}", ledger_url=ledger
        )
        held = server.hubspot if crm == "hubspot" else server.salesforce
        assert server.violations == []
    assert summary["status"] == "succeeded" and summary["leads_written"] == summary["counts"][
        "open"
    ] == len(held)
    sizes = [
        len(r.body.get("inputs") or r.body.get("records"))
        for r in server.requests
        if r.status == 200
    ]
    assert max(sizes) == (100 if crm == "hubspot" else 200) and sum(sizes) == len(held)
    history = read_table(ledger, "lead_score_history")
    assert sorted(history["lead_id"]) == sorted(held)
    assert read_table(ledger, "scoring_runs")["status"].tolist() == ["succeeded"]


def test_refused_credentials_stop_the_run_at_the_first_batch(world, monkeypatch):
    from fake_crm_server import FakeCRM

    from pipelines.writeback.base import SinkConfigurationError

    root, params, tmp = world
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "wrong-token")
    ledger = f"sqlite:///{tmp / 'ledger.db'}"
    with (
        FakeCRM("pat-test") as server,
        pytest.raises(SinkConfigurationError, match="refused the credentials"),
    ):
        run_score(
            params,
            str(root / "crm"),
            to=f"hubspot+http://127.0.0.1:{server.port}",
            ledger_url=ledger,
        )
    assert len(server.requests) == 1  # not one request per batch
    runs = read_table(ledger, "scoring_runs")
    assert runs["status"].tolist() == ["failed"] and runs.loc[0, "leads_written"] == 0
    assert len(read_table(ledger, "scoring_failures")) == 1


def kill_at_batch(monkeypatch, n: int):
    """Make SqlSink die (as if the job were killed) when writing its n-th batch from now."""
    original = SqlSink.write_batch
    calls = {"n": 0}

    def dies(self, batch):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(SqlSink, "write_batch", dies)
    return lambda: monkeypatch.setattr(SqlSink, "write_batch", original)


def test_a_crm_database_without_an_extraction_time_resumes_the_killed_run(world, monkeypatch):
    """Scored as of "now": the re-run finishes the killed run as of its own instant."""
    from features.readers import write_crm

    root, params, tmp = world
    source = f"sqlite:///{tmp / 'source.db'}"
    write_crm(
        {
            name: pd.read_parquet(root / "crm" / f"{name}.parquet")
            for name in ("leads", "accounts", "events", "opportunities")
        },
        source,
    )
    params["crm"]["extracted_at"] = None
    restore = kill_at_batch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_score(params, source)
    restore()
    resumed = run_score(params, source)
    url = params["score"]["to"]
    runs, history = read_table(url, "scoring_runs"), read_table(url, "lead_score_history")
    assert len(runs) == 1 and resumed["counts"]["already_written"] == 300
    assert not history["lead_id"].duplicated().any() and len(history) == len(
        read_table(url, "lead_scores")
    )
    # The record counts the whole run, not just the last attempt.
    record = runs.iloc[0]
    assert (
        record["status"] == "succeeded"
        and record["leads_written"] == len(history) == record["leads_scored"]
    )
    assert record["leads_already_written"] == 300
    assert (
        resumed["drift"]["verdict"] == "not_checked"
    )  # the rest of a population is not a population


def test_a_backfill_leaves_a_newer_unfinished_run_to_be_resumed(world, monkeypatch):
    root, params, _ = world
    restore = kill_at_batch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_score(params, str(root / "crm"), as_of="2024-11-01")
    restore()
    run_score(params, str(root / "crm"), as_of="2024-10-01")  # a backfill of an older day
    nightly = run_score(params, str(root / "crm"), as_of="2024-11-01")
    assert nightly["counts"]["already_written"] == 150
    runs = read_table(params["score"]["to"], "scoring_runs")
    assert sorted(runs["status"]) == ["succeeded", "succeeded"]
    history = read_table(params["score"]["to"], "lead_score_history")
    november = history[history["scored_at"] == pd.Timestamp("2024-11-01")]
    assert not november["lead_id"].duplicated().any()


def test_an_http_crm_never_receives_a_score_older_than_one_it_has(world, monkeypatch):
    from fake_crm_server import FakeCRM

    root, params, tmp = world
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-test")
    ledger = f"sqlite:///{tmp / 'ledger.db'}"
    with FakeCRM("pat-test") as server:
        to = f"hubspot+http://127.0.0.1:{server.port}"
        newer = run_score(params, str(root / "crm"), to=to, ledger_url=ledger, as_of="2024-11-01")
        sent = len(server.requests)
        backfill = run_score(
            params, str(root / "crm"), to=to, ledger_url=ledger, as_of="2024-10-01"
        )
        held = dict(server.hubspot)
    history = read_table(ledger, "lead_score_history")
    backfilled = set(history.loc[history["run_id"] == backfill["run_id"], "lead_id"])
    overlap = set(history.loc[history["run_id"] == newer["run_id"], "lead_id"]) & backfilled
    assert backfill["status"] == "succeeded" and overlap
    assert all(held[lead]["leadscore_scored_at"].startswith("2024-11-01") for lead in overlap)
    assert len(server.requests) > sent  # leads only the backfill scores were still sent


def test_csv_sink_writes_the_same_scores_as_parquet(world):
    root, params, tmp = world
    params["score"]["file_format"] = "csv"
    run_score(params, str(root / "crm"), to=str(tmp / "csv"), as_of="2024-11-01")
    params["score"]["file_format"] = "parquet"
    run_score(params, str(root / "crm"), to=str(tmp / "parquet"), as_of="2024-11-01")
    text = pd.read_csv(
        tmp / "csv" / "lead_scores.csv", dtype={"lead_id": str, "model_version": str}
    )
    binary = pd.read_parquet(tmp / "parquet" / "lead_scores.parquet")
    assert list(text.columns) == SCORE_COLUMNS and len(text) == len(binary) > 0
    np.testing.assert_allclose(text["probability"], binary["probability"], rtol=1e-12)
    assert (text["lead_id"] == binary["lead_id"]).all() and (text["stage"] == binary["stage"]).all()
    assert (pd.to_datetime(text["scored_at"]) == binary["scored_at"]).all()


def with_population(model, policy: str, max_age_days: int | None):
    """``model`` as if trained on ``policy``'s leads up to ``max_age_days`` old."""
    model.scorer.meta["population"] = {"policy": policy, "max_age_days": max_age_days}
    return model


def test_a_lead_sales_works_is_staged_in_sales_under_a_lead_scoring_model_only(world):
    root, params, tmp = world
    tables, as_of = _read_validated(root / "v")
    uri = str(root / "model")
    routed, _, counts, _ = score_crm(
        params, tables, with_population(load_scoring_model(uri), "lead_scoring", 90), as_of
    )
    everyone, _, counts_all, _ = score_crm(
        params, tables, with_population(load_scoring_model(uri), "all", 90), as_of
    )
    # Sales works a lead when an opportunity opened before as_of is not closed by then.
    opps = tables["opportunities"]
    working_ids = opps.loc[
        (opps["created_at"] < as_of) & ~(opps["closed_at"] < as_of), "lead_id"
    ].astype(str)
    working = routed["lead_id"].isin(working_ids).to_numpy()
    assert working.sum() == counts["in_sales"] > 0 and counts_all["in_sales"] == 0
    assert (routed.loc[working, "stage"] == IN_SALES).all()
    assert (routed.loc[working, "stage_reason"] == IN_SALES_REASON).all()
    assert not (routed.loc[~working, "stage"] == IN_SALES).any()
    # Under an `all` model the same leads get a score-based stage; everything else is the same.
    assert (everyone["lead_id"] == routed["lead_id"]).all()
    assert everyone.loc[working, "stage"].isin(["SQL", "MQL", "nurture", "disqualified"]).all()
    score_based = ["stage", "stage_reason"]
    pd.testing.assert_frame_equal(
        routed.drop(columns=score_based), everyone.drop(columns=score_based)
    )
    pd.testing.assert_frame_equal(routed.loc[~working], everyone.loc[~working])

    # The job writes the stage (the sink takes it) and counts it in the run's summary.
    folder = tmp / "model"
    shutil.copytree(root / "model", folder)
    meta = json.loads((folder / "model_meta.json").read_text())
    meta["population"] = {"policy": "lead_scoring", "max_age_days": 90}
    (folder / "model_meta.json").write_text(json.dumps(meta))
    params["score"]["model_uri"] = str(folder)
    summary = run_score(params, str(root / "crm"))
    current = read_table(params["score"]["to"], "lead_scores")
    in_sales = current[current["stage"] == IN_SALES]
    assert summary["status"] == "succeeded"
    assert summary["stages"][IN_SALES] == summary["counts"]["in_sales"] == len(in_sales) > 0
    assert summary["population"] == {"policy": "lead_scoring", "max_age_days": 90}
    assert (in_sales["stage_reason"] == IN_SALES_REASON).all() and in_sales["score"].notna().all()


def test_the_age_cap_is_the_models_max_age_days_and_older_leads_can_be_scored(world, caplog):
    root, params, _ = world
    tables, as_of = _read_validated(root / "v")
    every_age, _ = open_leads(tables, as_of)
    # Two open leads made exactly 60 days old and 61 days old; the model's reach is 60 days.
    at_cap, past_cap = every_age["lead_id"].iloc[[0, 1]]
    leads = tables["leads"].copy()
    ids = leads["lead_id"].astype(str)
    leads.loc[ids == at_cap, "created_at"] = as_of - pd.Timedelta(days=60)
    leads.loc[ids == past_cap, "created_at"] = as_of - pd.Timedelta(days=61)
    tables = {**tables, "leads": leads}
    age = pd.Series((as_of - leads["created_at"]).to_numpy(), index=ids)
    older = set(
        every_age["lead_id"][age.reindex(every_age["lead_id"]).to_numpy() > pd.Timedelta(days=60)]
    )
    assert past_cap in older and at_cap not in older

    uri = str(root / "model")
    params["score"]["older_leads"] = "leave_out"
    with caplog.at_level(logging.INFO, logger="pipelines.score_job"):
        scored, _, counts, _ = score_crm(
            params, tables, with_population(load_scoring_model(uri), "all", 60), as_of
        )
    assert at_cap in set(scored["lead_id"]) and past_cap not in set(scored["lead_id"])
    assert set(scored["lead_id"]) == set(every_age["lead_id"]) - older
    assert counts["older_than_max_age"] == len(older) and counts["older_than_max_age_scored"] == 0
    assert "older than any the model was trained on" not in caplog.text

    # older_leads: score: scored, with one warning giving the count.
    params["score"]["older_leads"] = "score"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipelines.score_job"):
        scored, _, counts, _ = score_crm(
            params, tables, with_population(load_scoring_model(uri), "all", 60), as_of
        )
    assert set(scored["lead_id"]) == set(every_age["lead_id"])
    assert counts["older_than_max_age"] == 0 and counts["older_than_max_age_scored"] == len(older)
    warned = [r for r in caplog.records if "older than any the model" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert warned[0].getMessage().startswith(f"scoring {len(older)} open lead(s)")

    # A model that does not record its population's age: no cap, and the log says so.
    params["score"]["older_leads"] = "leave_out"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipelines.score_job"):
        scored, _, counts, _ = score_crm(
            params, tables, with_population(load_scoring_model(uri), "all", None), as_of
        )
    assert set(scored["lead_id"]) == set(every_age["lead_id"]) and counts["older_than_max_age"] == 0
    assert "does not record the age of its training leads" in caplog.text


@pytest.mark.parametrize("sink", ["sqlite", "parquet"])
def test_two_nights_carry_the_stage_over_and_list_the_leads_nobody_touched(world, sink):
    """The night before, then tonight: a lead whose stage stayed keeps its stage_since; an SQL
    or MQL lead untouched since then, past its SLA, is follow_up_due (recomputed here from the
    columns), and `leadscore follow-ups` lists the overdue leads, the longest waiting first."""
    root, params, tmp = world
    where = params["score"]["to"] if sink == "sqlite" else str(tmp / "scores")
    first = run_score(params, str(root / "crm"), to=where, as_of="-3d")
    second = run_score(params, str(root / "crm"), to=where)
    tonight = pd.Timestamp(second["as_of"])
    assert pd.Timestamp(first["as_of"]) == tonight - pd.Timedelta(days=3)
    assert second["follow_up"]["touch_types"] == ["sales_email"]
    if sink == "sqlite":
        history = read_table(where, "lead_score_history")
        current = read_table(where, "lead_scores")
    else:
        history = pd.concat(
            pd.read_parquet(p) for p in (tmp / "scores" / "history").rglob("*.parquet")
        )
        current = pd.read_parquet(tmp / "scores" / "lead_scores.parquet")
    before = history[history["scored_at"] == tonight - pd.Timedelta(days=3)].set_index("lead_id")
    now = current.set_index("lead_id")
    now = now[now["scored_at"] == tonight]  # a lead closed since keeps the night before's
    both = now.index.intersection(before.index)
    stayed = both[now.loc[both, "stage"].to_numpy() == before.loc[both, "stage"].to_numpy()]
    moved = both.difference(stayed)
    assert len(stayed) > 50 and len(moved) > 0
    assert (now.loc[stayed, "stage_since"] == tonight - pd.Timedelta(days=3)).all()
    assert (now.loc[moved, "stage_since"] == tonight).all()
    assert (now.loc[now.index.difference(before.index), "stage_since"] == tonight).all()
    # follow_up_due, from the definition (the SLA arithmetic itself: tests/code/test_follow_up.py)
    touched_since = now["last_sales_touch_at"].notna() & (
        now["last_sales_touch_at"] >= now["stage_since"]
    )
    late = pd.Series(False, index=now.index)
    for stage, spec in {"SQL": (1, True), "MQL": (3, False)}.items():
        rows = now["stage"] == stage
        late[rows] = tonight > due_at(now.loc[rows, "stage_since"], *spec)
    expected = now["stage"].isin(["SQL", "MQL"]) & late & ~touched_since
    assert now["follow_up_due"].astype(bool).tolist() == expected.tolist()
    assert second["follow_up"]["due"] == int(expected.sum()) > 0
    shown = CliRunner().invoke(app, ["follow-ups", where, "--limit", "3"])
    assert shown.exit_code == 0, shown.output
    assert f"{int(expected.sum())} qualified leads past their follow-up SLA" in shown.output
    assert shown.output.count("   why: ") == min(3, int(expected.sum()))
