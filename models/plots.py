"""Evaluation plots (matplotlib figures; the caller decides where to save them).

Pictures for a slide: ROC and precision-recall curves drawn by scikit-learn's displays (their
legends carry the AUC and the average precision), a reliability curve over a histogram of how
many leads each probability holds, cumulative gains beside the lift of each decile, and a drift
plot in the catalog's words with its thresholds in the legend and the run in the title.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen: figures are written to files

import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402

from models.cutoffs import percent  # noqa: E402
from models.metrics import gains_table, reliability_table  # noqa: E402

#: A number inside a bin label ("(0.0123, 0.0456]"), to be said as a percentage.
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _figure(title: str) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def roc_figure(y, curves: dict[str, np.ndarray]) -> Figure:
    """ROC curves of several scorers (name -> probabilities) on the same outcomes; the legend
    gives each one's AUC (scikit-learn's ``RocCurveDisplay``)."""
    fig, ax = _figure("ROC curve (test split)")
    for name, p in curves.items():
        RocCurveDisplay.from_predictions(y, p, name=name, ax=ax)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random (AUC = 0.50)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def precision_recall_figure(y, curves: dict[str, np.ndarray]) -> Figure:
    """Precision-recall curves with each one's average precision (scikit-learn's
    ``PrecisionRecallDisplay``), and the base rate as the floor."""
    fig, ax = _figure("Precision-recall (test split)")
    for name, p in curves.items():
        PrecisionRecallDisplay.from_predictions(y, p, name=name, ax=ax)
    ax.axhline(np.mean(y), color="grey", linestyle=":", label=f"base rate ({percent(np.mean(y))})")
    ax.set(xlabel="recall (share of future customers found)", ylabel="precision (conversion rate)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def reliability_figure(y, curves: dict[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Observed conversion rate against predicted probability, per equal-count bin; below, how
    many leads each probability holds (a log-scale histogram of the first scorer's)."""
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5.5, 5.5), sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": [3, 1]},
    )  # fmt: skip
    ax.set_title("Reliability (test split)")
    ax.grid(alpha=0.3)
    top = 0.0
    for name, p in curves.items():
        table = reliability_table(y, p, n_bins)
        ax.plot(table["predicted"], table["observed"], marker="o", label=name)
        top = max(top, table["predicted"].max(), table["observed"].max())
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect calibration")
    ax.set(ylabel="observed conversion rate")
    ax.legend(loc="upper left", fontsize=8)
    name, p = next(iter(curves.items()))
    counts.hist(np.asarray(p), bins=np.linspace(0, max(top, 1e-3), 40), color="tab:blue", alpha=0.7)
    counts.set(xlabel="predicted probability", ylabel="leads", yscale="log")
    counts.set_title(f"leads per probability ({name})", fontsize=8, loc="left")
    counts.grid(alpha=0.3)
    return fig


def gains_figure(y, curves: dict[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Left: cumulative share of conversions against share of leads contacted, best scores
    first. Right: the lift of each decile (its conversion rate over the base rate), per scorer."""
    fig, (ax, lift) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    ax.set_title("Cumulative gains (test split)")
    ax.grid(alpha=0.3)
    width = 0.8 / max(len(curves), 1)
    for i, (name, p) in enumerate(curves.items()):
        table = gains_table(y, p, n_bins)
        ax.plot(
            [0, *table["cumulative_share_of_rows"]],
            [0, *table["cumulative_gains"]],
            marker="o",
            label=name,
        )
        share = np.diff(np.r_[0.0, table["cumulative_share_of_rows"]])
        gained = np.diff(np.r_[0.0, table["cumulative_gains"]])
        x = np.arange(1, len(table) + 1)
        lift.bar(x + (i - (len(curves) - 1) / 2) * width, gained / share, width=width, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(xlabel="share of leads, highest scores first", ylabel="share of conversions")
    ax.legend(loc="lower right", fontsize=8)
    lift.axhline(1.0, color="grey", linestyle=":", label="base rate (lift 1)")
    lift.set_title("Lift by decile (test split)")
    lift.set(xlabel="decile of leads, highest scores first", ylabel="conversion rate / base rate")
    lift.set_xticks(np.arange(1, n_bins + 1))
    lift.grid(alpha=0.3, axis="y")
    lift.legend(fontsize=8)
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


def importance_figure(table, titles: Mapping[str, str] | None = None, top: int = 20) -> Figure:
    """LightGBM's gain importance of the ``top`` features (``table``: feature, gain_share), in
    the catalog's words where ``titles`` has them."""
    shown = table.head(top).iloc[::-1]  # largest at the top
    names = [(titles or {}).get(f, f) for f in shown["feature"]]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(shown) + 1.5), layout="constrained")
    ax.barh(names, 100 * shown["gain_share"], color="#3b75af")
    ax.set_title(f"What the trees split on: top {len(shown)} features by gain", loc="left")
    ax.set_xlabel("share of the total gain (%); SHAP importance is in the explain report")
    ax.grid(alpha=0.3, axis="x")
    ax.tick_params(axis="y", labelsize=8)
    return fig


def _as_percentages(label: str) -> str:
    """A bin label of probabilities, said in percent: "(0.0123, 0.0456]" -> "(1.2%, 4.6%]"."""
    return _NUMBER.sub(lambda m: percent(float(m.group())), label)


def drift_figure(
    table,
    score_bins,
    top: int = 12,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Drift at a glance: the probabilities' distribution now against the model's reference, and the
    features whose distribution moved most (PSI, with the 0.1 and 0.25 rules of thumb in the
    legend). ``labels``: feature -> readable title (the catalog's); ``title``: which run and
    model version."""
    from matplotlib.patches import Patch

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.2]})
    x = np.arange(len(score_bins))
    left.bar(
        x - 0.2, score_bins["reference"], width=0.4, label="reference (model's validation period)"
    )
    left.bar(x + 0.2, score_bins["current"], width=0.4, label="this run")
    shown = [_as_percentages(str(b)) for b in score_bins["bin"]]
    left.set_xticks(x, shown, rotation=60, ha="right", fontsize=7)
    left.set_ylabel("share of leads")
    left.set_xlabel("calibrated probability")
    score_psi = table.loc[table["feature"] == "__score__", "psi"]
    left.set_title(
        "Probabilities" + (f": PSI {score_psi.iloc[0]:.3f}" if len(score_psi) else ""), fontsize=10
    )
    left.legend(fontsize=8)
    rows = table[table["feature"] != "__score__"].dropna(subset=["psi"]).head(top).iloc[::-1]
    colours = [
        "tab:red" if p > 0.25 else "tab:orange" if p > 0.1 else "tab:green" for p in rows["psi"]
    ]
    names = [(labels or {}).get(f, f) for f in rows["feature"]]
    right.barh(names, rows["psi"], color=colours)
    for limit, style in ((0.1, ":"), (0.25, "--")):
        right.axvline(limit, color="grey", linestyle=style, linewidth=1)
    right.set_xlabel("population stability index (PSI)")
    n_features = int((table["feature"] != "__score__").sum())
    right.set_title(f"Features that moved most (of {n_features})", fontsize=10)
    right.tick_params(axis="y", labelsize=8)
    right.legend(
        handles=[
            Patch(color="tab:green", label="stable (PSI <= 0.1)"),
            Patch(color="tab:orange", label="moved (0.1 - 0.25)"),
            Patch(color="tab:red", label="shifted (> 0.25)"),
            plt.Line2D([], [], color="grey", linestyle=":", label="0.1"),
            plt.Line2D([], [], color="grey", linestyle="--", label="0.25"),
        ],
        fontsize=7,
        loc="lower right",
    )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def value_gains_figure(gains, deciles) -> Figure:
    """Left: share of won revenue captured against share of leads, highest first, per ranking
    (a :func:`models.value_metrics.value_gains_table`). Right: per decile of expected value, the
    expected value summed beside the revenue won (a :func:`models.value_metrics.value_deciles`)."""
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    ax.set_title("Value gains: won revenue captured (test split)")
    ax.grid(alpha=0.3)
    for name, table in gains.groupby("scorer", sort=False):
        ax.plot(
            [0, *table["cumulative_share_of_rows"]],
            [0, *table["cumulative_share_of_revenue"]],
            marker="o",
            label=name,
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(xlabel="share of leads, highest first", ylabel="share of won revenue")
    ax.legend(loc="lower right", fontsize=8)
    x = deciles["decile"].to_numpy()
    bars.bar(x - 0.2, deciles["expected_value"], width=0.4, label="expected value (sum)")
    bars.bar(x + 0.2, deciles["revenue"], width=0.4, label="revenue won (sum)")
    bars.set_title("Expected value against revenue won, by decile")
    bars.set(xlabel="decile of expected value, highest first", ylabel="USD")
    bars.set_xticks(x)
    bars.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"${v:,.0f}"))
    bars.grid(alpha=0.3, axis="y")
    bars.legend(fontsize=8)
    return fig
