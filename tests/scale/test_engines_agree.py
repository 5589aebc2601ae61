"""A partitioned CRM scored partition by partition, in this process and on a 2-worker Dask
cluster, gives the whole CRM's features exactly and its scores to float tolerance."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from features.partitioned import partition_of, read_meta
from pipelines import score_job
from pipelines.engines import EngineSettings, open_engine
from pipelines.partition import run_partition
from pipelines.partitioned_scoring import partition_features, partition_task
from pipelines.score_job import resolve_as_of, score_crm
from pipelines.scoring import load_scoring_model

pytestmark = pytest.mark.slow

PARTITIONS = 4


@pytest.fixture(scope="module")
def partitioned(trained_world, tmp_path_factory):
    """The session's CRM and model, and the CRM partitioned in 4."""
    root, params = trained_world
    params = copy.deepcopy(params)
    params["score"].update(model_uri=str(root / "model"), older_leads="score")
    out = tmp_path_factory.mktemp("partitioned") / "crm"
    meta = run_partition(params, root / "crm", out, PARTITIONS)
    return root, params, out, meta


def _dry_run(params, source, tmp_path, **kwargs) -> dict:
    params = copy.deepcopy(params)
    params["score"].update(to=f"sqlite:///{tmp_path / 'crm.db'}", rejects=None)
    params["score"]["drift"] = {**params["score"]["drift"], "plot": None}
    return score_job.run_score(params, str(source), dry_run=True, create=True, **kwargs)


def test_every_row_of_a_lead_is_in_its_partition(partitioned):
    root, params, out, meta = partitioned
    whole = {t: pd.read_parquet(root / "crm" / f"{t}.parquet") for t in meta["rows"]}
    assert meta["partitions"] == PARTITIONS
    assert meta["rows"] == {t: len(f) for t, f in whole.items()}
    for table, key in (("leads", "lead_id"), ("events", "lead_id"), ("opportunities", "lead_id")):
        seen = 0
        for part in range(PARTITIONS):
            rows = pd.read_parquet(out / table / f"part={part:05d}")
            assert (partition_of(rows[key], PARTITIONS) == part).all(), table
            seen += len(rows)
        assert seen == len(whole[table])
    assert len(pd.read_parquet(out / "accounts" / "part=shared")) == len(whole["accounts"])


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_engines_give_the_whole_crms_features_exactly(partitioned, engine):
    root, params, out, _ = partitioned
    model = load_scoring_model(params["score"]["model_uri"])
    as_of, _ = resolve_as_of(params, root / "crm", None)
    _, whole_features, _, _ = score_crm(params, str(root / "crm"), model, as_of)
    task, _ = partition_task(params, out, model, as_of)
    settings = EngineSettings(name=engine, workers=2, memory_limit="2GiB")
    runner = open_engine(settings)
    try:
        items = [(i, frozenset()) for i in range(read_meta(out)["partitions"])]
        parts = [f for _, f in runner.map_unordered(partition_features, items, runner.share(task))]
    finally:
        runner.close()
    together = pd.concat(parts, ignore_index=True).sort_values("lead_id", ignore_index=True)
    assert len(together) == len(whole_features) > 300
    pd.testing.assert_frame_equal(
        together[whole_features.columns], whole_features, check_exact=True
    )


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_engines_give_the_whole_crms_scores(partitioned, engine, tmp_path):
    root, params, out, _ = partitioned
    whole = _dry_run(params, root / "crm", tmp_path / "whole")
    params = copy.deepcopy(params)
    params["engine"] = {"name": engine, "workers": 2, "memory_limit": "2GiB"}
    split = _dry_run(params, out, tmp_path / "split")
    a = whole["preview"].sort_values("lead_id", ignore_index=True)
    b = split["preview"].sort_values("lead_id", ignore_index=True)
    assert len(a) == len(b) > 300 and (a["lead_id"] == b["lead_id"]).all()
    np.testing.assert_allclose(b["probability"], a["probability"], rtol=0, atol=1e-12)
    for column in ("score", "stage", "reasons_for", "reasons_against", "expected_value"):
        pd.testing.assert_series_equal(b[column], a[column], check_exact=column != "expected_value")
    counts = {k: v for k, v in split["counts"].items() if k != "partitions"}
    assert counts == whole["counts"]
    assert split["stages"] == whole["stages"]
    assert split["drift"] == whole["drift"]
    assert split["engine"]["partitions"] == PARTITIONS
