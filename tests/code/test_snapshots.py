"""Snapshot policies."""

from __future__ import annotations

import pandas as pd
import pytest

from features.snapshots import periodic_offsets, snapshots_after_creation


def test_as_of_is_creation_date_plus_k_days_at_midnight(tiny_tables):
    out = snapshots_after_creation(tiny_tables["leads"], [7, 1])
    assert out.to_dict("list") == {
        "lead_id": ["L1", "L2", "L1", "L2"],
        "as_of": list(pd.to_datetime(["2024-03-02", "2024-03-06", "2024-03-08", "2024-03-12"])),
    }


def test_periodic_policy_is_every_k_days(tiny_tables):
    out = snapshots_after_creation(tiny_tables["leads"].iloc[:1], periodic_offsets(7, 21))
    assert out["as_of"].dt.strftime("%m-%d").tolist() == ["03-08", "03-15", "03-22"]
    with pytest.raises(ValueError, match="every_days"):
        periodic_offsets(7, 3)


@pytest.mark.parametrize("offsets", [[], [0, 7], [-1]])
def test_offsets_must_be_positive(tiny_tables, offsets):
    with pytest.raises(ValueError, match=">= 1"):
        snapshots_after_creation(tiny_tables["leads"], offsets)
