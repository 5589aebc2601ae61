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
