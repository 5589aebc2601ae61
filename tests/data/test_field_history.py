"""Fields read as of each snapshot from their history: no value set later can reach a snapshot.

The leak it closes: a CRM export holds *current* values. A rep who writes the budget after the
deal was won makes "budget: over 250k" look known from the lead's first day.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.contract import Knowledge
from features.mapping.contract import NATIVE, effective_contract, with_export_history
from features.mapping.file import parse_mapping
from features.validation import validate_crm

T = pd.Timestamp
EXTRACTED = T("2024-12-31")
BUDGET_LABELS = {"$10K - $50K": "10k_50k", "Over $250K": "over_250k", "Under $10K": "under_10k"}


def _mapping(with_history: bool):
    data = {
        "leads": {
            "from": "contacts",
            "columns": {
                "lead_id": "id",
                "created_at": "createdate",
                "budget": {"from": "budget_range", "values": BUDGET_LABELS},
            },
            "custom": {"stage": {"kind": "category"}},
        },
        "opportunities": {
            "columns": {"lead_id": "contact", "closed_at": "closed", "is_won": "won"}
        },
    }
    if with_history:
        data["field_history"] = {
            "entities": {"CONTACT": "leads"},
            "fields": {"budget_range": "budget", "lifecyclestage": "stage"},
        }
        data["leads"]["custom"]["stage"]["knowledge"] = "as_of"
    else:  # the naive reading: today's value declared known at creation
        data["leads"]["columns"]["budget"]["knowledge"] = "at_creation"
    return effective_contract(parse_mapping(data))


def _raw(history_rows):
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "created_at": ["2024-01-01", "2024-01-01"],
            # Current values: L1's budget was overwritten after its deal was won (2024-03-01).
            "budget": ["Over $250K", "Under $10K"],
            "stage": ["customer", "lead"],
        }
    )
    opportunities = pd.DataFrame(
        {"lead_id": ["L1"], "closed_at": ["2024-03-01"], "is_won": ["true"]}
    )
    history = pd.DataFrame(
        history_rows, columns=["entity", "entity_id", "field", "value", "changed_at"]
    )
    return {"leads": leads, "opportunities": opportunities, "field_history": history}


HISTORY = [
    ("CONTACT", "L1", "budget_range", "$10K - $50K", "2024-01-10"),
    ("CONTACT", "L1", "budget_range", "Over $250K", "2024-03-05"),  # after the outcome
    ("CONTACT", "L1", "lifecyclestage", "lead", "2024-01-01 00:00:01"),
    ("CONTACT", "L1", "lifecyclestage", "customer", "2024-03-01"),
    ("CONTACT", "L2", "budget_range", "Under $10K", "2024-01-02"),
    ("CONTACT", "L2", "hs_email_bounce", "1", "2024-01-03"),  # a field nobody reads
    ("CONTACT", "L9", "budget_range", "Under $10K", "2024-01-02"),  # an unknown contact
    ("COMPANY", "A1", "budget_range", "Under $10K", "2024-01-02"),  # an entity not mapped
    ("CONTACT", "L2", "budget_range", "Over $250K", "2025-06-01"),  # after the export: the future
]
SNAPSHOTS = pd.DataFrame(
    {
        "lead_id": ["L1", "L1", "L1", "L1", "L2"],
        "as_of": [
            T("2024-01-05"),
            T("2024-02-01"),
            T("2024-03-05"),
            T("2024-03-06"),
            T("2024-02-01"),
        ],
    }
)


def _values(column: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in column]


def test_history_gives_the_value_as_of_each_snapshot_and_closes_the_leak():
    contract = _mapping(with_history=True)
    result = validate_crm(_raw(HISTORY), EXTRACTED, contract=contract)
    reasons = result.reasons.set_index(["table", "reason"])["rows"]
    assert reasons[("field_history", "unknown entity_id")] == 1
    assert reasons[("field_history", "changed_at in the future")] == 1
    notes = result.notes.set_index(["table", "note"])["rows"]
    # the bounce field and the unmapped COMPANY entity: kept, counted, never read
    assert notes[("field_history", "change of a field not read from history")] == 2
    features = build_features(result.tables, SNAPSHOTS, ["bant", "custom"], contract=contract)
    # Before the first change: not set yet. A change exactly at as_of is not yet known.
    assert _values(features["bant_budget"]) == [
        None, "10k_50k", "10k_50k", "over_250k", "under_10k",
    ]  # fmt: skip
    assert _values(features["lead_stage"]) == ["lead", "lead", "customer", "customer", None]

    # The same export read naively (current values declared known at creation): the value
    # written after the outcome is in every snapshot of the lead.
    naive = _mapping(with_history=False)
    raw = _raw(HISTORY)
    del raw["field_history"]
    leaky = validate_crm(raw, EXTRACTED, contract=naive)
    leaked = build_features(leaky.tables, SNAPSHOTS, ["bant"], contract=naive)
    assert leaked["bant_budget"].tolist()[:2] == ["over_250k", "over_250k"]


def test_history_values_are_read_like_the_column_they_change():
    contract = _mapping(with_history=True)
    rows = [*HISTORY[:2], ("CONTACT", "L1", "budget_range", "a lot", "2024-02-01")]
    result = validate_crm(_raw(rows), EXTRACTED, contract=contract)
    history = result.tables["field_history"]
    # value map applied (labels -> bands); a value outside the bands is kept, and counted
    assert history["value"].tolist() == ["10k_50k", "over_250k", "a_lot"]
    report = result.categories
    outside = report[report["status"].str.startswith("outside the vocabulary")]
    assert outside["column"].tolist() == ["budget"]
    assert outside["table"].tolist() == ["field_history[leads.budget]"]


changes = st.lists(
    st.tuples(
        st.sampled_from(["L1", "L2"]),
        st.sampled_from(["$10K - $50K", "Over $250K", "Under $10K"]),
        st.integers(0, 120 * 24),  # hours after 2024-01-01
    ),
    max_size=12,
)


@settings(max_examples=30, deadline=None)
@given(past=changes, future=changes, at=st.integers(24, 100 * 24))
def test_a_change_at_or_after_as_of_never_alters_the_snapshot(past, future, at):
    contract = _mapping(with_history=True)
    as_of = T("2024-01-01") + pd.Timedelta(hours=at)
    snapshots = pd.DataFrame({"lead_id": ["L1", "L2"], "as_of": [as_of, as_of]})

    def rows(items, shift):
        return [
            ("CONTACT", lead, "budget_range", value, str(when))
            for lead, value, hours in items
            if (when := shift(T("2024-01-01") + pd.Timedelta(hours=hours))) <= EXTRACTED
        ]

    before = [r for r in rows(past, lambda t: t) if T(r[4]) < as_of]
    later = rows(future, lambda t: as_of + (t - T("2024-01-01")))  # at or after as_of
    built = []
    for history in (before, before + later):
        raw = _raw(history)
        tables = validate_crm(raw, EXTRACTED, contract=contract).tables
        built.append(build_features(tables, snapshots, ["bant"], contract=contract))
    pd.testing.assert_frame_equal(built[0], built[1])


NATIVE_HISTORY = [  # a native export's history names the contract's own tables and columns
    ("leads", "L1", "budget", "10k_50k", "2024-01-01 00:00:01"),
    ("leads", "L1", "budget", "over_250k", "2024-03-05"),  # after the outcome
    ("Leads", "L2", "Budget", "under_10k", "2024-01-02"),  # spelled otherwise: same field
    ("leads", "L1", "created_at", "2023-01-01", "2024-01-02"),  # not editable: never read
]


def test_a_native_export_reads_every_editable_field_its_history_names():
    history = pd.DataFrame(
        NATIVE_HISTORY, columns=["entity", "entity_id", "field", "value", "changed_at"]
    )
    contract = with_export_history(NATIVE, history)
    assert contract.history == {("leads", "budget")}
    assert contract.knowledge("leads", "budget") == Knowledge.AS_OF_SNAPSHOT
    assert contract.knowledge("leads", "timeline") == Knowledge.AT_CREATION  # not named
    assert with_export_history(NATIVE, None) is NATIVE
    assert with_export_history(NATIVE, history.iloc[0:0]) is NATIVE
    mapped = _mapping(with_history=False)  # under a mapping, the mapping decides
    assert with_export_history(mapped, history) is mapped

    raw = _raw([])
    raw["leads"] = raw["leads"].assign(budget=["over_250k", "under_10k"]).drop(columns="stage")
    raw["field_history"] = history
    result = validate_crm(raw, EXTRACTED)  # the native contract, resolved by the history
    notes = result.notes.set_index(["table", "note"])["rows"]
    assert notes[("field_history", "change of a field not read from history")] == 1
    features = build_features(result.tables, SNAPSHOTS, ["bant"])
    assert _values(features["bant_budget"]) == [
        "10k_50k", "10k_50k", "10k_50k", "over_250k", "under_10k",
    ]  # fmt: skip
    # Without its history the same export is read as declared: today's value everywhere.
    del raw["field_history"]
    today = build_features(validate_crm(raw, EXTRACTED).tables, SNAPSHOTS, ["bant"])
    assert _values(today["bant_budget"]) == ["over_250k"] * 4 + ["under_10k"]
