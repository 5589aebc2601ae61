"""`leadscore cross-validate`: lead-grouped folds over every labelled row, said to be not out
of time, with the model's settings or scaled ones."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.cross_validation import NOT_OUT_OF_TIME, run_cross_validate


@pytest.mark.slow
@pytest.mark.parametrize("with_model", [True, False])
def test_folds_cover_every_row_once_and_say_they_are_not_out_of_time(
    trained_world, tmp_path, with_model
):
    folder, params = trained_world
    out = tmp_path / "cv.json"
    model = folder / "model" if with_model else None
    summary = run_cross_validate(params, folder / "sets", out, folds=3, model=model)
    rows = sum(
        len(pd.read_parquet(folder / "sets" / f"{s}.parquet"))
        for s in ("train", "validation", "test")
    )
    assert summary["rows"] == rows == sum(f["rows"] for f in summary["folds"])
    assert len(summary["folds"]) == 3 and summary["caveat"] == NOT_OUT_OF_TIME
    assert summary["settings"].startswith("the model's") == with_model
    if with_model:  # each fold refits the model's number of trees
        trees = json.loads((folder / "model" / "model_meta.json").read_text())["best_iteration"]
        assert {f["trees"] for f in summary["folds"]} == {trees}
    assert 0.5 < summary["mean"]["roc_auc"] < 1.0
    assert json.loads(out.read_text()) == summary


def test_fewer_than_two_folds_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--folds must be at least 2"):
        run_cross_validate({}, tmp_path / "sets", tmp_path / "cv.json", folds=1)
