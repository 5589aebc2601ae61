"""The backtest: the CRM's history replayed month by month, as a team scoring leads lived it.

At each cutoff (the first day of a month) a model learns from what was known that day: the
labelled snapshots whose label window (``as_of + horizon``) had closed. Features are point in
time already, and a label whose window closed by the cutoff reads only opportunities closed
before it, so the rows known then are exactly the rows a training set built that day would hold.
The model then scores the snapshots of the month that follows, and those are compared with what
happened (their labels, known by the end of the export).

Three ways of living through the history, side by side on the same rows:

- **static**: the first cutoff's model, never changed: a team that never retrains;
- **retrained**: a new model every ``backtest.every_months`` (a cycle) on everything known then;
- **recalibrated**: the static booster as it is, its calibrator refitted each cycle on the
  newest known outcomes (``leadscore recalibrate``);
- and, on the synthetic CRM, the **oracle** (the true probability): the ceiling.

Every model is trained by :func:`pipelines.modeling.run_train` (the production code path, with
``backtest.search_trials`` search trials: a backtest trains one model per cycle).

With a date of a known market change (``--shift``; read from the synthetic CRM's generator
config when the CRM is ours), months are grouped into phases: before the change (outcome
windows closed before it), under way (windows reaching past it), after it but before any
outcome after it is known (no model can have learned it: label windows are ``horizon`` days
long), the first ``pool_cycles`` retraining cycles since outcomes after it became known (one
month's few wins make a noisy AUC: the months are pooled), and the cycles after those.
Per phase, pooled rows give each variant's ROC AUC and ECE with lead-clustered intervals, and:

- **AUC lost to the shift** = the static model's gap to the oracle in the phase, minus its gap
  before the shift (the part of the gap the shift caused, not the model's usual shortfall);
  **recovered by retraining** = retrained minus static, as a share of that loss;
- **ECE recovered by recalibration** = (static ECE - recalibrated ECE) / (static ECE - static
  ECE before the shift).

Shares come with intervals from one bootstrap over leads of both phases at once.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.outputs import refuse_overlap, save_figure, write_csv, write_json, write_parquet
from models.intervals import clustered_bootstrap, weighted_metrics
from models.metrics import score_report
from models.packaged import LeadScorer
from pipelines.modeling import last_seen, run_train
from pipelines.params import check_known, section
from pipelines.splits import PurgeError, SplitRule, split_snapshots

log = logging.getLogger(__name__)

VARIANTS = ("static", "retrained", "recalibrated")
MONTH = pd.DateOffset(months=1)


@dataclass(frozen=True)
class BacktestPlan:
    """params.yaml ``backtest``: the retraining cadence, where the walk starts, how much recent
    history recalibrates, the search budget per training and the intervals."""

    every_months: int = 1
    first_cutoff: pd.Timestamp | None = None
    min_won_leads: int = 100
    recalibration_months: int = 3
    search_trials: int = 0
    pool_cycles: int = 2
    n_boot: int = 500
    confidence: float = 0.95

    @classmethod
    def from_params(cls, settings: dict[str, Any]) -> BacktestPlan:
        """The plan from params.yaml's ``backtest`` section (unknown keys refused)."""
        check_known("backtest", settings, cls.__dataclass_fields__)
        plan = cls(**settings)
        first = None if plan.first_cutoff is None else pd.Timestamp(plan.first_cutoff)
        if first is not None and first != first.normalize().replace(day=1):
            raise ValueError(f"backtest.first_cutoff must be the first day of a month, got {first}")
        for key in (
            "every_months",
            "min_won_leads",
            "recalibration_months",
            "n_boot",
            "pool_cycles",
        ):
            if int(getattr(plan, key)) < 1:
                raise ValueError(f"backtest.{key} must be at least 1, got {getattr(plan, key)}")
        if not 0 < float(plan.confidence) < 1:
            raise ValueError(f"backtest.confidence must be between 0 and 1, got {plan.confidence}")
        return replace(plan, first_cutoff=first)


def known_at(as_of: pd.Series, cutoff: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """Per row: its label was known on ``cutoff`` (its window ``as_of + horizon`` had closed)."""
    return (as_of + pd.Timedelta(days=horizon_days) <= cutoff).to_numpy()


def month_cutoffs(
    frame: pd.DataFrame, horizon_days: int, data_end: pd.Timestamp, plan: BacktestPlan
) -> list[pd.Timestamp]:
    """The cutoffs walked: month starts from the first with ``min_won_leads`` won leads known
    (or ``first_cutoff``) to the last whose next month's labels are all known by ``data_end``."""
    last = (data_end - pd.Timedelta(days=horizon_days)).normalize().replace(day=1) - MONTH
    won = frame.loc[frame["label"] == 1]
    first_win = won.groupby("lead_id")["as_of"].min().sort_values()
    if plan.first_cutoff is not None:
        first = plan.first_cutoff
    elif len(first_win) >= plan.min_won_leads:
        # The day the min_won_leads-th win's label window closed, rounded up to a month start.
        known = first_win.iloc[plan.min_won_leads - 1] + pd.Timedelta(days=horizon_days)
        first = known.to_period("M").start_time
        first = first if first >= known else first + MONTH
    else:
        raise ValueError(
            f"the labelled snapshots hold {len(first_win)} won leads, fewer than "
            f"backtest.min_won_leads ({plan.min_won_leads}): too little history to backtest"
        )
    cutoffs = list(pd.date_range(first, last, freq="MS"))
    if len(cutoffs) < 2:
        raise ValueError(
            f"the backtest needs at least two months between its first cutoff ({first:%Y-%m-%d}) "
            f"and the last month whose {horizon_days}-day outcomes are known ({last:%Y-%m}): "
            "bring a longer history, lower backtest.min_won_leads or shorten label.horizon_days"
        )
    return cutoffs


def _training_folder(
    known: pd.DataFrame, params: dict[str, Any], folder: Path, horizon_days: int
) -> dict[str, Any]:
    """Train and validation splits of the rows known at a cutoff (the split rule of params.yaml,
    without a test split: the next month is the test), written as a training set.

    Early in a history the purge (no train label window may reach validation) can leave a split
    empty; the split is then made without it, as the purge's own error advises for a short
    history, and the summary says so. Every row is still one whose outcome was known at the
    cutoff: only the internal validation is less strict.
    """
    rule = SplitRule.from_params(section(params, "split"), horizon_days)
    rule = replace(rule, with_test=False, test_days=None, test_fraction=None)
    try:
        labels = split_snapshots(known[["lead_id", "as_of"]], rule).labels.to_numpy()
        purged = rule.purge_days > 0
    except PurgeError as error:
        log.warning("  %s; this cutoff's split is made without the purge", str(error).split(":")[0])
        labels = split_snapshots(known[["lead_id", "as_of"]], replace(rule, purge_days=0)).labels
        labels, purged = labels.to_numpy(), False
    for name in ("train", "validation"):
        write_parquet(folder / f"{name}.parquet", known[labels == name])
    return {
        "purge": purged,
        **{name: int((labels == name).sum()) for name in ("train", "validation")},
    }


def _train(params: dict[str, Any], plan: BacktestPlan) -> dict[str, Any]:
    """params with the backtest's search budget, and LightGBM below the data-sufficiency bar
    too (``sufficiency.action: warn``): the backtest measures what retraining a model wins; the
    rules-only fallback is for a CRM that has no model yet, and each training's verdict is kept
    in ``summary.json``. Every other training setting as it is."""
    tuned = copy.deepcopy(params)
    tuned["train"]["search"] = {
        **(tuned["train"].get("search") or {}),
        "trials": plan.search_trials,
    }
    tuned["sufficiency"] = {**(tuned.get("sufficiency") or {}), "action": "warn"}
    return tuned


def _retrain(
    known: pd.DataFrame, params: dict[str, Any], plan: BacktestPlan, work: Path, horizon: int
) -> tuple[Path, dict[str, Any]]:
    """A model trained on the rows known at the cutoff, as ``leadscore train`` would; and what
    it learned from (rows per split, whether the purge held)."""
    rows = _training_folder(known, params, work / "training", horizon)
    meta = run_train(_train(params, plan), work / "training", work / "model")
    log.info("  retrained on %s rows", rows)
    enough = meta.get("data_sufficiency") or {}
    return work / "model", {
        **rows,
        "calibration": meta["calibration"]["method"],
        "trees": meta["best_iteration"],
        "below_sufficiency_bar": enough.get("missing", []),
    }


def _recalibrate(
    known: pd.DataFrame,
    static: Path,
    params: dict[str, Any],
    plan: BacktestPlan,
    work: Path,
    cutoff: pd.Timestamp,
    horizon: int,
) -> Path | None:
    """The static booster with a calibrator refitted on the newest ``recalibration_months`` of
    outcomes known at ``cutoff`` that it never learned from; None when those hold fewer than
    ``min_won_leads`` won leads."""
    meta = json.loads((static / "model_meta.json").read_text())
    start = cutoff - pd.Timedelta(days=horizon) - pd.DateOffset(months=plan.recalibration_months)
    since = max(last_seen(meta), start)
    window = (known["as_of"] > since).to_numpy()
    # A calibrator (and the leakage alarm's scan) on a handful of wins is noise: the same bar
    # as for the first model.
    won = known.loc[window & (known["label"] == 1).to_numpy(), "lead_id"].nunique()
    if won < plan.min_won_leads or window.all():
        log.info(
            "  recalibration: %d won leads after %s (backtest.min_won_leads %d): calibrator kept",
            won, since.date(), plan.min_won_leads,
        )  # fmt: skip
        return None
    folder = work / "recalibration_set"
    write_parquet(folder / "train.parquet", known[~window])
    write_parquet(folder / "validation.parquet", known[window])
    run_train(_train(params, plan), folder, work / "recalibrated", booster_from=static)
    log.info("  recalibrated on %d rows after %s", int(window.sum()), since.date())
    return work / "recalibrated"


def _phase(
    cutoff: pd.Timestamp,
    shift: pd.Timestamp | None,
    retrained_at: list[pd.Timestamp],
    horizon: int,
    pool_cycles: int = 2,
) -> tuple[str, int | None]:
    """The month's phase, and its retraining cycle since outcomes after the shift became known
    (the first ``pool_cycles`` cycles are one phase, the later ones another)."""
    if shift is None:
        return "all months", None
    if cutoff + MONTH + pd.Timedelta(days=horizon) <= shift:
        return "before shift", None  # the month's outcome windows all closed before it
    if cutoff < shift:
        return "shift under way", None  # its outcome windows reach past the shift
    learned = [r for r in retrained_at if r <= cutoff and r - pd.Timedelta(days=horizon) > shift]
    cycle = len(learned)
    if not cycle:
        return "not yet learnable", 0
    first = "cycle 1" if pool_cycles == 1 else f"cycles 1-{pool_cycles}"
    return (first if cycle <= pool_cycles else f"cycles {pool_cycles + 1}+"), cycle


def _month_metrics(month: pd.DataFrame, scorers: list[str], ece_bins: int) -> list[dict]:
    rows = []
    y = month["label"].to_numpy()
    for name in scorers:
        p = month[f"p_{name}"].to_numpy()
        known = ~np.isnan(p)
        if known.sum() == 0 or len(np.unique(y[known])) < 2:
            continue
        report = score_report(y[known], p[known], ece_bins=ece_bins)
        rows.append(
            {
                "scorer": name,
                "roc_auc": report["roc_auc"],
                "ece": report["ece"],
                "log_loss": report["log_loss"],
                "mean_probability": float(p[known].mean()),
            }
        )
    return rows


def _resample(lead_codes: np.ndarray, n_leads: int, rng: np.random.Generator) -> np.ndarray:
    """Row weights of one lead-clustered bootstrap replicate (times each row's lead was drawn)."""
    counts = np.bincount(rng.integers(0, n_leads, n_leads), minlength=n_leads)
    return counts[lead_codes].astype(float)


def recovery(
    before: pd.DataFrame, after: pd.DataFrame, plan: BacktestPlan, ece_bins: int
) -> dict[str, Any]:
    """AUC lost to the shift and the share retraining recovered; ECE added by it and the share
    recalibration recovered (module doc), with intervals from one lead-clustered bootstrap over
    both phases' rows (a lead with snapshots in both is drawn once for both)."""
    both = pd.concat([before.assign(_after=False), after.assign(_after=True)], ignore_index=True)
    codes, leads = pd.factorize(both["lead_id"])
    y, later = both["label"].to_numpy(), both["_after"].to_numpy()

    # Before the shift only the static model and the oracle are compared; after it, all four.
    needed = [("before", ~later, name) for name in ("static", "oracle")] + [
        ("after", later, name) for name in ("static", "retrained", "recalibrated", "oracle")
    ]

    def figures(w: np.ndarray) -> dict[str, float]:
        m = {
            f"{name}_{phase}": weighted_metrics(
                y[rows], both[f"p_{name}"].to_numpy()[rows], w[rows], ece_bins
            )
            for phase, rows, name in needed
        }
        lost = (m["oracle_after"]["roc_auc"] - m["static_after"]["roc_auc"]) - (
            m["oracle_before"]["roc_auc"] - m["static_before"]["roc_auc"]
        )
        gained = m["retrained_after"]["roc_auc"] - m["static_after"]["roc_auc"]
        added = m["static_after"]["ece"] - m["static_before"]["ece"]
        removed = m["static_after"]["ece"] - m["recalibrated_after"]["ece"]
        return {
            "auc_lost_to_shift": lost,
            "auc_recovered_by_retraining": gained,
            "auc_share_recovered": gained / lost if lost > 0 else np.nan,
            "ece_added_by_shift": added,
            "ece_removed_by_recalibration": removed,
            "ece_share_recovered": removed / added if added > 0 else np.nan,
        }

    point = figures(np.ones(len(y)))
    rng = np.random.default_rng(0)
    reps = []
    for _ in range(plan.n_boot):
        w = _resample(codes, len(leads), rng)
        if (
            len(np.unique(y[~later][w[~later] > 0])) < 2
            or len(np.unique(y[later][w[later] > 0])) < 2
        ):
            continue
        reps.append(figures(w))
    alpha = 1 - plan.confidence
    result = {}
    for key, value in point.items():
        values = np.array([r[key] for r in reps], dtype=float)
        values = values[np.isfinite(values)]
        low, high = (
            np.quantile(values, [alpha / 2, 1 - alpha / 2]) if len(values) else (np.nan, np.nan)
        )
        result[key] = {"value": _num(value), "low": _num(low), "high": _num(high)}
    return result


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _span(first: str, last: str) -> str:
    """``2024-07..09``, ``2024-11..2025-02`` or ``2024-07``: months as a reader scans them."""
    if first == last:
        return first
    return f"{first}..{last[5:] if first[:4] == last[:4] else last}"


def phase_table(
    scored: pd.DataFrame, scorers: list[str], plan: BacktestPlan, ece_bins: int
) -> list[dict[str, Any]]:
    """Per phase, pooled over its months: each scorer's ROC AUC and ECE with lead-clustered
    intervals, retrained and recalibrated against static (paired), and on the synthetic CRM
    the recovery shares against the months before the shift."""
    phases = []
    before = scored[scored["phase"] == "before shift"]
    for phase, rows in scored.groupby("phase", sort=False):
        entry: dict[str, Any] = {
            "phase": phase,
            "months": _span(rows["month"].min(), rows["month"].max()),
            "rows": len(rows),
            "leads": int(rows["lead_id"].nunique()),
            "won_leads": int(rows.loc[rows["label"] == 1, "lead_id"].nunique()),
        }
        if rows["label"].nunique() == 2:
            boot = clustered_bootstrap(
                rows["label"].to_numpy(),
                {name: rows[f"p_{name}"].to_numpy() for name in scorers},
                rows["lead_id"].to_numpy(),
                n_boot=plan.n_boot,
                alpha=1 - plan.confidence,
                metrics=("roc_auc", "ece"),
                pairs=[("retrained", "static"), ("recalibrated", "static")],
                ratios=[],
                ece_bins=ece_bins,
            )
            entry["scorers"] = boot["scorers"]
            entry["differences"] = boot["differences"]
        if "oracle" in scorers and len(before) and phase != "before shift":
            entry["recovery"] = recovery(before, rows, plan, ece_bins)
        phases.append(entry)
    return phases


def run_backtest(
    params: dict[str, Any],
    features_path: str | Path,
    snapshots_path: str | Path,
    validated: str | Path,
    out: str | Path,
    oracle_path: str | Path | None = None,
    shift: str | pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Walk the history month by month (module doc); write ``months.csv`` (each scorer's metrics
    per month), ``predictions.parquet``, ``summary.json`` (phases, intervals, recovery),
    ``backtest.png`` and the models it trained under ``models/``. Returns the summary."""
    from pipelines.oracle import attach_oracle
    from pipelines.steps import labelled_features, naive_utc, validated_meta

    refuse_overlap(
        {"--features": features_path, "--snapshots": snapshots_path, "--validated": validated,
         "--oracle": oracle_path},
        {"--out": out},
    )  # fmt: skip
    out = Path(out)
    plan = BacktestPlan.from_params(dict(params.get("backtest") or {}))
    horizon = int(section(params, "label")["horizon_days"])
    ece_bins = int(section(params, "evaluate")["ece_bins"])
    frame, _ = labelled_features(features_path, snapshots_path, validated)
    meta = validated_meta(validated)
    data_end = naive_utc(meta["extracted_at"])
    shift = _shift_date(shift, meta)
    cutoffs = month_cutoffs(frame, horizon, data_end, plan)
    schedule = set(cutoffs[:: plan.every_months])
    scorers = [*VARIANTS, *(["oracle"] if oracle_path else [])]
    # Kept apart from the frame, whose columns become training sets: the oracle is no feature.
    oracle = attach_oracle(frame, pd.read_parquet(oracle_path)) if oracle_path else None
    log.info(
        "backtest: %d monthly cutoffs %s..%s, retraining every %d month(s); %s",
        len(cutoffs), f"{cutoffs[0]:%Y-%m}", f"{cutoffs[-1]:%Y-%m}", plan.every_months,
        f"market shift on {shift:%Y-%m-%d}" if shift is not None else "no shift date given",
    )  # fmt: skip
    with _quiet_steps():
        models: dict[str, Path | None] = dict.fromkeys(VARIANTS)
        loaded: dict[Path, LeadScorer] = {}  # each model folder read once, not every month
        retrained_at: list[pd.Timestamp] = []
        trainings: list[dict[str, Any]] = []
        parts, months = [], []
        for i, cutoff in enumerate(cutoffs, 1):
            known = frame[known_at(frame["as_of"], cutoff, horizon)]
            work = out / "models" / f"{cutoff:%Y-%m}"
            log.info(
                "backtest: cutoff %s (%d of %d): %d rows known, %d won leads",
                f"{cutoff:%Y-%m-%d}", i, len(cutoffs), len(known),
                known.loc[known["label"] == 1, "lead_id"].nunique(),
            )  # fmt: skip
            if cutoff in schedule:
                models["retrained"], trained = _retrain(known, params, plan, work, horizon)
                trainings.append({"cutoff": f"{cutoff:%Y-%m-%d}", **trained})
                retrained_at.append(cutoff)
                if models["static"] is None:
                    models["static"] = models["recalibrated"] = models["retrained"]
                else:
                    models["recalibrated"] = (
                        _recalibrate(known, models["static"], params, plan, work, cutoff, horizon)
                        or models["recalibrated"]
                    )
            month = frame[(frame["as_of"] >= cutoff) & (frame["as_of"] < cutoff + MONTH)]
            phase, cycle = _phase(cutoff, shift, retrained_at, horizon, plan.pool_cycles)
            scored = month[["lead_id", "as_of", "label"]].assign(
                month=f"{cutoff:%Y-%m}", phase=phase, cycle=cycle
            )
            for name in VARIANTS:
                if models[name] not in loaded:
                    loaded[models[name]] = LeadScorer.from_folder(models[name])
                scored[f"p_{name}"] = loaded[models[name]].predict_proba(month)
            if oracle is not None:
                scored["p_oracle"] = oracle[month.index].to_numpy()
            this_month = _month_metrics(scored, scorers, ece_bins)
            won = int(scored.loc[scored["label"] == 1, "lead_id"].nunique())
            months += [
                {"month": f"{cutoff:%Y-%m}", "phase": phase, **row, "rows": len(scored),
                 "won_leads": won}
                for row in this_month
            ]  # fmt: skip
            parts.append(scored)
            aucs = {row["scorer"]: round(row["roc_auc"], 3) for row in this_month}
            log.info(
                "backtest: %s scored (%d rows): ROC AUC %s", f"{cutoff:%Y-%m}", len(scored), aucs
            )
        scored = pd.concat(parts, ignore_index=True)
        table = pd.DataFrame(months)
        summary = {
            "cutoffs": [f"{c:%Y-%m-%d}" for c in cutoffs],
            "every_months": plan.every_months,
            "retrained_at": [f"{c:%Y-%m-%d}" for c in retrained_at],
            "horizon_days": horizon,
            "shift": None if shift is None else f"{shift:%Y-%m-%d}",
            "outcomes_after_shift_known_from": (
                None if shift is None else f"{shift + pd.Timedelta(days=horizon):%Y-%m-%d}"
            ),
            "plan": {
                k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in plan.__dict__.items()
            },
            "trainings": trainings,
            "phases": phase_table(scored, scorers, plan, ece_bins),
        }
    write_csv(out / "months.csv", table.round(5))
    write_parquet(out / "predictions.parquet", scored)
    write_json(out / "summary.json", summary)
    save_figure(out / "backtest.png", backtest_figure(table, shift, horizon), dpi=150)
    return summary


@contextmanager
def _quiet_steps() -> Iterator[None]:
    """The trainings' and bootstraps' own INFO lines (dozens per model) at WARNING, unless the
    run is at DEBUG: the backtest's own lines say where it is; warnings still show."""
    loggers = [
        logging.getLogger(name) for name in ("pipelines.modeling", "models", "pipelines.splits")
    ]
    levels = [logger.level for logger in loggers]
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _shift_date(shift: str | pd.Timestamp | None, meta: dict[str, Any]) -> pd.Timestamp | None:
    """``--shift`` if given; else, when the validated CRM is our synthetic one (its generator's
    config travels in its ``crm_meta.json``, ``meta``), the day of its market shift; else None."""
    from pipelines.synthetic_crm import GENERATOR, shift_date

    if shift is not None:
        return pd.Timestamp(shift)
    return shift_date(meta.get("config") or {}) if meta.get("generator") == GENERATOR else None


def backtest_figure(table: pd.DataFrame, shift: pd.Timestamp | None, horizon: int):
    """ROC AUC and ECE per month for each scorer, the shift and the day its outcomes were known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "static": ("#999999", "--", "never retrained"),
        "retrained": ("#1f77b4", "-", "retrained each cycle"),
        "recalibrated": ("#ff7f0e", "-.", "recalibrated only (ranks as never retrained)"),
        "oracle": ("#2ca02c", ":", "oracle (true probability)"),
    }
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for ax, metric, title in (
        (axes[0], "roc_auc", "ROC AUC of the next month's leads (higher is better)"),
        (axes[1], "ece", "Calibration error, ECE (lower is better)"),
    ):
        for name, (colour, style, label) in styles.items():
            rows = table[table["scorer"] == name]
            if len(rows) and not (metric == "ece" and name == "oracle"):
                x = pd.to_datetime(rows["month"]) + pd.Timedelta(days=14)
                ax.plot(x, rows[metric], style, color=colour, label=label, marker="o", ms=3)
        if shift is not None:
            ax.axvline(shift, color="#d62728", lw=1)
            known = shift + pd.Timedelta(days=horizon)
            ax.axvspan(shift, known, color="#d62728", alpha=0.07,
                       label=f"outcomes after the shift not known yet ({horizon} days)")  # fmt: skip
        ax.set_title(title, loc="left", fontsize=11)
        ax.grid(alpha=0.3)
    if shift is not None:
        axes[0].text(
            shift, axes[0].get_ylim()[1], " market shift", color="#d62728", va="top", fontsize=9
        )
    axes[0].legend(loc="lower left", fontsize=9, frameon=False)
    fig.suptitle("Backtest: each month scored by the model a team would have had then", fontsize=13)
    fig.tight_layout()
    return fig
