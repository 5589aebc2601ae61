"""Calibration: make the model's probability mean what it says.

A :class:`ProbabilityCalibrator` maps raw scores to calibrated probabilities, monotonically and
without ties the booster did not have (see :class:`_InterpolatedIsotonic`). It is its own
fitted object beside the booster (so a retrained booster can be recalibrated, and a calibrator
refitted without retraining). ``fit`` chooses between isotonic regression and a sigmoid (Platt
scaling) by cross-validated log loss on the data it is given (the validation split), then
refits the chosen method on all of it.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

METHODS = ("isotonic", "sigmoid")
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


class _InterpolatedIsotonic:
    """Isotonic regression, read through the centres of its blocks.

    Plain isotonic regression is a step function: every lead in a block gets the same
    probability, so calibration would throw away the booster's ranking inside each block.
    Interpolating linearly between the blocks' (mean score, block rate) points keeps the
    calibration (each block's mean is unchanged up to the interpolation) and keeps the order of
    leads between the first and last block centres.
    """

    def __init__(self, scores: np.ndarray, y: np.ndarray):
        iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(scores, y)
        fitted = iso.predict(scores)
        order = np.argsort(scores, kind="stable")
        s, f = scores[order], fitted[order]
        block = np.r_[0, np.cumsum(f[1:] != f[:-1])]
        counts = np.bincount(block)
        self.centres = np.bincount(block, weights=s) / counts
        self.values = np.bincount(block, weights=f) / counts

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.centres, self.values)


def _fit_method(method: str, scores: np.ndarray, y: np.ndarray):
    if method == "isotonic":
        return _InterpolatedIsotonic(scores, y)
    if method == "sigmoid":
        return LogisticRegression(C=1e6, max_iter=1000).fit(_logit(scores)[:, None], y)
    raise ValueError(f"unknown calibration method {method!r}; choose from {METHODS}")


def _apply(method: str, model, scores: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return np.clip(model.predict(scores), EPS, 1 - EPS)
    return model.predict_proba(_logit(scores)[:, None])[:, 1]


class ProbabilityCalibrator(BaseEstimator):
    """Isotonic or sigmoid calibration, whichever has the lower cross-validated log loss.

    Parameters: ``methods`` to consider, ``cv`` folds, ``random_state`` for the folds.
    Fitted attributes: ``method_``, ``model_``, ``cv_log_loss_`` (method -> mean log loss).
    """

    def __init__(self, methods: tuple[str, ...] = METHODS, cv: int = 5, random_state: int = 0):
        self.methods = methods
        self.cv = cv
        self.random_state = random_state

    def fit(self, scores, y) -> ProbabilityCalibrator:
        """Choose the method by cross-validated log loss, then fit it on all of ``scores``."""
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
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        losses = {}
        for method in self.methods:
            fold_losses = []
            for fit_idx, test_idx in folds.split(scores, y):
                model = _fit_method(method, scores[fit_idx], y[fit_idx])
                p = _apply(method, model, scores[test_idx])
                fold_losses.append(log_loss(y[test_idx], p, labels=[0, 1]))
            losses[method] = float(np.mean(fold_losses))
        self.cv_log_loss_ = losses
        self.method_ = min(losses, key=losses.get)
        self.model_ = _fit_method(self.method_, scores, y)
        return self

    def predict(self, scores) -> np.ndarray:
        """Calibrated probabilities for raw ``scores``."""
        check_is_fitted(self, "model_")
        return _apply(self.method_, self.model_, np.asarray(scores, dtype=float))
