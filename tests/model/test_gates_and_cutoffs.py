"""BANT gates, cutoff policies and stages on hand-made rows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from models.cutoffs import (
    assign_stages,
    choose_cutoff,
    choose_cutoffs,
    cutoff_warnings,
    tier_table,
)
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
        "probability 90.0%, at or above the SQL cutoff 30.0%, but Authority not met",
        "probability 90.0%, at or above the SQL cutoff 30.0%; required gates pass",
        "disqualified: unsubscribed",
    ]


def test_nurture_and_mql_reasons():
    g = gates().transform(rows(bant_budget=["10k_50k", "10k_50k"]))
    out = assign_stages(np.array([0.01, 0.1]), g, {"sql": 0.3, "mql": 0.05})
    assert out["stage"].tolist() == ["nurture", "MQL"]
    assert out["stage_reason"].tolist() == [
        "probability 1.0%, 4.0 points below the MQL cutoff 5.0%",
        "probability 10.0%, at or above the MQL cutoff 5.0%; 20.0 points below the SQL cutoff 30.0%",
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


# Ten leads, best first; 3 convert (base rate 0.3). Precision of "p >= value" from the top:
# 1, 1, .667, .75, .6, .5, .43, .375, .33, .3 -- lift 2 (precision 0.6) is met down to 0.5.
P10 = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
Y10 = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
HEALTHY = {"sql": {"policy": "lift", "target": 2}, "mql": {"policy": "top_share", "target": 0.8}}


def test_lift_policy_is_precision_relative_to_the_base_rate():
    # Exactly 2x the base rate at 0.5 (3 of 5 convert): "at least" includes it.
    assert choose_cutoff(P10, Y10, "lift", 2) == 0.5
    assert choose_cutoff(P10, Y10, "lift", 2) == choose_cutoff(P10, Y10, "precision", 0.6)
    # The same lift on data with twice the conversions asks for twice the precision.
    assert choose_cutoff(P10, Y10, "lift", 2.5) == 0.6  # 3 of 4 = 0.75 = 2.5 x 0.3


def test_lift_policy_hits_its_target(scored):
    p, y = scored
    cut = choose_cutoff(p, y, "lift", 3)
    assert y[p >= cut].mean() >= 3 * y.mean()
    lower = p[p < cut].max()  # the lowest such cutoff
    assert y[p >= lower].mean() < 3 * y.mean()


def test_lift_of_one_or_less_is_met_by_everyone_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="models.cutoffs"):
        assert choose_cutoff(P10, Y10, "lift", 1) == P10.min()
    assert "met by every lead" in caplog.text


def test_top_share_takes_whole_tie_groups_up_to_the_share():
    p = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    y = np.zeros(10, dtype=int)
    assert choose_cutoff(p, y, "top_share", 0.3) == 0.8  # 3 rows: exactly the share
    assert choose_cutoff(p, y, "top_share", 0.25) == 0.9  # the 0.8 pair would make 3 > 2.5
    assert choose_cutoff(p, y, "top_share", 0.05) == 0.9  # under one row: still the top one
    assert choose_cutoff(p, y, "top_share", 1.0) == 0.1
    assert choose_cutoff(np.full(4, 0.5), y[:4], "top_share", 0.25) == 0.5  # all tied: all


def test_top_share_compares_the_share_as_written():
    p = np.arange(100, 0, -1) / 100
    # 0.57 * 100 is 56.99999999999999 in floating point; 57 of 100 rows is the share asked.
    assert (p >= choose_cutoff(p, np.zeros(100, dtype=int), "top_share", 0.57)).sum() == 57


@pytest.mark.parametrize(
    ("policy", "target"),
    [
        ("precision", 0.0),
        ("precision", 1.2),
        ("precision", float("nan")),
        ("recall", -0.1),
        ("top_share", 0.0),
        ("top_share", 1.5),
        ("lift", 0.0),
        ("lift", -1.0),
        ("capacity", 0.0),
    ],
)
def test_targets_out_of_range_are_refused(policy, target):
    with pytest.raises(ValueError, match=f"cutoff policy {policy}: target must be"):
        choose_cutoff(P10, Y10, policy, target, weeks=1)


def test_edge_targets_are_accepted_and_degenerate_inputs_refused():
    assert choose_cutoff(P10, Y10, "precision", 1.0) == 0.8
    assert choose_cutoff(P10, Y10, "top_share", 1.0) == 0.05
    with pytest.raises(ValueError, match="lift policy needs at least one conversion"):
        choose_cutoff(P10, np.zeros(10, dtype=int), "lift", 2)
    with pytest.raises(ValueError, match="same non-zero length"):
        choose_cutoff(np.array([]), np.array([]), "top_share", 0.5)


scores = st.lists(st.integers(0, 20).map(lambda k: k / 20), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(p=scores, share=st.floats(0.01, 1.0))
def test_top_share_never_exceeds_the_share_or_the_top_tie_group(p, share):
    p = np.array(p)
    cut = choose_cutoff(p, np.zeros(p.size, dtype=int), "top_share", share)
    passed = int((p >= cut).sum())
    top_group = int((p == p.max()).sum())
    assert cut in p and passed >= 1
    assert passed / p.size <= share or passed == top_group
    # The largest such set: the next distinct score down would go over the share.
    if (p < cut).any():
        assert (p >= p[p < cut].max()).sum() / p.size > share


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=60),
    lift=st.floats(0.1, 5.0),
)
def test_lift_cutoff_meets_lift_times_the_base_rate_and_is_the_lowest(data, lift):
    p = np.array([k / 20 for k, _ in data])
    y = np.array([int(b) for _, b in data])
    assume(y.sum() > 0)

    def lift_at(value):  # as choose_cutoff computes it: one division of exact integer products
        kept = p >= value
        return y[kept].sum() * p.size / (kept.sum() * y.sum())

    cut = choose_cutoff(p, y, "lift", lift)
    lifts = np.array([lift_at(v) for v in np.unique(p)])
    if cut > p.max():  # nobody: only when no cutoff reaches the lift
        assert (lifts < lift).all()
        return
    assert lift_at(cut) >= lift
    assert y[p >= cut].mean() >= lift * y.mean() * (1 - 1e-12)
    assert (lifts[np.unique(p) < cut] < lift).all()


# Warnings: each fires on its degenerate case, and none on a healthy one.


def healthy_stages(p=P10, cutoffs=None):
    g = gates().transform(rows(bant_budget=["10k_50k"] * len(p)))
    return g, assign_stages(p, g, cutoffs or choose_cutoffs(p, Y10, HEALTHY, 1))["stage"]


def test_no_warning_on_a_healthy_choice():
    cut = choose_cutoffs(P10, Y10, HEALTHY, 1)
    assert cut == {"sql": 0.5, "mql": 0.2}
    g, stages = healthy_stages(cutoffs=cut)
    assert stages.value_counts().to_dict() == {"SQL": 5, "MQL": 3, "nurture": 2}
    assert cutoff_warnings(P10, Y10, cut, HEALTHY, gates=g, stages=stages) == []


def test_warns_when_a_precision_below_the_base_rate_lets_everyone_through():
    # The case seen on real data: "converts at least 12%" with a base rate of 40%.
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0])
    chosen = {"sql": {"policy": "precision", "target": 0.12}, "mql": HEALTHY["mql"]}
    cut = choose_cutoffs(P10, y, chosen, 1)
    g, stages = healthy_stages(cutoffs=cut)
    assert cutoff_warnings(P10, y, cut, chosen, gates=g, stages=stages) == [
        "SQL cutoff 0.050 lets every validation lead through (policy precision 0.12 is met by "
        "the whole population, base rate 0.40): use lift or top_share",
        "MQL cutoff 0.050 is not below the SQL cutoff 0.050 (MQL is capped at SQL): no score "
        "falls between them, so MQL only holds leads a gate kept out of SQL; loosen the MQL "
        "target or tighten SQL",
        "the MQL stage is empty on validation (disqualified 0, SQL 10, MQL 0, nurture 0)",
        "the nurture stage is empty on validation (disqualified 0, SQL 10, MQL 0, nurture 0)",
    ]


def test_every_lead_warning_starts_at_the_lowest_score():
    at_lowest = cutoff_warnings(P10, Y10, {"sql": 0.5, "mql": 0.05}, HEALTHY)
    assert at_lowest == [
        "MQL cutoff 0.050 lets every validation lead through (policy top_share 0.8 takes the "
        "whole population, base rate 0.30): lower the target"
    ]
    assert cutoff_warnings(P10, Y10, {"sql": 0.5, "mql": 0.1}, HEALTHY) == []


def test_nobody_warning_starts_above_the_highest_score():
    chosen = {"sql": {"policy": "capacity", "target": 0.5}, "mql": HEALTHY["mql"]}
    cut = choose_cutoffs(P10, Y10, chosen, 1)  # half a lead a week: not even the top one
    assert cutoff_warnings(P10, Y10, cut, chosen) == [
        "SQL cutoff 0.900 is above every validation score (highest 0.900): no lead passes it "
        "(policy capacity 0.5)"
    ]
    assert cutoff_warnings(P10, Y10, {"sql": 0.9, "mql": 0.2}, chosen) == []


def test_warns_when_a_precision_or_lift_target_is_out_of_reach():
    # Precision from the top: 0, .5, .667, .75, then falling: the best reachable is 0.75.
    y = np.array([0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    for policy, reachable, beyond in (("precision", 0.75, 0.76), ("lift", 2.5, 2.6)):
        chosen = {"sql": {"policy": policy, "target": beyond}, "mql": HEALTHY["mql"]}
        assert cutoff_warnings(P10, y, choose_cutoffs(P10, y, chosen, 1), chosen) == [
            f"no SQL cutoff reaches {policy} {beyond:g} on validation (best "
            f"{0.75 if policy == 'precision' else 2.5:.3f}): SQL gets nobody by this policy; "
            "lower the target or use top_share"
        ]
        chosen["sql"]["target"] = reachable  # exactly the best: met
        assert cutoff_warnings(P10, y, choose_cutoffs(P10, y, chosen, 1), chosen) == []


def test_mql_capped_at_sql_warns_even_when_equal():
    cut = {"sql": 0.5, "mql": 0.5}
    assert cutoff_warnings(P10, Y10, cut, HEALTHY) == [
        "MQL cutoff 0.500 is not below the SQL cutoff 0.500 (MQL is capped at SQL): no score "
        "falls between them, so MQL only holds leads a gate kept out of SQL; loosen the MQL "
        "target or tighten SQL"
    ]
    assert cutoff_warnings(P10, Y10, {"sql": 0.5, "mql": 0.4}, HEALTHY) == []


def test_warns_when_a_required_gate_is_unknown_for_almost_everyone():
    cut = choose_cutoffs(P10, Y10, HEALTHY, 1)
    # The CRM does not map authority at all: required and unknown for every lead.
    unmapped = gates().transform(rows(bant_need=["x"] * 10).drop(columns="bant_authority"))
    assert cutoff_warnings(P10, Y10, cut, HEALTHY, gates=unmapped) == [
        "gate authority is required but unknown for 100% of validation leads: SQL is empty; "
        "make it optional or map the field"
    ]
    # 19 of 20 unknown is the threshold (0.95): warned; 18 of 20 is not.
    p20, y20 = np.linspace(0.9, 0.05, 20), np.resize(Y10, 20)
    cut20 = choose_cutoffs(p20, y20, HEALTHY, 1)
    g = gates().transform(rows(bant_authority=[None] * 19 + ["decision_maker"]))
    assert cutoff_warnings(p20, y20, cut20, HEALTHY, gates=g) == [
        "gate authority is required but unknown for 95% of validation leads: at most 1 of 20 "
        "leads can reach SQL; make it optional or map the field"
    ]
    g = gates().transform(rows(bant_authority=[None] * 18 + ["decision_maker"] * 2))
    assert cutoff_warnings(p20, y20, cut20, HEALTHY, gates=g) == []
    # An optional gate unknown for everyone blocks nothing: no warning.
    g = gates().transform(rows(bant_budget=[None] * 10))
    assert cutoff_warnings(P10, Y10, cut, HEALTHY, gates=g) == []
    with pytest.raises(ValueError, match="max_unknown_share"):
        cutoff_warnings(P10, Y10, cut, HEALTHY, gates=g, max_unknown_share=0)


def test_warns_on_each_empty_stage():
    cut = choose_cutoffs(P10, Y10, HEALTHY, 1)
    stages = ["SQL"] * 5 + ["nurture"] * 5
    assert cutoff_warnings(P10, Y10, cut, HEALTHY, stages=stages) == [
        "the MQL stage is empty on validation (disqualified 0, SQL 5, MQL 0, nurture 5)"
    ]
    stages = ["disqualified"] * 2 + ["MQL"] * 8
    assert cutoff_warnings(P10, Y10, cut, HEALTHY, stages=stages) == [
        "the SQL stage is empty on validation (disqualified 2, SQL 0, MQL 8, nurture 0)",
        "the nurture stage is empty on validation (disqualified 2, SQL 0, MQL 8, nurture 0)",
    ]


@given(
    st.lists(
        st.one_of(
            st.floats(-1e6, 1e6),  # probabilities and their gaps (no overflow of x100)
            st.sampled_from([np.nan, np.inf, -np.inf]),
            st.floats(0, 0.002),  # around the 0.1% switch to two significant digits
            st.sampled_from([0.0, 0.001, 0.00099999, 1e-300, -0.0]),
        ),
        max_size=30,
    )
)
def test_probabilities_and_gaps_in_words_are_said_as_one_at_a_time(values):
    from models.cutoffs import _percent, _points, percent

    p = np.asarray(values, dtype=float)
    assert _percent(p).tolist() == [percent(v) for v in values]
    said = ["less than 0.1 points" if 100 * v < 0.05 else f"{100 * v:.1f} points" for v in values]
    assert _points(p).tolist() == said
