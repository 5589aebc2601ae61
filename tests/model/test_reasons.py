"""Reasons in words: the largest contributions each way, said with the lead's own values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.build import feature_specs
from features.catalog import FeatureSpec
from models.reasons import FeatureGroups, PhraseBook, _combinations, _displayed, top_reasons

SPECS = {
    "demos": FeatureSpec("demos", "Requested a demo {value} times in the last 7 days", (), "t"),
    "days": FeatureSpec(
        "days", "Last activity {value} days ago", (), "t", missing_label="No activity yet"
    ),
    "seniority": FeatureSpec("seniority", "Seniority: {value}", (), "t", categorical=True),
    "size": FeatureSpec("size", "Company has {value} employees", (), "t"),
}
NAMES = list(SPECS)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "demos": [2.0, 0.0, 1.0],
            "days": [3.0, np.nan, 40.0],
            "seniority": pd.Categorical(["vp", "individual_contributor", None]),
            "size": [250, 12, 5000],
        },
        index=[10, 11, 12],
    )


def test_top_reasons_each_way_in_order_with_values_and_missing_labels():
    contributions = np.array(
        [
            [0.9, 0.3, 0.5, -0.2, -1.7],  # last column: expected value, ignored
            [-0.4, -0.8, 0.02, 0.001, -1.7],
            [0.0, -0.3, 0.0, 0.6, -1.7],
        ]
    )
    reasons = top_reasons(contributions, frame(), NAMES, SPECS, k=2, min_log_odds=0.01)
    assert reasons.index.tolist() == [10, 11, 12]
    assert reasons["reasons_for"].tolist() == [
        "Requested a demo 2 times in the last 7 days; Seniority: vp",
        "Seniority: individual contributor",  # 0.001 is below the floor: not a reason
        "Company has 5000 employees",
    ]
    assert reasons["reasons_against"].tolist() == [
        "Company has 250 employees",
        "No activity yet; Requested a demo 0 times in the last 7 days",
        "Last activity 40 days ago",
    ]


def test_no_contribution_above_the_floor_gives_no_reason():
    reasons = top_reasons(np.zeros((3, 4)), frame(), NAMES, SPECS, k=3)
    assert reasons["reasons_for"].tolist() == ["", "", ""] == reasons["reasons_against"].tolist()


def test_ties_and_k_larger_than_the_features_are_handled():
    contributions = np.array([[0.5, 0.5, 0.5, 0.5]] * 3)
    reasons = top_reasons(contributions, frame(), NAMES, SPECS, k=10)
    assert all(r.count("; ") == 3 for r in reasons["reasons_for"])


def test_rows_must_match():
    with pytest.raises(ValueError, match="2 rows of contributions for 3 rows"):
        top_reasons(np.zeros((2, 4)), frame(), NAMES, SPECS)


def test_every_days_since_feature_says_what_missing_means():
    specs = feature_specs(["behavioral", "lifecycle"])
    for spec in specs:
        if spec.name.startswith("days_since"):
            assert spec.missing_label and "unknown" not in spec.describe(None), spec.name
            assert spec.describe(3.0) != spec.missing_label


# --- grouped reasons and number agreement (issue 15) -------------------------------------------
DEMO = ("activity:demo_request", "Demo request (every window)")
GROUPED = {
    "demo_7d": FeatureSpec(
        "demo_7d", "Requested a demo {value} [time|times] in the last 7 days", (), "t",
        group=DEMO[0], group_title=DEMO[1],
    ),
    "demo_30d": FeatureSpec(
        "demo_30d", "Requested a demo {value} [time|times] in the last 30 days", (), "t",
        group=DEMO[0], group_title=DEMO[1],
    ),
    "demo_last": FeatureSpec(
        "demo_last", "Requested a demo {value} [day|days] ago", (), "t",
        missing_label="Never requested a demo", group=DEMO[0], group_title=DEMO[1],
        clause="last {value} [day|days] ago",
    ),
    "size": FeatureSpec("size", "Company has {value} [employee|employees]", (), "t"),
}  # fmt: skip
GROUPED_NAMES = list(GROUPED)


def grouped_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "demo_7d": [1.0, 0.0, 2.0],
            "demo_30d": [3.0, 0.0, 2.0],
            "demo_last": [1.0, np.nan, 4.0],
            "size": [1, 40, 250],
        }
    )


def test_a_group_is_ranked_by_its_sum_and_said_once_by_its_strongest_member():
    contributions = np.array(
        [
            # The 7-day count pushes up, the 30-day one down: the group nets +0.5, said once
            # in the 7-day count's words, with the recency clause.
            [0.9, -0.6, 0.2, 0.3],
            # Every member pushes down: said by the strongest (the missing recency), no clause.
            [-0.1, -0.2, -0.5, 0.05],
            # Members cancel out: the group is no reason either way, though two members are big.
            [0.4, -0.4, 0.0, -0.2],
        ]
    )
    reasons = top_reasons(contributions, grouped_frame(), GROUPED_NAMES, GROUPED, k=3)
    assert reasons["reasons_for"].tolist() == [
        "Requested a demo 1 time in the last 7 days, last 1 day ago; Company has 1 employee",
        "Company has 40 employees",
        "",
    ]
    assert reasons["reasons_against"].tolist() == [
        "",
        "Never requested a demo",
        "Company has 250 employees",
    ]


def test_the_clause_is_not_repeated_when_the_recency_member_is_the_strongest():
    contributions = np.array([[0.1, 0.0, 0.8, 0.0]] * 3)
    reasons = top_reasons(contributions, grouped_frame(), GROUPED_NAMES, GROUPED, k=1)
    assert reasons["reasons_for"].tolist() == [
        "Requested a demo 1 day ago",
        "Never requested a demo",  # the recency member says what missing means
        "Requested a demo 4 days ago",
    ]


def test_groups_follow_the_catalog_and_sum_their_members():
    specs = {s.name: s for s in feature_specs(["behavioral", "lifecycle"])}
    names = list(specs)
    groups = FeatureGroups.of(names, specs)
    members = [n for n, g in zip(names, groups.member_of, strict=True)
               if groups.keys[g] == "activity:demo_request"]  # fmt: skip
    assert members == [
        "n_demo_request_7d", "n_demo_request_30d", "n_demo_request_90d",
        "days_since_last_demo_request",
    ]  # fmt: skip
    assert names[groups.clause_member[groups.keys.index("activity:demo_request")]] == (
        "days_since_last_demo_request"
    )
    # Demographic and lifecycle's source stand alone.
    assert "source" in groups.keys
    rng = np.random.default_rng(0)
    contributions = rng.normal(size=(5, len(names) + 1))
    summed = groups.sum(contributions)
    assert summed.shape == (5, len(groups.keys))
    np.testing.assert_allclose(summed.sum(axis=1), contributions[:, :-1].sum(axis=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "1 time"), (1.0, "1 time"), (2, "2 times"), (0, "0 times"), (0.5, "0.5 times"),
     (True, "True times"), (None, "unknown times")],
)  # fmt: skip
def test_number_agreement(value, expected):
    spec = FeatureSpec("x", "{value} [time|times]", (), "t")
    assert spec.describe(value) == expected


def test_every_built_in_count_label_agrees_in_number():
    for spec in feature_specs(["behavioral", "lifecycle", "firmographic"]):
        one, many = spec.describe(1.0), spec.describe(3.0)
        assert not any(w in one for w in (" 1 times", " 1 days", " 1 webinars", " 1 forms")), one
        assert "[" not in one and "[" not in many, (one, many)


# --- the fast path against a plain reading of the rules (issue 15's speed work) ----------------
def reference_reasons(contributions, features, names, specs, k, min_log_odds):
    """The rules of the module doc, row by row in plain Python: group sums (first member plus
    the others), ranked largest first with the catalog's order on ties, kept while at least the
    floor; each said by its strongest member (first of equals), plus the clause member's clause."""
    groups = FeatureGroups.of(names, specs)
    floor = max(min_log_odds, np.finfo(float).tiny)
    said = {"reasons_for": [], "reasons_against": []}

    def value(row, col):
        v = features[names[col]].iloc[row]
        if isinstance(v, float) and not np.isnan(v):
            v = float(_displayed(np.array([v]))[0])
        return None if pd.isna(v) else v

    for i in range(len(features)):
        c = contributions[i]
        sums = [c[m[0]] + sum(c[j] for j in m[1:]) for m in groups.members]
        for column, sign in (("reasons_for", 1.0), ("reasons_against", -1.0)):
            order = sorted(range(len(sums)), key=lambda g: (-sign * sums[g], g))
            phrases = []
            for g in order[:k]:
                if not sign * sums[g] >= floor:
                    break
                members = list(groups.members[g])
                best = max(members, key=lambda m: sign * c[m])  # first of equals
                text = specs[names[best]].describe(value(i, best))
                extra = int(groups.clause_member[g])
                if extra >= 0 and extra != best:
                    clause = specs[names[extra]].describe_clause(value(i, extra))
                    text += f", {clause}" if clause is not None else ""
                phrases.append(text)
            said[column].append("; ".join(phrases))
    return said


@st.composite
def reason_cases(draw):
    n_features = draw(st.integers(1, 7))
    names = [f"f{j}" for j in range(n_features)]
    specs = {}
    for j, name in enumerate(names):
        group = draw(st.sampled_from([None, "a", "b"]))
        specs[name] = FeatureSpec(
            name, f"F{j} is {{value}} [unit|units]", (), "t", group=group,
            group_title=group, missing_label=draw(st.sampled_from([None, f"No F{j}"])),
            clause=draw(st.sampled_from([None, f"F{j} {{value}}"])),
        )  # fmt: skip
    n = draw(st.integers(1, 12))
    # Few distinct contributions: ties, zeros and values at the floor are common.
    small = st.sampled_from([-0.5, -0.2, -0.01, 0.0, 0.005, 0.01, 0.2, 0.5])
    contributions = np.array(draw(st.lists(st.lists(small, min_size=n_features + 1,
        max_size=n_features + 1), min_size=n, max_size=n)))  # fmt: skip
    values = st.sampled_from([0.0, 1.0, 2.0, 2.24, 17.6, np.nan])
    features = pd.DataFrame(
        {name: draw(st.lists(values, min_size=n, max_size=n)) for name in names}
    )
    if draw(st.booleans()):  # one categorical column, with missing values
        features[names[0]] = pd.Categorical(draw(st.lists(st.sampled_from(["vp", "c_level", None]),
            min_size=n, max_size=n)))  # fmt: skip
    k = draw(st.integers(1, 5))
    return contributions, features, names, specs, k, draw(st.sampled_from([0.0, 0.01, 0.3]))


@settings(max_examples=200, deadline=None)
@given(reason_cases())
def test_reasons_follow_the_rules_row_by_row(case):
    contributions, features, names, specs, k, floor = case
    expected = reference_reasons(contributions, features, names, specs, k, floor)
    book = PhraseBook(names, specs)
    for _ in range(2):  # a fresh phrase book, then the same book with every phrase known
        got = top_reasons(contributions, features, names, specs, k, floor, phrases=book)
        assert got["reasons_for"].tolist() == expected["reasons_for"]
        assert got["reasons_against"].tolist() == expected["reasons_against"]


def test_many_reasons_per_row_are_combined_without_overflow():
    # 12 reasons a row over 300 distinct phrases: the rows' keys would not fit 64 bits in one.
    rng = np.random.default_rng(5)
    names = [f"f{j}" for j in range(12)]
    specs = {n: FeatureSpec(n, f"{n} is {{value}}", (), "t") for n in names}
    features = pd.DataFrame({n: rng.integers(0, 25, 200).astype(float) for n in names})
    contributions = rng.normal(size=(200, 13))
    got = top_reasons(contributions, features, names, specs, k=12, min_log_odds=0.0)
    expected = reference_reasons(contributions, features, names, specs, 12, 0.0)
    assert got["reasons_for"].tolist() == expected["reasons_for"]
    assert got["reasons_against"].tolist() == expected["reasons_against"]


class CountingSpec(FeatureSpec):
    """A spec that counts how often it is put into words."""

    calls: list[object] = []

    def describe(self, value):
        CountingSpec.calls.append(value)
        return super().describe(value)


def test_a_phrase_book_describes_each_value_once_and_stays_bounded():
    names = ["visits"]
    specs = {"visits": CountingSpec("visits", "Visited {value} [time|times]", (), "t")}
    features = pd.DataFrame({"visits": [1.0, 2.0, 1.0, 2.0, np.nan]})
    contributions = np.array([[0.5, 0.0]] * 5)
    book = PhraseBook(names, specs)
    CountingSpec.calls.clear()
    first = top_reasons(contributions, features, names, specs, k=1, phrases=book)
    assert sorted(map(str, CountingSpec.calls)) == ["1.0", "2.0", "None"]
    again = top_reasons(contributions, features, names, specs, k=1, phrases=book)
    assert len(CountingSpec.calls) == 3  # nothing said twice
    assert first["reasons_for"].tolist() == again["reasons_for"].tolist() == [
        "Visited 1 time", "Visited 2 times", "Visited 1 time", "Visited 2 times",
        "Visited unknown times",
    ]  # fmt: skip
    small = PhraseBook(names, specs, max_phrases=2)
    CountingSpec.calls.clear()
    top_reasons(contributions, features, names, specs, k=1, phrases=small)
    assert len(small.texts) == 3  # one call's phrases are kept whole, the bound is checked after
    later = top_reasons(contributions[:2], features[:2], names, specs, k=1, phrases=small)
    assert len(CountingSpec.calls) == 6  # a new book: its phrases said again
    assert later["reasons_for"].tolist() == ["Visited 1 time", "Visited 2 times"]


def test_rows_differing_only_in_their_first_reason_stay_apart_past_64_bits():
    # 255 ids: base 256, so 12 ranks are 96 bits; a key kept in 64 bits would lose the first
    # ranks and merge these two rows.
    ids = np.array([0] + [7] * 11 + [1] + [7] * 11)
    codes = _combinations(ids, np.array([0, 12]), np.array([12, 12]), n_ids=255)
    assert codes[0] != codes[1]
    same = _combinations(np.array([3, 4, 3, 4, 5]), np.array([0, 2, 4]), np.array([2, 2, 1]), 9)
    assert same[0] == same[1] != same[2]


def test_no_reasons_asked_and_missing_contributions_are_handled():
    from models.reasons import top_groups

    alone = FeatureGroups.of(["a", "b", "c"], {})
    contributions = np.array([[0.5, 0.4, -0.3], [np.nan, 0.5, 0.4], [0.2, np.nan, -0.1]])
    assert top_groups(contributions, alone, k=0).shape == (2, 3, 0)
    chosen = top_groups(contributions, alone, k=3, min_log_odds=0.01)
    # A NaN contribution is no reason, and does not hide the others.
    assert chosen[0].tolist() == [[0, 1, -1], [1, 2, -1], [0, -1, -1]]
    assert chosen[1].tolist() == [[2, -1, -1], [-1, -1, -1], [2, -1, -1]]


def test_equal_values_of_other_types_keep_their_own_words():
    specs = {"a": FeatureSpec("a", "A is {value}", (), "t")}
    book = PhraseBook(["a"], specs)
    contributions = np.array([[0.5, 0.0]] * 2)
    flags = pd.DataFrame({"a": pd.array([True, False], dtype=object)})
    counts = pd.DataFrame({"a": [1, 0]})
    zeros = pd.DataFrame({"a": [-0.0, 0.0]})
    assert top_reasons(contributions, flags, ["a"], specs, k=1, phrases=book)[
        "reasons_for"
    ].tolist() == ["A is True", "A is False"]
    assert top_reasons(contributions, counts, ["a"], specs, k=1, phrases=book)[
        "reasons_for"
    ].tolist() == ["A is 1", "A is 0"]
    assert top_reasons(contributions, zeros, ["a"], specs, k=1, phrases=book)[
        "reasons_for"
    ].tolist() == ["A is 0", "A is 0"]
