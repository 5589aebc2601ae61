"""Evaluation plots (matplotlib figures; the caller decides where to save them)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen: figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from models.metrics import gains_table, reliability_table  # noqa: E402


def _figure(title: str) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def roc_figure(y, curves: dict[str, np.ndarray]) -> Figure:
    """ROC curves of several scorers (name -> probabilities) on the same outcomes."""
    fig, ax = _figure("ROC curve (test split)")
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right")
    return fig


def precision_recall_figure(y, curves: dict[str, np.ndarray]) -> Figure:
    """Precision-recall curves, with the base rate as the floor."""
    fig, ax = _figure("Precision-recall (test split)")
    for name, p in curves.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name)
    ax.axhline(np.mean(y), color="grey", linestyle=":", label="base rate")
    ax.set(xlabel="recall (share of future customers found)", ylabel="precision (conversion rate)")
    ax.legend(loc="upper right")
    return fig


def reliability_figure(y, curves: dict[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Observed conversion rate against predicted probability, per equal-count bin."""
    fig, ax = _figure("Reliability (test split)")
    top = 0.0
    for name, p in curves.items():
        table = reliability_table(y, p, n_bins)
        ax.plot(table["predicted"], table["observed"], marker="o", label=name)
        top = max(top, table["predicted"].max(), table["observed"].max())
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect calibration")
    ax.set(xlabel="predicted probability", ylabel="observed conversion rate")
    ax.legend(loc="upper left")
    return fig


def gains_figure(y, curves: dict[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Cumulative share of conversions against share of leads contacted, best scores first."""
    fig, ax = _figure("Cumulative gains (test split)")
    for name, p in curves.items():
        table = gains_table(y, p, n_bins)
        ax.plot(
            [0, *table["cumulative_share_of_rows"]],
            [0, *table["cumulative_gains"]],
            marker="o",
            label=name,
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(xlabel="share of leads, highest scores first", ylabel="share of conversions")
    ax.legend(loc="lower right")
    return fig


def score_distribution_figure(y, p) -> Figure:
    """Histogram of calibrated probabilities for converted and not-converted leads."""
    fig, ax = _figure("Score distribution by outcome (test split)")
    y = np.asarray(y)
    bins = np.linspace(0, max(float(np.max(p)), 1e-3), 40)
    ax.hist(p[y == 0], bins=bins, alpha=0.6, density=True, label="did not convert")
    ax.hist(p[y == 1], bins=bins, alpha=0.6, density=True, label="converted")
    ax.set(xlabel="calibrated probability", ylabel="density", yscale="log")
    ax.legend(loc="upper right")
    return fig


def drift_figure(table, score_bins, top: int = 12) -> Figure:
    """Drift at a glance: the scores' distribution now against the model's reference, and the
    features whose distribution moved most (PSI, with the 0.1 and 0.25 rules of thumb)."""
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.2]}
    )
    x = np.arange(len(score_bins))
    left.bar(
        x - 0.2, score_bins["reference"], width=0.4, label="reference (model's validation period)"
    )
    left.bar(x + 0.2, score_bins["current"], width=0.4, label="this run")
    left.set_xticks(x, score_bins["bin"], rotation=60, ha="right", fontsize=7)
    left.set_ylabel("share of leads")
    score_psi = table.loc[table["feature"] == "__score__", "psi"]
    left.set_title(
        "scores (calibrated probability)"
        + (f": PSI {score_psi.iloc[0]:.3f}" if len(score_psi) else "")
    )
    left.legend(fontsize=8)
    rows = table[table["feature"] != "__score__"].dropna(subset=["psi"]).head(top).iloc[::-1]
    colours = [
        "tab:red" if p > 0.25 else "tab:orange" if p > 0.1 else "tab:green" for p in rows["psi"]
    ]
    right.barh(rows["feature"], rows["psi"], color=colours)
    for limit, style in ((0.1, ":"), (0.25, "--")):
        right.axvline(limit, color="grey", linestyle=style, linewidth=1)
    right.set_xlabel("population stability index (PSI)")
    right.set_title(f"features that moved most (of {int((table['feature'] != '__score__').sum())})")
    right.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig
