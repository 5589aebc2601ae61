"""BANT gates, cutoff policies and stages on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.cutoffs import assign_stages, choose_cutoff, choose_cutoffs, tier_table
from models.gates import BantGates

CRITERIA = {
    "budget": {"rule": "at_least", "value": "10k_50k", "required": False},
    "authority": {"rule": "in", "values": ["decision_maker", "economic_buyer"], "required": True},
    "need": {"rule": "stated", "required": False},
    "timeline": {"rule": "at_most", "value": "3_6_months", "required": True},
}
DISQUALIFY = {"unsubscribed": True, "email_domain_kinds": ["free"], "seniorities": ["student"]}


def rows(**columns) -> pd.DataFrame:
    base = {
        "bant_budget": "50k_250k", "bant_authority": "decision_maker", "bant_need": "compliance",
        "bant_timeline": "under_3_months", "seniority": "vp", "email_domain_kind": "corporate",
        "unsubscribed": False,
    }  # fmt: skip
    n = max((len(v) for v in columns.values()), default=1)
    return pd.DataFrame({k: columns.get(k, [v] * n) for k, v in base.items()})


def gates() -> BantGates:
    return BantGates(CRITERIA, DISQUALIFY).fit()


def test_each_rule_passes_fails_or_is_unknown():
    out = gates().transform(
        rows(
            bant_budget=["over_250k", "under_10k", None],
            bant_authority=["economic_buyer", "user", "unknown"],
            bant_need=["replace_competitor", "none", None],
            bant_timeline=["3_6_months", "over_12_months", "no_timeline"],
        )
    )
    assert out["gate_budget"].tolist() == ["pass", "fail", "unknown"]
    assert out["gate_authority"].tolist() == ["pass", "fail", "unknown"]  # 'unknown' is no answer
    assert out["gate_need"].tolist() == ["pass", "fail", "unknown"]
    assert out["gate_timeline"].tolist() == ["pass", "fail", "fail"]  # no timeline is an answer: no
    assert out["bant_score"].tolist() == [4, 0, 0]


def test_required_vs_optional_and_unknown_is_its_own_case():
    out = gates().transform(
        rows(bant_budget=[None, "50k_250k"], bant_authority=["decision_maker", None])
    )
    # Budget unknown but optional: required gates still pass. Authority unknown and required: blocks.
    assert out["required_gates_pass"].tolist() == [True, False]
    assert out["gates_blocking"].tolist() == [None, "Authority unknown"]
    both = gates().transform(rows(bant_authority=["user"], bant_timeline=["over_12_months"]))
    assert both["gates_blocking"].iloc[0] == "Authority not met; Timeline not met"


def test_hard_disqualifiers_first_rule_wins():
    out = gates().transform(
        rows(
            unsubscribed=[True, False, False, False],
            email_domain_kind=["free", "free", "corporate", "corporate"],
            seniority=["vp", "vp", "student", "vp"],
        )
    )
    assert out["disqualified_reason"].tolist() == [
        "unsubscribed",
        "email domain: free",
        "seniority: student",
        None,
    ]


def test_bad_rules_are_refused_with_the_vocabulary():
    with pytest.raises(ValueError, match="not in"):
        BantGates({"budget": {"rule": "at_least", "value": "a lot"}}).fit()
    with pytest.raises(ValueError, match="rule must be"):
        BantGates({"need": {"rule": "vibes"}}).fit()
    with pytest.raises(ValueError, match="unknown BANT criterion"):
        BantGates({"bananas": {"rule": "stated"}}).fit()


def test_a_failed_required_gate_never_yields_sql():
    g = gates().transform(
        rows(
            bant_authority=["user", "decision_maker", "decision_maker"],
            unsubscribed=[False, False, True],
        )
    )
    out = assign_stages(np.array([0.9, 0.9, 0.9]), g, {"sql": 0.3, "mql": 0.05})
    assert out["stage"].tolist() == ["MQL", "SQL", "disqualified"]
    assert out["stage_reason"].tolist() == [
        "score 0.900 >= SQL cutoff 0.300 but Authority not met",
        "score 0.900 >= SQL cutoff 0.300 and required gates pass",
        "disqualified: unsubscribed",
    ]


def test_nurture_and_mql_reasons():
    g = gates().transform(rows(bant_budget=["10k_50k", "10k_50k"]))
    out = assign_stages(np.array([0.01, 0.1]), g, {"sql": 0.3, "mql": 0.05})
    assert out["stage"].tolist() == ["nurture", "MQL"]
    assert out["stage_reason"].tolist() == [
        "score 0.010 < MQL cutoff 0.050",
        "score 0.100 >= MQL cutoff 0.050",
    ]


@pytest.fixture
def scored():
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 12, size=50_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    return p, y


def test_precision_policy_hits_its_target(scored):
    p, y = scored
    cut = choose_cutoff(p, y, "precision", 0.30)
    assert y[p >= cut].mean() >= 0.30
    # The lowest such cutoff: one step lower no longer meets the target.
    lower = p[p < cut].max()
    assert y[p >= lower].mean() < 0.30


def test_recall_policy_hits_its_target(scored):
    p, y = scored
    cut = choose_cutoff(p, y, "recall", 0.80)
    assert y[p >= cut].sum() / y.sum() >= 0.80
    higher = p[p > cut].min()
    assert y[p >= higher].sum() / y.sum() < 0.80


def test_capacity_policy_lets_the_weekly_volume_through(scored):
    p, y = scored
    cut = choose_cutoff(p, y, "capacity", 100, weeks=10)
    assert (p >= cut).sum() <= 1000 < (p >= p[p < cut].max()).sum()


def test_mql_cutoff_never_above_sql_and_tiers_add_up(scored):
    p, y = scored
    cut = choose_cutoffs(
        p,
        y,
        {"sql": {"policy": "recall", "target": 0.5}, "mql": {"policy": "precision", "target": 0.5}},
        10,
    )
    assert cut["mql"] <= cut["sql"]
    g = gates().transform(rows(bant_budget=["10k_50k"] * len(p)))
    stages = assign_stages(p, g, cut)["stage"]
    table = tier_table(y, stages)
    assert table["leads"].sum() == len(p) and table["share_of_conversions"].sum() == pytest.approx(
        1.0
    )


def test_unknown_policy_is_named(scored):
    p, y = scored
    with pytest.raises(ValueError, match="unknown cutoff policy"):
        choose_cutoff(p, y, "gut feeling", 0.5)
