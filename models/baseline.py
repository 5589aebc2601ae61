"""The baseline every report shows next to the boosted model: a logistic regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


def _signed_log1p(x):
    """Tame heavy tails (counts, revenue) without losing the sign of trends."""
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.log1p(np.abs(x))


def _as_text(x):
    """Categories as plain text with missing as its own level."""
    frame = pd.DataFrame(x)
    return frame.astype(object).where(frame.notna(), "missing").astype(str).to_numpy()


def logistic_baseline(
    categorical: list[str], numeric: list[str], c: float = 1.0, seed: int = 0
) -> Pipeline:
    """Logistic regression on one-hot categories and log-scaled, imputed numbers (with missing flags)."""
    numeric_steps = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        FunctionTransformer(_signed_log1p, feature_names_out="one-to-one"),
        StandardScaler(),
    )
    categorical_steps = make_pipeline(
        FunctionTransformer(_as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
    )
    columns = ColumnTransformer(
        [("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical)]
    )
    return Pipeline(
        [("columns", columns), ("model", LogisticRegression(C=c, max_iter=2000, random_state=seed))]
    )
