"""Validation of a partitioned CRM equals validation of the whole: for any CRM and any number
of partitions, the same error (same message) or the same counts, reasons and quarantined rows."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.partitioned import PartitionWriter
from features.validation import ContractError, check_partitions, merge_results, validate_crm
from pipelines.partitioned_scoring import partition_task, validated_partition

EXTRACTED = pd.Timestamp("2024-06-01")
GOOD = ["2024-03-01 09:00", "2024-04-02 10:30", "2024-05-20 00:00"]
BAD = ["last spring", "2099-01-01 00:00"]  # unreadable; in the future


class _Model:
    """What partition_task needs of a model here: nothing (validation only)."""


@st.composite
def crms(draw):
    n_leads = draw(st.integers(1, 10))
    ids = draw(
        st.lists(st.sampled_from([f"L{i}" for i in range(8)]), min_size=n_leads, max_size=n_leads)
    )
    created = draw(st.lists(st.sampled_from(GOOD + BAD), min_size=n_leads, max_size=n_leads))
    n_events = draw(st.integers(0, 14))
    event_leads = draw(
        st.lists(
            st.sampled_from([f"L{i}" for i in range(10)]), min_size=n_events, max_size=n_events
        )
    )
    stamps = draw(st.lists(st.sampled_from(GOOD + BAD), min_size=n_events, max_size=n_events))
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": created,
            "account_id": draw(
                st.lists(st.sampled_from(["A1", "A2", "A9"]), min_size=n_leads, max_size=n_leads)
            ),
            "seniority": "vp",
        }
    )
    events = pd.DataFrame({"lead_id": event_leads, "timestamp": stamps, "event_type": "page_view"})
    opportunities = pd.DataFrame(
        {
            "opportunity_id": ["O1"], "lead_id": [ids[0]], "created_at": ["2024-05-01 00:00"],
            "closed_at": [None], "is_won": [None], "amount": [None],
        }
    )  # fmt: skip
    accounts = pd.DataFrame(
        {"account_id": ["A1", "A2", "A2"], "industry": ["software", "retail", "retail"]}
    )
    limits = {
        "max_unparseable_fraction": draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])),
        "max_quarantined_fraction": draw(st.sampled_from([None, 0.1, 0.4, 0.75])),
    }
    tables = {
        "leads": leads,
        "accounts": accounts,
        "events": events,
        "opportunities": opportunities,
    }
    return tables, limits, draw(st.integers(1, 4))


def _whole(tables, limits):
    try:
        result = validate_crm(
            copy.deepcopy(tables), EXTRACTED, nonempty_tables=("leads",), **limits
        )
    except ContractError as error:
        return str(error)
    return result


def _partitioned(tables, limits, partitions, folder):
    writer = PartitionWriter(folder, partitions)
    writer.write(copy.deepcopy(tables))
    writer.close({"extracted_at": EXTRACTED.isoformat()})
    params = {
        "crm": {},
        "validate": {**limits, "nonempty_tables": ["leads"]},
    }
    try:
        task, shared = partition_task(params, folder, _Model(), EXTRACTED)
        results = [shared] + [validated_partition(i, task)[1] for i in range(partitions)]
        merged = merge_results(results)
        check_partitions(merged, nonempty_tables=("leads",), **limits)
    except ContractError as error:
        return str(error)
    return merged


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(crm=crms())
def test_partitions_validate_as_the_whole_crm(crm, tmp_path_factory):
    tables, limits, partitions = crm
    whole = _whole(tables, limits)
    split = _partitioned(tables, limits, partitions, tmp_path_factory.mktemp("p") / "crm")
    if isinstance(whole, str) or isinstance(split, str):
        assert split == whole
        return
    key = ["table"]
    pd.testing.assert_frame_equal(
        split.counts.sort_values(key, ignore_index=True),
        whole.counts.sort_values(key, ignore_index=True),
        check_dtype=False,
    )
    key = ["table", "reason"]
    pd.testing.assert_frame_equal(
        split.reasons.sort_values(key, ignore_index=True),
        whole.reasons.sort_values(key, ignore_index=True),
        check_dtype=False,
    )
    for name, rejected in whole.rejects.items():
        mine = split.rejects.get(name, rejected.iloc[:0])
        assert mine["source_row"].tolist() == sorted(rejected["source_row"].tolist()), name
        assert (
            mine.set_index("source_row")["reject_reason"].sort_index().tolist()
            == rejected.set_index("source_row")["reject_reason"].sort_index().tolist()
        ), name


def test_the_wrong_type_share_is_judged_over_all_partitions_at_its_edge(tmp_path):
    # 1 unreadable created_at in 10 leads: 10% is not more than a 10% limit in either path;
    # each partition alone would say otherwise (one holds it: 1 of its ~3-5).
    leads = pd.DataFrame(
        {"lead_id": [f"L{i}" for i in range(10)], "created_at": ["last spring"] + GOOD[:1] * 9}
    )
    opportunities = pd.DataFrame(
        columns=["opportunity_id", "lead_id", "created_at", "closed_at", "is_won"]
    )
    tables = {"leads": leads, "opportunities": opportunities}
    for limit, raises in ((0.1, False), (0.09, True)):
        limits = {"max_unparseable_fraction": limit, "max_quarantined_fraction": None}
        whole = _whole(tables, limits)
        split = _partitioned(tables, limits, 3, tmp_path / f"crm{limit}")
        assert isinstance(whole, str) == raises == isinstance(split, str)
        if raises:
            assert split == whole and "created_at has the wrong type" in whole


@pytest.mark.parametrize("limit, raises", [(0.1, False), (0.09, True)])
def test_the_quarantined_share_is_judged_at_its_edge(tmp_path, limit, raises):
    leads = pd.DataFrame(
        {"lead_id": [f"L{i}" for i in range(10)], "created_at": ["2099-01-01"] + GOOD[:1] * 9}
    )
    opportunities = pd.DataFrame(
        columns=["opportunity_id", "lead_id", "created_at", "closed_at", "is_won"]
    )
    tables = {"leads": leads, "opportunities": opportunities}
    limits = {"max_unparseable_fraction": 0.5, "max_quarantined_fraction": limit}
    whole = _whole(tables, limits)
    split = _partitioned(tables, limits, 3, tmp_path / "crm")
    assert isinstance(whole, str) == raises == isinstance(split, str)
    if raises:
        assert split == whole and "would be quarantined" in whole
