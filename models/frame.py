"""The model's view of a training set: feature columns in a fixed order, strings as categories."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from models.categories import CategoryGrouper

#: Columns of a training-set file that are never features.
#: ``unsubscribed``: the gates' disqualifier input as of the snapshot (features/gate_inputs.py).
#: ``won_amount``: the amount won in the label window, the value model's label (an outcome).
NOT_FEATURES = ("lead_id", "as_of", "label", "split", "unsubscribed", "won_amount")


def feature_names(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a training-set frame, in file order."""
    return [c for c in frame.columns if c not in NOT_FEATURES]


def feature_matrix(
    frame: pd.DataFrame, names: list[str], grouper: CategoryGrouper | None = None
) -> pd.DataFrame:
    """``names`` columns of ``frame``, text columns as ``category`` (LightGBM rejects ``str``).

    ``grouper``: the model's fitted :class:`~models.categories.CategoryGrouper`; each category
    feature then has exactly the training's kept levels plus "other" (rare and unseen values),
    so the booster sees the same codes at training and scoring. None (a model trained before
    grouping existed): the categories are the values present, as they were then.
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
    return out if grouper is None else grouper.transform(out)


def categorical_names(x: pd.DataFrame) -> list[str]:
    """The categorical columns of a feature matrix."""
    return [c for c in x.columns if isinstance(x[c].dtype, pd.CategoricalDtype)]
