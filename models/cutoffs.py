"""Cutoffs on the calibrated probability, chosen on validation by a stated policy, and stages.

Policies (params.yaml ``cutoffs``):
- ``precision``: the lowest cutoff whose leads convert at least ``target`` of the time
  (e.g. SQL = leads that convert >= 30%); the most leads that still meet the precision.
- ``recall``: the highest cutoff that still catches ``target`` of future customers
  (e.g. MQL catches 80% of them).
- ``capacity``: the cutoff that lets about ``target`` snapshots a week through, measured on the
  validation split's weekly volume (e.g. what a sales team can call).

A stage always comes with why: the score against the cutoff, and which gate blocked SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

POLICIES = ("precision", "recall", "capacity")
STAGES = ("disqualified", "SQL", "MQL", "nurture")


def choose_cutoff(
    p: np.ndarray, y: np.ndarray, policy: str, target: float, weeks: float | None = None
) -> float:
    """The cutoff on ``p`` that meets ``policy``'s ``target`` on these outcomes (see module doc)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=int)
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # Only distinct scores can be cutoffs: evaluate "p >= value" at the last row of each run.
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    hits = np.cumsum(y_sorted)[last_of_value]
    taken = (np.arange(len(p)) + 1)[last_of_value]
    values = p_sorted[last_of_value]
    if policy == "precision":
        ok = hits / taken >= target
        if not ok.any():
            log.warning(
                "no cutoff reaches precision %.2f on this data (best %.3f): nobody qualifies",
                target, float((hits / taken).max()),
            )  # fmt: skip
            return float(np.nextafter(values[0], np.inf))
        return float(values[np.flatnonzero(ok)[-1]])
    if policy == "recall":
        if y.sum() == 0:
            raise ValueError(
                "the recall policy needs at least one conversion in the validation data"
            )
        ok = hits / y.sum() >= target
        return float(values[np.flatnonzero(ok)[0]])
    if policy == "capacity":
        if not weeks or weeks <= 0:
            raise ValueError("the capacity policy needs the number of weeks the data covers")
        allowed = target * weeks
        ok = taken <= allowed
        return (
            float(values[np.flatnonzero(ok)[-1]])
            if ok.any()
            else float(np.nextafter(values[0], np.inf))
        )
    raise ValueError(f"unknown cutoff policy {policy!r}; choose from {POLICIES}")


def choose_cutoffs(
    p: np.ndarray, y: np.ndarray, settings: Mapping[str, Mapping[str, Any]], weeks: float
) -> dict[str, float]:
    """SQL and MQL cutoffs from ``settings`` ({"sql": {"policy", "target"}, "mql": {...}}).

    The MQL cutoff is never above the SQL cutoff: a lead good enough for sales is a marketing
    qualified lead too.
    """
    cut = {
        tier: choose_cutoff(p, y, settings[tier]["policy"], float(settings[tier]["target"]), weeks)
        for tier in ("sql", "mql")
    }
    cut["mql"] = min(cut["mql"], cut["sql"])
    return cut


def assign_stages(p: np.ndarray, gates: pd.DataFrame, cutoffs: Mapping[str, float]) -> pd.DataFrame:
    """Stage and why, per row: disqualified by a hard rule, else SQL (score >= SQL cutoff and
    every required gate passes), else MQL (score >= MQL cutoff), else nurture."""
    p = np.asarray(p, dtype=float)
    sql_cut, mql_cut = cutoffs["sql"], cutoffs["mql"]
    disq = gates["disqualified_reason"].notna().to_numpy()
    gates_ok = gates["required_gates_pass"].to_numpy(dtype=bool)
    score = pd.Series(p, index=gates.index).map("{:.3f}".format)
    stage = np.select(
        [disq, (p >= sql_cut) & gates_ok, p >= mql_cut], ["disqualified", "SQL", "MQL"], "nurture"
    )
    blocked = (p >= sql_cut) & ~gates_ok & ~disq
    why = np.select(
        [disq, stage == "SQL", blocked, stage == "MQL"],
        [
            "disqualified: " + gates["disqualified_reason"].astype(str),
            "score " + score + f" >= SQL cutoff {sql_cut:.3f} and required gates pass",
            "score "
            + score
            + f" >= SQL cutoff {sql_cut:.3f} but "
            + gates["gates_blocking"].astype(str),
            "score " + score + f" >= MQL cutoff {mql_cut:.3f}",
        ],
        "score " + score + f" < MQL cutoff {mql_cut:.3f}",
    )
    return pd.DataFrame({"stage": stage, "stage_reason": why}, index=gates.index)


def tier_table(y: np.ndarray, stages: pd.Series) -> pd.DataFrame:
    """Per stage: leads, conversion rate, and share of all conversions."""
    frame = pd.DataFrame({"stage": np.asarray(stages), "y": np.asarray(y, dtype=int)})
    table = frame.groupby("stage").agg(leads=("y", "size"), conversions=("y", "sum"))
    table = table.reindex(list(STAGES), fill_value=0)
    table["conversion_rate"] = table["conversions"] / table["leads"].replace(0, np.nan)
    table["share_of_conversions"] = table["conversions"] / max(int(frame["y"].sum()), 1)
    return table.reset_index()
