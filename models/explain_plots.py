"""SHAP's own plots of a :class:`models.explain.LeadExplainer`'s explanations, as PNG files.

Each function draws one ``shap.plots`` view of a ``shap.Explanation`` (readable titles already
in it), adds a title that says what is shown and on which rows, and writes a PNG: pictures an
analyst can put on a slide. Matplotlib's Agg backend: no display, no network.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: batch jobs and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402

from features.outputs import save_figure  # noqa: E402

log = logging.getLogger(__name__)

DPI = 150


@contextmanager
def _quiet_nan() -> Iterator[None]:
    """Category columns carry no colour values (all NaN, drawn grey): numpy's warnings about
    all-NaN slices inside SHAP's plots are expected there, and only there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        yield


@contextmanager
def _repeatable() -> Iterator[None]:
    """SHAP's beeswarm and scatter jitter and shuffle points with numpy's global random state:
    drawn from a fixed state (the caller's restored after), the same explanation gives the same
    PNG bits on every run, so a pipeline re-run leaves DVC's record (dvc.lock) unchanged."""
    # The legacy global state is what SHAP draws from: no Generator can stand in for it.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


LOG_ODDS_NOTE = "SHAP value (log-odds; +0.7 doubles the odds of conversion)"


def _save(path: Path, title: str, xlabel: str | None = LOG_ODDS_NOTE) -> Path:
    fig = plt.gcf()
    ax = fig.axes[0] if fig.axes else plt.gca()
    ax.set_title(title, fontsize=11, loc="left")
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=9)
    # The project's writer: atomic, and never over a file this tool did not write.
    save_figure(path, fig, dpi=DPI, bbox_inches="tight")
    plt.close("all")
    return path


def importance(explanation: shap.Explanation, path: Path, title: str, top: int) -> Path:
    """Global importance: mean |SHAP| per feature (or group), largest first."""
    plt.figure(figsize=(8, 0.4 * min(top, explanation.shape[1]) + 1.5))
    with _quiet_nan():
        shap.plots.bar(explanation, max_display=top, show=False)
    return _save(path, title, "mean |SHAP value| (log-odds)")


def beeswarm(explanation: shap.Explanation, path: Path, title: str, top: int) -> Path:
    """Every row's SHAP value per feature, coloured by the feature's value."""
    with _quiet_nan(), _repeatable():
        shap.plots.beeswarm(
            explanation, max_display=top, show=False, plot_size=(9, 0.45 * top + 1.5)
        )
    return _save(path, title)


def dependence(explanation: shap.Explanation, column: int, path: Path, title: str) -> Path:
    """One feature's value against its SHAP value: where its effect turns."""
    plt.figure(figsize=(7, 4.5))
    with _quiet_nan(), _repeatable():
        shap.plots.scatter(explanation[:, column], show=False, ax=plt.gca())
    ax = plt.gca()
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylabel("SHAP value (log-odds)", fontsize=9)
    return _save(path, title, xlabel=explanation.feature_names[column])


def cohorts(by_cohort: Mapping[str, shap.Explanation], path: Path, title: str, top: int) -> Path:
    """Mean (signed) contribution per group, cohort beside cohort."""
    plt.figure(figsize=(9, 0.55 * top + 2))
    with _quiet_nan():
        shap.plots.bar(dict(by_cohort), max_display=top, show=False)
    return _save(path, title, "mean SHAP value (log-odds): + raises, - lowers the probability")


def waterfall(explanation: shap.Explanation, path: Path, title: str, top: int) -> Path:
    """One lead: from the average lead's log-odds to its own, group by group."""
    plt.figure(figsize=(9, 0.45 * top + 2))
    with _quiet_nan():
        shap.plots.waterfall(explanation, max_display=top, show=False)
    return _save(path, title, xlabel=None)


def comparison(table: pd.DataFrame, path: Path, title: str, top: int) -> Path:
    """Change of mean |SHAP| per group from one model version to another (``table``: title,
    before, after), the largest changes."""
    shown = table.assign(change=table["after"] - table["before"])
    shown = shown.reindex(shown["change"].abs().sort_values(ascending=False).index).head(top)
    shown = shown.iloc[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(shown) + 1.5))
    colours = np.where(shown["change"] >= 0, "#d62728", "#1f77b4")
    ax.barh(shown["title"], shown["change"], color=colours)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    return _save(path, title, "change in mean |SHAP value| (log-odds): + gained weight, - lost")
