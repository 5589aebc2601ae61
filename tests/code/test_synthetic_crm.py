"""The synthetic CRM: deterministic, realistic in shape, defects injected, oracle honest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as ct
from pipelines.synthetic_crm import DefectRates, SyntheticCRMConfig, generate_crm

SMALL = SyntheticCRMConfig(
    n_leads=1500, months=12, seed=3, snapshot_offsets_days=(7, 30), horizon_days=60
)


@pytest.fixture(scope="module")
def crm():
    return generate_crm(SMALL)


def test_same_seed_same_crm(crm):
    again = generate_crm(SMALL)
    for name, table in crm.tables.items():
        pd.testing.assert_frame_equal(table, again.tables[name])
    pd.testing.assert_frame_equal(crm.oracle, again.oracle)


def test_another_seed_another_crm(crm):
    other = generate_crm(SyntheticCRMConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not other.tables["events"].equals(crm.tables["events"])


def test_tables_follow_the_contract(crm):
    for name, table in crm.tables.items():
        # Every contract column but updated_at (optional; the generator keeps no edit times).
        table_contract = {**ct.TABLES, **ct.EXTRA_TABLES}[name]
        expected = [c for c in table_contract.column_names if c != "updated_at"]
        assert list(table.columns) == expected, name
    events = crm.tables["events"]
    assert set(events["event_type"]) == set(ct.EVENT_TYPES)
    assert crm.tables["leads"]["created_at"].min() >= pd.Timestamp("2024-01-01")


def test_the_world_looks_like_a_b2b_funnel(crm):
    leads, accounts = crm.tables["leads"], crm.tables["accounts"]
    sizes = accounts["employee_count"].dropna().astype(float)
    assert sizes.max() / sizes.median() > 100  # heavy-tailed company sizes
    weekday = leads["created_at"].dt.day_of_week
    assert (weekday < 5).mean() > 0.85  # leads arrive on working days
    events = crm.tables["events"]
    own = events[~events["event_type"].isin(ct.COMPANY_EVENT_TYPES)]  # the leads' own actions
    per_lead = (
        own.groupby("lead_id", observed=True)
        .size()
        .reindex(leads["lead_id"].unique(), fill_value=0)
    )
    assert per_lead.quantile(0.1) <= 2 and per_lead.quantile(0.99) > 10 * max(per_lead.median(), 1)
    assert 0.3 < leads["budget"].isna().mean() < 0.9  # BANT often unanswered
    opps = crm.tables["opportunities"]
    won = opps["is_won"].fillna(False).astype(bool)
    assert 0.005 < won.sum() / leads["lead_id"].nunique() < 0.2
    assert (
        opps.loc[opps["closed_at"].notna(), "closed_at"]
        >= opps.loc[opps["closed_at"].notna(), "created_at"]
    ).all()


def test_defects_are_injected(crm):
    leads, events = crm.tables["leads"], crm.tables["events"]
    assert leads["lead_id"].duplicated().any()
    assert (~events["lead_id"].isin(leads["lead_id"])).any()
    assert (events["timestamp"] >= crm.extracted_at).any()
    canonical = set(ct.SENIORITIES)
    assert (~leads["seniority"].dropna().isin(canonical)).any()  # inconsistent spelling


def test_no_defects_when_rates_are_zero():
    clean = generate_crm(
        SyntheticCRMConfig(
            **{**SMALL.__dict__, "n_leads": 400, "defects": DefectRates(0, 0, 0, 0, 0, 0)}
        )
    )
    leads, events = clean.tables["leads"], clean.tables["events"]
    assert not leads["lead_id"].duplicated().any()
    assert events["lead_id"].isin(leads["lead_id"]).all()
    assert (events["timestamp"] < clean.extracted_at).all()
    assert leads["seniority"].dropna().isin(ct.SENIORITIES).all()


def test_oracle_is_calibrated_on_independent_snapshots():
    """Sum of true probabilities matches the number of wins, within sampling error."""
    cfg = SyntheticCRMConfig(
        n_leads=6000, months=12, seed=11, snapshot_offsets_days=(14,), horizon_days=60
    )
    world = generate_crm(cfg)
    opps = world.tables["opportunities"]
    closed = opps.dropna(subset=["closed_at"]).set_index("lead_id")
    oracle = world.oracle.merge(
        closed[["closed_at", "is_won"]], left_on="lead_id", right_index=True, how="left"
    )
    still_open = ~(oracle["closed_at"] < oracle["as_of"])
    oracle = oracle[still_open]
    won = oracle["is_won"].fillna(False).astype(bool)
    y = (
        won
        & (oracle["closed_at"] >= oracle["as_of"])
        & (oracle["closed_at"] < oracle["as_of"] + pd.Timedelta(days=60))
    )
    p = oracle["p_true"].to_numpy()
    sigma = np.sqrt((p * (1 - p)).sum())
    assert abs(y.sum() - p.sum()) < 4 * sigma, (y.sum(), p.sum(), sigma)
    top = p >= np.quantile(p, 0.9)
    assert y[top].mean() > 4 * y[~top].mean()  # the oracle ranks
    assert ((p >= 0) & (p <= 1)).all()


def test_offsets_must_be_positive():
    with pytest.raises(ValueError, match=">= 1"):
        generate_crm(SyntheticCRMConfig(n_leads=10, snapshot_offsets_days=(0, 7)))
