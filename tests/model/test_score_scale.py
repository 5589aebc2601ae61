"""The 1-99 score: a percentile of the probability among the model version's reference leads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.score_scale import ScoreScale, legacy_score


def test_the_best_reference_lead_scores_99_the_worst_1_and_the_median_50():
    p = np.linspace(0.001, 0.2, 9_901)  # 9,901 leads: cut points fall on reference values
    scale = ScoreScale.fit(p, "open leads")
    scores = scale.score(p)
    assert scores.min() == 1 and scores.max() == 99
    assert scale.score(np.array([np.median(p)]))[0] == 50
    # Every score holds about 1/99 of the reference (the percentile's meaning).
    counts = np.bincount(scores, minlength=100)[1:]
    assert counts.min() >= 99 and counts.max() <= 101, counts
    assert not scale.coarse


def test_a_probability_at_a_cut_point_takes_the_higher_score():
    scale = ScoreScale.fit(np.arange(99 * 100 + 1, dtype=float), "r")
    edge = scale.lowest_probability(90)
    assert scale.score(np.array([np.nextafter(edge, -np.inf), edge]))[:].tolist() == [89, 90]
    assert scale.lowest_probability(2) == scale.edges[0]
    with pytest.raises(ValueError, match="2..99"):
        scale.lowest_probability(1)


def test_beyond_the_reference_and_missing():
    scale = ScoreScale.fit(np.linspace(0.01, 0.1, 500), "r")
    assert scale.score(np.array([0.0, 0.5, 1.0, np.nan])).tolist() == [1, 99, 99, 1]


def test_round_trip_and_a_broken_scale_is_refused():
    scale = ScoreScale.fit(np.random.default_rng(0).beta(1, 30, 2_000), "open leads as of x")
    assert ScoreScale.from_dict(scale.to_dict()) == scale
    raw = scale.to_dict()
    raw["edges"] = raw["edges"][::-1]
    with pytest.raises(ValueError, match="98 increasing cut points"):
        ScoreScale.from_dict(raw)
    with pytest.raises(ValueError, match="no reference probabilities"):
        ScoreScale.fit(np.array([np.nan]), "empty")


def test_few_reference_leads_give_a_coarse_scale_that_still_orders():
    scale = ScoreScale.fit(np.array([0.01, 0.02, 0.5]), "tiny")
    assert scale.coarse
    assert scale.score(np.array([0.0, 0.015, 0.6])).tolist() == [1, 25, 99]


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=300),
    st.lists(st.floats(0, 1), min_size=2, max_size=50),
)
def test_scores_are_1_to_99_and_never_reverse_the_probabilities(reference, probabilities):
    scale = ScoreScale.fit(np.array(reference), "r")
    p = np.sort(np.array(probabilities))
    s = scale.score(p)
    assert s.min() >= 1 and s.max() <= 99
    assert np.all(np.diff(s) >= 0)


def test_legacy_score_is_100_times_the_probability():
    assert legacy_score(np.array([0.187, 0.004, 1.0])).tolist() == [19, 0, 100]
