"""TreeContributions against LightGBM's own pred_contrib, on small boosters trained here.

The frames have numeric features with NaNs, zeros, tiny values (|x| <= kZeroThreshold) and
values exactly at split thresholds, and categorical features with NaN and categories unseen in
training; boosters cover the missing-value modes (use_missing / zero_as_missing), small trees
(tabled) and deep ones (LightGBM fallback), multiclass, rf, and num_iteration / start_iteration.
"""

from __future__ import annotations

import functools

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.contributions import K_ZERO_THRESHOLD, TreeContributions
from models.reasons import FeatureGroups, top_groups

RTOL, ATOL = 1e-12, 1e-13
LEVELS = ["a", "b", "c", "d", "e", "f", "g"]
SMALL = ["x", "y", "z"]
BASE = {
    "objective": "binary", "verbose": -1, "seed": 3, "deterministic": True, "num_threads": 1,
    "min_data_in_leaf": 5, "min_data_per_group": 5, "cat_smooth": 1.0, "cat_l2": 1.0,
    "max_cat_to_onehot": 4, "learning_rate": 0.3,
}  # fmt: skip


def frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric + categorical features with NaNs and zeros, and a label depending on all."""
    rng = np.random.default_rng(seed)
    num = rng.normal(size=n)
    num[rng.random(n) < 0.15] = np.nan
    count = rng.poisson(1.0, size=n).astype(float)  # many zeros
    count[rng.random(n) < 0.1] = np.nan
    signed = np.round(rng.normal(size=n), 1)  # zeros, negatives
    integer = rng.integers(-3, 4, size=n)  # int64 column
    cat = rng.choice(LEVELS, size=n).astype(object)
    cat[rng.random(n) < 0.1] = None
    small = rng.choice(SMALL, size=n).astype(object)
    x = pd.DataFrame({
        "num": num, "count": count, "signed": signed, "integer": integer,
        "cat": pd.Categorical(cat, categories=LEVELS),
        "small": pd.Categorical(small, categories=SMALL),
    })  # fmt: skip
    logit = (
        np.nan_to_num(num, nan=1.0) + 0.8 * np.nan_to_num(count, nan=-1.0) - signed
        + 0.3 * integer + np.isin(cat, ["a", "d", "f"]) * 1.5 - (small == "x") * 1.0
    )  # fmt: skip
    y = (logit + rng.logistic(size=n) > 0.5).astype(int)
    return x, y


def train(
    params: dict | None = None,
    rounds: int = 12,
    n: int = 500,
    num_class: int = 1,
    callbacks: list | None = None,
) -> lgb.Booster:
    """A small booster on ``frame(n)``."""
    x, y = frame(n, seed=1)
    p = {**BASE, **(params or {})}
    if num_class > 1:
        y = np.digitize(np.random.default_rng(2).normal(size=n) + 2 * y, [0.5, 2.0])
        p.update(objective="multiclass", num_class=num_class)
    data = lgb.Dataset(x, label=y, params={k: v for k, v in p.items() if k != "num_class"})
    return lgb.train(p, data, num_boost_round=rounds, callbacks=callbacks)


def thresholds(booster: lgb.Booster) -> dict[int, list[float]]:
    """Every numeric split threshold of the booster, by feature."""
    out: dict[int, list[float]] = {}

    def walk(node: dict) -> None:
        if "split_index" in node:
            if node["decision_type"] == "<=":
                out.setdefault(node["split_feature"], []).append(node["threshold"])
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model(num_iteration=-1)["tree_info"]:
        walk(tree["tree_structure"])
    return out


def predict_frame(booster: lgb.Booster, n: int = 300, seed: int = 7) -> pd.DataFrame:
    """Fresh rows, plus the hard cases: thresholds exactly and one ulp either side, zeros of
    both signs, tiny values, infinities, NaN, unseen and missing categories."""
    x, _ = frame(n, seed)
    columns = list(x.columns)
    floats = ["num", "count", "signed"]
    special: list[tuple[list[str], float]] = []
    for f, ts in thresholds(booster).items():
        if columns[f] in floats:
            for t in ts[:8]:
                special += [
                    ([columns[f]], v)
                    for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf))
                ]
    for v in (
        0.0,
        -0.0,
        1e-40,
        -1e-40,
        K_ZERO_THRESHOLD,
        -K_ZERO_THRESHOLD,
        np.nextafter(K_ZERO_THRESHOLD, 1.0),
        np.inf,
        -np.inf,
        np.nan,
    ):
        special.append((floats, v))
    base = x.iloc[np.arange(len(special)) % n].reset_index(drop=True)
    for i, (cols, v) in enumerate(special):
        base.loc[i, cols] = v
    out = pd.concat([x, base], ignore_index=True)
    # categories LightGBM never saw: the frame's categories differ from the training ones
    cat = out["cat"].astype(object)
    cat.iloc[::17] = "unseen"
    out["cat"] = pd.Categorical(cat, categories=[*LEVELS, "unseen"])
    small = out["small"].astype(object)
    small.iloc[::13] = None
    out["small"] = pd.Categorical(small, categories=["z", *SMALL[:2], "never"])
    return out


def assert_same(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=ATOL)


def assert_same_reasons(ours: np.ndarray, ref: np.ndarray, n_features: int) -> None:
    """Top-3 for and against (as models.reasons ranks them) are the same features per row."""
    alone = FeatureGroups.of([f"f{i}" for i in range(n_features)], {})
    np.testing.assert_array_equal(
        top_groups(ours[:, :n_features], alone, 3, 0.0),
        top_groups(ref[:, :n_features], alone, 3, 0.0),
    )


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 4},
        {"num_leaves": 4, "zero_as_missing": True},
        {"num_leaves": 4, "use_missing": False},
        {"num_leaves": 3, "max_cat_to_onehot": 8},  # one-vs-rest categorical splits
        {"num_leaves": 8},  # up to 7 nodes: still tabled (merged less)
        {"num_leaves": 16, "zero_as_missing": True},  # deeper: LightGBM fallback
    ],
    ids=["leaves4", "zero_as_missing", "no_missing", "onehot", "leaves8", "leaves16"],
)
def test_equals_pred_contrib(params):
    booster = train(params)
    x = predict_frame(booster)
    fast = TreeContributions(booster)
    ours, ref = fast.contributions(x), booster.predict(x, pred_contrib=True)
    assert_same(ours, ref)
    np.testing.assert_array_equal(ours[:, -1], ref[:, -1])  # expected value: same sum, same order
    assert_same_reasons(ours, ref, booster.num_feature())
    deep = params["num_leaves"] > 9
    assert (fast.tabled_trees < booster.num_trees()) == deep


def test_table_and_fallback_trees_mix_and_iteration_ranges():
    # trees alternate 3 and up to 11 internal nodes: tabled and LightGBM runs interleave
    leaves = [4, 12, 12, 4, 4, 12, 4, 4, 4, 12]
    booster = train(
        {"num_leaves": 4}, rounds=len(leaves), callbacks=[lgb.reset_parameter(num_leaves=leaves)]
    )
    fast = TreeContributions(booster, max_nodes=8)
    assert 0 < fast.tabled_trees < booster.num_trees()
    x = predict_frame(booster, n=200)
    for start, num in [(0, None), (0, 3), (2, 5), (4, -1), (9, 4), (10, 1), (0, 100)]:
        ref = booster.predict(x, start_iteration=start, num_iteration=num, pred_contrib=True)
        assert_same(fast.contributions(x, num_iteration=num, start_iteration=start), ref)


def test_best_iteration_is_the_default_as_in_predict():
    booster = train({"num_leaves": 4}, rounds=10)
    booster.best_iteration = 4
    x = predict_frame(booster, n=100)
    fast = TreeContributions(booster)
    assert_same(fast.contributions(x), booster.predict(x, pred_contrib=True))
    assert_same(
        fast.contributions(x, num_iteration=-1),
        booster.predict(x, num_iteration=-1, pred_contrib=True),
    )


def test_nothing_tabled_is_exactly_lightgbm():
    booster = train({"num_leaves": 4}, rounds=5)
    x = predict_frame(booster, n=100)
    fast = TreeContributions(booster, max_nodes=0, max_table=1)
    assert fast.tabled_trees == 0
    np.testing.assert_array_equal(fast.contributions(x), booster.predict(x, pred_contrib=True))


def test_small_tables_chunks_and_merging_limits_change_nothing():
    booster = train({"num_leaves": 5}, rounds=8)
    x = predict_frame(booster, n=150)
    ref = booster.predict(x, pred_contrib=True)
    for kwargs in ({"max_table": 16, "max_nodes": 4}, {"chunk_rows": 7}, {"max_table": 1 << 14}):
        assert_same(TreeContributions(booster, **kwargs).contributions(x), ref)


def test_multiclass_and_random_forest():
    booster = train({"num_leaves": 4}, rounds=4, num_class=3)
    x = predict_frame(booster, n=120)
    ref = booster.predict(x, pred_contrib=True)
    assert ref.shape == (len(x), 3 * (booster.num_feature() + 1))
    assert_same(TreeContributions(booster).contributions(x), ref)
    assert_same(
        TreeContributions(booster).contributions(x, num_iteration=2),
        booster.predict(x, num_iteration=2, pred_contrib=True),
    )
    # rf: predict averages the trees, pred_contrib does not
    rf = train(
        {
            "boosting": "rf",
            "num_leaves": 4,
            "bagging_freq": 1,
            "bagging_fraction": 0.7,
            "feature_fraction": 0.8,
        },
        rounds=5,
    )
    assert_same(TreeContributions(rf).contributions(x), rf.predict(x, pred_contrib=True))


def test_single_leaf_trees():
    booster = train({"num_leaves": 4, "min_data_in_leaf": 400}, rounds=3, n=500)
    x = predict_frame(booster, n=50)
    assert_same(TreeContributions(booster).contributions(x), booster.predict(x, pred_contrib=True))


def test_numpy_input_is_converted_as_lightgbm_converts_it():
    booster = train({"num_leaves": 4}, rounds=6)
    fast = TreeContributions(booster)
    x = predict_frame(booster, n=100)
    codes = x.assign(
        cat=x["cat"].cat.set_categories(LEVELS).cat.codes.replace(-1, np.nan),
        small=x["small"].cat.set_categories(SMALL).cat.codes.replace(-1, np.nan),
    )
    for arr in (
        codes.to_numpy(np.float64),
        codes.to_numpy(np.float32),
        # int64 -> float32 in LightGBM: 2**24 + 1 becomes 2**24
        np.nan_to_num(codes.to_numpy(np.float64), posinf=2**24 + 1, neginf=-(2**24) - 1)
        .round()
        .astype(np.int64),
    ):
        assert_same(fast.contributions(arr), booster.predict(arr, pred_contrib=True))
    # codes that pandas never makes: CategoricalDecision truncates toward zero (-0.5 is
    # category 0), sends x <= -1, NaN and codes beyond every split's set right
    odd = codes.to_numpy(np.float64)
    weird = [
        -0.5,
        -0.999,
        -1.0,
        -1.5,
        0.7,
        1.999,
        2.5,
        6.0,
        7.0,
        50.0,
        1e10,
        2.0**31,
        np.inf,
        -np.inf,
        np.nan,
        1e-40,
        -0.0,
    ]
    odd[: 2 * len(weird), 4] = weird * 2
    odd[: 2 * len(weird), 5] = weird[::-1] * 2
    assert_same(fast.contributions(odd), booster.predict(odd, pred_contrib=True))
    # float32 + int16 + category codes: LightGBM predicts on a float32 matrix
    narrow = x.astype(
        {"num": np.float32, "count": np.float32, "signed": np.float32, "integer": np.int16}
    )
    assert_same(fast.contributions(narrow), booster.predict(narrow, pred_contrib=True))


def test_shape_errors_and_empty_input():
    booster = train({"num_leaves": 4}, rounds=2)
    fast = TreeContributions(booster)
    x = predict_frame(booster, n=10)
    with pytest.raises(ValueError, match="number of features"):
        fast.contributions(np.zeros((3, booster.num_feature() + 1)))
    assert fast.contributions(x.iloc[:0]).shape == (0, booster.num_feature() + 1)


# ------------------------------------------------------------------------------------------------
@functools.cache
def _property_model() -> tuple[lgb.Booster, TreeContributions, list[float]]:
    booster = train({"num_leaves": 4, "zero_as_missing": False}, rounds=15)
    values = sorted({t for ts in thresholds(booster).values() for t in ts})
    return booster, TreeContributions(booster), values


def _number(values: list[float]):
    near = st.sampled_from(values).flatmap(
        lambda t: st.sampled_from([t, float(np.nextafter(t, -np.inf)), float(np.nextafter(t, np.inf))])
    )  # fmt: skip
    return st.one_of(
        near,
        st.sampled_from([0.0, -0.0, 1e-40, -1e-40, np.nan, np.inf, -np.inf]),
        st.floats(-5, 5, allow_nan=False),
    )


@st.composite
def rows(draw):
    _, _, values = _property_model()
    n = draw(st.integers(1, 25))
    number = _number(values)
    category = st.sampled_from([*LEVELS, "unseen", None])
    return pd.DataFrame({
        "num": draw(st.lists(number, min_size=n, max_size=n)),
        "count": draw(st.lists(number, min_size=n, max_size=n)),
        "signed": draw(st.lists(number, min_size=n, max_size=n)),
        "integer": draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)),
        "cat": pd.Categorical(draw(st.lists(category, min_size=n, max_size=n)),
                              categories=[*LEVELS, "unseen"]),
        "small": pd.Categorical(draw(st.lists(st.sampled_from([*SMALL, None]), min_size=n,
                                              max_size=n)), categories=SMALL),
    })  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=rows())
def test_property_random_rows_equal_pred_contrib(x):
    booster, fast, _ = _property_model()
    ours, ref = fast.contributions(x), booster.predict(x, pred_contrib=True)
    assert_same(ours, ref)
    assert_same_reasons(ours, ref, booster.num_feature())
