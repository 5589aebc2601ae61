"""A rules-only model for a CRM with too little history to learn from (cold start).

Marketing teams score leads with points long before they have outcomes: so many points for a
decision maker's seniority, for a company in the target industry, for each demo request or for
a high engagement score (itself decayed points per activity, ``features.behavioral``). The
rules come from params.yaml ``rules``:

- ``levels``: points per value of a category feature (``seniority: {c_level: 15, vp: 12}``);
- ``above``: points when a number exceeds a threshold, each step adding its own
  (``engagement_score: [[5, 5], [15, 10]]``: 5 points above 5, 15 above 15).

They are **compiled into a LightGBM booster** (one stump per rule step: an additive model is a
sum of stumps), so that a rules-only model is scored, explained (its SHAP contributions are its
points against the average lead's), registered, written back and challenged exactly like a
trained one, with no second code path. Missing values and unseen categories earn no points.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipelines.params import check_known

log = logging.getLogger(__name__)

#: The booster's raw score per point. Its probability is the sigmoid of the raw score, which the
#: calibrator maps: at one unit a point, 40 points already read as 1.0 and ties the best leads;
#: at a hundredth, 100 points are 0.73 and every step still ranks.
POINT = 0.01
#: LightGBM reads a number this close to zero as zero (kZeroThreshold).
ZERO = 1e-35
#: LightGBM decision types: numeric, NaN goes left (no points); categorical, NaN goes right.
_NUMERIC, _CATEGORICAL = 2 | (2 << 2), 1 | (2 << 2)


@dataclass(frozen=True)
class RuleStep:
    """One stump: ``points`` for rows whose ``feature`` is in ``levels`` (a category) or above
    ``threshold`` (a number)."""

    feature: str
    points: float
    levels: tuple[str, ...] = ()
    threshold: float | None = None

    def hits(self, column: pd.Series) -> np.ndarray:
        """Per row: does the step give its points?"""
        if self.threshold is None:
            return column.astype("object").isin(self.levels).to_numpy()
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        # As LightGBM reads a number: within 1e-35 of zero is zero.
        values = np.where(np.abs(values) < ZERO, 0.0, values)
        return np.nan_to_num(values, nan=-np.inf) > self.threshold


def rule_steps(settings: Mapping[str, Any]) -> list[RuleStep]:
    """The steps of params.yaml ``rules`` (``levels`` and ``above``), one-line errors for a
    malformed rule."""
    check_known("rules", settings, ("levels", "above"))
    steps = []
    for feature, table in (settings.get("levels") or {}).items():
        if not isinstance(table, Mapping):
            raise ValueError(f"rules.levels.{feature} must map values to points, got {table!r}")
        by_points: dict[float, list[str]] = {}
        for value, points in table.items():
            by_points.setdefault(float(points), []).append(str(value))
        steps += [RuleStep(feature, p, tuple(v)) for p, v in by_points.items() if p != 0]
    for feature, pairs in (settings.get("above") or {}).items():
        for pair in pairs or []:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(
                    f"rules.above.{feature} takes [threshold, points] pairs, got {pair!r}"
                )
            if float(pair[1]) != 0:
                steps.append(RuleStep(feature, float(pair[1]), threshold=float(pair[0])))
    if not steps:
        raise ValueError("params.yaml rules gives no points: a rules-only model needs some")
    return steps


def rule_points(steps: list[RuleStep], x: pd.DataFrame) -> np.ndarray:
    """Each row's points, summed rule by rule (the reference the compiled booster must equal)."""
    total = np.zeros(len(x))
    for step in steps:
        total += step.points * step.hits(x[step.feature])
    return total


def _stump(i: int, feature: int, step: RuleStep, x: pd.DataFrame) -> str:
    """One tree of the model text: left leaf 0 points, right leaf the step's points (numbers:
    above the threshold goes right; categories: the listed levels go left, so their leaf is
    the left one). Leaf counts are the training rows in each (plus one), so that contributions
    are points against about the average row."""
    hit = step.hits(x[step.feature])
    # Plus one each: a leaf no training row reaches still has a weight (SHAP divides by it).
    n_hit, n_miss = int(hit.sum()) + 1, int((~hit).sum()) + 1
    if step.threshold is None:
        codes = [x[step.feature].cat.categories.get_loc(v) for v in step.levels]
        words = np.zeros(max(codes) // 32 + 1, dtype=np.uint64)
        for code in codes:
            words[code // 32] |= np.uint64(1) << np.uint64(code % 32)
        split = (
            f"num_cat=1\nsplit_feature={feature}\nsplit_gain=1\nthreshold=0\n"
            f"decision_type={_CATEGORICAL}\n"
        )
        leaves, counts = f"{step.points * POINT:.17g} 0", f"{n_hit} {n_miss}"
        tail = (
            f"cat_boundaries=0 {len(words)}\ncat_threshold={' '.join(str(int(w)) for w in words)}\n"
        )
    else:
        split = (
            f"num_cat=0\nsplit_feature={feature}\nsplit_gain=1\nthreshold={step.threshold:.17g}\n"
            f"decision_type={_NUMERIC}\n"
        )
        leaves, counts, tail = f"0 {step.points * POINT:.17g}", f"{n_miss} {n_hit}", ""
    return (
        f"Tree={i}\nnum_leaves=2\n{split}left_child=-1\nright_child=-2\nleaf_value={leaves}\n"
        f"leaf_weight={counts}\nleaf_count={counts}\ninternal_value=0\n"
        f"internal_weight={n_hit + n_miss}\ninternal_count={n_hit + n_miss}\n{tail}"
        "is_linear=0\nshrinkage=1\n\n\n"
    )


def compile_rules(steps: list[RuleStep], x: pd.DataFrame) -> lgb.Booster:
    """A booster whose raw score is each row's points times :data:`POINT` (its probability: the
    sigmoid of that, for the calibrator to map), on the columns of ``x`` (the model's matrix: its category levels
    are the booster's). A level no row of ``x`` knows earns nothing, with a warning."""
    usable = []
    for step in steps:
        if step.feature not in x.columns:
            raise ValueError(f"rules: {step.feature!r} is not a feature of this training set")
        column = x[step.feature]
        if step.threshold is None:
            if not isinstance(column.dtype, pd.CategoricalDtype):
                raise ValueError(
                    f"rules.levels.{step.feature}: not a category feature (use rules.above)"
                )
            known = tuple(v for v in step.levels if v in column.cat.categories)
            if set(known) != set(step.levels):
                log.warning(
                    "rules: %s has no level %s in the training data (or it is grouped as other): "
                    "no points for it", step.feature, sorted(set(step.levels) - set(known)),
                )  # fmt: skip
            if not known:
                continue
            step = RuleStep(step.feature, step.points, known)
        elif isinstance(column.dtype, pd.CategoricalDtype):
            raise ValueError(f"rules.above.{step.feature}: a category feature (use rules.levels)")
        usable.append(step)
    # A one-round booster on the same matrix gives the header LightGBM expects (feature names,
    # infos, the pandas categories); its tree is replaced by the rules' stumps.
    rng = np.random.default_rng(0)
    dummy = lgb.train(
        {"objective": "binary", "num_leaves": 2, "verbose": -1, "min_data_in_leaf": 1,
         "min_data_per_group": 1, "num_threads": 1, "seed": 0},
        lgb.Dataset(x, rng.integers(0, 2, len(x)), free_raw_data=True),
        num_boost_round=1,
    )  # fmt: skip
    text = dummy.model_to_string()
    head, rest = text.split("\nTree=0\n", 1)
    head = "\n".join(line for line in head.splitlines() if not line.startswith("tree_sizes="))
    tail = rest[rest.index("end of trees") :]
    index = {name: i for i, name in enumerate(x.columns)}
    trees = "".join(_stump(i, index[s.feature], s, x) for i, s in enumerate(usable))
    booster = lgb.Booster(model_str=f"{head}\n\n{trees}{tail}")
    log.info(
        "rules-only model: %d rule steps on %d features",
        len(usable),
        len({s.feature for s in usable}),
    )
    return booster
