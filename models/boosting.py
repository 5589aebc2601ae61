"""The propensity model: gradient-boosted trees (LightGBM), early-stopped on the validation split."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def train_booster(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_valid: pd.DataFrame,
    y_valid: np.ndarray,
    params: Mapping[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    monotone_increasing: list[str] | tuple[str, ...] = (),
    record: dict[str, Any] | None = None,
) -> lgb.Booster:
    """Train a binary LightGBM booster; stop when validation log loss stops improving.
    ``record``: filled with LightGBM's per-iteration validation metrics (the training curve:
    ``record["validation"]["binary_logloss"]``).

    Categorical columns (pandas ``category``) are handled natively by LightGBM. Features named in
    ``monotone_increasing`` are constrained: more of them never lowers the score, all else equal.
    The returned booster predicts with its best iteration by default.
    """
    unknown = [f for f in monotone_increasing if f not in x_train.columns]
    if unknown:
        raise ValueError(f"monotone_increasing names features the model does not have: {unknown}")
    params = {"objective": "binary", "metric": "binary_logloss", "verbose": -1, **params}
    if monotone_increasing:
        params["monotone_constraints"] = [int(c in monotone_increasing) for c in x_train.columns]
    train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set, free_raw_data=False)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)]
        + ([lgb.record_evaluation(record)] if record is not None else []),
    )
    log.info(
        "LightGBM: %d trees (best iteration), validation log loss %.5f",
        booster.best_iteration,
        booster.best_score["validation"]["binary_logloss"],
    )
    return booster


def fixed_booster(
    x: pd.DataFrame,
    y: np.ndarray,
    params: Mapping[str, Any],
    num_boost_round: int,
    monotone_increasing: list[str] | tuple[str, ...] = (),
) -> lgb.Booster:
    """A binary LightGBM booster with a fixed number of trees (chosen before by early stopping):
    to refit on more rows, where no held-out set is left to stop on."""
    params = fixed_params(params, list(x.columns), monotone_increasing)
    return lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=num_boost_round)


def fixed_params(
    params: Mapping[str, Any],
    columns: list[str],
    monotone_increasing: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """LightGBM's parameters for a refit of ``columns``, wherever it runs (here or on a Dask
    cluster): binary, quiet, the searched ``params``, increasing in ``monotone_increasing``."""
    params = {"objective": "binary", "verbose": -1, **params}
    if monotone_increasing:
        params["monotone_constraints"] = [int(c in monotone_increasing) for c in columns]
    return params


def predict_scores(booster: lgb.Booster, x: pd.DataFrame) -> np.ndarray:
    """Uncalibrated probabilities from the booster's best iteration."""
    return booster.predict(x, num_iteration=booster.best_iteration or None)


class InMemoryLearner:
    """Fits the boosters of `leadscore train` on the training rows it holds and more rows."""

    def __init__(self, x: pd.DataFrame, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def fit(
        self,
        params: Mapping[str, Any],
        trees: int,
        monotone_increasing: list[str] | tuple[str, ...] = (),
        extra_x: pd.DataFrame | None = None,
        extra_y: np.ndarray | None = None,
    ) -> lgb.Booster:
        """A booster of ``trees`` trees on the training rows and ``extra_x`` (:func:`fixed_booster`)."""
        if extra_x is None:
            return fixed_booster(self.x, self.y, params, trees, monotone_increasing)
        x, y = pd.concat([self.x, extra_x]), np.r_[self.y, extra_y]
        return fixed_booster(x, y, params, trees, monotone_increasing)

    def close(self) -> None:
        """Nothing to release."""
