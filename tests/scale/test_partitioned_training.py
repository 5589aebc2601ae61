"""A partitioned CRM's training set, built partition by partition on either engine, is the
whole CRM's row for row; a model trained on it (LightGBM on the Dask cluster) is as good."""

from __future__ import annotations

import copy
import json

import lightgbm as lgb
import pandas as pd
import pytest

from models.categories import META_KEY as CATEGORY_KEY
from pipelines.engines import EngineSettings
from pipelines.partition import run_partition
from pipelines.partitioned_training import (
    is_partitioned_training,
    run_training_set_partitioned,
    train_part_files,
)
from pipelines.steps import run_training_set

pytestmark = pytest.mark.slow

PARTITIONS = 3
KEY = ["lead_id", "as_of"]


@pytest.fixture(scope="module")
def partitioned_crm(trained_world, tmp_path_factory):
    """The session's CRM partitioned in 3."""
    root, params = trained_world
    out = tmp_path_factory.mktemp("partitioned-training") / "crm"
    run_partition(copy.deepcopy(params), root / "crm", out, PARTITIONS)
    return root, params, out


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY, ignore_index=True)


SPLITS = {
    "the world's (days)": None,
    "fractions of leads": {"by": "lead", "validation_fraction": 0.2, "test_fraction": 0.15},
    "fractions of snapshots": {"by": "snapshot", "validation_fraction": 0.2, "test_fraction": 0.2},
}


@pytest.mark.parametrize(
    "engine, split",
    [
        ("dask", "the world's (days)"),
        ("pandas", "fractions of leads"),  # boundaries from every partition's leads
        ("pandas", "fractions of snapshots"),
    ],
)
def test_the_training_set_is_the_whole_crms_row_for_row(partitioned_crm, engine, split, tmp_path):
    root, params, crm = partitioned_crm
    params = copy.deepcopy(params)
    whole = root / "sets"
    if SPLITS[split] is not None:  # the whole CRM's training set split this way
        params["split"] = {"purge": params["split"].get("purge", True), **SPLITS[split]}
        whole = tmp_path / "whole"
        run_training_set(
            params, root / "f" / "features.parquet", root / "labels.parquet", root / "v", whole
        )
    settings = EngineSettings(name=engine, workers=2, memory_limit="2GiB")
    manifest = run_training_set_partitioned(params, crm, tmp_path / "sets", settings)
    assert is_partitioned_training(tmp_path / "sets") and not is_partitioned_training(whole)
    files = train_part_files(tmp_path / "sets")
    assert len(files) == PARTITIONS
    train = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(
        _sorted(train), _sorted(pd.read_parquet(whole / "train.parquet")), check_exact=True
    )
    for name in ("validation", "test"):
        pd.testing.assert_frame_equal(
            _sorted(pd.read_parquet(tmp_path / "sets" / f"{name}.parquet")),
            _sorted(pd.read_parquet(whole / f"{name}.parquet")),
            check_exact=True,
        )
    expected = json.loads((whole / "manifest.json").read_text())
    for key in ("input_fingerprint", "features_resting_on_a_declaration"):
        expected.pop(key, None)
        manifest.pop(key, None)
    assert manifest.pop("partitions") == PARTITIONS
    assert json.loads(json.dumps(manifest, default=str)) == expected


@pytest.fixture(scope="module")
def partitioned_sets(partitioned_crm, tmp_path_factory):
    """The partitioned CRM's training set (pandas engine)."""
    root, params, crm = partitioned_crm
    out = tmp_path_factory.mktemp("partitioned-sets") / "sets"
    run_training_set_partitioned(copy.deepcopy(params), crm, out, EngineSettings(name="pandas"))
    return root, params, out


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_a_model_trained_on_the_partitions_is_as_good(partitioned_sets, engine, tmp_path):
    from pipelines.modeling import run_evaluate, run_train

    root, params, sets = partitioned_sets
    params = copy.deepcopy(params)
    # A sample smaller than the train split: the scan and the search read part of it, the
    # boosters all of it.
    params["engine"] = {"name": engine, "workers": 2, "memory_limit": "2GiB"}
    params["engine"]["train_sample_rows"] = 600
    params["train"]["lightgbm"]["bagging_fraction"] = 1.0  # every row in the first tree's root
    meta = run_train(params, sets, tmp_path / "model", engine=EngineSettings.from_params(params))
    whole = json.loads((root / "model" / "model_meta.json").read_text())
    data = meta["training_data"]["partitioned"]
    assert data["engine"] == engine and data["train_parts"] == PARTITIONS
    assert data["sample_rows"] < data["train_rows"] == whole["training_rows"]["train"]
    assert meta["training_rows"] == whole["training_rows"]
    assert meta[CATEGORY_KEY] == whole[CATEGORY_KEY]  # fitted on every row's counts
    # The booster learned from every train and validation row (its first tree's root holds them).
    booster = lgb.Booster(model_file=str(tmp_path / "model" / "booster.txt"))
    root_rows = booster.dump_model()["tree_info"][0]["tree_structure"]["internal_count"]
    assert root_rows == meta["training_rows"]["booster"] == whole["training_rows"]["booster"]
    metrics = run_evaluate(params, sets, tmp_path / "model", tmp_path / "eval")
    expected = json.loads((root / "eval" / "metrics.json").read_text())
    auc = metrics["test"]["model"]["roc_auc"]
    assert auc > expected["test"]["model"]["roc_auc"] - 0.03
    assert auc > metrics["test"]["baseline"]["roc_auc"] - 0.03


def test_the_commands_take_a_partitioned_crm_to_a_model(partitioned_crm, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from pipelines.cli import app

    root, params, crm = partitioned_crm
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    sets, model = tmp_path / "sets", tmp_path / "model"
    for step in (
        ["training-set", "--crm", str(crm), "--out", str(sets), "--engine", "pandas"],
        [
            "train",
            "--training",
            str(sets),
            "--out",
            str(model),
            "--no-mlflow",
            "--engine",
            "pandas",
        ],
    ):
        result = CliRunner().invoke(app, ["-q", step[0], "-p", str(p), *step[1:]])
        assert result.exit_code == 0, result.output
    meta = json.loads((model / "model_meta.json").read_text())
    assert meta["training_data"]["partitioned"]["train_parts"] == PARTITIONS
    # A folder that is not a partitioned CRM: one line, exit 1, nothing written.
    result = CliRunner().invoke(
        app,
        [
            "-q",
            "training-set",
            "-p",
            str(p),
            "--crm",
            str(root / "crm"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 1 and "not the meta of a partitioned CRM" in result.output
    assert not (tmp_path / "x").exists()
