"""A partitioned CRM's training set, built partition by partition on either engine, is the
whole CRM's row for row; a model trained on it (LightGBM on the Dask cluster) is as good."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from pipelines.engines import EngineSettings
from pipelines.partition import run_partition
from pipelines.partitioned_training import (
    is_partitioned_training,
    run_training_set_partitioned,
    train_part_files,
)

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


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_the_training_set_is_the_whole_crms_row_for_row(partitioned_crm, engine, tmp_path):
    root, params, crm = partitioned_crm
    settings = EngineSettings(name=engine, workers=2, memory_limit="2GiB")
    manifest = run_training_set_partitioned(copy.deepcopy(params), crm, tmp_path / "sets", settings)
    whole = root / "sets"
    assert is_partitioned_training(tmp_path / "sets") and not is_partitioned_training(whole)
    files = train_part_files(tmp_path / "sets")
    assert len(files) == PARTITIONS
    train = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(
        _sorted(train), _sorted(pd.read_parquet(whole / "train.parquet")), check_exact=True
    )
    for split in ("validation", "test"):
        pd.testing.assert_frame_equal(
            _sorted(pd.read_parquet(tmp_path / "sets" / f"{split}.parquet")),
            _sorted(pd.read_parquet(whole / f"{split}.parquet")),
            check_exact=True,
        )
    expected = json.loads((whole / "manifest.json").read_text())
    for key in ("input_fingerprint", "features_resting_on_a_declaration"):
        expected.pop(key, None)
        manifest.pop(key, None)
    assert manifest.pop("partitions") == PARTITIONS
    assert json.loads(json.dumps(manifest, default=str)) == expected
