"""Recalibration: the booster as it is, a new calibrator on newer outcomes it never saw."""

from __future__ import annotations

import copy
import json
import shutil

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner


def cli(*args: str):
    from pipelines.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_recalibration_keeps_the_booster_and_refits_the_rest(trained_world, tmp_path):
    from pipelines.modeling import frozen_booster
    from pipelines.tracking import model_digest

    world, params = trained_world
    params = copy.deepcopy(params)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    # An older training set: the session's training split cut in two by date (train, then
    # validation); the session's own validation split comes after all of it.
    sets, older = world / "sets", tmp_path / "older"
    older.mkdir()
    train = pd.read_parquet(sets / "train.parquet")
    cut = train["as_of"].quantile(0.7)
    train[train["as_of"] < cut].to_parquet(older / "train.parquet")
    train[train["as_of"] >= cut].to_parquet(older / "validation.parquet")
    shutil.copy(sets / "test.parquet", older / "test.parquet")
    first, second = tmp_path / "first", tmp_path / "recalibrated"
    done = cli(
        "-q", "train", "-p", str(p), "--training", str(older), "--out", str(first), "--no-mlflow"
    )
    assert done.exit_code == 0, done.output
    done = cli("-q", "recalibrate", "-p", str(p), "--model", str(first), "--training", str(sets),
               "--out", str(second), "--no-mlflow")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "recalibrated the booster" in done.output
    before = json.loads((first / "model_meta.json").read_text())
    after = json.loads((second / "model_meta.json").read_text())
    assert (first / "booster.txt").read_bytes() == (second / "booster.txt").read_bytes()
    assert after["recalibrated_from"]["model_digest"] == model_digest(first)
    assert after["training_data"]["booster_range"] == before["training_data"]["booster_range"]
    assert after["categories"] == before["categories"] and after["lightgbm"] == before["lightgbm"]
    valid = pd.read_parquet(sets / "validation.parquet")
    # All of the newer validation split calibrates; cutoffs and scale anew.
    assert after["calibration"]["rows"] == len(valid)
    assert after["training_data"]["validation_range"] != before["training_data"]["validation_range"]
    assert after["cutoffs"] and after["score_scale"]["leads"] > 0

    # A booster that learned from the validation split (the session's model: refit on it) ...
    refused = cli("-q", "recalibrate", "-p", str(p), "--model", str(world / "model"),
                  "--training", str(sets), "--out", str(tmp_path / "no"), "--no-mlflow")  # fmt: skip
    assert refused.exit_code == 1 and "reach into this validation split" in refused.output
    assert not (tmp_path / "no").exists()
    # ... even by one day, is refused; so is one whose early stopping read it (not refit).
    edge = tmp_path / "edge"
    shutil.copytree(first, edge)
    first_day = f"{valid['as_of'].min():%Y-%m-%d}"
    for booster_range, validation_range, refit in (
        (f"2020-01-01..{first_day}", "2020-01-01..2020-02-01", True),
        ("2020-01-01..2020-02-01", f"2020-03-01..{first_day}", False),
    ):
        before["training_data"].update(booster_range=booster_range, validation_range=validation_range,
                                       refit_on_validation=refit)  # fmt: skip
        (edge / "model_meta.json").write_text(json.dumps(before))
        with pytest.raises(ValueError, match="reach into this validation split"):
            frozen_booster(edge, before["features"], valid)
