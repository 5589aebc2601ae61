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

Cost. The nightly job and the registered model say reasons for every lead they score, so this
runs on every row and must cost little next to the contributions themselves:

- ranking is one compiled pass over the rows (:func:`_choose`, numba): each row's group sums,
  both directions' top ``k`` and each chosen group's strongest member, without a copy of the
  contribution matrix;
- words are said per distinct value, not per lead: a :class:`PhraseBook` describes each
  (feature, shown value) once and keeps it for the explainer's life (the job's batches, the
  registered model's calls); then each distinct (phrase, clause) pair and each distinct
  combination of a row's reasons is joined once, and the rows take theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
from numba import njit

from features.catalog import FeatureSpec

SEPARATOR = "; "
#: The columns :func:`top_reasons` returns.
REASON_COLUMNS = ("reasons_for", "reasons_against")


def fallback_spec(name: str) -> FeatureSpec:
    """A spec for a feature the catalog does not know: its name, read as words."""
    return FeatureSpec(
        name=name, label=name.replace("_", " ") + ": {value}", sources=(), builder="?"
    )


def _displayed(values: np.ndarray) -> np.ndarray:
    """Float values rounded as :meth:`FeatureSpec.describe` shows them (whole numbers from 10
    up, two significant digits below), so that each *shown* value is described once: a column
    of 100,000 distinct day counts reads as a few hundred phrases."""
    if values.dtype.kind != "f":
        return values
    v = values.astype(float, copy=False)
    out = v.copy()
    size = np.abs(v)
    small = np.isfinite(v) & (size < 10) & (size > 0)
    step = 10.0 ** (np.floor(np.log10(size[small])) - 1)
    out[small] = np.round(v[small] / step) * step
    large = np.isfinite(v) & (size >= 10)
    out[large] = np.round(v[large])
    out[out == 0] = 0.0  # -0.0 would read "-0"
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

    @cached_property
    def member_ptr(self) -> np.ndarray:
        """Group ``g``'s features are ``member_idx[member_ptr[g]:member_ptr[g + 1]]``."""
        return np.concatenate([[0], np.cumsum([len(m) for m in self.members])]).astype(np.int64)

    @cached_property
    def member_idx(self) -> np.ndarray:
        """Every group's features (column indices), group after group, in column order."""
        return np.concatenate(self.members or [np.empty(0, np.int64)]).astype(np.int64)

    def sum(self, contributions: np.ndarray) -> np.ndarray:
        """Per row, each group's summed contribution (rows x groups)."""
        contributions = np.asarray(contributions, dtype=float)[:, : len(self.member_of)]
        # Each group's first member's column, plus the rest of the larger groups: a few column
        # additions, three times faster than a product with the 0/1 indicator on 100k rows.
        out = np.ascontiguousarray(contributions[:, self.first_member])  # rows contiguous
        for g in self.multi_member:
            out[:, g] += contributions[:, self.members[g][1:]].sum(axis=1)
        return out


@njit(cache=True, inline="always")
def _strongest(contributions, row, g, ptr, idx, sign):  # pragma: no cover - compiled
    """Group ``g``'s member that pushes hardest in direction ``sign`` in ``row`` (the first of
    equals: catalog order)."""
    best, best_value = idx[ptr[g]], -np.inf
    for j in range(ptr[g], ptr[g + 1]):
        value = sign * contributions[row, idx[j]]
        if value > best_value:
            best, best_value = idx[j], value
    return best


@njit(cache=True, inline="always")
def _insert(top, values, d, count, g, value):  # pragma: no cover - compiled
    """Put group ``g`` into direction ``d``'s ranked ``top`` (``count`` filled, best first) if
    ``value`` beats a kept one; a later group never passes an equal one (ties: catalog order)."""
    k = top.shape[1]
    if count == k and not value > values[d, k - 1]:
        return count
    at = min(count, k - 1)
    while at > 0 and value > values[d, at - 1]:
        top[d, at], values[d, at] = top[d, at - 1], values[d, at - 1]
        at -= 1
    top[d, at], values[d, at] = g, value
    return min(count + 1, k)


@njit(cache=True)
def _choose(contributions, ptr, idx, k, floor):  # pragma: no cover - compiled
    """Every reason of every row: per direction (0: for, 1: against), how many each row has
    (``counts``, n) and, row by row and rank by rank, the row, the chosen group and its
    strongest member (flat arrays). Groups are ranked by their summed contribution in the
    direction's sign, largest first (the first of equals on ties); a group is a reason while
    that is at least ``floor``.

    One pass over the rows: each row's contributions are read once, its group sums stay in
    cache, and both directions' top ``k`` are kept as they are summed (numpy would take ``k``
    passes over the whole matrix per direction)."""
    n, n_groups = contributions.shape[0], len(ptr) - 1
    k = max(0, min(k, n_groups))
    counts = np.zeros((2, n), dtype=np.int64)
    rows = np.empty((2, n * k), dtype=np.int64)
    group = np.empty((2, n * k), dtype=np.int64)
    member = np.empty((2, n * k), dtype=np.int64)
    filled = np.zeros(2, dtype=np.int64)
    top = np.empty((2, k), dtype=np.int64)
    values = np.empty((2, k))
    for i in range(n if k > 0 else 0):
        kept_for, kept_against = 0, 0
        for g in range(n_groups):
            rest = 0.0  # the first member plus the others' sum: FeatureGroups.sum's order
            for j in range(ptr[g] + 1, ptr[g + 1]):
                rest += contributions[i, idx[j]]
            total = contributions[i, idx[ptr[g]]] + rest
            if total != total:  # NaN: no reason either way (it would block the ranking)
                continue
            kept_for = _insert(top, values, 0, kept_for, g, total)
            kept_against = _insert(top, values, 1, kept_against, g, -total)
        for d in range(2):
            sign = 1.0 - 2.0 * d
            for r in range(kept_for if d == 0 else kept_against):  # < k with NaN groups
                if not values[d, r] >= floor:  # ranked: no later one is a reason either
                    break
                at = filled[d]
                rows[d, at], group[d, at] = i, top[d, r]
                member[d, at] = _strongest(contributions, i, top[d, r], ptr, idx, sign)
                filled[d] = at + 1
                counts[d, i] += 1
    return counts, filled, rows, group, member


@njit(cache=True)
def _strongest_of(contributions, rows, groups, ptr, idx, sign):  # pragma: no cover - compiled
    """:func:`_strongest` of group ``groups[i]`` in row ``rows[i]``, for every i."""
    out = np.empty(len(rows), dtype=np.int32)
    for i in range(len(rows)):
        out[i] = _strongest(contributions, rows[i], groups[i], ptr, idx, sign)
    return out


def top_groups(
    contributions: np.ndarray, groups: FeatureGroups, k: int = 3, min_log_odds: float = 0.01
) -> np.ndarray:
    """Each row's reasons as group indices: (2, rows, k), for (0) and against (1), best first,
    -1 past the last reason (the ranking :func:`top_reasons` says in words)."""
    contributions = np.ascontiguousarray(contributions, dtype=float)
    floor = max(min_log_odds, np.finfo(float).tiny)
    counts, filled, rows, group, _ = _choose(
        contributions, groups.member_ptr, groups.member_idx, k, floor
    )
    out = np.full((2, len(contributions), max(0, min(k, len(groups.keys)))), -1, dtype=np.int64)
    for d in range(2):
        start = np.cumsum(counts[d]) - counts[d]
        r = rows[d, : filled[d]]
        out[d, r, np.arange(filled[d]) - start[r]] = group[d, : filled[d]]
    return out


class PhraseBook:
    """Each (feature, shown value, label or clause) said once, with a lasting id into
    :attr:`texts` (None: a clause the feature does not say).

    One book per model's features: the nightly job's batches, the registered model's calls and
    the analyst's views describe a value the first time it is met and look it up after. It keeps
    at most ``max_phrases`` (a memory bound for free-text fields whose values never repeat);
    a call that would pass it starts a new book.
    """

    def __init__(
        self,
        names: Sequence[str],
        specs: Mapping[str, FeatureSpec],
        max_phrases: int = 200_000,
    ):
        self.names, self.specs, self.max_phrases = list(names), specs, max_phrases
        said = [specs.get(n) or fallback_spec(n) for n in self.names]
        self._say = [(spec.describe, spec.describe_clause) for spec in said]
        self.clear()

    def clear(self) -> None:
        """Forget every phrase."""
        self.texts: list[str | None] = []
        self._known: dict[tuple[int, bool, object], int] = {}
        self._table, self._says = np.empty(0, dtype=object), np.empty(0, dtype=bool)

    def bounded(self) -> PhraseBook:
        """This book, emptied first if it holds more than ``max_phrases``: called once at the
        start of a call, so that the ids of one call stay valid to its end."""
        if len(self.texts) > self.max_phrases:
            self.clear()
        return self

    def _id(self, col: int, clause: bool, value: object) -> int:
        key = (col, clause, type(value), value)  # True, 1 and 1.0 are equal keys otherwise
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = len(self.texts)
            self.texts.append(self._say[col][clause](value))
        return found

    def ids(
        self, features: pd.DataFrame, rows: np.ndarray, cols: np.ndarray, clause: bool = False
    ) -> np.ndarray:
        """The id of feature ``cols[i]`` said with its value in row ``rows[i]`` of ``features``
        (its label filled in; ``clause``: its clause)."""
        out = np.empty(len(rows), dtype=np.int64)
        # Requests by feature (a radix sort of small integers), then per feature each distinct
        # shown value looked up once: a few hundred phrases for 100,000 leads.
        order = np.argsort(
            cols.astype(np.int16 if len(self.names) < 2**15 else np.int64), kind="stable"
        )
        bounds = np.flatnonzero(np.diff(cols[order])) + 1
        for pick in np.split(order, bounds) if len(order) else ():
            col = int(cols[pick[0]])
            values = features[self.names[col]].array.take(rows[pick])
            if values.dtype.kind == "f":
                values = _displayed(values.to_numpy(dtype=float, na_value=np.nan))
            # missing values are one "unknown" phrase: code -1 picks the last one
            codes, distinct = pd.factorize(values, use_na_sentinel=True)
            known = [self._id(col, clause, v) for v in np.asarray(distinct, dtype=object)]
            known.append(self._id(col, clause, None))  # Python scalars above: one key per value
            out[pick] = np.array(known, dtype=np.int64)[codes]
        return out

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """:attr:`texts` as an object array with a None at the end (for id -1), and which of
        them say something."""
        if len(self._table) != len(self.texts) + 1:
            self._table = np.array(self.texts + [None], dtype=object)
            self._says = np.array([t is not None for t in self._table], dtype=bool)
        return self._table, self._says


def _reason_ids(
    phrases: PhraseBook,
    features: pd.DataFrame,
    groups: FeatureGroups,
    rows: np.ndarray,
    chosen: np.ndarray,
    strongest: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Phrase ids of each reason (group ``chosen[i]`` said by member ``strongest[i]`` in row
    ``rows[i]``) and of its clause (the group's clause member's, if that is another member and
    says one; else -1)."""
    said = phrases.ids(features, rows, strongest)
    extra = groups.clause_member[chosen]
    add = np.flatnonzero((extra >= 0) & (extra != strongest))
    clauses = np.full(len(rows), -1, dtype=np.int64)
    clauses[add] = phrases.ids(features, rows[add], extra[add], clause=True)
    return said, clauses


def _joined(phrases: PhraseBook, said: np.ndarray, clauses: np.ndarray) -> np.ndarray:
    """Each reason in words: its phrase, then ", " and its clause where it has one."""
    table, says = phrases.table()
    out = table[said]
    has = np.flatnonzero(says[clauses])  # id -1 (no clause) reads the last entry: False
    out[has] = out[has] + ", " + table[clauses[has]]
    return out


def _combinations(ids: np.ndarray, start: np.ndarray, count: np.ndarray, n_ids: int) -> np.ndarray:
    """Per row, a dense code of its sequence of ids (row ``i``: ``ids[start[i]:][:count[i]]``,
    each id < ``n_ids``): equal codes for equal sequences only."""
    n, longest = len(count), int(count.max()) if len(count) else 0
    # One integer key per row in base n_ids + 1 (0: no id at this rank), factorized once; where
    # the key would not fit 64 bits, it is made dense (< n) after each rank instead.
    key, dense = np.zeros(n, dtype=np.int64), (n_ids + 1) ** longest >= 2**63
    for r in range(longest):
        step = np.zeros(n, dtype=np.int64)
        has = np.flatnonzero(count > r)
        step[has] = ids[start[has] + r] + 1
        key = key * (n_ids + 1) + step
        if dense:
            key = pd.factorize(key)[0]
    return pd.factorize(key)[0]


def top_reasons(
    contributions: np.ndarray,
    features: pd.DataFrame,
    names: Sequence[str],
    specs: Mapping[str, FeatureSpec],
    k: int = 3,
    min_log_odds: float = 0.01,
    groups: FeatureGroups | None = None,
    phrases: PhraseBook | None = None,
) -> pd.DataFrame:
    """``reasons_for`` and ``reasons_against`` per row: up to ``k`` phrases each, joined by "; ".

    ``contributions``: n_rows x len(names) (a trailing expected-value column is ignored);
    ``features``: the rows' feature values (same row order, columns include ``names``). Ranked
    by group (see the module doc); a group whose summed contribution is below ``min_log_odds``
    is not a reason. ``groups`` and ``phrases``: the names' groups and phrase book, if the caller
    keeps them (:class:`models.explain.LeadExplainer` does).
    """
    contributions = np.ascontiguousarray(contributions, dtype=float)
    n = len(features)
    if len(contributions) != n:
        raise ValueError(f"{len(contributions)} rows of contributions for {n} rows of features")
    if contributions.ndim != 2 or contributions.shape[1] < len(names):
        raise ValueError(
            f"contributions have {contributions.shape[1:]} columns for {len(names)} features"
        )
    groups = groups or FeatureGroups.of(names, specs)
    result = {c: pd.Series("", index=features.index, dtype="str") for c in REASON_COLUMNS}
    if not n or not len(names) or k < 1:
        return pd.DataFrame(result)
    floor = max(min_log_odds, np.finfo(float).tiny)  # 0 is no reason either way
    counts, filled, rows, group, member = _choose(
        contributions, groups.member_ptr, groups.member_idx, k, floor
    )
    ends = np.cumsum(filled)  # the reasons for, then the reasons against, row by row
    flat = [np.concatenate([a[0, : filled[0]], a[1, : filled[1]]]) for a in (rows, group, member)]
    phrases = (phrases or PhraseBook(names, specs)).bounded()
    said, clauses = _reason_ids(phrases, features, groups, *flat)
    # A reason is a (phrase, clause) pair, and a row's reasons one way a combination of them:
    # both are few next to the rows (the same words recur across leads), so each distinct pair
    # and each distinct combination is put into words once, and the rows take theirs.
    width = len(phrases.texts) + 1
    reason, pairs = pd.factorize(said * width + clauses + 1)
    words = _joined(phrases, pairs // width, pairs % width - 1)
    for d, column in enumerate(REASON_COLUMNS):
        ids, count = reason[ends[d] - filled[d] : ends[d]], counts[d]
        start = np.cumsum(count) - count  # each row's first reason in ``ids``
        combination = _combinations(ids, start, count, len(pairs))
        first = np.empty(combination.max() + 1, dtype=np.int64)
        first[combination[::-1]] = np.arange(n)[::-1]  # each combination's first row
        text = np.full(len(first), "", dtype=object)
        for m in range(1, int(count.max()) + 1):
            some = np.flatnonzero(count[first] == m)
            said_r = [words[ids[start[first[some]] + r]] for r in range(m)]
            text[some] = [SEPARATOR.join(t) for t in zip(*said_r, strict=True)]
        taken = pa.array(text, pa.string()).take(pa.array(combination))
        result[column] = pd.Series(pd.array(taken, dtype="str"), index=features.index)
    return pd.DataFrame(result)


def group_words(
    contributions: np.ndarray,
    features: pd.DataFrame,
    names: Sequence[str],
    specs: Mapping[str, FeatureSpec],
    groups: FeatureGroups,
    rows: np.ndarray,
    chosen: np.ndarray,
    sign: int,
    phrases: PhraseBook | None = None,
) -> np.ndarray:
    """Group ``chosen[i]`` of row ``rows[i]`` in words: its strongest member in direction
    ``sign``, then the group's clause member's clause if that is another member."""
    contributions = np.ascontiguousarray(contributions, dtype=float)
    rows, chosen = np.asarray(rows, dtype=np.int64), np.asarray(chosen, dtype=np.int64)
    strongest = _strongest_of(
        contributions, rows, chosen, groups.member_ptr, groups.member_idx, float(sign)
    ).astype(np.int64)
    phrases = (phrases or PhraseBook(names, specs)).bounded()
    said, clauses = _reason_ids(phrases, features, groups, rows, chosen, strongest)
    return _joined(phrases, said, clauses)
