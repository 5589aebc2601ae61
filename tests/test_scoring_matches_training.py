"""Scoring builds the features training builds: for the same validated tables and the same
(lead_id, as_of), the nightly job's path (score_crm: open_leads, then the model's feature build)
gives exactly the rows of the training step's feature build (run_features), and it scores the
leads a training snapshot at that instant would label.

A scoring path that built its features a day late (or a day early), or at any other instant
than the one it reports, would score every lead on features the model never saw at that age:
lead age, days since the last activity and window counts all move with as_of.
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from pipelines.score_job import score_crm
from pipelines.scoring import load_scoring_model
from pipelines.steps import _read_validated, run_features
from pipelines.training_set import label_snapshots

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scoring(trained_world):
    """The shared world's validated tables, their extraction instant, the model, and params
    scoring every open lead (no age limit)."""
    root, params = trained_world
    params = copy.deepcopy(params)
    params["score"]["older_leads"] = "score"
    tables, extracted_at = _read_validated(root / "v")
    return root, params, tables, extracted_at, load_scoring_model(str(root / "model"))


def instants(extracted_at: pd.Timestamp) -> dict[str, pd.Timestamp]:
    """Scoring instants: the export's (the nightly default), a midnight (where training
    snapshots are), and an arbitrary microsecond."""
    return {
        "extracted_at": extracted_at,
        "midnight": extracted_at.normalize() - pd.Timedelta(days=60),
        "odd_instant": extracted_at.normalize()
        - pd.Timedelta(days=123)
        + pd.Timedelta(hours=13, minutes=37, seconds=5, microseconds=123_456),
    }


@pytest.mark.parametrize("which", ["extracted_at", "midnight", "odd_instant"])
def test_scoring_features_equal_training_features(scoring, tmp_path, which):
    root, params, tables, extracted_at, model = scoring
    as_of = instants(extracted_at)[which]
    _, scored_features, counts, _ = score_crm(params, tables, model, as_of)
    assert counts["scored"] == len(scored_features) > 100

    # The leads a training snapshot at this instant would label (created before it, not
    # already won or lost): the scoring job must score exactly these.
    everyone = pd.DataFrame({"lead_id": tables["leads"]["lead_id"].astype(str), "as_of": as_of})
    labelled = label_snapshots(
        everyone,
        tables["leads"],
        tables["opportunities"],
        horizon_days=1,
        data_end=as_of + pd.Timedelta(days=1),  # no snapshot left out as censored
        population="all",  # the job scores leads in sales too (their stage says in_sales)
    ).frame
    assert sorted(scored_features["lead_id"]) == sorted(labelled["lead_id"])

    # The training step's features of the same (lead_id, as_of).
    snapshots = labelled[["lead_id", "as_of"]].astype({"as_of": "datetime64[us]"})
    snapshots.to_parquet(tmp_path / "snapshots.parquet")
    training = run_features(
        params, root / "v", tmp_path / "snapshots.parquet", tmp_path / "f" / "features.parquet"
    )
    assert set(model.features) <= set(training.columns)
    assert (training["as_of"] == as_of).all()

    def by_lead(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[list(training.columns)].astype({"as_of": "datetime64[us]"})
        return frame.sort_values("lead_id", ignore_index=True)

    pd.testing.assert_frame_equal(by_lead(scored_features), by_lead(training))
