"""The nightly job cannot be hurt by a wrong flag, a bad export or a leaked secret.

Each test reproduces a way the commands once destroyed data, leaked a password or wrote wrong
scores with exit code 0, through the real command line, and checks it can no longer happen.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

pytestmark = pytest.mark.slow


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def invoke(*args: str):
    """The command line, quiet (warnings and errors only), as a user would run it."""
    return CliRunner().invoke(app, ["-q", *(str(a) for a in args)])


def one_line_error(result) -> str:
    """The error line of a stopped command (exit 1), after checking it is one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    # Warnings logged on the way (drift of the small test world) may come first, one line each.
    assert all(" WARNING " in line for line in lines[:-1]), result.output
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[-1]


@pytest.fixture
def export(trained_world, tmp_path):
    """A copy of the session's small synthetic export, its params file, and a scratch folder."""
    root, params = trained_world
    crm = tmp_path / "crm"
    shutil.copytree(root / "crm", crm)
    params = copy.deepcopy(params)
    params["score"].update(
        model_uri=str(root / "model"), to=f"sqlite:///{tmp_path / 'scores.db'}", rejects=str(tmp_path / "score-rejects"),
        older_leads="score",
    )  # fmt: skip
    params["score"]["drift"] = {**params["score"]["drift"], "plot": str(tmp_path / "drift.png")}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return crm, path, params, tmp_path


# ------------------------------------------------------------------------------------------------
# 1. An output flag never destroys an input
# ------------------------------------------------------------------------------------------------
def test_rejects_pointed_at_the_export_is_refused_and_the_export_is_untouched(export):
    crm, params, _, tmp = export
    before = digest(crm)
    line = one_line_error(
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", crm)
    )
    assert "--rejects" in line and str(crm) in line
    assert digest(crm) == before and not (tmp / "v").exists()


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_out_and_rejects_in_one_place_are_refused(export, where):
    crm, params, _, tmp = export
    out, rejects = {"same": ("v", "v"), "inside": ("v", "v/rejects"), "contains": ("v/clean", "v")}[
        where
    ]
    line = one_line_error(
        invoke("validate", crm, "-p", params, "--out", tmp / out, "--rejects", tmp / rejects)
    )
    assert "overlap" in line and not (tmp / "v").exists()


def test_score_rejects_inside_the_export_is_refused_before_anything_runs(export):
    crm, _, params, tmp = export
    params["score"]["rejects"] = str(crm / "rejects")
    path = tmp / "params-bad.yaml"
    path.write_text(yaml.safe_dump(params))
    before = digest(crm)
    line = one_line_error(invoke("score", crm, "-p", path, "--create"))
    assert "score.rejects" in line
    assert digest(crm) == before and not (tmp / "scores.db").exists()


def test_validate_twice_into_the_same_folders_replaces_only_its_own_files(export):
    crm, params, _, tmp = export
    assert (
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", tmp / "r").exit_code
        == 0
    )
    (tmp / "v" / "notes.txt").write_text("mine")
    assert (
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", tmp / "r").exit_code
        == 0
    )
    assert (tmp / "v" / "notes.txt").read_text() == "mine"
    # A file of the same name the user put there is never overwritten.
    (tmp / "r" / "summary.json").unlink()
    (tmp / "r" / "summary.json").write_text("the user's own summary")
    marker = json.loads((tmp / "r" / ".leadscore-outputs.json").read_text())
    marker["files"].remove("summary.json")
    (tmp / "r" / ".leadscore-outputs.json").write_text(json.dumps(marker))
    line = one_line_error(
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", tmp / "r")
    )
    assert "summary.json" in line and "not written by leadscore" in line
    assert (tmp / "r" / "summary.json").read_text() == "the user's own summary"
    assert not (tmp / "v" / ".leadscore-outputs.json.tmp").exists()


# ------------------------------------------------------------------------------------------------
# 2. A password in a URL is never printed nor stored
# ------------------------------------------------------------------------------------------------
def test_an_unreachable_database_url_is_one_line_without_its_password(export):
    _, params, _, tmp = export
    result = invoke(
        "validate",
        "postgresql+psycopg://scorer:S3CRET@127.0.0.1:1/crm",
        "-p",
        params,
        "--out",
        tmp / "v",
        "--rejects",
        tmp / "r",
    )
    line = one_line_error(result)
    assert "S3CRET" not in result.output and "127.0.0.1" in line
    assert not (tmp / "v").exists()


def test_a_crm_database_with_a_password_leaves_it_out_of_reports_logs_and_mlflow(
    export, postgres_url, monkeypatch
):
    """A real PostgreSQL source given with a password (the throwaway server trusts any)."""
    from features.readers import read_crm, write_crm

    crm, _, params, tmp = export
    url = sa.make_url(postgres_url)
    with_password = url.set(password="S3CRET").render_as_string(hide_password=False)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        # Every table a CRM may have: another test's CRM may have left one.
        for table in (
            "leads", "accounts", "events", "opportunities", "field_history",
            "leadscore_owned_tables",
        ):  # fmt: skip
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    write_crm(read_crm(crm), with_password)
    params["crm"].update(
        source=with_password,
        extracted_at=json.loads((crm / "crm_meta.json").read_text())["extracted_at"],
    )
    path = tmp / "params-pg.yaml"
    path.write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(
        app, ["validate", "-p", str(path), "--out", str(tmp / "v"), "--rejects", str(tmp / "r")]
    )
    assert result.exit_code == 0, result.output
    assert "S3CRET" not in result.output
    for file in [*(tmp / "v").rglob("*"), *(tmp / "r").rglob("*")]:
        if file.is_file():
            assert b"S3CRET" not in file.read_bytes(), file

    # register copies params into MLflow: masked in the params and in the params.yaml artifact.
    from pipelines.registry import run_register

    root = Path(params["score"]["model_uri"]).parent
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    monkeypatch.chdir(tmp)
    run_register(params, root / "model", root / "eval", root / "sets", params_path=path)
    for file in tmp.rglob("*"):
        if file.is_file() and "mlflow" in str(file) or "mlruns" in str(file):
            if file.is_file():
                assert b"S3CRET" not in file.read_bytes(), file
    assert b"S3CRET" not in (tmp / "mlflow.db").read_bytes()


# ------------------------------------------------------------------------------------------------
# 4. A broken export stops the job: no wrong scores with exit code 0
# ------------------------------------------------------------------------------------------------
def test_ids_of_another_type_in_one_table_still_match(export):
    crm, _, params, tmp = export
    leads = pd.read_parquet(crm / "leads.parquet").drop_duplicates("lead_id")
    numbers = {lead: i + 1 for i, lead in enumerate(leads["lead_id"])}
    # Integer ids with a gap, as pandas writes them: float64 (1.0, 2.0, ..., NaN), read as "1".
    leads["lead_id"] = leads["lead_id"].map(numbers).astype("float64")
    leads.loc[leads.index[-1], "lead_id"] = float("nan")
    leads.to_parquet(crm / "leads.parquet", index=False)
    for table in ("events", "opportunities"):
        frame = pd.read_parquet(crm / f"{table}.parquet")
        frame["lead_id"] = frame["lead_id"].map(numbers).astype("Int64").astype(str)  # text ids
        frame.to_parquet(crm / f"{table}.parquet", index=False)
    history = pd.read_parquet(crm / "field_history.parquet")  # the leads' changes name them too
    of_leads = history["entity"] == "leads"
    renamed = history.loc[of_leads, "entity_id"].map(numbers).astype("Int64").astype(str)
    history["entity_id"] = history["entity_id"].astype(object)
    history.loc[of_leads, "entity_id"] = renamed
    history.to_parquet(crm / "field_history.parquet", index=False)
    params_path = tmp / "params-ids.yaml"
    params_path.write_text(yaml.safe_dump(params))
    result = invoke("validate", crm, "-p", params_path, "--out", tmp / "v", "--rejects", tmp / "r")
    assert result.exit_code == 0, result.output
    counts = {
        c["table"]: c
        for c in json.loads((tmp / "v" / "validation_report.json").read_text())["counts"]
    }
    assert counts["events"]["rows_rejected"] < 0.01 * counts["events"]["rows_in"]


def test_all_events_of_unknown_leads_stop_validate_and_score_with_nothing_written(export):
    crm, params, _, tmp = export
    events = pd.read_parquet(crm / "events.parquet")
    events["lead_id"] = "X" + events["lead_id"].astype(str)
    events.to_parquet(crm / "events.parquet", index=False)
    line = one_line_error(
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", tmp / "r")
    )
    assert "events" in line and "unknown lead_id" in line and "max_quarantined_fraction" in line
    assert not (tmp / "v").exists() and not (tmp / "r").exists()
    line = one_line_error(invoke("score", crm, "-p", params, "--create"))
    assert (
        "events" in line
        and not (tmp / "scores.db").exists()
        and not (tmp / "score-rejects").exists()
    )


@pytest.mark.parametrize("table", ["leads", "events", "opportunities"])
def test_a_header_only_table_stops_the_job(export, table):
    crm, params, _, tmp = export
    frame = pd.read_parquet(crm / f"{table}.parquet")
    frame.iloc[:0].to_parquet(crm / f"{table}.parquet", index=False)
    line = one_line_error(invoke("score", crm, "-p", params, "--create"))
    assert f"{table} has no rows" in line and not (tmp / "scores.db").exists()


def test_a_required_column_empty_in_every_row_stops_the_job(export):
    crm, params, _, tmp = export
    events = pd.read_parquet(crm / "events.parquet")
    events["timestamp"] = pd.NaT
    events.to_parquet(crm / "events.parquet", index=False)
    line = one_line_error(invoke("score", crm, "-p", params, "--create"))
    assert "events.timestamp is empty" in line and not (tmp / "scores.db").exists()


# ------------------------------------------------------------------------------------------------
# 9. A mistyped sink or source is not a new one
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typo", ["sqlite:///{tmp}/nonexistent/dir/crm.db", "sqlite:///{tmp}/crn.db"]
)
def test_a_mistyped_sink_database_is_refused_and_nothing_is_created(export, typo):
    crm, params, _, tmp = export
    line = one_line_error(invoke("score", crm, "-p", params, "--to", typo.format(tmp=tmp)))
    assert "does not exist" in line and "--create" in line
    assert not (tmp / "nonexistent").exists() and not (tmp / "crn.db").exists()


@pytest.mark.parametrize("url", ["hubspt://api.hubapi.com", "mysql://u@localhost/crm", "foo://bar"])
def test_an_unknown_sink_scheme_is_one_line_listing_the_supported_ones(export, url):
    crm, params, _, _ = export
    line = one_line_error(invoke("score", crm, "-p", params, "--to", url))
    assert (
        url.split("://")[0] in line
        and "sqlite" in line
        and "hubspot" in line
        and "salesforce" in line
    )


def test_a_missing_sqlite_source_is_refused_and_not_created(export):
    _, params, _, tmp = export
    line = one_line_error(
        invoke(
            "validate",
            f"sqlite:///{tmp / 'crm.db'}",
            "-p",
            params,
            "--out",
            tmp / "v",
            "--rejects",
            tmp / "r",
        )
    )
    assert "does not exist" in line and not (tmp / "crm.db").exists()


def test_reading_scores_or_runs_of_a_missing_database_creates_nothing(export):
    _, params, _, tmp = export
    one_line_error(invoke("scores", f"sqlite:///{tmp / 'nothere.db'}", "-p", params))
    one_line_error(invoke("scoring-runs", f"sqlite:///{tmp / 'nothere.db'}", "-p", params))
    assert not (tmp / "nothere.db").exists()


def test_option_values_are_checked(export):
    _, params, _, tmp = export
    result = invoke("scores", f"sqlite:///{tmp / 'x.db'}", "-p", params, "--stage", "sqll")
    assert result.exit_code == 2 and "sqll" in result.output


# ------------------------------------------------------------------------------------------------
# 6. Two jobs at once: one writes, the other refuses; a dead job's lease is taken over
# ------------------------------------------------------------------------------------------------
def test_two_scoring_processes_started_together_write_every_lead_once(export):
    import subprocess
    import sys

    crm, params, _, tmp = export
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "-q",
        "score",
        str(crm),
        "-p",
        str(params),
        "--create",
    ]
    jobs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(job.wait(), *job.communicate()) for job in jobs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 1], outcomes
    refused = next(err for code, _, err in outcomes if code == 1)
    # Warnings (drift) may come first; the error itself is one line, the last.
    lines = [line for line in refused.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in refused, refused
    assert "another scoring job" in errors[0] or "two jobs were started" in errors[0], errors[0]
    engine = sa.create_engine(f"sqlite:///{tmp / 'scores.db'}")
    with engine.connect() as conn:
        runs = conn.exec_driver_sql("SELECT status FROM scoring_runs").scalars().all()
        history = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT lead_id) FROM lead_score_history"
        ).one()
        current = conn.exec_driver_sql("SELECT count(*) FROM lead_scores").scalar_one()
        leases = conn.exec_driver_sql("SELECT count(*) FROM scoring_leases").scalar_one()
    engine.dispose()
    assert runs == ["succeeded"] and history[0] == history[1] == current > 0 and leases == 0


def _lease_row(tmp: Path, heartbeat: pd.Timestamp) -> None:
    """A lease on the test's sink held by another process, last renewed at ``heartbeat``."""
    from pipelines.writeback import open_ledger, open_sink
    from pipelines.writeback.identity import sink_identity

    url = f"sqlite:///{tmp / 'scores.db'}"
    ledger = open_ledger(url, {})
    ledger.create()
    with ledger.engine.begin() as conn:
        conn.execute(ledger.leases.insert().values(
            sink=sink_identity(url, {}), owner="otherhost:4242:deadbeef", run_id=None,
            acquired_at=heartbeat.to_pydatetime(), heartbeat_at=heartbeat.to_pydatetime(),
        ))  # fmt: skip
    open_sink(url, {}, ledger).close()
    ledger.close()


def test_a_job_refuses_a_sink_whose_lease_is_alive_and_takes_over_a_dead_one(export, caplog):
    crm, params, settings, tmp = export
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    _lease_row(tmp, heartbeat=now)
    line = one_line_error(invoke("score", crm, "-p", params))
    assert "otherhost:4242" in line and "another scoring job" in line
    engine = sa.create_engine(f"sqlite:///{tmp / 'scores.db'}")
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("lead_scores")  # nothing written

        # The owner died: its heartbeat is older than the ttl; the next job takes the sink over.
        conn.exec_driver_sql(
            "UPDATE scoring_leases SET heartbeat_at = ?",
            (
                (
                    now - pd.Timedelta(seconds=settings["score"]["lease"]["ttl_s"] + 1)
                ).to_pydatetime(),
            ),
        )
        conn.commit()
    result = CliRunner().invoke(app, ["score", str(crm), "-p", str(params)])
    assert result.exit_code == 0, result.output
    assert "otherhost:4242" in result.output  # the take-over is logged with the dead owner
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM scoring_leases").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT status FROM scoring_runs").scalars().all() == [
            "succeeded"
        ]
    engine.dispose()


# ------------------------------------------------------------------------------------------------
# 8. Personal data stays out of every derived file
# ------------------------------------------------------------------------------------------------
def test_no_personal_column_or_value_in_validated_tables_or_rejects(export):
    crm, params, _, tmp = export
    leads = pd.read_parquet(crm / "leads.parquet")
    emails = set(leads["email"].dropna())
    assert emails  # the synthetic export carries invented emails, like a real one
    assert (
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", tmp / "r").exit_code
        == 0
    )
    files = [p for p in [*(tmp / "v").rglob("*.parquet"), *(tmp / "r").rglob("*.parquet")]]
    assert any(
        "leads" in p.name for p in files if "r" == p.parent.name
    )  # duplicate leads were quarantined
    for file in files:
        frame = pd.read_parquet(file)
        assert not {"first_name", "last_name", "email", "phone"} & set(frame.columns), file
        text = frame.select_dtypes(exclude="number").astype(str)
        assert not text.isin(emails).any().any(), file


# ------------------------------------------------------------------------------------------------
# 10. Logs an on-call engineer can read: one dated line per message, progress, exit codes
# ------------------------------------------------------------------------------------------------
def test_without_a_terminal_every_log_line_is_dated_levelled_and_named_with_progress(export):
    import re

    crm, params, _, tmp = export
    result = CliRunner().invoke(
        app,
        [
            "validate",
            str(crm),
            "-p",
            str(params),
            "--out",
            str(tmp / "v"),
            "--rejects",
            str(tmp / "r"),
        ],
    )
    assert result.exit_code == 0
    logged = [line for line in result.output.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)]
    pattern = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR) [\w.]+: \S"
    )
    assert len(logged) > 10 and all(pattern.match(line) for line in logged), logged[:3]
    assert any("reading tables: 4 of 4 (100%)" in line for line in logged)
    assert any("validating tables: 5 of 5 (100%)" in line for line in logged)  # + field history
    # The multi-line validation summary is one line too.
    assert any("validation:" in line and " | " in line for line in logged)


def test_score_help_states_the_exit_codes():
    result = CliRunner().invoke(app, ["score", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert (
        "Exit codes: 0 succeeded" in text
        and "1 stopped with an error" in text
        and "2 partial" in text
    )


def test_a_rejects_file_not_written_by_leadscore_stops_the_job_before_any_work(export):
    crm, params, settings, tmp = export
    rejects = Path(settings["score"]["rejects"])
    rejects.mkdir()
    (rejects / "events.parquet").write_bytes(b"someone else's file")
    line = one_line_error(invoke("score", crm, "-p", params, "--create"))
    assert "events.parquet" in line and "not written by leadscore" in line
    assert (rejects / "events.parquet").read_bytes() == b"someone else's file"
    assert not (tmp / "scores.db").exists()


def test_an_unexpected_error_is_one_line_too_and_verbose_shows_its_traceback(export, monkeypatch):
    import pipelines.steps

    crm, params, _, tmp = export

    def boom(*args, **kwargs):
        raise TypeError("boom")

    monkeypatch.setattr(pipelines.steps, "run_validate", boom)
    line = one_line_error(invoke("validate", crm, "-p", params))
    assert line == "error: unexpected TypeError: boom (run again with --verbose for the traceback)"
    verbose = CliRunner().invoke(app, ["-v", "validate", str(crm), "-p", str(params)])
    assert verbose.exit_code == 1 and isinstance(verbose.exception, SystemExit)
    assert "Traceback" in verbose.output and verbose.output.rstrip().endswith(
        "error: unexpected TypeError: boom"
    )


@pytest.mark.parametrize(
    ("finished_offset_us", "other_as_of", "any_instant", "refused"),
    [
        (-1, False, False, False),
        (0, False, False, True),
        (0, True, False, False),
        (0, True, True, True),
    ],
)
def test_a_run_that_finished_once_this_job_started_stops_it(
    tmp_path, finished_offset_us, other_as_of, any_instant, refused
):
    """The boundary of "succeeded while this job was scoring": finished at the job's start counts."""
    from types import SimpleNamespace

    from pipelines.score_job import RunsChanged, _recheck_under_lease
    from pipelines.writeback import Ledger

    started, as_of = pd.Timestamp("2026-01-02 02:00:00"), pd.Timestamp("2026-01-01")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.create()
    ledger.start_run(
        {
            "run_id": "r1", "model_name": "m", "model_version": "1", "model_uri": "x",
            # "now" differs for two jobs started together: with an unpinned instant any run counts
            "as_of": (as_of - pd.Timedelta(seconds=3) if other_as_of else as_of).to_pydatetime(),
            "sink": "S", "status": "succeeded", "started_at": (started - pd.Timedelta(minutes=5)).to_pydatetime(),
        }
    )  # fmt: skip
    ledger.update_run(
        "r1", finished_at=(started + pd.Timedelta(microseconds=finished_offset_us)).to_pydatetime()
    )
    sink = SimpleNamespace(
        identity=lambda: "S", describe=lambda: "the sink", written_lead_ids=lambda run: set()
    )
    model = SimpleNamespace(name="m", version="1")

    def recheck():
        return _recheck_under_lease(
            ledger,
            sink,
            model,
            started,
            as_of,
            None,
            None,
            set(),
            check_unfinished=True,
            any_instant=any_instant,
        )

    if refused:
        with pytest.raises(RunsChanged, match="succeeded while this job was scoring"):
            recheck()
    else:
        recheck()
    ledger.close()


def test_a_mistyped_ledger_is_refused_and_not_created(export):
    crm, params, _, tmp = export
    out = tmp / "scores"
    out.mkdir()
    line = one_line_error(
        invoke("score", crm, "-p", params, "--to", out, "--ledger", f"sqlite:///{tmp / 'ledgr.db'}")
    )
    assert "scoring ledger" in line and "does not exist" in line and "--create" in line
    assert not (tmp / "ledgr.db").exists() and list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Found in review: each of these once destroyed a file, printed a traceback or ran twice
# ------------------------------------------------------------------------------------------------
def test_a_files_sink_never_merges_into_a_current_scores_file_it_did_not_write(export):
    crm, params, _, tmp = export
    out = tmp / "scores"
    out.mkdir()
    pd.DataFrame({"lead_id": ["X"], "owner_note": ["keep me"]}).to_parquet(
        out / "lead_scores.parquet"
    )
    before = digest(out)
    line = one_line_error(invoke("score", crm, "-p", params, "--to", out))
    assert "lead_scores.parquet" in line and "not written by leadscore" in line
    assert digest(out) == before


@pytest.mark.parametrize("where", ["model", "foreign"])
def test_a_summary_over_the_model_or_a_foreign_file_is_refused_before_any_work(export, where):
    crm, params, settings, tmp = export
    model = Path(settings["score"]["model_uri"])
    summary = model / "model_meta.json" if where == "model" else tmp / "user.json"
    if where == "foreign":
        summary.write_text("{}")
    before = summary.read_bytes()
    line = one_line_error(invoke("score", crm, "-p", params, "--create", "--summary", summary))
    assert str(summary.name) in line or "--summary" in line
    assert summary.read_bytes() == before and not (tmp / "scores.db").exists()


def test_text_that_looks_like_markup_is_printed_as_it_is(export):
    crm, params, _, tmp = export
    leads = pd.read_parquet(crm / "leads.parquet")
    leads["created_at"] = "[/url]"
    leads.to_parquet(crm / "leads.parquet", index=False)
    line = one_line_error(
        invoke("validate", crm, "-p", params, "--out", tmp / "v", "--rejects", tmp / "r")
    )
    assert "leads.created_at" in line and "'[/url]'" in line
