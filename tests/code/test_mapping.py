"""The mapping file: its structure, its one-line errors, what it means for the contract."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from features.contract import Knowledge
from features.mapping.apply import apply_mapping, export_table_names
from features.mapping.contract import NATIVE, effective_contract, normalise_key
from features.mapping.file import MappingError, load_mapping, parse_mapping

BASE = {
    "layout": "relational",
    "leads": {
        "from": "contacts",
        "columns": {
            "lead_id": "hs_object_id",
            "created_at": {"from": "createdate", "format": "%Y-%m-%d %H:%M:%S"},
            "source": {
                "from": "hs_analytics_source",
                "values": {"ORGANIC_SEARCH": "organic_search"},
            },
            "budget": {"from": "budget_band", "knowledge": "at_creation"},
        },
        "custom": {
            "lifecyclestage": {"kind": "category", "knowledge": "at_creation"},
            "firstname": {"kind": "personal"},
        },
    },
    "events": {
        "from": "engagements",
        "columns": {"lead_id": "contact_id", "timestamp": "hs_timestamp", "event_type": "type"},
        "values": {"duration_s": {"from": "hs_call_duration", "label": "{value} s on calls"}},
        "types": {
            "call": {
                "count": "Had {value} calls",
                "last": "Last call {value} days ago",
                "never": "No call yet",
                "actor": "company",
                "values": ["duration_s"],
            }
        },
    },
    "opportunities": {
        "from": "deals",
        "columns": {
            "lead_id": "contact_id",
            "closed_at": "closedate",
            "is_won": {
                "from": "dealstage",
                "values": {"closedwon": True, "closedlost": False},
                "unmapped": "missing",
            },
        },
    },
}


def _error(data) -> str:
    with pytest.raises(MappingError) as err:
        effective_contract(parse_mapping(data, "m.yaml"))
    message = str(err.value)
    assert "\n" not in message
    return message


def _with(path: str, value):
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def test_a_valid_mapping_parses():
    mapping = parse_mapping(BASE)
    assert mapping.leads.column_map("created_at").format == "%Y-%m-%d %H:%M:%S"
    assert mapping.leads.column_map("lead_id").from_ == "hs_object_id"
    assert export_table_names(mapping) == {
        "leads": "contacts",
        "events": "engagements",
        "opportunities": "deals",
    }


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("leads.custom.lifecyclestage.kind", "numbr", "leads.custom.lifecyclestage.kind: Input"),
        ("leads.custom.lifecyclestage.knowlege", "x", "knowlege: unknown key"),
        ("leads.columns.country", "createdate", "export column 'createdate' is mapped twice"),
        ("leads.columns.stage", "lifecycle", "'stage', which is not a contract column"),
        ("events.types.call.values", ["pages"], "names 'pages', which events.values"),
        ("leads.custom.Stage", {"kind": "category"}, "custom field's name must be lower-case"),
        ("events.types.call.count", "calls", "count must contain {value}"),
        ("leads.custom.lifecyclestage.knowledge", "as_of", "needs the field's history"),
        (
            "leads.columns.source.values",
            {"Paid Social": "paid_social", "paid-social": "x"},
            "collide once normalised",
        ),
    ],
)
def test_mapping_errors_are_one_line_naming_the_key(path, value, expected):
    data = _with(path, value)
    if path.endswith("knowlege"):
        data["leads"]["custom"]["lifecyclestage"]["knowlege"] = value
    assert expected in _error(data)


def test_a_key_written_twice_in_the_file_is_refused(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("leads:\n  from: contacts\nleads:\n  from: people\n")
    with pytest.raises(MappingError, match=r"key 'leads' appears twice \(lines 1 and 3\)"):
        load_mapping(path)


def test_a_missing_or_broken_file_is_one_line(tmp_path):
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("leads: [unclosed\n")
    with pytest.raises(MappingError, match=r"not valid YAML \(line 2\)"):
        load_mapping(bad)


def test_mutable_fields_are_not_features_unless_declared():
    contract = effective_contract(parse_mapping(BASE))
    leads = contract.tables["leads"]
    assert leads.by_name["seniority"].knowledge == Knowledge.AT_EXTRACTION  # not declared
    assert leads.by_name["budget"].knowledge == Knowledge.AT_CREATION  # declared
    assert leads.by_name["created_at"].knowledge == Knowledge.AT_CREATION  # a fact of creation
    assert ("leads", "budget") in contract.declared
    assert ("leads", "lifecyclestage") in contract.declared
    assert leads.by_name["firstname"].knowledge == Knowledge.PERSONAL
    custom = {c.name: c for c in contract.custom}
    assert custom["lifecyclestage"].is_feature
    assert not custom["firstname"].is_feature
    assert custom["lifecyclestage"].label == "Lifecyclestage: {value}"
    # Without a mapping the contract's own declarations hold.
    assert effective_contract(None) is NATIVE
    assert NATIVE.tables["leads"].by_name["seniority"].knowledge == Knowledge.AT_CREATION


def test_history_makes_a_field_as_of_and_not_a_declaration():
    data = _with(
        "field_history",
        {
            "from": "property_history",
            "entities": {"CONTACT": "leads"},
            "fields": {"hs_budget": "budget", "stage": "lifecyclestage"},
        },
    )
    data["leads"]["custom"]["lifecyclestage"]["knowledge"] = "as_of"
    contract = effective_contract(parse_mapping(data))
    assert contract.history == {("leads", "budget"), ("leads", "lifecyclestage")}
    assert contract.tables["leads"].by_name["budget"].knowledge == Knowledge.AS_OF_SNAPSHOT
    assert ("leads", "budget") not in contract.declared
    assert contract.read_rules[("field_history", "entity")].values == (("contact", "leads"),)
    assert contract.read_rules[("field_history", "field")].values == (
        ("hs_budget", "budget"),
        ("stage", "lifecyclestage"),
    )
    bad = _with("field_history", {"fields": {"x": "no_such_field"}})
    assert "neither a contract column nor a custom field" in _error(bad)


def test_read_rules_carry_formats_and_normalised_value_maps():
    contract = effective_contract(parse_mapping(BASE))
    rule = contract.read_rules[("opportunities", "is_won")]
    assert rule.values == (("closedwon", True), ("closedlost", False))
    assert rule.unmapped == "missing"
    assert contract.read_rules[("leads", "created_at")].timestamp_format == "%Y-%m-%d %H:%M:%S"
    assert contract.read_rules[("leads", "source")].time_zone is None


def test_normalise_key():
    assert normalise_key("  Closed-Won ") == "closed_won"
    assert normalise_key("PAID_SOCIAL") == "paid_social"
    assert normalise_key("Ｅmail\tOpened") == "email_opened"  # NFKC: full-width letters


def test_apply_renames_and_reports_what_it_left_out():
    raw = {
        "leads": pd.DataFrame(
            {
                "hs_object_id": ["1"],
                "createdate": ["2024-01-01 10:00:00"],
                "hs_analytics_source": ["ORGANIC_SEARCH"],
                "budget_band": ["<10k"],
                "lifecyclestage": ["lead"],
                "firstname": ["Ada"],
                "country": ["France"],  # same name as the contract: taken as is
                "hs_unused": ["x"],
            }
        ),
        "opportunities": pd.DataFrame(
            {"contact_id": ["1"], "closedate": [None], "dealstage": ["closedwon"]}
        ),
    }
    mapped = apply_mapping(raw, parse_mapping(BASE))
    assert list(mapped.tables["leads"].columns) == [
        "lead_id", "created_at", "source", "country", "budget", "lifecyclestage", "firstname",
    ]  # fmt: skip
    assert mapped.tables["leads"]["country"].tolist() == ["France"]
    assert mapped.left_out == {"leads": ["hs_unused"]}
    assert list(mapped.tables["opportunities"].columns) == ["lead_id", "closed_at", "is_won"]


def test_apply_names_the_column_the_export_lacks():
    raw = {"leads": pd.DataFrame({"hs_object_id": ["1"], "created": ["x"]})}
    with pytest.raises(MappingError, match=r"leads.created_at comes from column 'createdate'"):
        apply_mapping(raw, parse_mapping(BASE))
