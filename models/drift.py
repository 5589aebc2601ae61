"""Drift check by population stability index (PSI) against the training distributions.

At training time :func:`drift_reference` bins every feature and the scores and records the share
of rows per bin (a plain JSON-serialisable dict that travels with the model). At scoring time
:func:`population_stability` bins the new data with the *reference's* bins and compares shares;
:func:`drift_verdict` turns the table into ok / warn / refuse with readable messages.

Binning:
- numeric: unique quantile cuts of the reference's finite values, bins closed on the right,
  the outermost bins open-ended (values outside the training range land there). A value holding
  at least about ``1 / n_bins`` of the rows (0 in a count feature, the value of a constant
  column) gets a bin of its own, so a shift off it shows up instead of being averaged away.
- categorical (``category``, ``str``/object, ``bool``): one bin per category seen in the
  reference (the ``max_categories`` most frequent; rarer ones go to "other"); categories not in
  the reference fall into "other" at scoring time.
- missing values are always a bin of their own.

PSI = sum over bins of ``(a - e) * ln(a / e)`` with ``e`` the reference share and ``a`` the
new share, both floored at :data:`PSI_FLOOR` (see there). Each term is >= 0, so PSI >= 0,
and exactly 0 when the shares match.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: Shares (reference and new) are floored at this before the PSI: a bin empty on one side would
#: give ln(0) = -inf. With the floor, a bin going from empty to a share ``s`` (or from ``s`` to
#: empty) adds ``(s - 1e-4) * ln(s / 1e-4)``: about 0.31 for s = 5%, 9.2 for s = 100%; large
#: but finite, so features still rank and sum. Bins that are empty on both sides add 0.
PSI_FLOOR = 1e-4
#: Name of the scores' row in :func:`population_stability`'s table.
SCORE = "__score__"
#: The rows counted, in :func:`bin_counts`.
ROWS = "__rows__"
FORMAT = "psi-reference/1"
COLUMNS = ["feature", "psi", "bins", "largest_shift", "missing_in_data"]


# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def drift_reference(
    features: pd.DataFrame, scores: np.ndarray, n_bins: int = 10, max_categories: int = 50
) -> dict:
    """Bins and per-bin shares of each feature and of the scores (JSON-serialisable).

    ``n_bins``: quantile bins per numeric column (fewer when values tie). ``max_categories``:
    categories kept per categorical column, the most frequent; the rest are counted as "other".
    """
    if not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    if max_categories < 1:
        raise ValueError(f"max_categories must be >= 1, got {max_categories!r}")
    n = len(features)
    if n == 0:
        raise ValueError("drift_reference needs at least one row")
    names = [str(c) for c in features.columns]
    if len(set(names)) != len(names):
        raise ValueError("drift_reference needs unique column names")
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or len(scores) != n:
        raise ValueError(f"scores must be 1-d with one per row ({n}), got shape {scores.shape}")

    out: dict[str, Any] = {}
    for name, column in zip(names, features.columns, strict=True):
        col = features[column]
        if _is_categorical(col.dtype):
            out[name] = _categorical_reference(col, max_categories)
        elif pd.api.types.is_numeric_dtype(col.dtype):
            out[name] = _numeric_reference(_as_float(col), n_bins, str(col.dtype))
        else:
            raise TypeError(
                f"column {name!r} has dtype {col.dtype}, which drift_reference cannot bin; "
                "pass numbers, categories, strings or booleans"
            )
    return {
        "format": FORMAT,
        "n_rows": n,
        "n_bins": int(n_bins),
        "psi_floor": PSI_FLOOR,
        "features": out,
        "score": _numeric_reference(scores, n_bins, "float64"),
    }


def _is_categorical(dtype) -> bool:
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def _as_float(col: pd.Series) -> np.ndarray:
    """Values as float64 with NaN for missing; text that is not a number becomes missing."""
    try:
        return col.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        # Only when the data's type differs from the reference's: every unparsable value
        # turns missing, which the missing bin then reports as drift instead of crashing.
        coerced = pd.to_numeric(col.astype(object), errors="coerce")
        return coerced.to_numpy(dtype="float64", na_value=np.nan)


def _numeric_reference(x: np.ndarray, n_bins: int, dtype: str) -> dict:
    n = len(x)
    finite = x[np.isfinite(x)]
    below = np.zeros(0, dtype=bool)  # cuts[i] stands for "< v" (just below a point mass v)
    if finite.size == 0:
        cuts = np.zeros(0)
        counts = _numeric_counts(x, cuts)
    elif finite.min() == finite.max():
        # Constant: below / equal / above the value, so any departure from it is visible.
        c = float(finite[0])
        cuts, below = np.array([_just_below(c), c]), np.array([True, False])
        if not np.isfinite(cuts[0]):  # c is the lowest float: nothing finite lies below it
            cuts, below = cuts[1:], below[1:]
        counts = _numeric_counts(x, cuts)
    else:
        # inverted_cdf: quantiles are actual values, so equal quantiles mean a tie in the data.
        q = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1), method="inverted_cdf")
        values, repeats = np.unique(q, return_counts=True)
        lo, hi = q[0], q[-1]
        # A value at two or more quantiles holds >= ~1/n_bins of the rows: give it its own bin
        # (its cut is already there; add one just below it). The minimum needs none, the
        # lowest bin ends at it.
        masses = values[(repeats >= 2) & (values > lo)]
        just_below = _just_below(masses)  # finite: masses > lo >= the lowest float
        cuts = np.unique(np.concatenate([q[1:-1], just_below]))
        cuts = cuts[cuts < hi]  # a cut at the maximum would leave the top bin empty
        # A just-below cut with no reference value between it and the cut before leaves an
        # empty bin: drop that cut, merging the empty bin into the point mass's bin.
        counts = _numeric_counts(x, cuts)
        filled = counts[: len(cuts)] > 0
        cuts, below = cuts[filled], np.isin(cuts[filled], just_below)
        counts = counts[np.r_[filled, True, True]]  # the dropped bins held no rows
    return {
        "kind": "numeric",
        "dtype": dtype,
        "cuts": cuts.tolist(),
        "below": below.tolist(),
        "labels": _numeric_labels(cuts, below),
        "shares": (counts[:-1] / n).tolist(),
        "missing": float(counts[-1] / n),
    }


def _just_below(v):
    """The float just below ``v``: a right-closed cut there gives ``v`` a bin of its own."""
    with np.errstate(over="ignore"):  # the lowest float steps to -inf; callers drop that
        return np.nextafter(v, -np.inf)


def _numeric_counts(x: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Rows per bin (len(cuts) + 1 value bins, then missing): vectorised, no row loop."""
    # side="left": index = number of cuts < x, i.e. bins (c[i-1], c[i]]. NaN sorts after every
    # cut, so it lands in the top bin: count it there, then move it to the missing bin.
    bins = np.searchsorted(cuts, x, side="left")
    counts = np.bincount(bins, minlength=len(cuts) + 2)
    n_missing = int(np.count_nonzero(np.isnan(x)))
    counts[len(cuts)] -= n_missing
    counts[-1] = n_missing
    return counts


def _fmt(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _numeric_labels(cuts: np.ndarray, below: np.ndarray) -> list[str]:
    """Readable bin names: "<= 0", "(0, 3]", "= 5", "[5, 9]", "> 9", "any value"."""
    k = len(cuts)
    if k == 0:
        return ["any value"]
    # A "below" cut b stands for "< v" with v = nextafter(b, +inf): show v, not b.
    shown = [
        _fmt(float(np.nextafter(c, np.inf)) if b else float(c))
        for c, b in zip(cuts, below, strict=True)
    ]
    labels = []
    for i in range(k + 1):
        lower = i - 1 if i > 0 else None
        upper = i if i < k else None
        if (
            lower is not None
            and upper is not None
            and below[lower]
            and cuts[upper] == np.nextafter(cuts[lower], np.inf)
        ):
            labels.append(f"= {shown[upper]}")
        elif lower is None:
            labels.append(f"{'<' if below[upper] else '<='} {shown[upper]}")
        elif upper is None:
            labels.append(f"{'>=' if below[lower] else '>'} {shown[lower]}")
        else:
            left, right = ("[" if below[lower] else "("), (")" if below[upper] else "]")
            labels.append(f"{left}{shown[lower]}, {shown[upper]}{right}")
    return labels


def _category_counts(col: pd.Series) -> tuple[pd.Index, np.ndarray, int]:
    """Distinct values as text, rows per value, and missing rows (no per-row Python)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        counts = np.bincount(codes.astype(np.int64) + 1, minlength=len(col.cat.categories) + 1)
        keys, per_key, n_missing = col.cat.categories, counts[1:], int(counts[0])
    else:
        vc = col.value_counts(dropna=True, sort=False)
        keys, per_key = vc.index, vc.to_numpy()
        n_missing = len(col) - int(per_key.sum())
    # Text keys (JSON object keys are text); values spelling the same text are one category.
    grouped = pd.Series(per_key, index=pd.Index([str(k) for k in keys], dtype=object))
    grouped = grouped.groupby(level=0, sort=False).sum()
    return grouped.index, grouped.to_numpy(dtype=np.int64), n_missing


def _categorical_reference(col: pd.Series, max_categories: int) -> dict:
    n = len(col)
    keys, counts, n_missing = _category_counts(col)
    seen = pd.Series(counts, index=keys)
    seen = seen[seen > 0]  # declared-but-unused categories are unseen: they go to "other"
    # Most frequent first (ties by name, for a stable reference); the rarest go to "other".
    seen = seen.sort_index().sort_values(ascending=False, kind="stable")
    kept = seen.iloc[:max_categories]
    return {
        "kind": "categorical",
        "dtype": str(col.dtype),
        "categories": [str(k) for k in kept.index],
        "shares": (kept.to_numpy() / n).tolist(),
        "other": int(seen.iloc[max_categories:].sum()) / n,
        "missing": n_missing / n,
    }


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def population_stability(
    reference: dict, features: pd.DataFrame, scores: np.ndarray | None
) -> pd.DataFrame:
    """PSI of each reference feature (and of the scores, row ``__score__``) on new data.

    Columns ``feature, psi, bins, largest_shift, missing_in_data``, sorted by PSI descending.
    A reference feature absent from ``features`` gets NaN PSI and ``missing_in_data`` True;
    columns the reference does not know are ignored. ``scores=None`` skips the score row.
    """
    return stability_from_counts(reference, bin_counts(reference, features, scores))


def bin_counts(
    reference: dict, features: pd.DataFrame, scores: np.ndarray | None
) -> dict[str, np.ndarray | None]:
    """Rows per reference bin of each reference feature (None: absent from ``features``) and of
    the scores (key ``__score__``, if given), plus ``__rows__``. Counts of parts of the data add
    up to the counts of the whole (:func:`add_counts`): a partitioned CRM's drift is checked
    from its partitions' counts, without gathering their features."""
    if reference.get("format") != FORMAT:
        raise ValueError(
            f"not a drift reference (format {reference.get('format')!r}, want {FORMAT!r})"
        )
    by_name = {str(c): c for c in features.columns}
    counts: dict[str, np.ndarray | None] = {ROWS: np.array([len(features)])}
    for name, ref in reference["features"].items():
        counts[name] = _counts(ref, features[by_name[name]]) if name in by_name else None
    if scores is not None:
        s = np.asarray(scores, dtype=float)
        if s.ndim != 1:
            raise ValueError(f"scores must be 1-d, got shape {s.shape}")
        counts[SCORE] = _counts(reference["score"], s)
    return counts


def add_counts(
    first: dict[str, np.ndarray | None], second: dict[str, np.ndarray | None]
) -> dict[str, np.ndarray | None]:
    """Two parts' :func:`bin_counts` as one (a feature absent from either is absent)."""
    return {
        k: None if first[k] is None or second.get(k) is None else first[k] + second[k]
        for k in first
    }


def stability_from_counts(reference: dict, counts: dict[str, np.ndarray | None]) -> pd.DataFrame:
    """:func:`population_stability`'s table from :func:`bin_counts` (of one part or of all)."""
    n = int(counts[ROWS][0])
    rows = []
    for name, ref in reference["features"].items():
        if counts.get(name) is None:
            bins = len(_reference_shares(ref))
            rows.append((name, np.nan, bins, "absent from the data", True))
            continue
        rows.append((name, *_compare(ref, counts[name], n), False))
    if counts.get(SCORE) is not None:
        rows.append((SCORE, *_compare(reference["score"], counts[SCORE], n), False))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.astype({"psi": "float64", "bins": "int64", "missing_in_data": "bool"})
    return table.sort_values("psi", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


def _reference_shares(ref: dict) -> np.ndarray:
    extra = [ref["other"]] if ref["kind"] == "categorical" else []
    return np.array([*ref["shares"], *extra, ref["missing"]], dtype=float)


def _labels(ref: dict) -> list[str]:
    if ref["kind"] == "categorical":
        return [repr(c) for c in ref["categories"]] + ["other", "missing"]
    return [*ref["labels"], "missing"]


def bin_shares(ref: dict, values: pd.Series | np.ndarray) -> pd.DataFrame:
    """Per bin of one reference entry (a feature's, or ``reference["score"]``): its label, the
    reference share and the share of ``values``; what a drift plot draws."""
    return shares_from_counts(ref, _counts(ref, values))


def shares_from_counts(ref: dict, counts: np.ndarray) -> pd.DataFrame:
    """:func:`bin_shares` from one entry's bin counts."""
    expected = _reference_shares(ref)
    n = counts.sum()
    actual = counts / n if n else np.full(len(expected), np.nan)
    return pd.DataFrame({"bin": _labels(ref), "reference": expected, "current": actual})


def _counts(ref: dict, values: pd.Series | np.ndarray) -> np.ndarray:
    """Rows of ``values`` per bin of one reference entry (float, so that parts add up)."""
    if ref["kind"] == "numeric":
        x = values if isinstance(values, np.ndarray) else _as_float(values)
        counts = _numeric_counts(x, np.asarray(ref["cuts"], dtype=float))
    else:
        col = values if isinstance(values, pd.Series) else pd.Series(values)
        keys, per_key, n_missing = _category_counts(col)
        k = len(ref["categories"])
        where = pd.Index(ref["categories"], dtype=object).get_indexer(keys)
        where[where < 0] = k  # unseen in the reference: "other"
        counts = np.bincount(where, weights=per_key, minlength=k + 1)
        counts = np.append(counts, n_missing)
    return np.asarray(counts, dtype=float)


def _compare(ref: dict, counts: np.ndarray, n: int) -> tuple[float, int, str]:
    """(psi, number of bins, largest shift) of ``n`` rows binned as ``counts`` against one
    reference entry."""
    expected = _reference_shares(ref)
    if n == 0:
        return np.nan, len(expected), "no rows to compare"
    actual = counts / n
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    psi = float(np.sum((a - e) * np.log(a / e)))
    moved = np.abs(actual - expected)
    i = int(np.argmax(moved))
    shift = "none" if moved[i] == 0 else f"{_labels(ref)[i]}: {expected[i]:.1%} -> {actual[i]:.1%}"
    return psi, len(expected), shift


# ---------------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------------


def drift_verdict(
    table: pd.DataFrame, warn_above: float, refuse_above: float | None
) -> tuple[str, list[str]]:
    """Verdict "ok", "warn" or "refuse" on a :func:`population_stability` table, with messages.

    Common PSI conventions: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a significant
    one. A row strictly above ``refuse_above`` (if given) refuses, above ``warn_above`` warns.
    A feature absent from the data (NaN PSI) is reported and warns: its drift is unknown.
    """
    if warn_above < 0:
        raise ValueError(f"warn_above must be >= 0, got {warn_above}")
    if refuse_above is not None and refuse_above < warn_above:
        raise ValueError(f"refuse_above ({refuse_above}) must be >= warn_above ({warn_above})")
    level, messages = "ok", []
    for row in table.itertuples(index=False):
        what = "the probabilities" if row.feature == SCORE else f"feature {row.feature!r}"
        if pd.isna(row.psi):
            why = "absent from the data" if row.missing_in_data else row.largest_shift
            messages.append(f"{what}: PSI not computed ({why})")
            level = "warn" if level == "ok" else level
        elif refuse_above is not None and row.psi > refuse_above:
            messages.append(
                f"{what}: PSI {row.psi:.3f} > {refuse_above:g} (refuse; {_strength(row.psi)}); "
                f"largest shift {row.largest_shift}"
            )
            level = "refuse"
        elif row.psi > warn_above:
            messages.append(
                f"{what}: PSI {row.psi:.3f} > {warn_above:g} (warn; {_strength(row.psi)}); "
                f"largest shift {row.largest_shift}"
            )
            level = "warn" if level == "ok" else level
    return level, messages


def _strength(psi: float) -> str:
    return "stable" if psi < 0.1 else "moderate shift" if psi <= 0.25 else "significant shift"
