"""Is there enough history to train a model? The check `leadscore train` runs before fitting.

Salesforce Einstein asks for 1,000 leads and 120 conversions within 200 days before it trains a
lead-scoring model; below that, a model's ranking is mostly noise and its cutoffs rest on a
handful of wins. The bar here (params.yaml ``sufficiency``) is the same kind of rule, counted on
the training set as it was split:

- the most recent ``window_days`` of snapshots hold ``min_leads`` leads and ``min_won_leads``
  won leads (a lead counts once, however many snapshots it has);
- each split holds ``min_won_leads_per_split`` won leads: validation stops the trees and fits
  the calibrator and the cutoffs, test gives the intervals.

The verdict says what is missing in words ("112 won leads in the last 200 days, 120 needed")
and travels with the model (``model_meta.json``, the model card). Below the bar, ``action``:
``rules`` (default) builds a rules-only model from params.yaml ``rules`` (:mod:`models.rules`:
points per attribute and activity, calibrated on validation), registered and written back like
any version and labelled rules-only, until a trained model beats it through ``leadscore
challenge``; ``warn`` trains LightGBM anyway and says so; ``stop`` trains nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.params import check_known

log = logging.getLogger(__name__)

ACTIONS = ("rules", "warn", "stop")


@dataclass(frozen=True)
class SufficiencyBar:
    """params.yaml ``sufficiency``: how much history a model needs."""

    window_days: int = 200
    min_leads: int = 1000
    min_won_leads: int = 120
    min_won_leads_per_split: int = 20
    action: str = "rules"

    @classmethod
    def from_params(cls, settings: Mapping[str, Any] | None) -> SufficiencyBar:
        """The bar from params.yaml (defaults without the section; unknown keys refused)."""
        settings = dict(settings or {})
        check_known("sufficiency", settings, cls.__dataclass_fields__)
        bar = cls(**settings)
        if bar.action not in ACTIONS:
            raise ValueError(
                f"sufficiency.action must be one of {', '.join(ACTIONS)}, got {bar.action!r}"
            )
        for key in ("window_days", "min_leads", "min_won_leads", "min_won_leads_per_split"):
            if int(getattr(bar, key)) < 0:
                raise ValueError(f"sufficiency.{key} must be >= 0, got {getattr(bar, key)}")
        return bar


def _won(frame: pd.DataFrame) -> int:
    return int(frame.loc[frame["label"] == 1, "lead_id"].nunique())


def check_sufficiency(splits: Mapping[str, pd.DataFrame], bar: SufficiencyBar) -> dict[str, Any]:
    """The verdict on a training set's splits (each with ``lead_id``, ``as_of``, ``label``):
    counts, whether the bar is met, and one sentence per shortfall."""
    rows = pd.concat([s[["lead_id", "as_of", "label"]] for s in splits.values()], ignore_index=True)
    end = rows["as_of"].max()
    start = end - pd.Timedelta(days=bar.window_days)
    recent = rows[rows["as_of"] > start]
    leads, won = int(recent["lead_id"].nunique()), _won(recent)
    window = f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"
    missing = []
    if leads < bar.min_leads:
        missing.append(
            f"{leads:,} leads in the last {bar.window_days} days ({window}), {bar.min_leads:,} needed"
        )
    if won < bar.min_won_leads:
        missing.append(
            f"{won:,} won leads in the last {bar.window_days} days ({window}), {bar.min_won_leads:,} needed"
        )
    per_split = {name: _won(frame) for name, frame in splits.items()}
    for name, n in per_split.items():
        if n < bar.min_won_leads_per_split:
            missing.append(
                f"{n:,} won leads in the {name} split, {bar.min_won_leads_per_split:,} needed"
            )
    return {
        "sufficient": not missing,
        "rules_only": bool(missing) and bar.action == "rules",
        "window": window,
        "leads": leads,
        "won_leads": won,
        "won_leads_per_split": per_split,
        "bar": {k: getattr(bar, k) for k in bar.__dataclass_fields__ if k != "action"},
        "missing": missing,
    }


def enforce(verdict: Mapping[str, Any], bar: SufficiencyBar) -> None:
    """Log the verdict; below the bar, stop (``action: stop``, one line naming every shortfall),
    or say that a rules-only model (``rules``) or LightGBM anyway (``warn``) is trained."""
    if verdict["sufficient"]:
        log.info(
            "data sufficiency: %d leads and %d won leads in %s: enough",
            verdict["leads"], verdict["won_leads"], verdict["window"],
        )  # fmt: skip
        return
    shortfall = "; ".join(verdict["missing"])
    if bar.action == "stop":
        raise ValueError(
            f"not enough history to train a model: {shortfall}. Wait for more outcomes, widen "
            "the history, or set sufficiency.action: warn to train anyway"
        )
    if bar.action == "rules":
        log.warning(
            "data sufficiency: below the bar (%s): a rules-only model from params.yaml rules "
            "(sufficiency.action: warn trains LightGBM anyway, stop trains nothing)",
            shortfall,
        )
        return
    log.warning(
        "data sufficiency: below the bar (%s): the model is trained, but its ranking and cutoffs "
        "rest on few wins (sufficiency.action: rules builds a rules-only model, stop refuses)",
        shortfall,
    )
