"""The model's view of a training set: feature columns in a fixed order, strings as categories."""

from __future__ import annotations

import pandas as pd

#: Columns of a training-set file that are never features.
NOT_FEATURES = ("lead_id", "as_of", "label", "split")


def feature_names(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a training-set frame, in file order."""
    return [c for c in frame.columns if c not in NOT_FEATURES]


def feature_matrix(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """``names`` columns of ``frame``, text columns as ``category`` (LightGBM rejects ``str``).

    Raises a ValueError naming the missing features when the frame lacks some.
    """
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(
            f"the data lacks {len(missing)} feature(s) the model needs: {missing[:10]}; "
            "rebuild the features with the builders the model was trained with"
        )
    out = frame[names].copy()
    for name in names:
        col = out[name]
        if not isinstance(col.dtype, pd.CategoricalDtype) and (
            pd.api.types.is_string_dtype(col.dtype) or col.dtype == object
        ):
            out[name] = col.astype("category")
    return out


def categorical_names(x: pd.DataFrame) -> list[str]:
    """The categorical columns of a feature matrix."""
    return [c for c in x.columns if isinstance(x[c].dtype, pd.CategoricalDtype)]
