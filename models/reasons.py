"""Reasons in words: a lead's top contributions for and against, said as a sales rep would read them.

Input: per-row feature contributions in log-odds (SHAP values: LightGBM's ``pred_contrib``, or
:mod:`models.contributions`, which gives the same numbers faster) and the rows' feature values.
Each reason is the feature's label filled with the lead's value
(:meth:`features.catalog.FeatureSpec.describe`): "Requested a demo 2 times in the last 7 days".
Contributions smaller than ``min_log_odds`` are not reasons: they would be noise read aloud.

Features that describe one behaviour (a type of activity's counts in three windows and its
recency: :attr:`~features.catalog.FeatureSpec.group`) split the credit between them, often with
opposite signs; said one by one they read as contradictions ("Active on 21 of the last 30 days"
as a reason against). So reasons are ranked by the *group's* summed contribution, and each group
is said once, in the words of its member that pushes hardest the group's way, with its recency
member's clause added ("Requested a demo 2 times in the last 7 days, last 3 days ago").

Wording is vectorised: a feature's value is described once per distinct value, not once per lead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from features.catalog import FeatureSpec

SEPARATOR = "; "


def fallback_spec(name: str) -> FeatureSpec:
    """A spec for a feature the catalog does not know: its name, read as words."""
    return FeatureSpec(
        name=name, label=name.replace("_", " ") + ": {value}", sources=(), builder="?"
    )


def _ranked(
    contributions: np.ndarray, k: int, sign: int, min_log_odds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of each row's k largest contributions in direction ``sign``, and a mask of
    which of them are real reasons (the right sign and at least ``min_log_odds``)."""
    signed = sign * np.asarray(contributions, dtype=float)  # a copy: taken columns are erased
    n, k = signed.shape[0], min(k, signed.shape[1])
    top = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k))
    rows = np.arange(n)
    # k rounds of a row-wise argmax: faster than a partition for the few reasons said, already
    # in order, and ties go to the first column (the catalog's order) every time.
    for j in range(k):
        top[:, j] = signed.argmax(axis=1)
        values[:, j] = signed[rows, top[:, j]]
        signed[rows, top[:, j]] = -np.inf
    return top, values >= max(min_log_odds, np.finfo(float).tiny)


def _displayed(values: pd.Series) -> pd.Series:
    """Float values rounded as :meth:`FeatureSpec.describe` shows them (whole numbers from 10
    up, two significant digits below), so that each *shown* value is described once: a column
    of 100,000 distinct day counts reads as a few hundred phrases."""
    if not pd.api.types.is_float_dtype(values.dtype):
        return values
    v = values.to_numpy(dtype=float)
    out = v.copy()
    size = np.abs(v)
    small = np.isfinite(v) & (size < 10) & (size > 0)
    step = 10.0 ** (np.floor(np.log10(size[small])) - 1)
    out[small] = np.round(v[small] / step) * step
    large = np.isfinite(v) & (size >= 10)
    out[large] = np.round(v[large])
    return pd.Series(out, index=values.index)


def _words(
    features: pd.DataFrame,
    names: Sequence[str],
    specs: Mapping[str, FeatureSpec],
    rows: np.ndarray,
    cols: np.ndarray,
    clause: bool = False,
) -> np.ndarray:
    """The described value of feature ``cols[i]`` for row ``rows[i]``, for every i (``clause``:
    its short clause instead, None where it has none or no value)."""
    out = np.empty(len(rows), dtype=object)
    order = np.argsort(cols, kind="stable")
    bounds = np.flatnonzero(np.diff(cols[order])) + 1
    for pick in np.split(order, bounds) if len(order) else ():
        name = names[cols[pick[0]]]
        spec = specs.get(name) or fallback_spec(name)
        say = spec.describe_clause if clause else spec.describe
        values = _displayed(features[name].iloc[rows[pick]])
        # Describe each distinct shown value once; missing values are one "unknown" group.
        codes, distinct = pd.factorize(values, use_na_sentinel=True)
        said = np.array([say(v) for v in distinct] + [say(None)], dtype=object)
        out[pick] = said[codes]  # code -1 (missing) picks the last entry
    return out


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class FeatureGroups:
    """Which group each feature's contribution is summed into (:attr:`FeatureSpec.group_key`,
    in order of first appearance), and each group's clause member (-1: none)."""

    keys: tuple[str, ...]
    titles: tuple[str, ...]
    member_of: np.ndarray  # per feature: its group's index
    clause_member: np.ndarray  # per group: the feature whose clause its reason adds, or -1

    @classmethod
    def of(cls, names: Sequence[str], specs: Mapping[str, FeatureSpec]) -> FeatureGroups:
        """The groups of ``names`` as ``specs`` declare them (a name without a spec: alone)."""
        keys: dict[str, int] = {}
        titles: list[str] = []
        member_of = np.empty(len(names), dtype=np.int64)
        clause_member: list[int] = []
        for i, name in enumerate(names):
            spec = specs.get(name) or fallback_spec(name)
            key = spec.group_key
            if key not in keys:
                keys[key] = len(keys)
                titles.append(spec.group_title if spec.group else spec.title)
                clause_member.append(-1)
            member_of[i] = keys[key]
            if spec.clause is not None and clause_member[keys[key]] < 0:
                clause_member[keys[key]] = i
        return cls(tuple(keys), tuple(titles), member_of, np.array(clause_member, np.int64))

    @cached_property
    def members(self) -> list[np.ndarray]:
        """Each group's features (column indices), in column order."""
        order = np.argsort(self.member_of, kind="stable")
        bounds = np.flatnonzero(np.diff(self.member_of[order])) + 1
        return np.split(order, bounds) if len(order) else []

    @cached_property
    def first_member(self) -> np.ndarray:
        """Each group's first feature (its only one, for a group of one)."""
        return np.array([m[0] for m in self.members], dtype=np.int64)

    @cached_property
    def multi_member(self) -> list[int]:
        """The groups with more than one feature."""
        return [g for g, m in enumerate(self.members) if len(m) > 1]

    def sum(self, contributions: np.ndarray) -> np.ndarray:
        """Per row, each group's summed contribution (rows x groups)."""
        contributions = np.asarray(contributions, dtype=float)[:, : len(self.member_of)]
        # Each group's first member's column, plus the rest of the larger groups: a few column
        # additions, three times faster than a product with the 0/1 indicator on 100k rows.
        out = np.ascontiguousarray(contributions[:, self.first_member])  # rows contiguous
        for g in self.multi_member:
            out[:, g] += contributions[:, self.members[g][1:]].sum(axis=1)
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
    ``features``: the rows' feature values (same row order, columns include ``names``). Ranked
    by group (see the module doc); a group whose summed contribution is below ``min_log_odds``
    is not a reason.
    """
    contributions = np.asarray(contributions, dtype=float)[:, : len(names)]
    if len(contributions) != len(features):
        raise ValueError(
            f"{len(contributions)} rows of contributions for {len(features)} rows of features"
        )
    groups = FeatureGroups.of(names, specs)
    grouped = groups.sum(contributions)
    result = {}
    n = len(features)
    for column, sign in (("reasons_for", 1), ("reasons_against", -1)):
        text = np.full(n, "", dtype=object)
        if n and len(names):
            top, real = _ranked(grouped, k, sign, min_log_odds)
            rows, ranks = np.nonzero(real)  # every reason of every row, row by row
            said = group_words(contributions, features, names, specs, groups, rows,
                               top[rows, ranks], sign)  # fmt: skip
            for rank in range(top.shape[1]):
                at = ranks == rank
                r = rows[at]
                text[r] = said[at] if rank == 0 else text[r] + SEPARATOR + said[at]
        result[column] = text
    return pd.DataFrame(result, index=features.index)


def group_words(
    contributions: np.ndarray,
    features: pd.DataFrame,
    names: Sequence[str],
    specs: Mapping[str, FeatureSpec],
    groups: FeatureGroups,
    rows: np.ndarray,
    chosen: np.ndarray,
    sign: int,
) -> np.ndarray:
    """Group ``chosen[i]`` of row ``rows[i]`` in words: its strongest member in direction
    ``sign``, then the group's clause member's clause if that is another member."""
    contributions = np.asarray(contributions, dtype=float)
    # A group of one speaks with its only member; larger groups pick theirs, group by group, on
    # the rows that chose them only (a few columns each, never the whole matrix).
    strongest = groups.first_member[chosen]
    for g in groups.multi_member:
        at = np.flatnonzero(chosen == g)
        if len(at):
            members = groups.members[g]
            signed = sign * contributions[rows[at][:, None], members[None, :]]
            strongest[at] = members[np.argmax(signed, axis=1)]
    said = _words(features, names, specs, rows, strongest)
    extra = groups.clause_member[chosen]
    add = np.flatnonzero((extra >= 0) & (extra != strongest))
    if len(add):
        clauses = _words(features, names, specs, rows[add], extra[add], clause=True)
        has = np.array([c is not None for c in clauses], dtype=bool)
        said[add[has]] = said[add[has]] + ", " + clauses[has].astype(object)
    return said
