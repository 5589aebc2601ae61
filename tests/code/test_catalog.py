"""The leakage guard: no feature reads a field known only after its snapshot."""

from __future__ import annotations

import pytest

from features.build import BUILDERS, build_features, feature_specs
from features.catalog import FeatureSpec, check_point_in_time_safe
from features.contract import TABLES, Knowledge

ALL = list(BUILDERS)


def test_every_feature_reads_only_fields_known_by_its_snapshot():
    specs = feature_specs(ALL)
    assert specs, "no features configured"
    for spec in specs:
        for source, known in zip(spec.sources, spec.knowledge, strict=True):
            assert known in (Knowledge.AT_CREATION, Knowledge.AS_OF_SNAPSHOT), (
                f"{spec.name} reads {source} ({known})"
            )


def test_no_feature_reads_outcome_current_state_or_personal_fields():
    forbidden = {
        f"{t.name}.{c.name}"
        for t in TABLES.values()
        for c in t.columns
        if c.knowledge in (Knowledge.AFTER_OUTCOME, Knowledge.AT_EXTRACTION, Knowledge.PERSONAL)
    }
    assert {
        "opportunities.is_won",
        "opportunities.closed_at",
        "accounts.is_customer",
        "leads.email",
    } <= forbidden
    read = {src for spec in feature_specs(ALL) for src in spec.sources}
    assert not (read & forbidden)


def test_a_feature_reading_the_outcome_is_refused():
    leaky = FeatureSpec("won_already", "Won: {value}", ("opportunities.is_won",), "test")
    with pytest.raises(ValueError, match="won_already reads opportunities.is_won"):
        check_point_in_time_safe([leaky])


def test_names_are_unique_stable_and_labelled():
    specs = feature_specs(ALL)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert all(n.isidentifier() and n == n.lower() for n in names)
    assert all("{value}" in s.label for s in specs)
    assert specs[0].describe(3.0).count("3") >= 1


def test_describe_reads_like_a_reason():
    spec = next(s for s in feature_specs(["behavioral"]) if s.name == "n_pricing_page_view_7d")
    assert spec.describe(3.0) == "Viewed the pricing page 3 times in the last 7 days"
    bant = next(s for s in feature_specs(["bant"]) if s.name == "bant_timeline")
    assert bant.describe("under_3_months") == "Purchase timeline: under 3 months"
    assert bant.describe(float("nan")) == "Purchase timeline: unknown"
    age = FeatureSpec("lead_age_days", "Lead created {value} days ago", (), "t")
    assert [age.describe(v) for v in (180.4, 2.25, 0.771, 12000.0)] == [
        "Lead created 180 days ago", "Lead created 2.2 days ago", "Lead created 0.77 days ago",
        "Lead created 12,000 days ago",
    ]  # fmt: skip


def test_unknown_builder_is_named(tiny_tables):
    with pytest.raises(ValueError, match="telepathy"):
        feature_specs(["telepathy"])


def test_build_features_returns_one_row_per_snapshot_in_order(tiny_tables):
    import pandas as pd

    snaps = pd.DataFrame(
        {"lead_id": ["L2", "L1"], "as_of": pd.to_datetime(["2024-03-07", "2024-03-12"])}
    )
    out = build_features(tiny_tables, snaps, ALL)
    assert out[["lead_id", "as_of"]].equals(snaps)
    assert list(out.columns[2:]) == [s.name for s in feature_specs(ALL)]


def test_category_codes_read_as_words_and_ranges():
    spec = FeatureSpec("b", "Budget: {value}", (), "t", categorical=True)
    assert [spec.describe(v) for v in ("10k_50k", "3_6_months", "under_3_months", "c_level")] == [
        "Budget: 10k-50k", "Budget: 3-6 months", "Budget: under 3 months", "Budget: c level",
    ]  # fmt: skip
