"""The value part of `leadscore evaluate`: expected value against revenue won on the test split.

Written beside the propensity evaluation (``data/evaluation/``): ``value_gains.csv`` (the value
gains curve of three rankings: expected value, probability alone, the baseline's expected
value), ``value_deciles.csv`` (expected value summed against revenue won per decile),
``plots/value_gains.png``, and ``metrics.json["value"]``: the value model against its baseline
(mean absolute error of log amount), the share of won revenue the top 10% capture per ranking,
each with lead-clustered intervals, and how the SQL list changes when ranked by value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from models.cutoffs import value_key
from models.value import ValueModel, expected_value, won_rows
from models.value_metrics import list_change, value_deciles, value_gains_table, value_intervals

log = logging.getLogger(__name__)

#: The rankings compared, by their names in the tables and plots.
RANKINGS = {
    "value": "expected value (model)",
    "probability": "probability alone (model)",
    "baseline": "expected value (baseline)",
}


def _top(score: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` eligible rows with the highest scores (ties by row order)."""
    pick = np.zeros(len(score), dtype=bool)
    rows = np.flatnonzero(eligible)
    pick[rows[np.argsort(-score[rows], kind="stable")[:n]]] = True
    return pick


def evaluate_value(
    params: Mapping[str, Any],
    test: pd.DataFrame,
    x: pd.DataFrame,
    probability: np.ndarray,
    expected: np.ndarray,
    baseline_probability: np.ndarray,
    value: ValueModel,
    stages: pd.DataFrame,
    gates: pd.DataFrame,
    cutoffs: Mapping[str, float],
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The value metrics (JSON-ready) and tables (``value_gains``, ``value_deciles``) of the
    test split ``test`` (its feature matrix ``x``; ``expected``: the model's expected value per
    row, as the stages read it; ``stages``/``gates`` as the model assigned)."""
    settings = params.get("evaluate", {})
    n_bins = int(settings.get("n_bins", 10))
    boot = dict(settings.get("bootstrap") or {})
    won = won_rows(test)
    amount = test["won_amount"].to_numpy(dtype=float)
    revenue = np.where(won, amount, 0.0)
    segment_median = value.baseline.predict(x)
    scores = {
        "value": np.asarray(expected, dtype=float),
        "probability": np.asarray(probability, dtype=float),
        "baseline": expected_value(baseline_probability, segment_median),
    }
    leads = test["lead_id"].astype(str).to_numpy()
    log_errors = {}
    if won.any():
        for name, typical in (
            ("value_model", value.typical_amount(x)),
            ("baseline", segment_median),
        ):
            err = np.full(len(test), np.nan)
            err[won] = np.abs(np.log(amount[won]) - np.log(typical[won]))
            log_errors[name] = err
    intervals = value_intervals(
        revenue, scores, leads, shares=(0.1, 0.2),
        pairs=(("value", "probability"), ("value", "baseline")),
        log_errors=log_errors, error_pairs=(("value_model", "baseline"),),
        n_boot=int(boot.get("replicates", 1000)), alpha=float(boot.get("alpha", 0.05)),
        seed=int(boot.get("seed", 0)),
    )  # fmt: skip
    gains = value_gains_table(revenue, {RANKINGS[k]: v for k, v in scores.items()}, n_bins)
    deciles = value_deciles(revenue, scores["value"], n_bins)
    # The SQL list by this model's cutoffs, against a list of the same size ranked the other
    # way among the leads a gate lets through (not disqualified, required gates pass).
    eligible = gates["disqualified_reason"].isna().to_numpy() & gates[
        "required_gates_pass"
    ].to_numpy(dtype=bool)
    sql = (stages["stage"] == "SQL").to_numpy()
    by_value = value_key("sql") in cutoffs
    other = _top(scores["probability" if by_value else "value"], eligible, int(sql.sum()))
    change = list_change(
        revenue, won,
        by_probability=other if by_value else sql,
        by_value=sql if by_value else other,
    )  # fmt: skip
    change["sql_ranked_by"] = "expected value" if by_value else "probability"
    metrics = {
        "model_kind": value.kind,
        "won_snapshots": int(won.sum()),
        "won_leads": int(pd.unique(leads[won]).size),
        "won_without_amount": int(((test["label"] == 1).to_numpy() & ~won).sum()),
        # Over test snapshots (a lead counts once per snapshot on both sides).
        "expected_value_sum": float(scores["value"].sum()),
        "revenue_won_sum": float(revenue.sum()),
        "baseline_expected_value_sum": float(scores["baseline"].sum()),
        # Each won lead weighing 1 (the bootstrap's point estimates).
        "log_mae": {
            name: intervals["log_mae"].get(name, {}).get("value")
            for name in ("value_model", "baseline")
        },
        "intervals": intervals,
        "sql_list_by_value_vs_probability": change,
    }
    top = intervals["captured"]["top_0.1"]
    log.info(
        "value on test: top 10%% capture %.1f%% of won revenue by expected value, %.1f%% by "
        "probability, %.1f%% by the baseline; expected value %.0f vs revenue won %.0f",
        100 * top["value"]["value"], 100 * top["probability"]["value"],
        100 * top["baseline"]["value"], metrics["expected_value_sum"], metrics["revenue_won_sum"],
    )  # fmt: skip
    return metrics, {"value_gains": gains, "value_deciles": deciles}
