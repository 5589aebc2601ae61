"""The disqualifier's input: ``unsubscribed`` as of each snapshot, the same rule for evaluation
and the nightly job."""

from __future__ import annotations

import pandas as pd

from features.gate_inputs import ABSENT, CURRENT, FROM_HISTORY, unsubscribed_as_of

SNAPSHOTS = pd.DataFrame(
    {
        "lead_id": ["L1", "L1", "L2"],
        "as_of": pd.to_datetime(["2024-03-01", "2024-03-10", "2024-03-10"]),
    }
)
LEADS = pd.DataFrame({"lead_id": ["L1", "L2"], "unsubscribed": [True, False]})
HISTORY = pd.DataFrame(
    {
        "entity": ["leads"],
        "entity_id": ["L1"],
        "field": ["unsubscribed"],
        "changed_at": pd.to_datetime(["2024-03-05"]),
        "value": ["True"],  # as validation writes a bool
    }
)


def test_from_the_history_a_later_unsubscribe_is_not_seen_by_an_earlier_snapshot():
    values, source = unsubscribed_as_of({"leads": LEADS, "field_history": HISTORY}, SNAPSHOTS)
    assert values.tolist() == [False, True, False] and source == FROM_HISTORY


def test_a_change_at_the_snapshot_instant_is_not_yet_known():
    at = SNAPSHOTS.assign(as_of=pd.to_datetime(["2024-03-05"] * 3))
    values, _ = unsubscribed_as_of({"leads": LEADS, "field_history": HISTORY}, at)
    assert values.tolist() == [False, False, False]


def test_without_a_history_the_current_value_and_a_sentence_saying_so():
    other_field = HISTORY.assign(field="budget")
    values, source = unsubscribed_as_of({"leads": LEADS, "field_history": other_field}, SNAPSHOTS)
    assert values.tolist() == [True, True, False] and source == CURRENT


def test_an_export_without_the_field_disqualifies_nobody():
    values, source = unsubscribed_as_of({"leads": LEADS[["lead_id"]]}, SNAPSHOTS)
    assert values is None and source == ABSENT
