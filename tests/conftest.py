"""Shared fixtures. Nothing the tests run may reach for the network."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from export_mutations import shrink_params
from postgres_server import throwaway_postgres

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def scratch_tracking_store(tmp_path_factory) -> Iterator[Path]:
    """Every MLflow run of the suite (``leadscore train`` tracks by default) goes to one scratch
    store, never the checkout's mlflow.db; a test may still point at its own."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def small_params_template() -> dict:
    """params.yaml shrunk for end-to-end runs: 3,000 leads over 12 months, a 45-day horizon."""
    return shrink_params(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.fixture
def small_params(small_params_template) -> dict:
    """A fresh copy of the small params, for a test to adjust."""
    return copy.deepcopy(small_params_template)


def ts(text: str) -> pd.Timestamp:
    """A naive UTC timestamp from text."""
    return pd.Timestamp(text)


@pytest.fixture
def tiny_tables() -> dict[str, pd.DataFrame]:
    """Two leads, one account each, a handful of events and one won opportunity, typed."""
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "created_at": pd.to_datetime(["2024-03-01 09:30", "2024-03-05 14:00"]),
            "source": pd.Categorical(["referral", None]),
            "email_domain_kind": ["corporate", "free"],
            "job_title": ["VP Sales", "Student"],
            "seniority": ["vp", "student"],
            "department": ["sales", None],
            "country": ["DE", "US"],
            "account_id": ["A1", "A2"],
            "budget": ["50k_250k", None],
            "authority": ["decision_maker", "unknown"],
            "need": ["compliance", None],
            "timeline": [None, "no_timeline"],
            "unsubscribed": [False, True],
            "consent": [True, True],
            "first_name": ["Ana", "Ben"],
            "last_name": ["Alvarez", "Brown"],
            "email": ["ana@a1.example", "ben@mail.example"],
            "phone": ["+100", "+200"],
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "industry": ["software", "education"],
            "employee_count": [250, 12],
            "annual_revenue": [40e6, 1e6],
            "country": ["DE", "US"],
            "region": ["emea", "north_america"],
            "is_customer": [True, False],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L1", "L1", "L2"],
            "timestamp": pd.to_datetime(
                [
                    "2024-03-01 10:00",
                    "2024-03-03 08:00",
                    "2024-03-03 09:00",
                    "2024-03-09 12:00",
                    "2024-03-06 00:00",
                ]
            ),
            "event_type": [
                "page_view",
                "pricing_page_view",
                "pricing_page_view",
                "demo_request",
                "email_open",
            ],
        }
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_id": ["O1"],
            "lead_id": ["L1"],
            "created_at": pd.to_datetime(["2024-03-10 10:00"]),
            "closed_at": pd.to_datetime(["2024-04-20 16:00"]),
            "is_won": pd.array([True], dtype="boolean"),
            "amount": [30_000.0],
        }
    )
    return {"leads": leads, "accounts": accounts, "events": events, "opportunities": opportunities}


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """SQLAlchemy URL of a real, throwaway PostgreSQL database (tests/postgres_server.py).

    Started on first use and stopped at the end of the session. Deliberately never skipped:
    if PostgreSQL cannot be installed or started, the tests that need it error with the reason.
    """
    with throwaway_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory, small_params_template) -> tuple[Path, dict]:
    """A small synthetic CRM taken through the CLI up to evaluation, once per session.

    Returns the folder (crm/, v/ validated, sets/, model/, eval/, params.yaml) and the params.
    Tests must not modify it: copy what they change.
    """
    from typer.testing import CliRunner

    from pipelines.cli import app

    tmp = tmp_path_factory.mktemp("world")
    params = copy.deepcopy(small_params_template)
    params["generate"]["seed"] = 8
    params["register"].update(min_validation_roc_auc=0.5, max_validation_ece=0.5)
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    steps = [
        ["generate", "--out", str(tmp / "crm"), "--oracle", str(tmp / "oracle.parquet")],
        ["validate", str(tmp / "crm"), "--out", str(tmp / "v"), "--rejects", str(tmp / "r")],
        ["label", "--validated", str(tmp / "v"), "--out", str(tmp / "labels.parquet")],
        [
            "features",
            "--validated",
            str(tmp / "v"),
            "--snapshots",
            str(tmp / "labels.parquet"),
            "--out",
            str(tmp / "f" / "features.parquet"),
        ],
        [
            "training-set",
            "--features",
            str(tmp / "f" / "features.parquet"),
            "--snapshots",
            str(tmp / "labels.parquet"),
            "--validated",
            str(tmp / "v"),
            "--out",
            str(tmp / "sets"),
        ],
        [
            "train",
            "--training",
            str(tmp / "sets"),
            "--validated",
            str(tmp / "v"),
            "--out",
            str(tmp / "model"),
        ],
        [
            "evaluate",
            "--training",
            str(tmp / "sets"),
            "--model",
            str(tmp / "model"),
            "--out",
            str(tmp / "eval"),
        ],
    ]
    for step in steps:
        result = CliRunner().invoke(
            app, ["-q", step[0], "-p", str(p), *step[1:]], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
    return tmp, params


@pytest.fixture
def registry_world(trained_world, tmp_path, monkeypatch) -> tuple[Path, dict, Path]:
    """The session's world with a registry of its own: a scratch MLflow store and working
    folder, and a copy of its params written to ``tmp_path/params.yaml`` (a test that changes
    them writes them again) in which any model may register, so that only the promotion policy
    judges, with a 50% promotion interval: the small world's test window holds few wins, and
    the default 95% is for real windows. Returns the world folder, the params and their path."""
    world, params = trained_world
    params = copy.deepcopy(params)
    params["register"].update(min_validation_roc_auc=0.0, max_validation_ece=1.0)
    params["promote"].update(n_boot=200, confidence=0.5)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return world, params, path
