"""Evaluation metrics for propensity scores: ranking, calibration, lift and gains.

All functions take the outcomes ``y`` (0/1) and probabilities ``p`` as arrays and return plain
numbers or frames, so a report, a test and a plot read the same figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y and p must be 1-d of the same length, got {y.shape} and {p.shape}")
    return y, p


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-count bins by descending score (bin 0 = the highest scores); ties broken by order."""
    order = np.argsort(-p, kind="stable")
    bins = np.empty(len(p), dtype=int)
    bins[order] = np.arange(len(p)) * n_bins // max(len(p), 1)
    return bins


def reliability_table(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-count score bin: rows, mean predicted probability, observed rate (for plots)."""
    y, p = _arrays(y, p)
    frame = pd.DataFrame({"bin": _bins(p, n_bins), "y": y, "p": p})
    table = frame.groupby("bin").agg(
        rows=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")
    )
    return table.sort_values("predicted").reset_index(drop=True)


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """Sum over equal-count bins of (bin share) x |observed rate - mean predicted probability|."""
    table = reliability_table(y, p, n_bins)
    weights = table["rows"] / table["rows"].sum()
    return float((weights * (table["observed"] - table["predicted"]).abs()).sum())


def gains_table(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Deciles (by default) from the highest scores down: rows, positives, rate, lift, cumulative gains."""
    y, p = _arrays(y, p)
    frame = pd.DataFrame({"bin": _bins(p, n_bins), "y": y, "p": p})
    table = frame.groupby("bin").agg(
        rows=("y", "size"), positives=("y", "sum"), mean_score=("p", "mean")
    )
    base_rate = y.mean() if len(y) else np.nan
    table["conversion_rate"] = table["positives"] / table["rows"]
    table["lift"] = table["conversion_rate"] / base_rate
    table["cumulative_share_of_rows"] = table["rows"].cumsum() / table["rows"].sum()
    table["cumulative_gains"] = table["positives"].cumsum() / max(table["positives"].sum(), 1)
    return (
        table.reset_index()
        .rename(columns={"bin": "decile"})
        .assign(decile=lambda t: t["decile"] + 1)
    )


def score_report(y, p, n_bins: int = 10, ece_bins: int = 20) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, ECE, top-decile lift and top-decile calibration.

    ``ece`` uses ``ece_bins`` equal-count bins (reported as ``ece_bins``); ``lift_top_decile`` uses the
    first of ``n_bins`` gains bins. The ``top_decile_*`` keys look at the 10% highest scores (always
    10%, ties broken by row order as in the bins), where the leads worth calling sit: mean predicted
    probability, observed rate, and ``ece_top_decile`` = ECE over those rows alone with
    ``ece_bins // 2`` equal-count bins (fewer bins, since the decile holds a tenth of the rows).
    """
    y, p = _arrays(y, p)
    gains = gains_table(y, p, n_bins)
    top = _bins(p, 10) == 0
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, ece_bins),
        "ece_bins": int(ece_bins),
        "lift_top_decile": float(gains["lift"].iloc[0]),
        "top_decile_predicted": float(p[top].mean()),
        "top_decile_observed": float(y[top].mean()),
        "ece_top_decile": expected_calibration_error(y[top], p[top], max(ece_bins // 2, 1)),
        "positive_rate": float(y.mean()),
        "rows": int(len(y)),
    }
