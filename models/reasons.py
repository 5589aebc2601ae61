"""Reasons in words: a lead's top contributions for and against, said as a sales rep would read them.

Input: per-row feature contributions in log-odds (SHAP values: LightGBM's ``pred_contrib``, or
:mod:`models.contributions`, which gives the same numbers faster) and the rows' feature values.
Each reason is the feature's label filled with the lead's value
(:meth:`features.catalog.FeatureSpec.describe`): "Requested a demo 2 times in the last 7 days".
Contributions smaller than ``min_log_odds`` are not reasons: they would be noise read aloud.

Wording is vectorised: a feature's value is described once per distinct value, not once per lead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from features.catalog import FeatureSpec

SEPARATOR = "; "


def _fallback_spec(name: str) -> FeatureSpec:
    return FeatureSpec(
        name=name, label=name.replace("_", " ") + ": {value}", sources=(), builder="?"
    )


def _ranked(
    contributions: np.ndarray, k: int, sign: int, min_log_odds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of each row's k largest contributions in direction ``sign``, and a mask of
    which of them are real reasons (the right sign and at least ``min_log_odds``)."""
    signed = sign * contributions
    k = min(k, signed.shape[1])
    top = np.argpartition(-signed, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(signed, top, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
    return top, values >= max(min_log_odds, np.finfo(float).tiny)


def _words(
    features: pd.DataFrame,
    names: Sequence[str],
    specs: Mapping[str, FeatureSpec],
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """The described value of feature ``cols[i]`` for row ``rows[i]``, for every i."""
    out = np.empty(len(rows), dtype=object)
    for col in np.unique(cols):
        pick = cols == col
        name = names[col]
        spec = specs.get(name) or _fallback_spec(name)
        values = features[name].iloc[rows[pick]]
        # Describe each distinct value once; missing values are one "unknown" group.
        codes, distinct = pd.factorize(values, use_na_sentinel=True)
        said = np.array([spec.describe(v) for v in distinct] + [spec.describe(None)], dtype=object)
        out[pick] = said[codes]  # code -1 (missing) picks the last entry
    return out


def top_reasons(
    contributions: np.ndarray,
    features: pd.DataFrame,
    names: Sequence[str],
    specs: Mapping[str, FeatureSpec],
    k: int = 3,
    min_log_odds: float = 0.01,
) -> pd.DataFrame:
    """``reasons_for`` and ``reasons_against`` per row: up to ``k`` phrases each, joined by "; ".

    ``contributions``: n_rows x len(names) (a trailing expected-value column is ignored);
    ``features``: the rows' feature values (same row order, columns include ``names``).
    """
    contributions = np.asarray(contributions, dtype=float)[:, : len(names)]
    if len(contributions) != len(features):
        raise ValueError(
            f"{len(contributions)} rows of contributions for {len(features)} rows of features"
        )
    result = {}
    n = len(features)
    for column, sign in (("reasons_for", 1), ("reasons_against", -1)):
        text = np.full(n, "", dtype=object)
        if n and len(names):
            top, real = _ranked(contributions, k, sign, min_log_odds)
            for rank in range(top.shape[1]):
                rows = np.flatnonzero(real[:, rank])
                if not len(rows):
                    continue
                said = _words(features, names, specs, rows, top[rows, rank])
                joined = np.where(text[rows] == "", said, text[rows] + SEPARATOR + said)
                text[rows] = joined
        result[column] = text
    return pd.DataFrame(result, index=features.index)
