"""The oracle is exact: the forward filter and the horizon propagation match brute-force
enumeration of every hidden path on a tiny chain (an independent re-implementation)."""

from __future__ import annotations

import itertools
from math import exp, factorial

import numpy as np
import pytest

from pipelines import synthetic_crm as sc

OPEN = [sc.DORMANT, sc.COLD, sc.ENGAGED, sc.EVALUATING, sc.OPPORTUNITY]


def transition_matrix(h: np.ndarray) -> np.ndarray:
    """7x7 daily transition matrix of one lead from its 8 hazards, written out by hand."""
    cd, ce, ec, ev, ve, vo, close, win = h
    t = np.zeros((7, 7))
    t[sc.DORMANT, sc.DORMANT] = t[sc.WON, sc.WON] = t[sc.LOST, sc.LOST] = 1
    t[sc.COLD, [sc.DORMANT, sc.ENGAGED, sc.COLD]] = cd, ce, 1 - cd - ce
    t[sc.ENGAGED, [sc.COLD, sc.EVALUATING, sc.ENGAGED]] = ec, ev, 1 - ec - ev
    t[sc.EVALUATING, [sc.ENGAGED, sc.OPPORTUNITY, sc.EVALUATING]] = ve, vo, 1 - ve - vo
    t[sc.OPPORTUNITY, [sc.WON, sc.LOST, sc.OPPORTUNITY]] = close * win, close * (1 - win), 1 - close
    return t


def likelihood(
    state: int, counts: np.ndarray, in_opp: bool, lam: np.ndarray, factor: float
) -> float:
    if (state == sc.OPPORTUNITY) != in_opp:
        return 0.0
    rates = lam[state] * factor
    return float(
        np.prod([exp(-r) * r**k / factorial(int(k)) for r, k in zip(rates, counts, strict=True)])
    )


@pytest.fixture
def tiny_chain():
    rng = np.random.default_rng(0)
    hazards = rng.uniform(0.05, 0.3, size=(8, 2, 2, 1))  # hazards, regime, type, one lead
    start = np.array([[0.0, 0.5, 0.3, 0.2, 0.0]])
    return sc._Chain(hazards=hazards, start=start, buyer_prior=np.array([0.35]))


@pytest.mark.parametrize("opp_on_last_day", [False, True])
def test_filter_and_horizon_match_brute_force(tiny_chain, opp_on_last_day):
    rng = np.random.default_rng(1)
    n_types = 3
    lam = np.zeros((sc.OPEN_STATES, n_types))
    lam[sc.COLD :] = rng.uniform(0.1, 1.5, size=(4, n_types))
    days, shift_day, horizon = 4, 2, 3
    factors = [1.0, 0.5, 1.2, 0.9]
    counts = rng.poisson(0.6, size=(days, n_types))
    counts[0] = 0
    in_opp = [False, False, False, opp_on_last_day]

    # The project's filter, day by day.
    alpha = np.zeros((1, 2, sc.OPEN_STATES))
    prior = tiny_chain.buyer_prior
    alpha[0, sc.BUYER], alpha[0, sc.BROWSER] = (
        prior * tiny_chain.start[0],
        (1 - prior) * tiny_chain.start[0],
    )
    idx = np.array([0])
    for d in range(days):
        hz = [tiny_chain.gather(idx, int(d >= shift_day), t) for t in (sc.BUYER, sc.BROWSER)]
        loglik = sc._day_loglik(counts[d : d + 1], np.array([in_opp[d]]), lam, factors[d])
        alpha = sc._filter_day(alpha, hz, loglik, fresh=np.array([d == 0]))

    # Brute force: every type and every path of open states over the observed days.
    post = np.zeros((2, sc.OPEN_STATES))
    for lead_type in (sc.BUYER, sc.BROWSER):
        p_type = prior[0] if lead_type == sc.BUYER else 1 - prior[0]
        mats = [transition_matrix(tiny_chain.hazards[:, r, lead_type, 0]) for r in (0, 1)]
        for path in itertools.product(OPEN, repeat=days):
            p = p_type * tiny_chain.start[0, path[0]]
            for d in range(days):
                if d > 0:
                    p *= mats[int(d >= shift_day)][path[d - 1], path[d]]
                p *= likelihood(path[d], counts[d], in_opp[d], lam, factors[d])
            post[lead_type, path[-1]] += p
    post /= post.sum()
    np.testing.assert_allclose(alpha[0], post, rtol=1e-10, atol=1e-14)

    # The oracle: propagate the filtered state over the horizon, each day in its regime.
    class Cfg:
        horizon_days = horizon

    snaps = {"lead": idx, "offset": np.array([days]), "alpha": alpha}
    oracle = sc._oracle(Cfg, snaps, tiny_chain, np.array([0]), shift_day=5, n_days=days + horizon)
    expected = 0.0
    for lead_type in (sc.BUYER, sc.BROWSER):
        mats = [transition_matrix(tiny_chain.hazards[:, r, lead_type, 0]) for r in (0, 1)]
        v = np.zeros(7)
        v[: sc.OPEN_STATES] = post[lead_type]
        for step in range(horizon):
            v = v @ mats[int(days + step >= 5)]
        expected += v[sc.WON]
    assert oracle["p_true"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert oracle["as_of_day"].iloc[0] == days


@pytest.mark.parametrize("touched_before", [False, True])
def test_the_horizon_weighs_the_sales_touch_still_to_come(tiny_chain, touched_before):
    """A lead not yet touched may be on any later day (daily probability q); once touched, its
    E -> V and V -> O hazards change. The oracle's two-part propagation equals the sum over
    every touch day, each weighed by its probability, written out here."""
    q, effect, horizon, as_of_day, shift_day = 0.3, 0.7, 5, 4, 6
    chain = sc._Chain(
        hazards=tiny_chain.hazards,
        start=tiny_chain.start,
        buyer_prior=tiny_chain.buyer_prior,
        touch_q=np.array([q]),
        touch_effect=effect,
    )
    rng = np.random.default_rng(3)
    alpha = rng.dirichlet(np.ones(2 * sc.OPEN_STATES)).reshape(1, 2, sc.OPEN_STATES)

    class Cfg:
        horizon_days = horizon

    snaps = {"lead": np.array([0]), "offset": np.array([as_of_day]), "alpha": alpha}
    touch_day = np.array([as_of_day - 1 if touched_before else 10**6])
    oracle = sc._oracle(
        Cfg, snaps, chain, np.array([0]), shift_day=shift_day, n_days=as_of_day + horizon,
        touch_day=touch_day,
    )  # fmt: skip

    def won(lead_type: int, first_touched_step: int) -> float:
        """P(won) when the steps from ``first_touched_step`` on are taken touched."""
        v = np.zeros(7)
        v[: sc.OPEN_STATES] = alpha[0, lead_type]
        for step in range(horizon):
            h = chain.hazards[:, int(as_of_day + step >= shift_day), lead_type, 0]
            if step >= first_touched_step:
                h = h.copy()
                h[sc.EV] = min(h[sc.EV] * exp(effect), sc.MAX_HAZARD)
                h[sc.VO] = min(h[sc.VO] * exp(effect), sc.MAX_HAZARD)
            v = v @ transition_matrix(h)
        return float(v[sc.WON])

    expected = 0.0
    for lead_type in (sc.BUYER, sc.BROWSER):
        if touched_before:
            expected += won(lead_type, 0)
            continue
        # touched on day as_of + i (i = 0 .. horizon - 2): steps i + 1 .. on are touched
        for i in range(horizon - 1):
            expected += q * (1 - q) ** i * won(lead_type, i + 1)
        expected += (1 - q) ** (horizon - 1) * won(lead_type, horizon)  # not within the horizon
    assert oracle["p_true"].iloc[0] == pytest.approx(expected, rel=1e-12)
    untouched = sc._oracle(Cfg, snaps, tiny_chain, np.array([0]), shift_day, as_of_day + horizon)
    assert oracle["p_true"].iloc[0] != pytest.approx(untouched["p_true"].iloc[0], rel=1e-6)
