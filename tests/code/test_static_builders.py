"""Demographic, firmographic, BANT and lifecycle builders on tiny frames, exact values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.bant import build_bant
from features.demographic import build_demographic
from features.firmographic import build_firmographic
from features.lifecycle import build_lifecycle


@pytest.fixture
def snapshots() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L1", "L2"],
            "as_of": pd.to_datetime(["2024-03-11", "2024-03-06", "2024-03-10", "2024-03-01"]),
        }
    )


def test_demographic_reads_the_lead(tiny_tables, snapshots):
    out = build_demographic(tiny_tables, snapshots)
    assert out["seniority"].tolist()[:3] == ["vp", "student", "vp"]
    assert out["email_domain_kind"].tolist()[:2] == ["corporate", "free"]
    assert out["country"].dtype == "str"  # text: levels are fitted on the training split
    # A snapshot before the lead was created knows nothing about it.
    assert out.iloc[3].isna().all()


def test_firmographic_reads_the_account_but_never_is_customer(tiny_tables, snapshots):
    out = build_firmographic(tiny_tables, snapshots)
    assert out["account_industry"].tolist()[:2] == ["software", "education"]
    assert out["account_employee_count"].tolist()[:2] == [250.0, 12.0]
    assert out["account_region"].tolist()[0] == "emea"
    assert not any("customer" in c for c in out.columns)


def test_bant_keeps_unknown_answers_missing_and_counts_answers(tiny_tables, snapshots):
    out = build_bant(tiny_tables, snapshots)
    assert out.loc[0, "bant_budget"] == "50k_250k"
    assert pd.isna(out.loc[0, "bant_timeline"])
    assert out["bant_answered"].tolist()[:3] == [
        3.0,
        1.0,
        3.0,
    ]  # 'unknown' authority is not an answer
    assert np.isnan(out.loc[3, "bant_answered"])


def test_lifecycle_sees_an_opportunity_only_once_opened(tiny_tables, snapshots):
    out = build_lifecycle(tiny_tables, snapshots)
    assert out["opportunities_opened"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert out.loc[0, "days_since_opportunity_opened"] == pytest.approx(14 / 24)
    assert np.isnan(out.loc[2, "days_since_opportunity_opened"])
    assert out.loc[0, "lead_age_days"] == pytest.approx(9 + 14.5 / 24)
    assert out.loc[0, "source"] == "referral" and pd.isna(out.loc[1, "source"])
    assert np.isnan(out.loc[3, "lead_age_days"])
