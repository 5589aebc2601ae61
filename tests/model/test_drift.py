"""PSI drift check on tiny hand-made frames."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.drift import PSI_FLOOR, SCORE, drift_reference, drift_verdict, population_stability


def psi_of(table: pd.DataFrame, feature: str) -> float:
    return float(table.set_index("feature").loc[feature, "psi"])


def row_of(table: pd.DataFrame, feature: str) -> pd.Series:
    return table.set_index("feature").loc[feature]


def mixed_frame(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "count": np.where(rng.random(n) < 0.7, 0, rng.integers(1, 20, n)).astype(np.int32),
            "segment": pd.Categorical(rng.choice(["smb", "mid", "ent"], n)),
            "source": pd.Series(rng.choice(np.array(["web", "ads", "event"]), n), dtype="str"),
            "flag": rng.random(n) < 0.3,
        }
    )
    frame.loc[rng.random(n) < 0.1, "x"] = np.nan
    return frame, rng.random(n)


def test_identical_data_has_zero_psi():
    frame, scores = mixed_frame()
    table = population_stability(drift_reference(frame, scores), frame, scores)
    assert list(table.columns) == ["feature", "psi", "bins", "largest_shift", "missing_in_data"]
    assert set(table["feature"]) == {"x", "count", "segment", "source", "flag", SCORE}
    assert (table["psi"] == 0.0).all()
    assert (table["largest_shift"] == "none").all()
    assert not table["missing_in_data"].any()


def test_two_bin_psi_by_hand():
    # Reference 50/50, new data 25/75: PSI = (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5) = 0.25 ln 3.
    expected = 0.25 * math.log(3)
    reference = drift_reference(
        pd.DataFrame({"n": [0, 0, 1, 1], "c": ["a", "a", "b", "b"]}),
        np.array([0.1, 0.1, 0.9, 0.9]),
        n_bins=2,
    )
    assert reference["features"]["n"]["labels"] == ["<= 0", "> 0"]
    assert reference["score"]["labels"] == ["<= 0.1", "> 0.1"]
    table = population_stability(
        reference,
        pd.DataFrame({"n": [0, 1, 1, 1], "c": ["a", "b", "b", "b"]}),
        np.array([0.1, 0.9, 0.9, 0.9]),
    )
    assert psi_of(table, "n") == pytest.approx(expected, abs=1e-12)
    assert psi_of(table, "c") == pytest.approx(expected, abs=1e-12)
    assert psi_of(table, SCORE) == pytest.approx(expected, abs=1e-12)
    assert row_of(table, "n")["bins"] == 3  # <= 0, > 0, missing
    assert row_of(table, "c")["bins"] == 4  # a, b, other, missing
    assert row_of(table, "n")["largest_shift"] == "<= 0: 50.0% -> 25.0%"


def test_shifted_normal_is_significant_and_named_first():
    rng = np.random.default_rng(1)
    n = 2000
    reference = drift_reference(
        pd.DataFrame({"stable": rng.normal(size=n), "moved": rng.normal(size=n)}), rng.random(n)
    )
    new = pd.DataFrame({"stable": rng.normal(size=n), "moved": rng.normal(1.0, 1.0, n)})
    table = population_stability(reference, new, rng.random(n))
    assert table.loc[0, "feature"] == "moved"
    assert table.loc[0, "psi"] > 0.25
    assert psi_of(table, "stable") < 0.1
    assert table["psi"].is_monotonic_decreasing
    assert table.loc[0, "largest_shift"].startswith("> ")  # the top bin filled up


def test_unseen_category_goes_to_other():
    reference = drift_reference(
        pd.DataFrame({"c": pd.Categorical(["a", "b"] * 5)}), np.full(10, 0.5)
    )
    new = pd.DataFrame({"c": pd.Categorical(["a", "z"] * 5)})
    table = population_stability(reference, new, None)
    assert SCORE not in set(table["feature"])
    # a: 50% -> 50%; b: 50% -> 0% (floored); other: 0% (floored) -> 50%; missing 0 -> 0.
    e = 0.5 - PSI_FLOOR
    assert psi_of(table, "c") == pytest.approx(2 * e * math.log(0.5 / PSI_FLOOR), rel=1e-12)
    assert row_of(table, "c")["largest_shift"] in {"'b': 50.0% -> 0.0%", "other: 0.0% -> 50.0%"}
    # Same for text columns, and unused declared categories are not in the reference.
    ref_text = drift_reference(
        pd.DataFrame({"c": pd.Categorical(["a", "b"] * 5, categories=["a", "b", "q"])}),
        np.full(10, 0.5),
    )
    assert ref_text["features"]["c"]["categories"] == ["a", "b"]
    table = population_stability(
        ref_text, pd.DataFrame({"c": pd.Series(["a", "q"] * 5, dtype="str")}), None
    )
    assert psi_of(table, "c") == pytest.approx(2 * e * math.log(0.5 / PSI_FLOOR), rel=1e-12)


def test_rare_categories_beyond_max_categories_count_as_other():
    frame = pd.DataFrame({"c": ["a"] * 6 + ["b"] * 3 + ["c"]})
    reference = drift_reference(frame, np.full(10, 0.5), max_categories=2)
    assert reference["features"]["c"]["categories"] == ["a", "b"]
    assert reference["features"]["c"]["other"] == pytest.approx(0.1)
    assert psi_of(population_stability(reference, frame, None), "c") == 0.0


def test_all_missing_column():
    frame = pd.DataFrame({"x": [np.nan] * 4, "t": pd.Series([None] * 4, dtype="str")})
    reference = drift_reference(frame, np.full(4, 0.5))
    assert reference["features"]["x"]["labels"] == ["any value"]
    assert reference["features"]["x"]["missing"] == 1.0
    assert reference["features"]["t"]["categories"] == []
    assert reference["features"]["t"]["missing"] == 1.0
    assert (population_stability(reference, frame, None)["psi"] == 0.0).all()
    # Values appearing where training had none: missing 100% -> 0%, values 0% -> 100%.
    table = population_stability(reference, pd.DataFrame({"x": [1.0] * 4, "t": ["a"] * 4}), None)
    e = 1 - PSI_FLOOR
    assert psi_of(table, "x") == pytest.approx(2 * e * math.log(1 / PSI_FLOOR), rel=1e-12)
    assert psi_of(table, "t") == pytest.approx(2 * e * math.log(1 / PSI_FLOOR), rel=1e-12)
    # ...and the other way: a column that goes all missing at scoring time.
    reference = drift_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), np.full(4, 0.5))
    table = population_stability(reference, pd.DataFrame({"x": [np.nan] * 4}), None)
    assert row_of(table, "x")["largest_shift"] == "missing: 0.0% -> 100.0%"


def test_constant_column_gets_below_equal_above_bins():
    reference = drift_reference(pd.DataFrame({"k": [3.0] * 5}), np.full(5, 0.5))
    assert reference["features"]["k"]["labels"] == ["< 3", "= 3", "> 3"]
    assert reference["features"]["k"]["shares"] == [0.0, 1.0, 0.0]
    assert psi_of(population_stability(reference, pd.DataFrame({"k": [3.0] * 5}), None), "k") == 0.0
    table = population_stability(reference, pd.DataFrame({"k": [3.0, 3.0, 3.0, 4.0, 4.0]}), None)
    assert psi_of(table, "k") > 0.25
    # Ties between bins name the first: "= 3" lost as much as "> 3" gained.
    assert row_of(table, "k")["largest_shift"] == "= 3: 100.0% -> 60.0%"
    assert row_of(table, "k")["bins"] == 4


def test_zero_heavy_count_keeps_zero_in_its_own_bin():
    counts = [0] * 14 + [1, 2, 3, 4, 5, 9]
    reference = drift_reference(pd.DataFrame({"n": counts}), np.linspace(0, 1, 20))
    ref = reference["features"]["n"]
    # Unique quantile cuts: 0 alone, the non-zero counts still split.
    assert ref["labels"] == ["<= 0", "(0, 1]", "(1, 2]", "(2, 4]", "> 4"]
    assert ref["shares"] == pytest.approx([0.7, 0.05, 0.05, 0.1, 0.1])
    assert ref["missing"] == 0.0
    # Fewer zeros at scoring time shows up in the zero bin.
    table = population_stability(
        reference, pd.DataFrame({"n": [0] * 7 + [1, 3, 9] * 4 + [9]}), None
    )
    assert row_of(table, "n")["largest_shift"] == "<= 0: 70.0% -> 35.0%"


def test_point_mass_inside_the_range_gets_its_own_bin():
    values = [1.0, 2.0, 3.0] + [5.0] * 10 + [7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]
    ref = drift_reference(pd.DataFrame({"v": values}), np.full(20, 0.5))["features"]["v"]
    assert "= 5" in ref["labels"]
    assert ref["shares"][ref["labels"].index("= 5")] == pytest.approx(0.5)


def test_reference_round_trips_through_json():
    frame, scores = mixed_frame()
    reference = drift_reference(frame, scores)
    loaded = json.loads(json.dumps(reference, allow_nan=False))
    assert loaded == reference
    new, new_scores = mixed_frame(seed=7)
    new["x"] = new["x"] + 0.3
    pd.testing.assert_frame_equal(
        population_stability(loaded, new, new_scores),
        population_stability(reference, new, new_scores),
    )


def test_feature_missing_from_data_is_reported_not_crashed():
    frame, scores = mixed_frame()
    reference = drift_reference(frame, scores)
    table = population_stability(reference, frame.drop(columns=["segment"]), scores)
    row = row_of(table, "segment")
    assert row["missing_in_data"]
    assert math.isnan(row["psi"])
    assert row["bins"] == 5  # 3 categories, other, missing
    assert table.iloc[-1]["feature"] == "segment"  # NaN sorts last
    level, messages = drift_verdict(table, warn_above=0.1, refuse_above=0.25)
    assert level == "warn"
    assert messages == ["feature 'segment': PSI not computed (absent from the data)"]


def test_type_change_at_scoring_counts_as_missing_not_crash():
    reference = drift_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), np.full(4, 0.5))
    table = population_stability(reference, pd.DataFrame({"x": ["1", "oops", "3", None]}), None)
    assert row_of(table, "x")["largest_shift"] == "missing: 0.0% -> 50.0%"


def test_verdict_thresholds():
    table = pd.DataFrame(
        {
            "feature": ["a", SCORE, "c", "d"],
            "psi": [0.30, 0.15, 0.10, 0.05],
            "bins": [11, 11, 11, 11],
            "largest_shift": ["> 1: 10.0% -> 30.0%", "<= 0.1: 10.0% -> 20.0%", "x", "y"],
            "missing_in_data": [False] * 4,
        }
    )
    assert drift_verdict(table, warn_above=0.5, refuse_above=None) == ("ok", [])
    level, messages = drift_verdict(table, warn_above=0.1, refuse_above=None)
    assert level == "warn"  # 0.10 is not above 0.1
    assert messages == [
        "feature 'a': PSI 0.300 > 0.1 (warn; significant shift); largest shift > 1: 10.0% -> 30.0%",
        "the probabilities: PSI 0.150 > 0.1 (warn; moderate shift); largest shift <= 0.1: 10.0% -> 20.0%",
    ]
    level, messages = drift_verdict(table, warn_above=0.1, refuse_above=0.25)
    assert level == "refuse"
    assert messages[0].startswith("feature 'a': PSI 0.300 > 0.25 (refuse")
    assert messages[1].startswith("the probabilities: PSI 0.150 > 0.1 (warn")
    assert drift_verdict(table, warn_above=0.3, refuse_above=0.3) == ("ok", [])
    with pytest.raises(ValueError, match="refuse_above"):
        drift_verdict(table, warn_above=0.2, refuse_above=0.1)


def test_bad_inputs_are_refused():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="n_bins"):
        drift_reference(frame, np.array([0.1, 0.2]), n_bins=1)
    with pytest.raises(ValueError, match="one per row"):
        drift_reference(frame, np.array([0.1]))
    with pytest.raises(TypeError, match="'t'"):
        drift_reference(
            pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"])}), np.array([0.1, 0.2])
        )
    with pytest.raises(ValueError, match="not a drift reference"):
        population_stability({}, frame, None)


values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64))
words = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))


def frames(draw, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    numbers = draw(st.lists(values, min_size=n, max_size=n))
    counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    texts = draw(st.lists(words, min_size=n, max_size=n))
    scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "num": pd.Series([np.nan if v is None else v for v in numbers], dtype="float64"),
            "count": counts,
            "text": pd.Series(texts, dtype="str"),
            "cat": pd.Categorical(texts),
        }
    )
    return frame, np.array(scores, dtype=float)


@st.composite
def two_frames(draw):
    ref = frames(draw, draw(st.integers(1, 30)))
    new = frames(draw, draw(st.integers(1, 30)))
    return ref, new, draw(st.integers(2, 10))


@settings(max_examples=150, deadline=None)
@given(two_frames())
def test_psi_is_nonnegative_and_zero_against_own_reference(data):
    (frame, scores), (new, new_scores), n_bins = data
    reference = drift_reference(frame, scores, n_bins=n_bins)
    json.dumps(reference, allow_nan=False)
    own = population_stability(reference, frame, scores)
    assert (own["psi"] == 0.0).all()
    other = population_stability(reference, new, new_scores)
    assert (other["psi"] >= 0.0).all()
    assert np.isfinite(other["psi"]).all()


def test_bin_shares_are_what_the_psi_compares():
    from models.drift import bin_shares

    reference = drift_reference(
        pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), np.array([0.1, 0.2, 0.3, 0.4]), n_bins=2
    )
    shares = bin_shares(reference["score"], np.array([0.1, 0.1, 0.1, 0.4]))
    assert list(shares.columns) == ["bin", "reference", "current"]
    assert shares["reference"].sum() == pytest.approx(1) and shares[
        "current"
    ].sum() == pytest.approx(1)
    assert shares["current"].iloc[0] > shares["reference"].iloc[0]
