"""Rare and unseen category levels, grouped into one "other" level by a rule fitted on training rows.

A CRM's own category values are kept as they are (normalised text), so a category feature can
have hundreds of levels, many of them rare, and a scoring run meets values nobody saw in
training. :class:`CategoryGrouper` is fitted on the training split only and travels with the
model (``model_meta.json``, key :data:`META_KEY`):

- **fit**: per categorical column, the levels with at least ``min_rows`` training rows, at most
  ``max_levels`` of them (most frequent first, ties by name), are kept; every other training
  level is *grouped* into ``other``;
- **transform**: each fitted column becomes a pandas ``Categorical`` whose categories are exactly
  ``levels_[column] + [other]``, in that order, whatever the input: so LightGBM sees the same
  codes at training and at scoring. Grouped and *unseen* values (never in the training rows)
  become ``other``; missing stays missing;
- **unseen** / **grouped**: which values of a frame were never seen in training, or were seen
  but grouped, with their rows, so a scoring run can say what it scored as ``other``.

Values are compared as text (``str(value)``): a category ``1`` and a text ``"1"`` are one level.
All the work is on the distinct values of a column (its categories or ``pd.factorize``), never a
Python loop over rows.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

#: Key of the fitted grouper in ``model_meta.json``.
META_KEY = "categories"
#: Format tag of :meth:`CategoryGrouper.to_dict`.
FORMAT = "category-grouper/1"
#: Columns of :meth:`CategoryGrouper.unseen` and :meth:`CategoryGrouper.grouped`.
VALUE_COLUMNS = ["feature", "value", "rows"]


def is_category_like(dtype: Any) -> bool:
    """Whether a column of this dtype is a category feature: ``category``, ``str`` or ``object``
    (booleans and numbers are not)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return False
    return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)


def _text_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Per row, the position of its value's text in the returned distinct texts (-1: missing).

    Works on the distinct values only: a categorical column's categories, else ``factorize``.
    Values that spell the same text (``1`` and ``"1"``) share one position.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, uniques = column.cat.codes.to_numpy(dtype=np.int64), column.cat.categories
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
    texts = pd.Index([str(v) for v in uniques], dtype=object)  # one str() per distinct value
    text_codes, distinct = pd.factorize(texts)
    # Code -1 (missing) picks the appended -1: one fancy index maps every row.
    per_row = np.append(text_codes, -1).astype(np.int64)[np.asarray(codes, dtype=np.int64)]
    return per_row, pd.Index(distinct, dtype=object)


def _row_counts(codes: np.ndarray, n_distinct: int) -> np.ndarray:
    """Rows per distinct value (missing rows, code -1, left out)."""
    return np.bincount(codes[codes >= 0], minlength=n_distinct).astype(np.int64)


def no_values() -> pd.DataFrame:
    """An empty ``feature, value, rows`` frame, typed as :meth:`CategoryGrouper.unseen` returns."""
    return pd.DataFrame({c: [] for c in VALUE_COLUMNS}).astype(
        {"feature": object, "value": object, "rows": np.int64}
    )


def _check_frame(x: Any, what: str) -> None:
    if not isinstance(x, pd.DataFrame):
        raise TypeError(f"CategoryGrouper.{what} takes a pandas DataFrame, got {type(x).__name__}")


def level_counts(X: pd.DataFrame) -> dict[str, pd.Series]:
    """Per category-like column of ``X`` (in column order), rows per value's text (missing
    left out; a declared category without rows counts 0)."""
    counts = {}
    for name in X.columns:
        if is_category_like(X[name].dtype):
            codes, texts = _text_codes(X[name])
            counts[name] = pd.Series(_row_counts(codes, len(texts)), index=texts)
    return counts


def add_level_counts(a: dict[str, pd.Series], b: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """Two parts' :func:`level_counts` as one (a value in one part only counts its rows)."""
    total = {}
    for name in {**a, **b}:
        if name in a and name in b:
            total[name] = a[name].add(b[name], fill_value=0).astype(np.int64)
        else:
            total[name] = a.get(name, b.get(name))
    return total


class CategoryGrouper(TransformerMixin, BaseEstimator):
    """Keep the frequent levels of each category feature; rare and unseen ones become ``other``.

    Parameters
    ----------
    min_rows:
        A training level is kept if it holds at least this many training rows.
    max_levels:
        At most this many levels are kept per column (the most frequent; ties by name, so the
        choice is deterministic). ``None``: no limit.
    other:
        The name of the level rare and unseen values become. If a real level carries this name
        it is not kept as a level of its own: its rows are merged with the grouped ones into
        ``other`` (and it counts among the grouped levels, ``n_grouped_``), so ``other`` always
        means "a value the model does not tell apart".

    Attributes (after :meth:`fit`)
    ------------------------------
    levels_: dict column -> kept levels (text), most frequent first, ties by name.
    grouped_: dict column -> training levels grouped into ``other`` (sorted by name).
    n_grouped_: dict column -> number of distinct training levels grouped into ``other``.
    n_rows_: training rows.
    feature_names_in_, n_features_in_: the columns of the training frame.

    Only the category-like columns (``category``, ``str``, ``object``) of the training frame are
    fitted; other columns pass through :meth:`transform` untouched.
    """

    def __init__(self, min_rows: int = 1, max_levels: int | None = None, other: str = "other"):
        self.min_rows = min_rows
        self.max_levels = max_levels
        self.other = other

    def _check_params(self) -> None:
        def whole(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        if not whole(self.min_rows) or self.min_rows < 1:
            raise ValueError(f"min_rows must be an integer >= 1, got {self.min_rows!r}")
        if self.max_levels is not None and (not whole(self.max_levels) or self.max_levels < 1):
            raise ValueError(
                f"max_levels must be an integer >= 1 or None (no limit), got {self.max_levels!r}"
            )
        if not isinstance(self.other, str) or not self.other:
            raise ValueError(f"other must be a non-empty text, got {self.other!r}")

    def fit(self, X: pd.DataFrame, y: Any = None) -> CategoryGrouper:
        """Learn, per category-like column of ``X`` (the training rows only), the levels to keep."""
        _check_frame(X, "fit")
        return self.fit_counts(level_counts(X), list(X.columns), len(X))

    def fit_counts(
        self, counts: dict[str, pd.Series], columns: list[str], n_rows: int
    ) -> CategoryGrouper:
        """:meth:`fit` from the training rows' :func:`level_counts` (summed over the parts of a
        training set too large for one frame: :func:`add_level_counts`), its ``columns`` in
        order and its number of rows."""
        self._check_params()
        levels: dict[str, list[str]] = {}
        grouped: dict[str, list[str]] = {}
        for name in [c for c in columns if c in counts]:
            seen = counts[name][counts[name] > 0]  # a declared category without rows was not seen
            # Most frequent first, ties by name: sort by name, then stably by count.
            ranked = seen.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            candidates = ranked[(ranked >= self.min_rows) & (ranked.index != self.other)]
            kept = candidates if self.max_levels is None else candidates.iloc[: self.max_levels]
            levels[name] = [str(v) for v in kept.index]
            grouped[name] = sorted(str(v) for v in seen.index.difference(kept.index))
        self.levels_ = levels
        self.grouped_ = grouped
        self.n_grouped_ = {name: len(values) for name, values in grouped.items()}
        self.n_rows_ = int(n_rows)
        self.feature_names_in_ = np.asarray([str(c) for c in columns], dtype=object)
        self.n_features_in_ = len(columns)
        return self

    def categories(self, column: str) -> pd.CategoricalDtype:
        """The dtype :meth:`transform` gives ``column``: its kept levels, then ``other``."""
        check_is_fitted(self, "levels_")
        return pd.CategoricalDtype([*self.levels_[column], self.other])

    def _fitted_columns(self, X: pd.DataFrame, what: str) -> None:
        _check_frame(X, what)
        check_is_fitted(self, "levels_")
        missing = [c for c in self.levels_ if c not in X.columns]
        if missing:
            raise ValueError(
                f"the frame lacks {len(missing)} category feature(s) the grouper was fitted on: "
                f"{missing[:10]}; pass the same features as at training"
            )

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``X`` with each fitted column as categories ``levels_[column] + [other]``:
        grouped and unseen values become ``other``, missing stays missing. Other columns are
        untouched; ``X`` is never modified."""
        self._fitted_columns(X, "transform")
        out = X.copy(deep=False)  # new columns replace the fitted ones; X's arrays are not touched
        for name, levels in self.levels_.items():
            codes, texts = _text_codes(X[name])
            target = pd.Index(levels, dtype=object).get_indexer(texts)
            target[target < 0] = len(levels)  # not a kept level: other
            new_codes = np.append(target, -1)[codes]
            out[name] = pd.Categorical.from_codes(new_codes, dtype=self.categories(name))
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output columns: the input columns, unchanged (the grouping is one-to-one)."""
        check_is_fitted(self, "levels_")
        if input_features is None:
            return self.feature_names_in_.copy()
        return np.asarray([str(c) for c in input_features], dtype=object)

    def _other_values(self, X: pd.DataFrame, seen: bool, what: str) -> pd.DataFrame:
        """Values of ``X`` that :meth:`transform` turns into ``other``: the ones seen in training
        (``seen``) or the ones never seen, with their rows."""
        self._fitted_columns(X, what)
        parts = []
        for name, levels in self.levels_.items():
            codes, texts = _text_codes(X[name])
            rows = _row_counts(codes, len(texts))
            in_training = texts.isin(self.grouped_[name])
            hit = (rows > 0) & ~texts.isin(levels) & (in_training if seen else ~in_training)
            part = pd.DataFrame(
                {"feature": name, "value": texts[hit].astype(object), "rows": rows[hit]}
            )
            parts.append(
                part.sort_values(["rows", "value"], ascending=[False, True], kind="stable")
            )
        if not parts:
            return no_values()
        out = pd.concat(parts, ignore_index=True)
        return out.astype({"feature": object, "value": object, "rows": np.int64})

    def unseen(self, X: pd.DataFrame) -> pd.DataFrame:
        """Values of the fitted columns never seen in the training rows: ``feature, value, rows``
        (scored as ``other``), by feature in fit order, then most rows first, then value."""
        return self._other_values(X, seen=False, what="unseen")

    def grouped(self, X: pd.DataFrame) -> pd.DataFrame:
        """Values of the fitted columns seen in training but grouped into ``other`` (rare, or
        beyond ``max_levels``): ``feature, value, rows``, ordered as :meth:`unseen`."""
        return self._other_values(X, seen=True, what="grouped")

    def to_dict(self) -> dict[str, Any]:
        """The fitted grouper as plain JSON-serialisable data (see :meth:`from_dict`)."""
        check_is_fitted(self, "levels_")
        return {
            "format": FORMAT,
            "min_rows": int(self.min_rows),
            "max_levels": None if self.max_levels is None else int(self.max_levels),
            "other": self.other,
            "n_rows": int(self.n_rows_),
            "input_features": [str(c) for c in self.feature_names_in_],
            "features": {
                name: {"levels": list(levels), "grouped": list(self.grouped_[name])}
                for name, levels in self.levels_.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryGrouper:
        """A fitted grouper from :meth:`to_dict`'s data (e.g. read from ``model_meta.json``)."""
        if data.get("format") != FORMAT:
            raise ValueError(
                f"not a stored category grouper (format {data.get('format')!r}, want {FORMAT!r})"
            )
        grouper = cls(
            min_rows=int(data["min_rows"]),
            max_levels=None if data["max_levels"] is None else int(data["max_levels"]),
            other=str(data["other"]),
        )
        grouper._check_params()
        features = data["features"]
        grouper.levels_ = {name: [str(v) for v in f["levels"]] for name, f in features.items()}
        grouper.grouped_ = {name: [str(v) for v in f["grouped"]] for name, f in features.items()}
        grouper.n_grouped_ = {name: len(v) for name, v in grouper.grouped_.items()}
        grouper.n_rows_ = int(data["n_rows"])
        grouper.feature_names_in_ = np.asarray(data["input_features"], dtype=object)
        grouper.n_features_in_ = len(grouper.feature_names_in_)
        return grouper


def stored_grouper(meta: Mapping[str, Any]) -> CategoryGrouper | None:
    """The grouper stored in a model's metadata, or None for a model trained before grouping
    existed (its features are used as they are, as then)."""
    data = meta.get(META_KEY)
    return None if data is None else CategoryGrouper.from_dict(data)
