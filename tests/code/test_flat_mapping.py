"""A flat export (one row per lead with an outcome column) through a flat mapping."""

from __future__ import annotations

import pandas as pd
import pytest

from features.mapping.apply import apply_flat
from features.mapping.contract import effective_contract
from features.mapping.file import MappingError, parse_mapping
from features.validation import validate_crm

EXPORT = pd.DataFrame(
    {
        "signup": ["2024-01-01 09:00", "2024-01-02 10:00", "2024-01-03 11:00"],
        "plan": ["Pro", "Free", "Pro"],
        "y": ["yes", "no", "pending"],
        "call_minutes": ["3", "10", "1"],
    }
)


def _mapping(**changes):
    data = {
        "layout": "flat",
        "from": "export.csv",
        "leads": {
            "columns": {"created_at": {"from": "signup", "format": "%Y-%m-%d %H:%M"}},
            "custom": {
                "plan": {"kind": "category", "knowledge": "at_creation"},
                "call_minutes": {"kind": "number", "knowledge": "after_outcome"},
            },
        },
        "outcome": {"from": "y", "won": ["Yes"], "lost": ["no"]},
    }
    data.update(changes)
    return parse_mapping(data)


def test_rows_become_leads_and_decided_outcomes_opportunities():
    mapped = apply_flat(EXPORT, _mapping())
    leads, opps = mapped.tables["leads"], mapped.tables["opportunities"]
    assert leads["lead_id"].tolist() == ["row-0000001", "row-0000002", "row-0000003"]
    assert list(leads.columns) == ["lead_id", "created_at", "plan", "call_minutes"]
    # "pending" is neither won nor lost: the lead is open, no opportunity.
    assert opps["lead_id"].tolist() == ["row-0000001", "row-0000002"]
    assert opps["is_won"].tolist() == [True, False]
    # No outcome date: the outcome is dated at the end of the lead's first day, so a snapshot
    # one day after creation sees the lead before it.
    assert opps["closed_at"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert mapped.left_out == {"leads": []}


def test_pseudo_time_from_the_row_order():
    mapping = _mapping(pseudo_time={"start": "2010-01-01", "step_minutes": 90})
    mapping.leads.columns.clear()
    mapped = apply_flat(EXPORT, mapping)
    created = mapped.tables["leads"]["created_at"].tolist()
    assert created == [pd.Timestamp("2010-01-01") + pd.Timedelta(minutes=90 * i) for i in range(3)]
    assert mapped.left_out == {"leads": ["signup"]}


def test_a_flat_export_validates_with_its_own_values_and_no_other_table():
    mapping = _mapping()
    contract = effective_contract(mapping)
    assert contract.flat
    raw = apply_flat(EXPORT, mapping).tables
    result = validate_crm(raw, pd.Timestamp("2024-06-01"), contract=contract)
    assert result.counts["rows_rejected"].sum() == 0
    assert result.tables["leads"]["plan"].tolist() == ["pro", "free", "pro"]
    assert result.absent_tables == ("accounts", "events")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outcome": {"from": "y", "won": ["ja"]}}, "outcome.won ['ja'] matches no value"),
        ({"outcome": {"from": "status", "won": ["yes"]}}, "column 'status'"),
    ],
)
def test_flat_mapping_mistakes_are_one_line(change, message):
    with pytest.raises(MappingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_flat(EXPORT, _mapping(**change))


def test_without_a_created_column_or_pseudo_time_it_says_what_to_add():
    mapping = _mapping()
    mapping.leads.columns.clear()
    with pytest.raises(MappingError, match="needs leads.columns.created_at, or pseudo_time"):
        apply_flat(EXPORT, mapping)


def test_outcome_dates_read_creation_times_as_validation_does():
    export = EXPORT.assign(signup=["2024-01-01 23:30", "2024-01-01T23:30:00+00:00", "x"])
    mapping = _mapping()
    mapping.leads.columns["created_at"] = "signup"  # ISO 8601, local to New York unless offset
    mapping = parse_mapping({**mapping.model_dump(by_alias=True), "time_zone": "America/New_York"})
    opps = apply_flat(export, mapping).tables["opportunities"]
    # 23:30 in New York is 04:30 UTC the next day; with an offset, 23:30 UTC is what it says.
    assert opps["closed_at"].tolist() == [pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-02")]
