"""The calibrator: lead-grouped folds, a strictly increasing map, honest out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.metrics import log_loss

from models.calibration import EPS, ProbabilityCalibrator, calibration_folds
from models.metrics import expected_calibration_error


def _leads(rng: np.random.Generator, leads: int, rows_per_lead: int = 3):
    """Snapshot rows of leads: a lead's rows share its outcome and have close scores."""
    lead = np.repeat(np.arange(leads), rows_per_lead)
    truth = rng.normal(-2.5, 1.0, leads)  # true log-odds per lead
    y = np.repeat(rng.uniform(size=leads) < expit(truth), rows_per_lead).astype(int)
    scores = expit(truth[lead] + rng.normal(0, 0.3, lead.size))
    return scores, y, lead


def test_grouped_folds_never_put_a_lead_on_both_sides():
    scores, y, lead = _leads(np.random.default_rng(0), leads=200)
    folds = calibration_folds(y, lead, n_splits=5, random_state=0)
    assert len(folds) == 5
    for fit_idx, test_idx in folds:
        assert not set(lead[fit_idx]) & set(lead[test_idx])
        assert set(y[test_idx]) == {0, 1}
    held_out = np.concatenate([test_idx for _, test_idx in folds])
    assert np.array_equal(np.sort(held_out), np.arange(y.size))  # every row held out once


def test_fit_uses_the_grouped_folds_for_its_out_of_fold_predictions():
    scores, y, lead = _leads(np.random.default_rng(1), leads=300)
    calibrator = ProbabilityCalibrator(cv=4, random_state=3).fit(scores, y, groups=lead)
    # Refit the chosen method on each grouped fit side: the same held-out predictions.
    expected = np.empty(y.size)
    for fit_idx, test_idx in calibration_folds(y, lead, n_splits=4, random_state=3):
        fold = ProbabilityCalibrator(methods=(calibrator.method_,), cv=2)
        expected[test_idx] = fold.fit(scores[fit_idx], y[fit_idx], lead[fit_idx]).predict(
            scores[test_idx]
        )
    np.testing.assert_allclose(calibrator.oof_predictions_, expected, rtol=1e-12)


def test_few_leads_reduce_the_folds_and_too_few_raise_a_clear_error():
    rng = np.random.default_rng(2)
    lead = np.repeat([10, 20, 30], 20)  # three leads, each with both outcomes among its rows
    y = np.tile(np.r_[np.ones(4), np.zeros(16)], 3).astype(int)
    scores = np.clip(0.2 * y + rng.uniform(0.05, 0.6, y.size), 0, 0.95)
    calibrator = ProbabilityCalibrator(cv=5).fit(scores, y, groups=lead)
    assert calibrator.n_folds_ == 3 and calibrator.oof_predictions_.shape == y.shape
    for fit_idx, test_idx in calibration_folds(y, lead, n_splits=5):
        assert not set(lead[fit_idx]) & set(lead[test_idx])
    # Only one lead ever converts: no grouped fold can be fitted.
    with pytest.raises(ValueError, match="at least 2 groups"):
        ProbabilityCalibrator().fit(scores, (lead == 10) & (y == 1), groups=lead)
    # Without groups, two positives allow two folds (no sklearn warning, which -W error raises).
    two = np.r_[1, 1, np.zeros(20, dtype=int)]
    assert ProbabilityCalibrator(cv=5).fit(scores[: two.size], two).n_folds_ == 2


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_the_map_is_strictly_increasing_beyond_the_outer_centres(method):
    scores, y, lead = _leads(np.random.default_rng(3), leads=1000)
    calibrator = ProbabilityCalibrator(methods=(method,), cv=3).fit(scores, y, groups=lead)
    inside = np.linspace(scores.min(), scores.max(), 2000)
    below = np.linspace(scores.min() / 10, scores.min(), 50, endpoint=False)
    above = np.linspace(scores.max(), 1 - (1 - scores.max()) / 10, 51)[1:]
    grid = np.r_[below, inside, above]
    p = calibrator.predict(grid)
    assert np.all(np.diff(p) > 0)  # no ties at the top or the bottom, as clamping had
    assert np.all((p > 0) & (p < 1)) and not np.isin(p, [EPS, 1 - EPS]).any()
    assert np.all(np.diff(calibrator.predict(np.sort(scores)[-30:])) > 0)  # the top 30 differ


def test_a_block_without_positives_or_negatives_gets_a_rate_the_data_support():
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.01, 0.99, 4000)
    y = (rng.uniform(size=scores.size) < 0.2 * scores**4).astype(int)
    for s, outcome, side in [(scores, y, 0), (1 - scores, 1 - y, -1)]:
        model = ProbabilityCalibrator(methods=("isotonic",), cv=3).fit(s, outcome).model_
        # This truth is no logistic curve, so shrinking towards the Platt fit breaks the order of
        # some blocks: it must be restored, strictly.
        assert np.all(np.diff(model.centres) > 0) and np.all(np.diff(model.values) > 0)
        assert np.all(np.diff(model.predict(np.linspace(0.001, 0.999, 5000))) > 0)
        rows, hits = model.counts[side], model.positives[side]
        assert hits in (0, rows), "the edge block should have a single outcome"
        # 0 of n observed supports a rate in (0, 3/n] (rule of three), not EPS.
        gap = model.values[side] if side == 0 else 1 - model.values[side]
        assert 100 * EPS < gap < 3 / rows


def test_shrinkage_that_breaks_the_order_is_pooled_into_one_block():
    # (score, rows, positives): a jump then a plateau, which a logistic curve fits poorly. The
    # 3-row block at 0.25 (1/3) is shrunk towards the low Platt fit there, below its 0.30
    # neighbour: the two must be pooled into one block, not left decreasing.
    blocks = [(0.1, 2000, 20), (0.2, 1000, 300), (0.25, 3, 1), (0.9, 1000, 340)]
    scores = np.repeat([s for s, _, _ in blocks], [n for _, n, _ in blocks])
    y = np.concatenate([np.arange(n) < k for _, n, k in blocks]).astype(int)
    model = ProbabilityCalibrator(methods=("isotonic",), cv=3).fit(scores, y).model_
    assert model.counts.tolist() == [2000, 1003, 1000]
    assert model.positives.tolist() == [20, 301, 340]
    assert np.all(np.diff(model.values) > 0)


@pytest.mark.parametrize("methods", [("isotonic",), ("sigmoid",), ("isotonic", "sigmoid")])
def test_calibration_repairs_an_underconfident_booster_on_fresh_data(methods):
    rng = np.random.default_rng(5)

    def draw(leads):
        scores, _, lead = _leads(rng, leads)
        truth = expit(2 * logit(scores))  # the booster is under-confident
        return scores, (rng.uniform(size=scores.size) < truth).astype(int), lead

    scores, y, lead = draw(3000)
    fresh, y_fresh, _ = draw(3000)
    calibrator = ProbabilityCalibrator(methods=methods).fit(scores, y, groups=lead)
    before = expected_calibration_error(y_fresh, fresh)
    after = expected_calibration_error(y_fresh, calibrator.predict(fresh))
    assert after < before / 2


def test_out_of_fold_predictions_give_the_cross_validated_log_loss():
    scores, y, lead = _leads(np.random.default_rng(6), leads=600)
    calibrator = ProbabilityCalibrator(cv=4, tolerance_se=0).fit(scores, y, groups=lead)
    oof = calibrator.oof_predictions_
    assert oof.shape == y.shape and np.all((oof > 0) & (oof < 1))
    # The cross-validated loss is the pooled held-out loss of the chosen (lowest) method.
    assert log_loss(y, oof) == pytest.approx(calibrator.cv_log_loss_[calibrator.method_], rel=1e-12)
    assert calibrator.cv_log_loss_[calibrator.method_] == min(calibrator.cv_log_loss_.values())
    # Held out, not in-sample: the refitted model's predictions on the same rows differ.
    assert not np.allclose(oof, calibrator.predict(scores))


def test_prior_count_must_be_non_negative():
    with pytest.raises(ValueError, match="prior_count"):
        ProbabilityCalibrator(prior_count=-1).fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])


def test_a_calibrator_pickled_before_extrapolation_still_scores_as_it_did():
    """A registered champion's calibrator has no ``slope``: it clamps at its outer centres (as
    when it was validated) instead of failing the nightly job."""
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.01, 0.5, 2_000)
    y = (rng.uniform(size=scores.size) < scores).astype(int)
    calibrator = ProbabilityCalibrator(methods=("isotonic",)).fit(scores, y)
    old = calibrator.model_
    del old.slope  # what unpickling an older calibrator gives
    beyond = np.array([0.0, 0.001, 0.9, 0.99])
    p = calibrator.predict(beyond)
    assert p[0] == p[1] == np.clip(old.values[0], 1e-6, 1 - 1e-6)
    assert p[2] == p[3] == np.clip(old.values[-1], 1e-6, 1 - 1e-6)


def test_a_calibrated_booster_is_left_as_it_is():
    """Scores that are the true probabilities: no map fitted on these rows beats them, so
    ``none`` wins and the probabilities pass through unchanged."""
    rng = np.random.default_rng(5)
    p = rng.beta(0.5, 12, size=30_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    calibrator = ProbabilityCalibrator(cv=5).fit(p, y, groups=np.arange(p.size) // 3)
    assert calibrator.method_ == "none", calibrator.cv_log_loss_
    assert np.array_equal(calibrator.predict(p[:100]), np.clip(p[:100], 1e-6, 1 - 1e-6))


def test_the_simplest_method_within_one_standard_error_wins():
    """600 leads: the lowest cross-validated loss (sigmoid) is within noise of none, so the
    simpler none is kept; with 60,000 rows of a squashed booster the gain is far beyond the
    noise and a map is fitted."""
    scores, y, lead = _leads(np.random.default_rng(6), leads=600)
    few = ProbabilityCalibrator(cv=4).fit(scores, y, groups=lead)
    lowest = min(few.cv_log_loss_, key=few.cv_log_loss_.get)
    assert lowest != "none" and few.method_ == "none", few.cv_log_loss_
    rng = np.random.default_rng(7)
    true_p = rng.beta(0.5, 8, size=60_000)
    outcome = (rng.uniform(size=true_p.size) < true_p).astype(int)
    many = ProbabilityCalibrator(cv=4).fit(true_p**0.5, outcome)
    assert many.method_ != "none"
