"""Reasons in words: the largest contributions each way, said with the lead's own values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import feature_specs
from features.catalog import FeatureSpec
from models.reasons import top_reasons

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
