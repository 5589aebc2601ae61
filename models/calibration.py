"""Calibration: make the model's probability mean what it says.

A :class:`ProbabilityCalibrator` maps raw scores to calibrated probabilities, strictly
increasingly, so it adds no ties the booster did not have (see :class:`_InterpolatedIsotonic`).
It is its own fitted object beside the booster (so a retrained booster can be recalibrated, and
a calibrator refitted without retraining). ``fit`` chooses between isotonic regression, a
sigmoid (Platt scaling) and none (the booster's own probability) by cross-validated log loss on
the data it is given (the validation split), then refits the chosen method on all of it. The folds are grouped by lead when lead ids
are given: one lead's snapshot rows are not independent, so they must not sit on both sides.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger(__name__)

#: ``none`` keeps the booster's probability: it wins when the booster is already calibrated (its
#: log loss objective often makes it so), and no map fitted on fewer rows can then improve it.
METHODS = ("none", "sigmoid", "isotonic")
#: One standard error: see ``ProbabilityCalibrator``.
TOLERANCE_SE = 1.0
EPS = 1e-6
# Pseudo-observations of the rarer outcome (under the Platt prior) added to every isotonic block:
# one is the smallest amount that keeps a block with no positive (or no negative) off 0 (or 1).
PRIOR_COUNT = 1.0
# Platt scaling is fitted (practically) unpenalised: one slope and one intercept need no shrinkage.
_PLATT_C, _PLATT_MAX_ITER = 1e6, 1000
# The extrapolation's logit only clips what float cannot represent, so it adds no ties of its own.
_TINY, _BELOW_ONE = np.finfo(float).tiny, np.nextafter(1.0, 0.0)


def _logit(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    # 1 - eps rounds to 1.0 for eps = _TINY: stay just below 1 so the logit is finite.
    p = np.clip(np.asarray(p, dtype=float), eps, min(1 - eps, _BELOW_ONE))
    return np.log(p) - np.log1p(-p)


def _platt(scores: np.ndarray, y: np.ndarray) -> LogisticRegression:
    """Logistic regression of the outcome on the logit of the raw score (Platt scaling)."""
    return LogisticRegression(C=_PLATT_C, max_iter=_PLATT_MAX_ITER).fit(_logit(scores)[:, None], y)


def _runs(values: np.ndarray) -> np.ndarray:
    """Run ids (0, 1, ...) of equal adjacent values in a sorted array."""
    return np.r_[0, np.cumsum(values[1:] != values[:-1])]


class _InterpolatedIsotonic:
    """Isotonic regression, read through the centres of its blocks, extrapolated beyond them.

    Plain isotonic regression is a step function: every lead in a block gets the same
    probability, so calibration would throw away the booster's ranking inside each block.
    Interpolating linearly between the blocks' (mean score, block rate) points keeps the
    calibration and the order of leads between the first and last block centres. Beyond them the
    map continues in logit space with the slope of a Platt fit, starting from the edge block's
    value, so it stays continuous and strictly increasing (clamping there tied the top leads).
    Block rates are shrunk towards the Platt fit at the block centre with ``prior_count``
    pseudo-observations of the rarer outcome, so a block with no positive (or no negative) gets
    a small rate the data support instead of 0 (or 1); then adjacent violators are pooled again
    and pooled blocks merged, so centres and values are both strictly increasing.
    """

    def __init__(
        self,
        scores: np.ndarray,
        y: np.ndarray,
        platt: LogisticRegression,
        prior_count: float = PRIOR_COUNT,
    ):
        fitted = IsotonicRegression().fit(scores, y).predict(scores)
        order = np.argsort(scores, kind="stable")
        block = _runs(fitted[order])
        counts = np.bincount(block)
        positives = np.bincount(block, weights=y[order])
        centres = np.bincount(block, weights=scores[order]) / counts
        prior = platt.predict_proba(_logit(centres)[:, None])[:, 1]
        # Pseudo-rows that carry ``prior_count`` of the rarer outcome at the prior rate: a block
        # with no positive gets about prior_count / (rows + prior_count / prior), not 0.
        pseudo = prior_count / np.minimum(prior, 1 - prior)
        weights = counts + pseudo
        rates = (positives + pseudo * prior) / weights
        # Shrinking towards different priors can break the order: pool violators again, weighted
        # by rows + pseudo-rows, then merge each pool into one block (mean score as its centre).
        pooled = IsotonicRegression().fit_transform(
            np.arange(rates.size), rates, sample_weight=weights
        )
        merged = _runs(pooled)
        self.counts = np.bincount(merged, weights=counts).astype(int)
        self.positives = np.bincount(merged, weights=positives).astype(int)
        self.centres = np.bincount(merged, weights=centres * counts) / self.counts
        # Binds in practice only without shrinkage (prior_count=0): keeps the edge logit finite.
        self.values = np.clip(
            np.bincount(merged, weights=pooled * counts) / self.counts, EPS, 1 - EPS
        )
        # A Platt slope <= 0 (scores not positively related to the outcome) cannot extrapolate an
        # increasing map; fall back to the booster's own logit scale (slope one).
        slope = float(platt.coef_[0, 0])
        self.slope = slope if slope > 0 else 1.0

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Interpolated between block centres, extrapolated in logit space beyond them."""
        p = np.interp(scores, self.centres, self.values)
        if not hasattr(self, "slope"):
            # Pickled before extrapolation existed (a registered champion): it scores as it was
            # validated, clamped at its outer centres, not by a rule it was never checked with.
            return np.clip(p, EPS, 1 - EPS)
        x = _logit(scores, _TINY)
        # The edge each row would extrapolate from; only rows beyond the outer centres use it.
        below, above = scores < self.centres[0], scores > self.centres[-1]
        edge = np.where(below, 0, -1)
        offset = _logit(self.values[edge]) + self.slope * (x - _logit(self.centres[edge], _TINY))
        return np.where(below | above, expit(offset), p)


def _fit_method(
    method: str, scores: np.ndarray, y: np.ndarray, platt: LogisticRegression, prior_count: float
):
    """The fitted ``method``, given the Platt fit on the same rows (the isotonic prior needs it)."""
    if method == "isotonic":
        return _InterpolatedIsotonic(scores, y, platt, prior_count)
    if method == "sigmoid":
        return platt
    if method == "none":
        return None
    raise ValueError(f"unknown calibration method {method!r}; choose from {METHODS}")


def _apply(method: str, model, scores: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return model.predict(scores)
    if method == "none":
        return np.clip(scores, EPS, 1 - EPS)
    return model.predict_proba(_logit(scores)[:, None])[:, 1]


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def _simplest_within(
    oof: dict[str, np.ndarray], y: np.ndarray, groups, losses: dict[str, float], tolerance: float
) -> str:
    """The simplest method (order of ``METHODS``) whose out-of-fold log loss is within
    ``tolerance`` standard errors of the lowest; the error of the paired difference is clustered
    by ``groups`` (rows of one lead are not independent)."""
    best = min(losses, key=losses.get)
    if tolerance <= 0:
        return best
    codes = (
        np.arange(y.size)
        if groups is None
        else np.unique(np.asarray(groups), return_inverse=True)[1]
    )
    best_rows = _row_log_loss(y, oof[best])
    for method in sorted(oof, key=METHODS.index):
        diff = _row_log_loss(y, oof[method]) - best_rows
        mean = diff.mean()
        # Cluster-robust variance of a mean: the groups' sums of deviations, squared.
        per_group = np.bincount(codes, weights=diff - mean)
        se = np.sqrt((per_group**2).sum()) / y.size
        if mean <= tolerance * se:
            if method != best:
                log.info(
                    "calibration: %s chosen, within %.1f standard error(s) of %s (log loss %.5f "
                    "vs %.5f, standard error of the difference %.5f)",
                    method, tolerance, best, losses[method], losses[best], se,
                )  # fmt: skip
            return method
    return best


def calibration_folds(
    y, groups=None, n_splits: int = 5, random_state: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) row indices: stratified by outcome and, given ``groups``, grouped by them.

    With ``groups`` (lead ids) no group has rows on both sides. The number of folds is reduced
    (to at least 2) when fewer units (groups, or rows without groups) than ``n_splits`` carry
    either outcome, so every held-out side can have both; fewer than 2 raises a ``ValueError``.
    """
    y = np.asarray(y, dtype=int)
    if groups is None:
        codes = np.arange(y.size)
    else:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(f"groups must have one id per row: {groups.shape} vs {y.shape}")
        codes = np.unique(groups, return_inverse=True)[1].ravel()
    # Units (groups or rows) that have at least one row of each outcome.
    with_positive = np.count_nonzero(np.bincount(codes, weights=y))
    with_negative = np.count_nonzero(np.bincount(codes, weights=1 - y))
    unit = "rows" if groups is None else "groups (leads)"
    k = min(n_splits, with_positive, with_negative)
    if k < 2:
        raise ValueError(
            f"cross-validated calibration needs at least 2 {unit} with each outcome; "
            f"got {with_positive} with a positive and {with_negative} with a negative"
        )
    if k < n_splits:
        log.warning(
            "calibration: %d folds instead of %d (only %d %s with a positive, %d with a negative)",
            k, n_splits, with_positive, unit, with_negative,
        )  # fmt: skip
    if groups is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
        folds = list(splitter.split(np.zeros(y.size), y))
    else:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
        folds = list(splitter.split(np.zeros(y.size), y, codes))
    # Grouping can still leave a fit side with one outcome; no method can be fitted on it.
    if any(np.unique(y[fit_idx]).size < 2 for fit_idx, _ in folds):
        raise ValueError(
            f"a calibration fold has only one outcome on its fit side ({k} folds over "
            f"{with_positive} {unit} with a positive); use fewer folds or more data"
        )
    return folds


class ProbabilityCalibrator(BaseEstimator):
    """Isotonic or sigmoid calibration, whichever has the lower cross-validated log loss.

    Parameters: ``methods`` to consider, ``cv`` folds (reduced when too few leads or rows carry an
    outcome), ``random_state`` for the folds, ``prior_count`` pseudo-observations of the rarer
    outcome shrinking each isotonic block towards the Platt fit (see
    :class:`_InterpolatedIsotonic`; 0 = no shrinkage), ``tolerance_se``: the simplest method
    (none, then sigmoid, then isotonic) whose cross-validated log loss is within this many
    standard errors of the lowest is chosen (the one-standard-error rule: a gain smaller than the
    noise of the validation rows does not carry to new leads; the error is clustered by group
    when groups are given); 0 = the lowest loss wins.
    Fitted attributes: ``method_``, ``model_`` (refitted on all rows), ``cv_log_loss_`` (method ->
    out-of-fold log loss, i.e. fold losses averaged with weights by held-out rows),
    ``oof_predictions_`` (the chosen method's out-of-fold probabilities, one per input row, for
    an honest validation metric without refitting) and ``n_folds_`` (folds actually used).
    """

    def __init__(
        self,
        methods: tuple[str, ...] = METHODS,
        cv: int = 5,
        random_state: int = 0,
        prior_count: float = PRIOR_COUNT,
        tolerance_se: float = TOLERANCE_SE,
    ):
        self.methods = methods
        self.cv = cv
        self.random_state = random_state
        self.prior_count = prior_count
        self.tolerance_se = tolerance_se

    def fit(self, scores, y, groups=None) -> ProbabilityCalibrator:
        """Choose the method by cross-validated log loss, then fit it on all of ``scores``.

        ``groups`` (e.g. lead ids, one per row) keeps each group's rows in one fold.
        """
        scores, y = np.asarray(scores, dtype=float), np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            raise ValueError(
                "calibration needs both outcomes in the data; the validation split has one"
            )
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(
                f"calibration methods must be a non-empty subset of {METHODS}, got {self.methods}"
            )
        if not (np.isfinite(self.prior_count) and self.prior_count >= 0):
            raise ValueError(f"prior_count must be finite and >= 0, got {self.prior_count}")
        folds = calibration_folds(y, groups, self.cv, self.random_state)
        oof = {method: np.empty(y.size) for method in self.methods}
        for fit_idx, test_idx in folds:
            # One Platt fit per fold serves as the sigmoid method and as the isotonic's prior.
            platt = _platt(scores[fit_idx], y[fit_idx])
            for method in self.methods:
                model = _fit_method(method, scores[fit_idx], y[fit_idx], platt, self.prior_count)
                oof[method][test_idx] = _apply(method, model, scores[test_idx])
        losses = {m: float(log_loss(y, pred, labels=[0, 1])) for m, pred in oof.items()}
        self.cv_log_loss_ = losses
        self.method_ = _simplest_within(oof, y, groups, losses, float(self.tolerance_se))
        self.oof_predictions_ = oof[self.method_]
        self.n_folds_ = len(folds)
        self.model_ = _fit_method(self.method_, scores, y, _platt(scores, y), self.prior_count)
        return self

    def predict(self, scores) -> np.ndarray:
        """Calibrated probabilities for raw ``scores``."""
        check_is_fitted(self, "model_")
        return _apply(self.method_, self.model_, np.asarray(scores, dtype=float))
