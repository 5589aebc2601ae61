"""Size-scaled LightGBM defaults and the budgeted search (models/search.py), on small synthetic
frames: two informative numbers, one noise column, one category; about 7% positives."""

from __future__ import annotations

import json
import logging

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import search as S
from models.boosting import train_booster
from models.search import (
    ParamRange,
    SearchResult,
    default_space,
    scaled_defaults,
    scaled_rounds,
    search_params,
)

ROUNDS = {"num_boost_round": 300, "early_stopping_rounds": 20}
FIXED = {"num_threads": 1, "deterministic": True, "seed": 1, "verbose": -1}


def frames(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    levels = ["web", "ads", "referral", "event"]
    source = rng.choice(len(levels), size=n, p=[0.4, 0.3, 0.2, 0.1])
    x = pd.DataFrame(
        {
            "n_demo": rng.poisson(1.0, n).astype(float),
            "score": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "source": pd.Categorical.from_codes(source, categories=levels),
        }
    )
    logit = -3.9 + 0.7 * x["n_demo"] + 0.8 * x["score"] + np.array([0, -0.5, 1.0, 0.3])[source]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    return x, y


@pytest.fixture(scope="module")
def data():
    x_train, y_train = frames(3000, seed=1)
    x_valid, y_valid = frames(1500, seed=2)
    assert 0.05 < y_train.mean() < 0.10
    base = {**FIXED, **scaled_defaults(len(y_train), int(y_train.sum()))}
    return x_train, y_train, x_valid, y_valid, base


def run(data, n_trials: int, **kw) -> SearchResult:
    x_train, y_train, x_valid, y_valid, base = data
    kw.setdefault("timeout_s", None)
    return search_params(
        x_train, y_train, x_valid, y_valid, kw.pop("base", base),
        n_trials=n_trials, monotone_increasing=["n_demo"], **ROUNDS, **kw,
    )  # fmt: skip


# --- scaled_defaults ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    n_rows=st.integers(2, 10_000_000),
    shares=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_min_data_in_leaf_grows_with_positives_and_stays_in_bounds(n_rows, shares):
    # Positives up to half the rows: beyond, the rarer outcome is the negatives.
    half = n_rows // 2
    low, high = sorted(max(1, round(s * half)) for s in shares)
    small, large = scaled_defaults(n_rows, low), scaled_defaults(n_rows, high)
    assert small["min_data_in_leaf"] <= large["min_data_in_leaf"]
    assert small["num_leaves"] <= large["num_leaves"]
    assert small["learning_rate"] >= large["learning_rate"]
    for p in (small, large):
        assert S.MIN_DATA_IN_LEAF_LOW <= p["min_data_in_leaf"] <= S.MIN_DATA_IN_LEAF_HIGH
        assert S.NUM_LEAVES_LOW <= p["num_leaves"] <= S.NUM_LEAVES_HIGH
        assert S.LEARNING_RATE_LARGE - 1e-9 <= p["learning_rate"] <= S.LEARNING_RATE_SMALL
        assert 0 < p["min_sum_hessian_in_leaf"] <= S.LEAF_EXPECTED_POSITIVES
        assert p["cat_smooth"] >= S.CAT_SMOOTH_LOW
        assert p["min_data_per_group"] == p["min_data_in_leaf"]


def test_scaled_defaults_reference_points_and_known_keys():
    few = scaled_defaults(3200, 160)  # the export where 4 leaves of 500 rows stopped at 6 trees
    assert few["min_data_in_leaf"] == 40 and few["num_leaves"] == 4
    assert few["learning_rate"] == pytest.approx(0.1)
    many = scaled_defaults(200_000, 10_000)
    assert many["min_data_in_leaf"] == S.MIN_DATA_IN_LEAF_HIGH and many["num_leaves"] == 31
    assert 0.03 < many["learning_rate"] < 0.1
    # Negatives as the rarer outcome give the same settings as positives would.
    assert scaled_defaults(3200, 3200 - 160) == few
    known = lgb.basic._ConfigAliases._get_all_param_aliases()  # LightGBM's own parameter list
    assert set(few) <= set(known)
    for bad in [(100, 0), (100, 100), (1, 1)]:
        with pytest.raises(ValueError, match="both outcomes"):
            scaled_defaults(*bad)


def test_scaled_rounds_are_fixed_shrinkage():
    assert scaled_rounds(0.1) == {"num_boost_round": 1000, "early_stopping_rounds": 50}
    assert scaled_rounds(0.03)["early_stopping_rounds"] == 167
    assert scaled_rounds(1.0)["early_stopping_rounds"] == S.EARLY_STOPPING_LOW


def test_default_space_contains_the_base():
    base = scaled_defaults(3000, 200)
    space = default_space({**base, "lambda_l2": 5.0})
    assert set(space) == {
        "num_leaves",
        "min_data_in_leaf",
        "learning_rate",
        "feature_fraction",
        "lambda_l2",
        "min_sum_hessian_in_leaf",
    }
    for name, r in space.items():
        assert r.contains({**base, "lambda_l2": 5.0, "feature_fraction": 1.0}.get(name)), name
    with pytest.raises(ValueError):
        ParamRange(0.0, 1.0, log=True)


# --- search_params --------------------------------------------------------------------------


def test_search_starts_from_the_base_and_never_returns_worse(data):
    x_train, y_train, x_valid, y_valid, base = data
    bare = train_booster(x_train, y_train, x_valid, y_valid, base, **ROUNDS, monotone_increasing=["n_demo"])  # fmt: skip
    bare_score = bare.best_score["validation"]["binary_logloss"]
    result = run(data, n_trials=6)
    first = result.trials.iloc[0]
    # Trial 0 is exactly the base params: same score and trees as a bare fit.
    assert first["value"] == bare_score and first["trees"] == bare.best_iteration
    assert result.base_score == bare_score
    assert result.best_score <= bare_score
    assert result.best_score == result.trials["value"].min()
    # Base keys survive (threads, determinism, seed, the scaled smoothing).
    assert {k: result.best_params[k] for k in FIXED} == FIXED
    assert set(base) <= set(result.best_params)


def test_score_is_validation_log_loss_of_the_best_trial(data):
    x_train, y_train, x_valid, y_valid, base = data
    result = run(data, n_trials=4, space={"num_leaves": ParamRange(2, 16, log=True, integer=True)})
    assert set().union(*result.trials["params"]) == {"num_leaves"}
    # Only num_leaves moves: the refit early-stops with the same patience, the same trees.
    refit = train_booster(x_train, y_train, x_valid, y_valid, result.best_params, **ROUNDS, monotone_increasing=["n_demo"])  # fmt: skip
    p = refit.predict(x_valid, num_iteration=refit.best_iteration)
    expected = -np.mean(y_valid * np.log(p) + (1 - y_valid) * np.log(1 - p))
    assert result.best_score == pytest.approx(expected, rel=1e-6)
    assert result.best_iteration == refit.best_iteration
    # The result carries that booster: the caller need not fit it a second time.
    assert result.booster.best_iteration == refit.best_iteration
    np.testing.assert_array_equal(
        result.booster.predict(x_valid, num_iteration=result.booster.best_iteration), p
    )


def test_search_is_reproducible_with_a_trial_budget(data):
    one, two = run(data, n_trials=6, seed=3), run(data, n_trials=6, seed=3)
    assert one.best_params == two.best_params
    assert one.trials["value"].tolist() == two.trials["value"].tolist()
    assert one.trials["params"].tolist() == two.trials["params"].tolist()


@pytest.mark.parametrize("n_trials", [0, 1])
def test_no_search_returns_the_base(data, n_trials):
    base = data[-1]
    result = run(data, n_trials=n_trials)
    assert result.best_params == base
    assert result.n_trials == 1 and len(result.trials) == 1
    assert result.best_score == result.base_score


def test_trials_table_has_one_row_per_trial_and_the_result_serialises(data, caplog):
    with caplog.at_level(logging.INFO, logger="models.search"):
        result = run(data, n_trials=5)
    assert result.n_trials == len(result.trials) == 5
    assert result.trials["number"].tolist() == list(range(5))
    assert list(result.trials.columns) == ["number", "params", "value", "trees", "seconds", "state"]
    assert (result.trials["state"] == "COMPLETE").all()
    assert (result.trials["trees"] >= 1).all()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("search trial")]
    assert len(lines) == 5 and "(base)" in lines[0]
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["best_params"] == result.best_params
    assert len(summary["trials"]) == 5


def test_timeout_stops_after_the_base_trial(data):
    result = run(data, n_trials=50, timeout_s=0.0)
    assert result.n_trials == 1
    assert result.best_params == data[-1]


def test_equal_group_weights_with_one_row_per_group_is_plain_log_loss(data):
    plain = run(data, n_trials=1)
    grouped = run(data, n_trials=1, groups_valid=np.arange(len(data[3])))
    assert grouped.best_score == pytest.approx(plain.best_score, rel=1e-9)


def test_base_params_that_the_search_cannot_honour_are_refused(data):
    base = data[-1]
    with pytest.raises(ValueError, match="metric"):
        run(data, n_trials=2, base={**base, "metric": "auc"})
    with pytest.raises(ValueError, match="eta"):
        run(data, n_trials=2, base={**base, "eta": 0.1})
