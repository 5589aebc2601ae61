"""Leakage alarm: a feature that tells the outcome too well is a field written after it.

A CRM export mixes what was known when a lead was scored with what sales wrote later: a "lead
quality" a rep sets after the call, firmographics filled in only for won deals, an outcome flag
in a lead field, an all-time touch count, a call duration known once the call happened. Each
passes validation and every feature builder, and a model trained on it looks excellent and is
useless. The alarm looks at each feature **alone, out of time**, before anything is fitted:

- a target-rate encoding fitted on the training split (numbers: quantile bins of the training
  values; categories: each level's rate, smoothed toward the base rate; missing as a level of
  its own) scores the **validation** split, and its ROC AUC there is the feature's power alone;
- the share of converted and of other leads for which the feature is present says how it looks
  ("filled for 99% of converted leads, 2% of the others").

A feature is named when its AUC alone reaches ``max_auc``, or when it stands ``far_above`` every
other feature (from ``min_auc_far`` up): honest lead data has many weak signals and no single
field that knows the answer. On a small validation split chance alone moves an AUC: both rules
need the AUC two standard errors down (Hanley and McNeil) still at ``min_auc_far``. ``allow`` lists the features a user has checked and keeps. All
computations are vectorised per feature over binned counts (no per-row Python).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Columns of :func:`single_feature_scan`'s frame.
SCAN_COLUMNS = (
    "feature",
    "auc",
    "missing_auc",
    "present_converted",
    "present_other",
    "levels",
    "se",
    "won_leads",
)


class LeakageError(ValueError):
    """Training refused: a feature looks known only after the outcome."""


@dataclass(frozen=True)
class LeakageRules:
    """When a feature alone is too good (params.yaml ``train.leakage``)."""

    #: a feature whose out-of-time AUC alone reaches this is named
    max_auc: float = 0.9
    #: ... or one whose AUC is this much above every other feature's
    far_above: float = 0.1
    #: ... from this AUC up (two weak features apart are no leak)
    min_auc_far: float = 0.75
    #: a feature alone at or above this is named in a warning (training goes on)
    warn_auc: float = 0.8
    #: the whole model's validation AUC at or above this stops training: too good to be true
    max_model_auc: float = 0.95
    #: quantile bins of a number's training values
    bins: int = 20
    #: pseudo-rows pulling each level's or bin's rate toward the base rate
    smoothing: float = 20.0
    #: features checked by the user and kept whatever they score
    allow: tuple[str, ...] = ()
    #: a verdict that stops training needs this many won leads in validation: with fewer, an
    #: honest strong signal and a leak look alike (five wins can all sit in a feature's top
    #: bin by chance), so what would stop training is a warning
    min_won_leads: int = 20


def _codes(train: pd.Series, valid: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of the train and validation values on the training split's levels or
    quantile bins; -1 for missing. Returns (train codes, validation codes, number of codes)."""
    if isinstance(train.dtype, pd.CategoricalDtype):
        levels = train.cat.categories
        if isinstance(valid.dtype, pd.CategoricalDtype) and valid.cat.categories.equals(levels):
            valid_codes = valid.cat.codes.to_numpy()  # the grouper gives both splits one dtype
        else:  # a level the training split never saw is unknown: missing's slot, not a guess
            valid_codes = levels.get_indexer(valid.astype(object))
        return train.cat.codes.to_numpy(np.int64), valid_codes.astype(np.int64), len(levels)
    numbers_train = pd.to_numeric(train.astype("float64"), errors="coerce").to_numpy()
    numbers_valid = pd.to_numeric(valid.astype("float64"), errors="coerce").to_numpy()
    present = numbers_train[~np.isnan(numbers_train)]
    if not len(present):
        return np.full(len(train), -1), np.full(len(valid), -1), 0
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))

    def code(values: np.ndarray) -> np.ndarray:
        out = np.searchsorted(edges, values, side="right").astype(np.int64)
        return np.where(np.isnan(values), -1, out)

    return code(numbers_train), code(numbers_valid), len(edges) + 1


def _auc_from_counts(score: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of a score that takes few values, from positives and negatives per value
    (ties count one half): the Mann-Whitney statistic over grouped counts."""
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    score, pos, neg = score[order], pos[order], neg[order]
    # Merge equal scores into one group (ties), then count negatives strictly below each group.
    _, start = np.unique(score, return_index=True)
    pos_g = np.add.reduceat(pos, start)
    neg_g = np.add.reduceat(neg, start)
    below = np.concatenate([[0], np.cumsum(neg_g)[:-1]])
    return float((pos_g * (below + 0.5 * neg_g)).sum() / (total_pos * total_neg))


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Standard error of a ROC AUC (Hanley and McNeil, 1982): how far chance alone moves it
    with this many positives and negatives."""
    if positives < 1 or negatives < 1 or not np.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def _feature_auc(
    train: pd.Series, y_train: np.ndarray, valid: pd.Series, y_valid: np.ndarray, rules
) -> tuple[float, int]:
    """Validation AUC of the training split's target-rate encoding of one feature."""
    code_train, code_valid, n = _codes(train, valid, rules.bins)
    slots = n + 1  # slot 0: missing; slot k + 1: code k
    rows = np.bincount(code_train + 1, minlength=slots)
    wins = np.bincount(code_train + 1, weights=y_train, minlength=slots)
    base = y_train.mean()
    rate = (wins + rules.smoothing * base) / (rows + rules.smoothing)
    slot_valid = code_valid + 1
    pos = np.bincount(slot_valid, weights=y_valid, minlength=slots)
    neg = np.bincount(slot_valid, weights=1 - y_valid, minlength=slots)
    return _auc_from_counts(rate, pos, neg), n


def single_feature_scan(
    x_train: pd.DataFrame,
    y_train: Sequence[int],
    x_valid: pd.DataFrame,
    y_valid: Sequence[int],
    rules: LeakageRules = LeakageRules(),
    groups: Sequence | None = None,
) -> pd.DataFrame:
    """Each feature alone, out of time: the validation AUC of its target-rate encoding fitted
    on the training split, the AUC of "is missing" alone, and the share of converted and of
    other validation rows where it is present. Sorted by AUC, strongest first.

    ``groups``: the lead of each validation row. A lead's rows are not independent (one won
    lead gives several positive rows), so the standard error that guards against chance counts
    won leads and other leads, not rows: four positive rows of two leads are two positives.
    """
    y_train = np.asarray(y_train, dtype=float)
    y_valid = np.asarray(y_valid, dtype=float)
    converted = y_valid == 1
    n_pos, n_neg = int(converted.sum()), int((~converted).sum())
    if groups is not None:
        won = pd.Series(converted).groupby(np.asarray(groups)).any()
        n_pos, n_neg = int(won.sum()), int((~won).sum())
    rows = []
    for name in x_train.columns:
        auc, levels = _feature_auc(x_train[name], y_train, x_valid[name], y_valid, rules)
        missing = x_valid[name].isna().to_numpy()
        missing_auc = _auc_from_counts(
            np.array([0.0, 1.0]),
            np.array([(~missing & converted).sum(), (missing & converted).sum()], dtype=float),
            np.array([(~missing & ~converted).sum(), (missing & ~converted).sum()], dtype=float),
        )
        rows.append(
            {
                "feature": name,
                "auc": auc,
                "missing_auc": missing_auc,
                "present_converted": float((~missing[converted]).mean())
                if converted.any()
                else np.nan,
                "present_other": float((~missing[~converted]).mean())
                if (~converted).any()
                else np.nan,
                "levels": levels,
                "se": auc_standard_error(auc, n_pos, n_neg),
                "won_leads": n_pos,
            }
        )
    scan = pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
    return scan.sort_values("auc", ascending=False, na_position="last", ignore_index=True)


def suspects(scan: pd.DataFrame, rules: LeakageRules = LeakageRules()) -> pd.DataFrame:
    """The rows of ``scan`` that look known only after the outcome, with a ``why`` column:
    AUC alone at or above ``max_auc``, or far above every other feature. Allowed features are
    never named (and do not count as "every other feature" either: the user vouched for them)."""
    checked = scan[~scan["feature"].isin(rules.allow)].dropna(subset=["auc"])
    checked = checked.sort_values("auc", ascending=False, ignore_index=True)
    # Chance alone: on a small validation split a weak feature can score high. Both rules need
    # the AUC two standard errors down to stay at or above min_auc_far, and a gap wider than
    # two standard errors.
    se = checked["se"].fillna(0.0) if "se" in checked else pd.Series(0.0, index=checked.index)
    sure = checked["auc"] - 2 * se >= rules.min_auc_far
    if "won_leads" in checked:
        sure &= checked["won_leads"] >= rules.min_won_leads
    why = pd.Series("", index=checked.index, dtype=object)
    high = (checked["auc"] >= rules.max_auc) & sure
    why[high] = f"AUC alone at or above {rules.max_auc}"
    if len(checked) >= 2:
        top, second = checked["auc"].iloc[0], checked["auc"].iloc[1]
        gap = max(rules.far_above, 2 * se.iloc[0])
        if sure.iloc[0] and top - second >= gap and not high.iloc[0]:
            why.iloc[0] = f"{top - second:.2f} above every other feature (next best {second:.3f})"
    out = checked.assign(why=why)
    return out[out["why"] != ""].reset_index(drop=True)


def _looks(present_converted: float, present_other: float) -> str:
    """How a feature looks, in words: how often it is filled for converted leads and others."""
    return (
        f"filled for {present_converted:.0%} of converted leads, {present_other:.0%} of the others"
    )


def warnings_for(scan: pd.DataFrame, rules: LeakageRules = LeakageRules()) -> list[str]:
    """Lines naming the features strong enough alone to deserve a look (at or above
    ``warn_auc``) that the alarm does not stop on: worth checking that each is known when the
    lead is scored, never written after the outcome."""
    stopped = set(suspects(scan, rules)["feature"])
    strong = scan[
        (scan["auc"] >= rules.warn_auc)
        & ~scan["feature"].isin(stopped)
        & ~scan["feature"].isin(rules.allow)
    ]
    lines = [
        f"{r.feature}: AUC {r.auc:.3f} alone on validation (at or above {rules.warn_auc}); "
        f"{_looks(r.present_converted, r.present_other)}: check that it is known when a lead "
        "is scored"
        for r in strong.itertuples()
    ]
    few = _few_won_leads(scan, rules)
    if few is not None and len(strong):
        lines.append(
            f"only {few} won lead(s) in validation (train.leakage.min_won_leads "
            f"{rules.min_won_leads}): too few to tell a leak from a strong signal, so the alarm "
            "warns instead of stopping training"
        )
    return lines


def _few_won_leads(scan: pd.DataFrame, rules: LeakageRules) -> int | None:
    """The validation's won leads when they are too few for a verdict, else None."""
    if "won_leads" not in scan or scan.empty:
        return None
    won = int(scan["won_leads"].iloc[0])
    return won if won < rules.min_won_leads else None


def check_model(auc: float, scan: pd.DataFrame, rules: LeakageRules = LeakageRules()) -> str | None:
    """The whole model, too good to be true: raise :class:`LeakageError` at or above
    ``max_model_auc``; return a warning line at or above ``max_auc``; else None. Lead data is
    noisy (published lead-scoring models reach 0.75-0.9): a model far above that has usually
    found a field written after the outcome, spread over several features. A model no more
    than ``far_above`` above a feature listed in ``allow`` is explained by it: a warning."""
    strongest = ", ".join(f"{r.feature} {r.auc:.3f}" for r in scan.head(5).itertuples())
    line = (
        f"the model's ROC AUC on validation is {auc:.3f}: too good for lead data? its strongest "
        f"features alone: {strongest}"
    )
    allowed = scan[scan["feature"].isin(rules.allow)]
    # A feature the user checked and kept explains a model as strong as itself: a warning then,
    # unless the model stands far above it (a leak elsewhere).
    explained = not allowed.empty and auc < float(allowed["auc"].max()) + rules.far_above
    if auc >= rules.max_model_auc and not explained and _few_won_leads(scan, rules) is None:
        raise LeakageError(
            f"training stopped: {line}. Check that each is known when a lead is scored, then "
            "list the ones you keep under train.allow_features"
        )
    return line if auc >= rules.max_auc else None


def describe(row: pd.Series) -> str:
    """One line a data scientist can act on: the column, its AUC, how it looks."""
    looks = _looks(row["present_converted"], row["present_other"])
    hint = (
        "known only after the outcome?"
        if row["present_converted"] - row["present_other"] >= 0.3
        else "written after the outcome, or a copy of it?"
    )
    return f"{row['feature']}: AUC {row['auc']:.3f} alone on validation ({row['why']}); {looks}: {hint}"


def check_leakage(scan: pd.DataFrame, rules: LeakageRules = LeakageRules()) -> None:
    """Raise :class:`LeakageError` naming every suspect feature (one line), else return."""
    found = suspects(scan, rules)
    if len(found):
        named = "; ".join(describe(row) for _, row in found.iterrows())
        raise LeakageError(
            f"training stopped: {len(found)} feature(s) look known only after the outcome: "
            f"{named}. Fix the mapping (declare the field's knowledge time), or list the "
            "feature under train.allow_features if you have checked it"
        )
