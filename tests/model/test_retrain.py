"""`leadscore retrain`: an export as of a cutoff to a challenger, put against the champion."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner


def cli(*args: str):
    from pipelines.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def versions(name: str = "lead-conversion") -> dict[str, set[str]]:
    """Each registered version with its aliases."""
    client = mlflow.MlflowClient()
    found = {str(v.version): set() for v in client.search_model_versions(f"name='{name}'")}
    for alias, version in client.get_registered_model(name).aliases.items():
        found[str(version)].add(alias)
    return found


@pytest.mark.slow
def test_retrain_learns_only_what_was_known_then_and_goes_through_the_promotion_policy(
    registry_world, tmp_path
):
    world, params, p = registry_world
    extracted = pd.Timestamp(
        json.loads((world / "crm" / "crm_meta.json").read_text())["extracted_at"]
    )
    cut = (extracted - pd.DateOffset(months=1)).normalize()
    horizon = pd.Timedelta(days=params["label"]["horizon_days"])

    # As of a month ago: only outcomes known then; the first model becomes the champion.
    first = cli("-q", "retrain", str(world / "crm"), "-p", str(p), "--as-of", f"{cut:%Y-%m-%d}",
                "--work", str(tmp_path / "then"), "--oracle", str(world / "oracle.parquet"))  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "first model: it becomes the champion" in first.output
    learned = pd.concat(
        pd.read_parquet(tmp_path / "then" / "training" / f"{s}.parquet")
        for s in ("train", "validation", "test")
    )
    assert (learned["as_of"] + horizon <= cut).all()
    assert (learned["as_of"] + horizon > cut - pd.Timedelta(days=31)).any()  # up to the cutoff
    labels = json.loads((tmp_path / "then" / "labels" / "labelled_snapshots.json").read_text())
    assert pd.Timestamp(labels["labels_known_on"]) == cut
    assert versions() == {"1": {"champion"}}

    # Today, dry run: compared on the newest window, migration shown, nothing registered.
    dry = cli("-q", "retrain", str(world / "crm"), "-p", str(p), "--work", str(tmp_path / "now"),
              "--dry-run")  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert "champion (version 1) against challenger" in dry.output
    assert "whose stage would change" in dry.output and "dry run: would be" in dry.output
    assert versions() == {"1": {"champion"}}
    from pipelines.modeling import last_seen

    newest = pd.read_parquet(tmp_path / "now" / "training" / "test.parquet")
    champion = json.loads((tmp_path / "then" / "model" / "model_meta.json").read_text())
    assert newest["as_of"].min() > last_seen(champion)  # a window the champion never learned from
    comparison = json.loads((tmp_path / "now" / "challenge" / "comparison.json").read_text())
    assert {r["rule"] for r in comparison["rules"]} and "promote" in comparison

    # Today, for real: registered as challenger, promoted only if every rule holds.
    real = cli("-q", "retrain", str(world / "crm"), "-p", str(p), "--work", str(tmp_path / "now2"))
    assert real.exit_code == 0, real.output
    promoted = comparison["promote"]
    expected = (
        {"1": {"previous"}, "2": {"champion", "challenger"}}
        if promoted
        else {"1": {"champion"}, "2": {"challenger"}}
    )
    assert versions() == expected, real.output
    tags = mlflow.MlflowClient().get_model_version("lead-conversion", "2").tags
    assert tags["promotion.decision"] == ("promoted" if promoted else "not promoted")


def test_labels_as_of_a_day_after_the_export_are_refused(tiny_tables, tmp_path):
    from pipelines.steps import labels_known_on

    extracted = pd.Timestamp("2024-06-01")
    assert labels_known_on({"label": {"as_of": None}}, extracted) == extracted
    assert labels_known_on({"label": {"as_of": "2024-05-01"}}, extracted) == pd.Timestamp(
        "2024-05-01"
    )
    with pytest.raises(ValueError, match="after the export was taken"):
        labels_known_on({"label": {"as_of": "2024-06-02"}}, extracted)
