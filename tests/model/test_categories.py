"""Rare and unseen category levels grouped into "other": the grouper on tiny literal frames, and a
small model trained with a rare level scoring a value it never saw."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from models.categories import CategoryGrouper, stored_grouper
from models.frame import feature_matrix

ROOT = Path(__file__).resolve().parents[2]


def cat(values: list, levels: list[str]) -> pd.Categorical:
    return pd.Categorical(values, categories=levels)


def training() -> pd.DataFrame:
    # source: web 3, ads 2, fax 1 (rare), one missing; n: a number; flag: a boolean.
    return pd.DataFrame(
        {
            "source": ["web", "web", "ads", "web", "fax", "ads", None],
            "n": [1, 2, 3, 4, 5, 6, 7],
            "flag": [True, False, True, False, True, False, True],
        }
    )


def test_rare_level_is_grouped_and_the_fitted_attributes_say_so():
    grouper = CategoryGrouper(min_rows=2).fit(training())
    assert grouper.levels_ == {"source": ["web", "ads"]}
    assert grouper.grouped_ == {"source": ["fax"]}
    assert grouper.n_grouped_ == {"source": 1}
    assert grouper.n_rows_ == 7
    assert list(grouper.get_feature_names_out()) == ["source", "n", "flag"]
    expected = training().assign(
        source=cat(["web", "web", "ads", "web", "other", "ads", None], ["web", "ads", "other"])
    )
    pd.testing.assert_frame_equal(grouper.transform(training()), expected)


def test_a_level_with_exactly_min_rows_rows_is_kept():
    grouper = CategoryGrouper(min_rows=2).fit(pd.DataFrame({"s": ["a", "a", "b"]}))
    assert grouper.levels_ == {"s": ["a"]}
    assert CategoryGrouper(min_rows=3).fit(pd.DataFrame({"s": ["a", "a", "a"]})).levels_ == {
        "s": ["a"]
    }


def test_unseen_value_becomes_other_and_is_counted_apart_from_grouped_ones():
    grouper = CategoryGrouper(min_rows=2).fit(training())
    scoring = pd.DataFrame(
        {"source": ["tiktok", "fax", "web", "tiktok", None, "podcast"], "n": [0] * 6, "flag": True}
    )
    expected = scoring.assign(
        source=cat(["other", "other", "web", "other", None, "other"], ["web", "ads", "other"])
    )
    pd.testing.assert_frame_equal(grouper.transform(scoring), expected)
    pd.testing.assert_frame_equal(
        grouper.unseen(scoring),
        pd.DataFrame(
            {"feature": ["source", "source"], "value": ["tiktok", "podcast"], "rows": [2, 1]}
        ).astype({"feature": object, "value": object, "rows": np.int64}),
    )
    pd.testing.assert_frame_equal(
        grouper.grouped(scoring),
        pd.DataFrame({"feature": ["source"], "value": ["fax"], "rows": [1]}).astype(
            {"feature": object, "value": object, "rows": np.int64}
        ),
    )


def test_missing_stays_missing_and_the_input_is_not_modified():
    frame = pd.DataFrame(
        {
            "s": pd.Series(["a", None, "a", np.nan], dtype=object),
            "c": pd.Categorical(["x", None, "x", "y"]),
        }
    )
    before = frame.copy(deep=True)
    out = CategoryGrouper().fit(frame).transform(frame)
    pd.testing.assert_frame_equal(frame, before)
    expected = pd.DataFrame(
        {
            "s": cat(["a", None, "a", None], ["a", "other"]),
            "c": cat(["x", None, "x", "y"], ["x", "y", "other"]),
        }
    )
    pd.testing.assert_frame_equal(out, expected)


def test_categories_are_identical_whatever_the_scoring_frame():
    grouper = CategoryGrouper(min_rows=1).fit(pd.DataFrame({"s": ["b", "a", "a", "c", "c", "c"]}))
    one = grouper.transform(pd.DataFrame({"s": ["a", "zz"]}))
    two = grouper.transform(pd.DataFrame({"s": pd.Categorical(["c", "b", None, "c"])}))
    assert (
        list(one["s"].cat.categories) == list(two["s"].cat.categories) == ["c", "a", "b", "other"]
    )
    assert one["s"].dtype == two["s"].dtype
    # The same value has the same code in both (what LightGBM reads).
    assert one["s"].cat.codes.tolist() == [1, 3]
    assert two["s"].cat.codes.tolist() == [0, 2, -1, 0]


def test_max_levels_keeps_the_most_frequent_ties_by_name():
    frame = pd.DataFrame({"s": ["d", "c", "b", "a", "c", "b", "a", "c", "b", "a"]})
    grouper = CategoryGrouper(min_rows=1, max_levels=2).fit(frame)
    assert grouper.levels_ == {"s": ["a", "b"]}
    assert grouper.grouped_ == {"s": ["c", "d"]}
    assert grouper.n_grouped_ == {"s": 2}


def test_declared_but_unused_categories_are_not_levels():
    frame = pd.DataFrame({"s": pd.Categorical(["a", "a"], categories=["a", "never"])})
    grouper = CategoryGrouper().fit(frame)
    assert grouper.levels_ == {"s": ["a"]} and grouper.grouped_ == {"s": []}
    # Never seen in training, so unseen (not "grouped") when it turns up.
    assert grouper.unseen(pd.DataFrame({"s": ["never"]}))["value"].tolist() == ["never"]


def test_a_real_level_named_other_joins_the_grouped_ones():
    frame = pd.DataFrame({"s": ["other", "other", "other", "a", "a", "a", "rare"]})
    grouper = CategoryGrouper(min_rows=2).fit(frame)
    assert grouper.levels_ == {"s": ["a"]}
    assert grouper.grouped_ == {"s": ["other", "rare"]} and grouper.n_grouped_ == {"s": 2}
    pd.testing.assert_frame_equal(
        grouper.transform(frame),
        pd.DataFrame({"s": cat(["other"] * 3 + ["a"] * 3 + ["other"], ["a", "other"])}),
    )
    # Another name for the bucket, if a CRM needs "other" as a level of its own.
    renamed = CategoryGrouper(min_rows=2, other="(rare)").fit(frame)
    assert renamed.levels_ == {"s": ["a", "other"]}
    assert list(renamed.transform(frame)["s"].cat.categories) == ["a", "other", "(rare)"]


def test_fitted_only_on_the_rows_it_is_given():
    train = pd.DataFrame({"s": ["a"] * 5 + ["b"] * 5 + ["c"]})
    valid = pd.DataFrame({"s": ["c"] * 100 + ["a"]})
    grouper = CategoryGrouper(min_rows=2).fit(train)
    out = grouper.transform(valid)
    assert (out["s"].iloc[:100] == "other").all() and out["s"].iloc[100] == "a"
    assert grouper.levels_ == {"s": ["a", "b"]}
    assert grouper.grouped(valid)["rows"].tolist() == [100]
    assert grouper.unseen(valid).empty


def test_values_are_compared_as_text():
    grouper = CategoryGrouper().fit(pd.DataFrame({"s": pd.Series([1, "1", "2"], dtype=object)}))
    assert grouper.levels_ == {"s": ["1", "2"]}
    pd.testing.assert_frame_equal(
        grouper.transform(pd.DataFrame({"s": pd.Series(["2", 1, 3], dtype=object)})),
        pd.DataFrame({"s": cat(["2", "1", "other"], ["1", "2", "other"])}),
    )


def test_round_trip_through_json():
    grouper = CategoryGrouper(min_rows=2, max_levels=5).fit(training())
    data = json.loads(json.dumps(grouper.to_dict()))
    back = CategoryGrouper.from_dict(data)
    assert back.get_params() == grouper.get_params()
    assert (back.levels_, back.grouped_, back.n_grouped_, back.n_rows_) == (
        grouper.levels_,
        grouper.grouped_,
        grouper.n_grouped_,
        grouper.n_rows_,
    )
    scoring = pd.DataFrame({"source": ["podcast", "ads", "fax"], "n": 1, "flag": False})
    pd.testing.assert_frame_equal(back.transform(scoring), grouper.transform(scoring))
    pd.testing.assert_frame_equal(back.unseen(scoring), grouper.unseen(scoring))
    assert stored_grouper({"categories": data}).levels_ == grouper.levels_
    assert stored_grouper({"features": ["source"]}) is None  # a model trained before grouping
    with pytest.raises(ValueError, match="not a stored category grouper"):
        CategoryGrouper.from_dict({"format": "something-else"})


def test_not_fitted_bad_settings_and_missing_columns_are_clear_errors():
    frame = training()
    for call in (
        lambda g: g.transform(frame),
        lambda g: g.unseen(frame),
        lambda g: g.to_dict(),
        lambda g: g.get_feature_names_out(),
    ):
        with pytest.raises(NotFittedError):
            call(CategoryGrouper())
    with pytest.raises(ValueError, match="min_rows"):
        CategoryGrouper(min_rows=0).fit(frame)
    with pytest.raises(ValueError, match="max_levels"):
        CategoryGrouper(max_levels=0).fit(frame)
    with pytest.raises(ValueError, match="other"):
        CategoryGrouper(other="").fit(frame)
    with pytest.raises(TypeError, match="DataFrame"):
        CategoryGrouper().fit(frame["source"])
    with pytest.raises(ValueError, match=r"\['source'\]"):
        CategoryGrouper().fit(frame).transform(frame[["n"]])


def test_params_yaml_block_builds_the_grouper():
    from pipelines.params import category_grouper

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    grouper = category_grouper(params)
    assert grouper.get_params() == {
        "min_rows": params["train"]["categories"]["min_rows"],
        "max_levels": params["train"]["categories"]["max_levels"],
        "other": "other",
    }
    # Without the block: every training level kept, only unseen values become "other".
    assert category_grouper({"train": {}}).get_params() == {
        "min_rows": 1,
        "max_levels": None,
        "other": "other",
    }
    with pytest.raises(ValueError, match="min_row"):
        category_grouper({"train": {"categories": {"min_row": 3}}})


VALUES = st.sampled_from(["a", "b", "c", "d", "other", None])


@st.composite
def frames(draw, alphabet=VALUES):
    n = draw(st.integers(0, 40))
    columns = {}
    for name in ("s", "t"):
        values = draw(st.lists(alphabet, min_size=n, max_size=n))
        columns[name] = (
            pd.Categorical(values) if draw(st.booleans()) else pd.Series(values, dtype=object)
        )
    return pd.DataFrame({**columns, "n": np.arange(n, dtype=float)})


@settings(max_examples=150, deadline=None)
@given(
    train=frames(),
    other=frames(st.sampled_from(["a", "b", "e", "zz", "other", None])),
    min_rows=st.integers(1, 6),
    max_levels=st.one_of(st.none(), st.integers(1, 4)),
)
def test_any_frame_gets_exactly_the_fitted_categories(train, other, min_rows, max_levels):
    grouper = CategoryGrouper(min_rows=min_rows, max_levels=max_levels).fit(train)
    for name in ("s", "t"):
        counts = train[name].astype(object).value_counts()
        kept = grouper.levels_[name]
        # The rule, by hand: at least min_rows rows, not named "other", most frequent first,
        # ties by name, at most max_levels.
        eligible = sorted(
            (v for v, k in counts.items() if k >= min_rows and v != "other"),
            key=lambda v: (-counts[v], v),
        )
        assert kept == eligible[:max_levels]
        assert set(kept) | set(grouper.grouped_[name]) == set(counts.index)
        assert not set(kept) & set(grouper.grouped_[name])
    for frame in (train, other):
        out = grouper.transform(frame)
        pd.testing.assert_series_equal(out["n"], frame["n"])
        for name in ("s", "t"):
            categories = [*grouper.levels_[name], "other"]
            assert list(out[name].cat.categories) == categories
            assert out[name].isna().tolist() == frame[name].isna().tolist()
            given_values = frame[name].astype(object)
            expected = given_values.where(given_values.isin(grouper.levels_[name]), "other")
            present = given_values.notna()
            assert out[name][present].astype(object).tolist() == expected[present].tolist()
        unseen = grouper.unseen(frame)
        for name in ("s", "t"):
            new = frame[name].notna() & ~frame[name].astype(object).isin(
                train[name].dropna().astype(object)
            )
            assert unseen.loc[unseen["feature"] == name, "rows"].sum() == new.sum()


# ---------------------------------------------------------------------------------------------
# A small model trained with a rare level, scoring through LeadScorer
# ---------------------------------------------------------------------------------------------


def _split(n: int, start: str, rare: str, n_rare: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    source = rng.choice(np.array(["web", "ads", "event"]), n).astype(object)
    source[:n_rare] = rare
    x = rng.normal(size=n)
    logit = -1.5 + 1.2 * x + np.where(source == "event", 1.0, 0.0)
    return pd.DataFrame(
        {
            "lead_id": [f"L{seed}-{i}" for i in range(n)],
            "as_of": pd.Timestamp(start) + pd.to_timedelta(np.arange(n) % 60, unit="D"),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
            "x": x,
            "source": pd.Series(source, dtype=object),
        }
    )


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[Path, dict]:
    """run_train on 2,000 training rows where "fax" is rare (5 rows) and 1,000 validation rows
    where it is common: a few seconds."""
    from pipelines.modeling import run_train

    tmp = tmp_path_factory.mktemp("categories")
    sets = tmp / "sets"
    sets.mkdir()
    _split(2000, "2024-01-01", "fax", 5, seed=1).to_parquet(sets / "train.parquet")
    _split(1000, "2024-04-01", "fax", 300, seed=2).to_parquet(sets / "validation.parquet")
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["train"].update(num_boost_round=60, early_stopping_rounds=10, monotone_increasing=[])
    params["train"]["lightgbm"].update(min_data_in_leaf=20, min_data_per_group=10, num_threads=1)
    params["train"]["categories"] = {"min_rows": 30, "max_levels": 100}
    params["calibration"]["cv_folds"] = 3
    params["gates"] = {"criteria": {}, "disqualify": {}}
    run_train(params, sets, tmp / "model")
    return tmp / "model", params


def test_model_trained_with_a_rare_level_scores_unseen_values_as_other(small_model, caplog):
    from models.packaged import LeadScorer
    from pipelines.scoring import ScoringModel, report_unseen_categories

    folder, _ = small_model
    meta = json.loads((folder / "model_meta.json").read_text())
    stored = meta["categories"]["features"]["source"]
    # Common in validation, rare in training: grouped (the rule saw the training rows only).
    assert sorted(stored["levels"]) == ["ads", "event", "web"] and stored["grouped"] == ["fax"]
    scorer = LeadScorer.from_folder(folder)
    assert scorer.booster.pandas_categorical == [[*stored["levels"], "other"]]

    features = pd.DataFrame(
        {"x": 0.3, "source": ["fax", "tiktok", "tiktok", "event", None, "other"]}
    )
    x = scorer.matrix(features)
    pd.testing.assert_series_equal(
        x["source"],
        pd.Series(
            cat(["other", "other", "other", "event", None, "other"], stored["levels"] + ["other"]),
            name="source",
        ),
    )
    scored = scorer.score(features)
    p = scored["probability"].to_numpy()
    assert np.isfinite(p).all() and set(scored["stage"]) <= {"SQL", "MQL", "nurture"}
    assert p[0] == p[1] == p[2] == p[5]  # fax (grouped), tiktok (unseen), "other": one level

    model = ScoringModel(scorer, "local", "test", str(folder))
    with caplog.at_level(logging.WARNING, logger="pipelines.scoring"):
        counts = report_unseen_categories(features, model)
    assert counts == {"source": 3}
    assert (
        "source: 3 lead(s) with values not seen in training, scored as 'other' "
        "(e.g. 'tiktok', 'other')" in caplog.text
    )


def test_a_model_without_stored_categories_scores_as_before(small_model, tmp_path):
    import shutil

    from models.boosting import predict_scores
    from models.packaged import LeadScorer

    folder, _ = small_model
    old = tmp_path / "old-model"
    shutil.copytree(folder, old)
    meta = json.loads((old / "model_meta.json").read_text())
    del meta["categories"]
    (old / "model_meta.json").write_text(json.dumps(meta))

    scorer = LeadScorer.from_folder(old)
    assert scorer.grouper is None
    features = pd.DataFrame({"x": [0.1, -1.0, 2.0], "source": ["web", "tiktok", None]})
    plain = feature_matrix(features, meta["features"])  # text as category, nothing grouped
    pd.testing.assert_frame_equal(scorer.matrix(features), plain)
    np.testing.assert_array_equal(
        scorer.predict_proba(features),
        scorer.calibrator.predict(predict_scores(scorer.booster, plain)),
    )
    assert len(scorer.score(features)) == 3
    assert scorer.unseen_categories(features).empty
