"""The score a rep reads: 1-99, the lead's rank among a reference population, not 100 x probability.

A calibrated probability is the right number for a forecast and the wrong one for a rep: with a
3% base rate the best lead of the night is "19 out of 100", which reads as a bad lead. The score
is therefore a percentile: the share of a reference population (stored with the model version:
the open leads at the end of its validation period, as a nightly run would have seen them) whose
probability is below the lead's, on a 1-99 scale. The best leads score in the 90s, a median lead
50, and a score means the same thing every night for one model version (a new version brings its
own scale). The probability stays beside it, as a percentage, for anyone who adds leads up.

Ninety-eight cut points are stored (the reference's 1/99 .. 98/99 quantiles): score ``s`` is
``1 +`` the number of cut points at or below the probability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SCORE_MIN, SCORE_MAX = 1, 99
#: Fewer reference leads than this cannot place 98 cut points apart: the scale is coarse (the
#: cut points interpolate between few values), and the caller is told.
COARSE_BELOW = SCORE_MAX


@dataclass(frozen=True)
class ScoreScale:
    """Cut points of the score (98 increasing probabilities) and what they were taken from."""

    edges: tuple[float, ...]
    population: str
    leads: int

    @classmethod
    def fit(cls, probabilities: np.ndarray, population: str) -> ScoreScale:
        """The scale of ``probabilities`` (one per reference lead); ``population`` says which
        leads they are. Raises ``ValueError`` without a finite value; fewer than 99 give a
        coarse scale (see :attr:`coarse`)."""
        p = np.asarray(probabilities, dtype=float)
        p = p[np.isfinite(p)]
        if not len(p):
            raise ValueError(f"score scale: no reference probabilities ({population})")
        levels = np.arange(SCORE_MIN, SCORE_MAX) / SCORE_MAX
        edges = np.quantile(p, levels, method="linear")
        return cls(tuple(float(e) for e in edges), population, len(p))

    @property
    def coarse(self) -> bool:
        """Too few reference leads for 98 distinct cut points."""
        return self.leads < COARSE_BELOW

    def lowest_probability(self, score: int) -> float:
        """The lowest probability that scores ``score`` (2-99; 1 takes any)."""
        if not SCORE_MIN < score <= SCORE_MAX:
            raise ValueError(f"score must be in {SCORE_MIN + 1}..{SCORE_MAX}, got {score}")
        return self.edges[score - SCORE_MIN - 1]

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        """The 1-99 score of each probability (NaN: the lowest score)."""
        p = np.nan_to_num(np.asarray(probabilities, dtype=float), nan=-np.inf)
        return SCORE_MIN + np.searchsorted(np.asarray(self.edges), p, side="right")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for model_meta.json."""
        return {"edges": list(self.edges), "population": self.population, "leads": self.leads}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScoreScale:
        """Read :meth:`to_dict`'s output back; checks the cut points."""
        edges = tuple(float(e) for e in raw["edges"])
        if len(edges) != SCORE_MAX - SCORE_MIN or np.any(np.diff(edges) < 0):
            raise ValueError(
                f"score scale: expected {SCORE_MAX - SCORE_MIN} increasing cut points, got "
                f"{len(edges)}"
            )
        return cls(edges, str(raw.get("population", "")), int(raw.get("leads", 0)))


def legacy_score(probabilities: np.ndarray) -> np.ndarray:
    """The score of a model trained before score scales existed: ``round(100 * p)``."""
    return np.rint(100 * np.asarray(probabilities, dtype=float)).astype(int)
