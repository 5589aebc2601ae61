"""LightGBM settings that fit the data size, and a budgeted search of the main knobs (issue 14).

Hand-tuned settings fit one data set: with a few hundred positives the booster stopped after a
handful of trees, with a few thousand rows and a slow learning rate it ran to the round cap.
``scaled_defaults`` derives the size-dependent parameters from the number of rows and positives;
``search_params`` then tries a budgeted number of variations around them (Optuna, TPE), each
early-stopped on the validation split, and keeps the one with the lowest validation log loss.
Trial 0 is always the base params, so the search never returns something worse than them on
validation. Pure: frames and arrays in, results out; the caller reads params.yaml.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from models.boosting import train_booster

log = logging.getLogger(__name__)

# --- scaled_defaults: the rule and its constants ---------------------------------------------
# "Positives" below means the rarer outcome's count (won leads, normally): it carries the
# information, so leaf sizes and tree sizes are keyed on it rather than on rows.

# min_data_in_leaf = clip(min(positives / 4, rows / 10), 20, 500).
# A quarter of the positives: grows with the data (a fixed share, like the usual "leaf = ~1% of
# rows" rule but counted in the informative class). 160 positives give 40 rows, 2,000 give the
# hand-tuned 500.
MIN_DATA_IN_LEAF_POSITIVES_DIVISOR = 4
# Rows cap: a leaf must leave room for about ten leaves' worth of rows, or the tree cannot split.
MIN_DATA_IN_LEAF_ROWS_DIVISOR = 10
# LightGBM's own default: smaller leaves estimate a conversion rate from almost nothing.
MIN_DATA_IN_LEAF_LOW = 20
# The hand-tuned value that worked on the large synthetic world; larger leaves stop the trees
# from finding segments (the leaf-size floor is not what limits overfitting on big data).
MIN_DATA_IN_LEAF_HIGH = 500

# min_sum_hessian_in_leaf = 3 * (1 - rate). For log loss a row's hessian is p(1 - p), so at the
# base rate a leaf's hessian is (its expected positives) * (1 - rate): this asks every leaf to
# hold about three expected positives, whatever its row count ("a handful of positives").
LEAF_EXPECTED_POSITIVES = 3.0

# num_leaves = clip(round(positives / 40), 4, 31): each leaf of a tree gets ~40 positives on
# average, so 160 positives give the hand-tuned 4 leaves and ~1,240 or more the default 31.
NUM_LEAVES_POSITIVES_EACH = 40
# Four leaves still model a two-way interaction; fewer is a stump that needs many more trees.
NUM_LEAVES_LOW = 4
# LightGBM's default; the search may go beyond it (see default_space).
NUM_LEAVES_HIGH = 31

# learning_rate: log-linear in the positive count, from 0.1 at 500 positives or fewer down to
# 0.03 at 50,000 or more. Small data early-stops after tens of trees at 0.1 (fast, and more
# trees would only fit noise); large data affords the slower rate's finer steps.
LEARNING_RATE_SMALL = 0.1
LEARNING_RATE_SMALL_POSITIVES = 500
LEARNING_RATE_LARGE = 0.03
LEARNING_RATE_LARGE_POSITIVES = 50_000

# path_smooth = 0.1 * min_data_in_leaf. LightGBM blends a node's value with its parent's with
# weight n / (n + path_smooth), n its row count: a leaf of the minimal size keeps 91% of its own
# value, as the hand-tuned 50 did with min_data_in_leaf 500 (chosen on validation).
PATH_SMOOTH_PER_LEAF_ROW = 0.1

# min_data_per_group = min_data_in_leaf: a group of category levels on one side of a split is a
# leaf to be, the same rows are needed to trust its rate.
# cat_smooth = max(1, min_data_per_group * rate * (1 - rate)): LightGBM orders levels by
# gradient / (hessian + cat_smooth), both in hessian units; cat_smooth equal to the hessian of a
# minimal group at the base rate halves such a group's deviation, larger groups keep more.
CAT_SMOOTH_LOW = 1.0  # below one expected positive's worth the smoothing does nothing useful

# scaled_rounds: the round cap and the patience as amounts of total shrinkage (rate * rounds),
# so a faster rate stops sooner. 100 at rate 0.03 is ~3,300 rounds (the old 3,000 cap); at 0.1,
# 1,000. Patience 5 is 50 rounds at 0.1 and ~170 at 0.03 (the old 200).
TOTAL_SHRINKAGE = 100.0
PATIENCE_SHRINKAGE = 5.0
EARLY_STOPPING_LOW = 20  # fewer rounds of patience stop on the noise of a small validation set

# --- default_space: the searched ranges around the base params ------------------------------
NUM_LEAVES_SPAN = 4  # from base / 4 to base * 4 (log scale): 4 leaves -> 2..16
NUM_LEAVES_FLOOR = 2  # a stump: LightGBM's minimum
NUM_LEAVES_CEILING = 127  # beyond it one tree memorises segments of a large CRM
MIN_DATA_IN_LEAF_SPAN = 4  # base / 4 .. base * 4 (log scale)
LEARNING_RATE_SPAN = 3  # base / 3 .. base * 3 (log scale)
LEARNING_RATE_CEILING = 0.3  # faster rates overshoot in a few trees; early stopping can't help
FEATURE_FRACTION_LOW = 0.3  # fewer columns per tree starve it of the few strong features
FEATURE_FRACTION_HIGH = 1.0
LAMBDA_L2_LOW = 1e-2  # log scale needs a floor above 0; below it L2 changes nothing
LAMBDA_L2_HIGH = 100.0  # in hessian units: far above a leaf's few expected positives
MIN_SUM_HESSIAN_SPAN = 4  # base / 4 .. base * 4 (log scale), searched when the base sets it

# LightGBM's own defaults for the searched keys (when the base params leave them out).
LIGHTGBM_DEFAULTS: dict[str, float] = {
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "learning_rate": 0.1,
    "feature_fraction": 1.0,
    "lambda_l2": 0.0,
    "min_sum_hessian_in_leaf": 1e-3,
}

# Other names LightGBM accepts for the searched keys: a base using one would be overridden in an
# unpredictable way by the searched canonical key, so it is refused.
_ALIASES: dict[str, tuple[str, ...]] = {
    "num_leaves": ("num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes"),
    "min_data_in_leaf": ("min_data_per_leaf", "min_data", "min_child_samples", "min_samples_leaf"),
    "learning_rate": ("shrinkage_rate", "eta"),
    "feature_fraction": ("sub_feature", "colsample_bytree"),
    "lambda_l2": ("reg_lambda", "lambda", "l2_regularization"),
    "min_sum_hessian_in_leaf": (
        "min_sum_hessian_per_leaf",
        "min_sum_hessian",
        "min_hessian",
        "min_child_weight",
    ),
    "metric": ("metrics", "metric_types"),
}

# Keeps a hard 0/1 prediction's log loss finite (scikit-learn's old eps for float64).
PROBABILITY_CLIP = 1e-15

# TPE's random start: a third of the budget, at most Optuna's default of ten trials.
STARTUP_SHARE = 1 / 3
STARTUP_MAX = 10


def _minority(n_rows: int, n_positives: int) -> int:
    if n_rows < 2 or not 0 < n_positives < n_rows:
        raise ValueError(
            f"need both outcomes: {n_positives} positives in {n_rows} rows cannot be trained on"
        )
    return min(n_positives, n_rows - n_positives)


def scaled_defaults(n_rows: int, n_positives: int) -> dict[str, Any]:
    """LightGBM parameters sized for ``n_rows`` training rows with ``n_positives`` positives.

    ``P`` is the rarer outcome's count, ``r = P / n_rows``:

    - ``min_data_in_leaf = clip(min(P / 4, n_rows / 10), 20, 500)``
    - ``min_sum_hessian_in_leaf = 3 * (1 - r)``: about three expected positives per leaf
    - ``num_leaves = clip(round(P / 40), 4, 31)``
    - ``learning_rate``: 0.1 up to 500 positives, 0.03 from 50,000, log-linear in between
    - ``path_smooth = 0.1 * min_data_in_leaf``
    - ``min_data_per_group = min_data_in_leaf``
    - ``cat_smooth = max(1, min_data_per_group * r * (1 - r))``

    The constants and their reasons are the module's ``*_LOW``/``*_HIGH``/... names. Merge the
    result over the fixed settings (seed, threads, bagging, extra_trees) the caller keeps.
    Raises ``ValueError`` unless both outcomes are present.
    """
    positives = _minority(n_rows, n_positives)
    rate = positives / n_rows
    min_leaf = min(
        positives / MIN_DATA_IN_LEAF_POSITIVES_DIVISOR, n_rows / MIN_DATA_IN_LEAF_ROWS_DIVISOR
    )
    min_leaf = int(np.clip(round(min_leaf), MIN_DATA_IN_LEAF_LOW, MIN_DATA_IN_LEAF_HIGH))
    leaves = int(
        np.clip(round(positives / NUM_LEAVES_POSITIVES_EACH), NUM_LEAVES_LOW, NUM_LEAVES_HIGH)
    )
    # Position of P between the two reference counts on a log scale, 0 (small) .. 1 (large).
    share = np.clip(
        math.log(positives / LEARNING_RATE_SMALL_POSITIVES)
        / math.log(LEARNING_RATE_LARGE_POSITIVES / LEARNING_RATE_SMALL_POSITIVES),
        0.0,
        1.0,
    )
    learning_rate = LEARNING_RATE_SMALL * (LEARNING_RATE_LARGE / LEARNING_RATE_SMALL) ** share
    return {
        "num_leaves": leaves,
        "min_data_in_leaf": min_leaf,
        "min_sum_hessian_in_leaf": round(LEAF_EXPECTED_POSITIVES * (1 - rate), 6),
        "learning_rate": round(float(learning_rate), 6),
        "path_smooth": round(PATH_SMOOTH_PER_LEAF_ROW * min_leaf, 6),
        "min_data_per_group": min_leaf,
        "cat_smooth": round(max(CAT_SMOOTH_LOW, min_leaf * rate * (1 - rate)), 6),
    }


def rounds_for_rate(
    num_boost_round: int, early_stopping_rounds: int, base_rate: float, rate: float
) -> dict[str, int]:
    """Round cap and patience for a trial at ``rate``, given those of the base at ``base_rate``:
    a slower rate gets proportionally more of both (the same total shrinkage), so it is neither
    capped nor stopped before it can get there; a faster one keeps the base's."""
    return {
        "num_boost_round": max(num_boost_round, math.ceil(num_boost_round * base_rate / rate)),
        "early_stopping_rounds": max(
            early_stopping_rounds, math.ceil(early_stopping_rounds * base_rate / rate)
        ),
    }


def scaled_rounds(learning_rate: float) -> dict[str, int]:
    """Round cap and early-stopping patience for ``learning_rate``.

    Both are fixed amounts of total shrinkage: ``num_boost_round = 100 / rate`` and
    ``early_stopping_rounds = max(20, 5 / rate)`` (0.1 -> 1,000 and 50; 0.03 -> 3,334 and 167).
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    return {
        "num_boost_round": math.ceil(TOTAL_SHRINKAGE / learning_rate),
        "early_stopping_rounds": max(
            EARLY_STOPPING_LOW, math.ceil(PATIENCE_SHRINKAGE / learning_rate)
        ),
    }


@dataclass(frozen=True)
class ParamRange:
    """One searched LightGBM parameter: ``low`` to ``high``, on a log scale if ``log``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high or (self.log and self.low <= 0):
            raise ValueError(f"bad range {self}: need low <= high, and low > 0 on a log scale")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` can be suggested by this range (so trial 0 can carry it)."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            return False
        if self.integer and float(value) != int(value):
            return False
        return self.low <= value <= self.high

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        """Ask ``trial`` for a value of ``name`` in this range."""
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


def _base_value(base: Mapping[str, Any], name: str) -> Any:
    return base.get(name, LIGHTGBM_DEFAULTS.get(name))


def default_space(base_params: Mapping[str, Any]) -> dict[str, ParamRange]:
    """The searched ranges around ``base_params`` (LightGBM's defaults for keys it leaves out).

    num_leaves and min_data_in_leaf from base/4 to base*4, learning_rate base/3 to base*3 (at
    most 0.3), all on a log scale; feature_fraction 0.3 to 1; lambda_l2 0.01 to 100 (log);
    min_sum_hessian_in_leaf base/4 to base*4 (log) when the base sets it.
    """
    leaves = int(_base_value(base_params, "num_leaves"))
    min_leaf = int(_base_value(base_params, "min_data_in_leaf"))
    rate = float(_base_value(base_params, "learning_rate"))
    space = {
        "num_leaves": ParamRange(
            max(NUM_LEAVES_FLOOR, leaves // NUM_LEAVES_SPAN),
            max(NUM_LEAVES_FLOOR, min(NUM_LEAVES_CEILING, leaves * NUM_LEAVES_SPAN)),
            log=True,
            integer=True,
        ),
        "min_data_in_leaf": ParamRange(
            max(1, min_leaf // MIN_DATA_IN_LEAF_SPAN),  # 1: a leaf holds at least one row
            max(1, min_leaf * MIN_DATA_IN_LEAF_SPAN),
            log=True,
            integer=True,
        ),
        "learning_rate": ParamRange(
            rate / LEARNING_RATE_SPAN,
            max(rate, min(LEARNING_RATE_CEILING, rate * LEARNING_RATE_SPAN)),
            log=True,
        ),
        "feature_fraction": ParamRange(FEATURE_FRACTION_LOW, FEATURE_FRACTION_HIGH),
        "lambda_l2": ParamRange(LAMBDA_L2_LOW, LAMBDA_L2_HIGH, log=True),
    }
    hessian = base_params.get("min_sum_hessian_in_leaf")
    if hessian is not None and float(hessian) > 0:
        space["min_sum_hessian_in_leaf"] = ParamRange(
            float(hessian) / MIN_SUM_HESSIAN_SPAN, float(hessian) * MIN_SUM_HESSIAN_SPAN, log=True
        )
    return space


@dataclass(frozen=True, eq=False)  # eq=False: a DataFrame field has no truth value
class SearchResult:
    """The chosen LightGBM params and how the search got there.

    ``best_params``: the full merged params (base keys kept) of the best trial; ``best_iteration``
    its early-stopped tree count; ``best_score`` its validation log loss; ``base_score`` trial
    0's (the base params); ``n_trials`` trials run; ``seconds`` wall time; ``trials`` one row per
    trial (number, params, value, trees, seconds, state); ``space`` the searched ranges;
    ``booster`` the best trial's booster, early-stopped on the validation rows.
    """

    best_params: dict[str, Any]
    best_iteration: int
    best_score: float
    base_score: float
    best_trial: int
    n_trials: int
    seconds: float
    trials: pd.DataFrame
    space: dict[str, ParamRange] = field(default_factory=dict)
    #: The best trial's early-stopped booster (not serialised by ``to_dict``).
    booster: lgb.Booster | None = field(default=None, repr=False)
    #: The best trial's validation log loss per iteration (its training curve).
    curve: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        """JSON-safe summary, for model_meta.json and MLflow. ``timings=False`` leaves out the
        seconds: what goes into the model folder must be the same bits on every run of the same
        inputs (DVC records its hash; a fresh ``make demo`` must leave ``dvc.lock`` unchanged)."""
        trials = [
            {
                "number": int(row.number),
                "params": dict(row.params),
                "value": None if pd.isna(row.value) else float(row.value),
                "trees": None if pd.isna(row.trees) else int(row.trees),
                **({"seconds": float(row.seconds)} if timings else {}),
                "state": str(row.state),
            }
            for row in self.trials.itertuples(index=False)
        ]
        return {
            "best_params": dict(self.best_params),
            "best_iteration": int(self.best_iteration),
            "best_score": float(self.best_score),
            "base_score": float(self.base_score),
            "best_trial": int(self.best_trial),
            "n_trials": int(self.n_trials),
            **({"seconds": float(self.seconds)} if timings else {}),
            "space": {name: asdict(r) for name, r in self.space.items()},
            "trials": trials,
        }


def _check_base(base: Mapping[str, Any], space: Mapping[str, ParamRange]) -> None:
    metric = base.get("metric")
    if metric not in (None, "binary_logloss", ["binary_logloss"]):
        raise ValueError(
            f"the search minimises validation binary_logloss; base params set metric={metric!r}"
        )
    for name in [*space, "metric"]:
        used = [a for a in _ALIASES.get(name, ()) if a in base]
        if used:
            raise ValueError(f"base params use {used} for {name!r}: write {name!r} instead")


def _group_log_loss(y: np.ndarray, p: np.ndarray, groups: Any) -> float:
    # Each group (an account, say) weighs the same in total, so one account with many leads
    # does not choose the params for everyone.
    codes = pd.factorize(pd.Series(np.asarray(groups)), use_na_sentinel=False)[0]
    weights = 1.0 / np.bincount(codes)[codes]
    p = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.sum(weights * losses) / np.sum(weights))


def search_params(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_valid: pd.DataFrame,
    y_valid: np.ndarray,
    base_params: Mapping[str, Any],
    *,
    n_trials: int,
    timeout_s: float | None,
    num_boost_round: int,
    early_stopping_rounds: int,
    monotone_increasing: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    space: Mapping[str, ParamRange] | None = None,
    groups_valid: Any = None,
) -> SearchResult:
    """Search LightGBM params on the validation split; trial 0 is ``base_params``.

    Each trial trains with ``models.boosting.train_booster`` (early stopping, monotone
    constraints) and scores the validation log loss at the best iteration; the lowest wins (ties
    go to the earlier trial, so to the base). Stops after ``n_trials`` or ``timeout_s`` seconds,
    whichever comes first; the timeout is checked between trials, and makes the result depend on
    machine speed, a trial budget alone is reproducible for a fixed ``seed`` (with deterministic
    LightGBM params). ``n_trials <= 1``: one fit of the base params, no search.

    ``space`` (default ``default_space(base_params)``) maps parameter names to ranges; other
    base keys are kept as they are. A trial with a slower learning rate than the base gets a
    proportionally longer patience (never shorter than ``early_stopping_rounds``), so it is not
    stopped on less total shrinkage than the base. ``groups_valid``: a group label per validation
    row; the score is then the log loss with each group weighted equally (early stopping still
    uses LightGBM's unweighted metric).
    """
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    if timeout_s is not None and not timeout_s >= 0:
        raise ValueError(f"timeout_s must be >= 0 or None, got {timeout_s}")
    if groups_valid is not None and len(groups_valid) != len(y_valid):
        raise ValueError(f"groups_valid has {len(groups_valid)} labels for {len(y_valid)} rows")
    base = dict(base_params)
    space = dict(default_space(base) if space is None else space)
    _check_base(base, space)
    base_rate = float(_base_value(base, "learning_rate"))
    # The base's values that the ranges can carry: enqueued as trial 0 so the sampler learns from
    # it; the others (e.g. lambda_l2 0 on a log scale) are simply not suggested in trial 0.
    base_point = {
        k: _base_value(base, k) for k, r in space.items() if r.contains(_base_value(base, k))
    }

    # The best trial's booster so far: the caller gets it instead of fitting it a second time.
    kept: dict[str, Any] = {"score": math.inf, "booster": None, "curve": []}

    def fit(params: dict[str, Any]) -> tuple[float, int]:
        rounds = rounds_for_rate(
            num_boost_round, early_stopping_rounds, base_rate,
            float(params.get("learning_rate", base_rate)),
        )  # fmt: skip
        record: dict[str, Any] = {}
        booster = train_booster(
            x_train, y_train, x_valid, y_valid, params,
            **rounds,
            monotone_increasing=monotone_increasing,
            record=record,
        )  # fmt: skip
        trees = int(booster.best_iteration)
        if groups_valid is None:
            score = float(booster.best_score["validation"]["binary_logloss"])
        else:
            p = booster.predict(x_valid, num_iteration=trees or None)
            score = _group_log_loss(np.asarray(y_valid), p, groups_valid)
        # Strictly lower: a tie keeps the earlier trial, as the choice of the best below does.
        if score < kept["score"]:
            curve = record.get("validation", {}).get("binary_logloss", [])
            kept.update(score=score, booster=booster, curve=[float(v) for v in curve])
        return score, trees

    started = time.perf_counter()
    if n_trials <= 1:
        score, trees = fit(base)
        seconds = time.perf_counter() - started
        log.info(
            "search off (n_trials=%d): base params, validation log loss %.5f, %d trees, %.1f s",
            n_trials, score, trees, seconds,
        )  # fmt: skip
        table = pd.DataFrame(
            [
                {
                    "number": 0,
                    "params": base_point,
                    "value": score,
                    "trees": trees,
                    "seconds": seconds,
                    "state": "COMPLETE",
                }
            ]
        )
        return SearchResult(
            base, trees, score, score, 0, 1, seconds, table, space,
            booster=kept["booster"], curve=kept["curve"],
        )  # fmt: skip

    def objective(trial: optuna.Trial) -> float:
        t0 = time.perf_counter()
        is_base = trial.user_attrs.get("base", False)
        names = base_point if is_base else space
        suggested = {name: space[name].suggest(trial, name) for name in names}
        params = base if is_base else {**base, **suggested}
        score, trees = fit(params)
        seconds = time.perf_counter() - t0
        trial.set_user_attr("trees", trees)
        trial.set_user_attr("seconds", seconds)
        log.info(
            "search trial %d%s: %s -> validation log loss %.5f, %d trees, %.1f s",
            trial.number, " (base)" if is_base else "", suggested, score, trees, seconds,
        )  # fmt: skip
        return score

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    try:
        with warnings.catch_warnings():
            # Optuna flags some sampler options as experimental; the defaults used here are not,
            # but a future release may flag more: it is not a reason to fail a training run.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=max(1, min(STARTUP_MAX, round(n_trials * STARTUP_SHARE))),
            )
            study = optuna.create_study(direction="minimize", sampler=sampler)
            study.enqueue_trial(base_point, user_attrs={"base": True})
            # n_jobs=1: trials in a fixed order, so a trial budget gives the same result each run.
            # The base trial first and outside the timeout (Optuna may start none with a short
            # one): the result always has it to compare with.
            run = {"n_jobs": 1, "catch": (lgb.basic.LightGBMError,)}
            study.optimize(objective, n_trials=1, **run)
            left = None if timeout_s is None else timeout_s - (time.perf_counter() - started)
            if left is None or left > 0:
                study.optimize(objective, n_trials=n_trials - 1, timeout=left, **run)
    finally:
        optuna.logging.set_verbosity(verbosity)
    seconds = time.perf_counter() - started

    trials = study.trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done or not done[0].user_attrs.get("base"):
        raise RuntimeError("the base params' trial did not complete: nothing to compare with")
    best = min(done, key=lambda t: (t.value, t.number))
    best_params = base if best.user_attrs.get("base") else {**base, **best.params}
    table = pd.DataFrame(
        {
            "number": [t.number for t in trials],
            "params": [dict(t.params) for t in trials],
            "value": [t.value for t in trials],
            "trees": [t.user_attrs.get("trees") for t in trials],
            "seconds": [
                t.user_attrs.get("seconds", t.duration.total_seconds() if t.duration else 0.0)
                for t in trials
            ],
            "state": [t.state.name for t in trials],
        }
    )
    log.info(
        "search: %d trials in %.1f s; trial %d chosen, validation log loss %.5f (base %.5f), "
        "%d trees: %s",
        len(trials), seconds, best.number, best.value, done[0].value,
        best.user_attrs["trees"], best.params,
    )  # fmt: skip
    return SearchResult(
        best_params=dict(best_params),
        best_iteration=int(best.user_attrs["trees"]),
        best_score=float(best.value),
        base_score=float(done[0].value),
        best_trial=best.number,
        n_trials=len(trials),
        seconds=seconds,
        trials=table,
        space=space,
        booster=kept["booster"],
        curve=kept["curve"],
    )
