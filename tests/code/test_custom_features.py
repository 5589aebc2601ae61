"""Custom fields become features with the kind and knowledge the mapping gives them."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import build_features, feature_plan
from features.contract import Knowledge
from features.custom import build_custom, custom_specs
from features.mapping.contract import CustomFeature, effective_contract
from features.mapping.file import parse_mapping

T = pd.Timestamp


def _field(name, kind, table="leads", knowledge=Knowledge.AT_CREATION, label=None):
    return CustomFeature(table, name, kind, knowledge, label or f"{name}: {{value}}")


LEADS = pd.DataFrame(
    {
        "lead_id": pd.Series(["a", "b"], dtype="str"),
        "created_at": [T("2024-01-01 10:00"), T("2024-01-05")],
        "account_id": pd.Series(["x", None], dtype="str"),
        "stage": pd.Categorical(["mql", None]),
        "visits": [3.0, None],
        "opted_out": pd.array([True, None], dtype="boolean"),
    }
)
ACCOUNTS = pd.DataFrame({"account_id": pd.Series(["x"], dtype="str"), "tier": ["gold"]})
SNAPS = pd.DataFrame(
    {"lead_id": ["a", "a", "b"], "as_of": [T("2024-01-01"), T("2024-01-02"), T("2024-01-06")]}
)


def test_custom_fields_are_read_per_snapshot_and_not_before_the_lead_existed():
    fields = [
        _field("stage", "category"),
        _field("visits", "number"),
        _field("opted_out", "boolean"),
        _field("tier", "category", table="accounts"),
        _field("notes", "text"),
    ]
    out = build_custom({"leads": LEADS, "accounts": ACCOUNTS}, SNAPS, fields)
    expected = pd.DataFrame(
        {
            # The first snapshot is taken before the lead was created (10:00): nothing known.
            "lead_stage": pd.Series([None, "mql", None], dtype="str"),
            "lead_visits": [float("nan"), 3.0, float("nan")],
            "lead_opted_out": [float("nan"), 1.0, float("nan")],
            "account_tier": pd.Series([None, "gold", None], dtype="str"),
        }
    )
    pd.testing.assert_frame_equal(out, expected)
    assert [s.name for s in custom_specs(fields)] == list(expected.columns)  # text: no feature


def _contract(knowledge: str):
    return effective_contract(
        parse_mapping(
            {
                "leads": {
                    "columns": {"budget": {"from": "budget", "knowledge": "at_creation"}},
                    "custom": {
                        "stage": {"kind": "category", "knowledge": knowledge},
                        "visits": {"kind": "number", "knowledge": "at_creation"},
                    },
                }
            }
        )
    )


def test_fields_the_mapping_does_not_declare_known_are_left_out():
    plan = feature_plan(["bant", "demographic", "custom"], contract=_contract("at_extraction"))
    assert plan.left_out["lead_stage"] == "leads.stage (at_extraction)"
    assert "lead_visits" in plan.names
    # seniority is mutable and not declared: its feature is left out, budget's is kept
    assert plan.left_out["seniority"] == "leads.seniority (at_extraction)"
    assert "bant_budget" in plan.names
    assert "bant_authority" not in plan.names


def test_build_features_leaves_out_what_the_plan_leaves_out():
    leads = LEADS.assign(budget=pd.Categorical([None, "10k_50k"]), authority=None)
    for column in ("need", "timeline", "source", "country", "seniority", "department"):
        leads[column] = None
    leads["email_domain_kind"] = None
    contract = _contract("after_outcome")
    out = build_features({"leads": leads}, SNAPS, ["custom"], contract=contract)
    assert list(out.columns) == ["lead_id", "as_of", "lead_visits"]


def test_a_custom_name_that_collides_with_a_feature_is_refused():
    contract = effective_contract(
        parse_mapping({"leads": {"custom": {"age_days": {"kind": "number"}}}})
    )
    with pytest.raises(ValueError, match="same feature name.*lead_age_days"):
        feature_plan(["lifecycle", "custom"], contract=contract)
