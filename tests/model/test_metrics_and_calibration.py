"""Metrics on constructed scores with known answers; the calibrator fixes a known distortion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.calibration import ProbabilityCalibrator
from models.metrics import expected_calibration_error, gains_table, reliability_table, score_report


def test_ece_is_zero_for_exact_rates_and_the_gap_otherwise():
    # Two bins of 4: predicted 0.25 with 1/4 observed, 0.75 with 3/4 observed -> perfectly calibrated.
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.0)
    # Shift every prediction by +0.1: the error is exactly 0.1.
    assert expected_calibration_error(y, p + 0.1, n_bins=2) == pytest.approx(0.1)


def test_gains_and_lift_by_decile():
    p = np.linspace(1, 0, 100, endpoint=False)  # descending scores
    y = np.zeros(100, dtype=int)
    y[:10] = 1  # all positives in the top decile
    table = gains_table(y, p)
    assert table["decile"].tolist() == list(range(1, 11))
    assert table.loc[0, "lift"] == pytest.approx(10.0)
    assert table.loc[0, "cumulative_gains"] == pytest.approx(1.0)
    assert table["rows"].sum() == 100 and table["positives"].sum() == 10


def test_score_report_on_a_perfect_ranking():
    y = np.array([0, 0, 0, 1, 1])
    report = score_report(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9]), n_bins=5)
    assert report["roc_auc"] == 1.0 and report["pr_auc"] == 1.0
    assert report["rows"] == 5 and report["positive_rate"] == pytest.approx(0.4)


def test_reliability_table_is_ordered_by_prediction():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=1000)
    table = reliability_table(rng.uniform(size=1000) < p, p, n_bins=5)
    assert table["predicted"].is_monotonic_increasing and table["rows"].sum() == 1000


@pytest.mark.parametrize("distortion", ["squashed", "stepped"])
def test_calibrator_repairs_a_known_distortion(distortion):
    rng = np.random.default_rng(1)
    true_p = rng.beta(0.5, 8, size=20_000)
    y = (rng.uniform(size=true_p.size) < true_p).astype(int)
    # A monotone distortion of the truth: the ranking is right, the probabilities are not.
    scores = true_p**0.5 if distortion == "squashed" else np.round(true_p * 20) / 20 * 0.5 + 0.3
    calibrator = ProbabilityCalibrator(cv=3).fit(scores, y)
    assert set(calibrator.cv_log_loss_) == {"none", "isotonic", "sigmoid"}
    assert calibrator.method_ != "none"  # a distorted booster is never left as it is
    before = expected_calibration_error(y, scores)
    after = expected_calibration_error(y, calibrator.predict(scores))
    assert after < 0.01 < before


def test_calibrator_needs_both_outcomes_and_known_methods():
    with pytest.raises(ValueError, match="both outcomes"):
        ProbabilityCalibrator().fit([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="subset"):
        ProbabilityCalibrator(methods=("magic",)).fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ProbabilityCalibrator().predict(pd.Series([0.5]))


def test_isotonic_calibration_keeps_the_ranking():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    true_p = rng.beta(0.5, 8, size=20_000)
    y = (rng.uniform(size=true_p.size) < true_p).astype(int)
    scores = true_p**0.5
    calibrated = ProbabilityCalibrator(methods=("isotonic",), cv=3).fit(scores, y).predict(scores)
    # Interpolating between block centres adds no ties the scores did not have (but at the ends).
    assert np.unique(calibrated).size > 0.9 * np.unique(scores).size
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, scores), abs=1e-3)
    assert expected_calibration_error(y, calibrated) < 0.01
