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
    clause: bool = False,
) -> np.ndarray:
    """The described value of feature ``cols[i]`` for row ``rows[i]``, for every i (``clause``:
    its short clause instead, None where it has none or no value)."""
    out = np.empty(len(rows), dtype=object)
    for col in np.unique(cols):
        pick = cols == col
        name = names[col]
        spec = specs.get(name) or fallback_spec(name)
        say = spec.describe_clause if clause else spec.describe
        values = features[name].iloc[rows[pick]]
        # Describe each distinct value once; missing values are one "unknown" group.
        codes, distinct = pd.factorize(values, use_na_sentinel=True)
        said = np.array([say(v) for v in distinct] + [say(None)], dtype=object)
        out[pick] = said[codes]  # code -1 (missing) picks the last entry
    return out


@dataclass(frozen=True)
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

    def indicator(self) -> np.ndarray:
        """features x groups, 1 where a feature belongs to a group: ``contributions @ it``
        sums each group's contributions."""
        out = np.zeros((len(self.member_of), len(self.keys)))
        out[np.arange(len(self.member_of)), self.member_of] = 1.0
        return out

    def sum(self, contributions: np.ndarray) -> np.ndarray:
        """Per row, each group's summed contribution (rows x groups)."""
        return np.asarray(contributions, dtype=float)[:, : len(self.member_of)] @ self.indicator()


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
            for rank in range(top.shape[1]):
                rows = np.flatnonzero(real[:, rank])
                if not len(rows):
                    continue
                said = group_words(contributions, features, names, specs, groups, rows,
                                    top[rows, rank], sign)  # fmt: skip
                joined = np.where(text[rows] == "", said, text[rows] + SEPARATOR + said)
                text[rows] = joined
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
    signed = sign * contributions[rows]
    signed[groups.member_of[None, :] != chosen[:, None]] = -np.inf
    strongest = np.argmax(signed, axis=1)
    said = _words(features, names, specs, rows, strongest)
    extra = groups.clause_member[chosen]
    add = np.flatnonzero((extra >= 0) & (extra != strongest))
    if len(add):
        clauses = _words(features, names, specs, rows[add], extra[add], clause=True)
        has = np.array([c is not None for c in clauses], dtype=bool)
        said[add[has]] = said[add[has]] + ", " + clauses[has].astype(object)
    return said
