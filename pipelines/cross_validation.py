"""Cross-validation by lead: a figure to compare with published ones, never a headline.

Folds mix periods (a model is trained on leads newer than some it is tested on), so the result
is *not out of time* and says so: the out-of-time test split is the honest figure. Folds are
stratified by outcome and grouped by lead (a lead's snapshots never sit on both sides). Each
fold's category grouping is fitted on its training rows. With a trained model (``model``), each
fold refits the model's own LightGBM settings and number of trees (what the search chose) on
its training rows; without one, settings scaled to the fold's size (``train.lightgbm`` wins),
early-stopped on a share of its training leads (the same hash rule as the calibration part),
and no search (``folds`` times the search would cost more than it tells).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from features.outputs import refuse_overlap, write_json
from models.boosting import fixed_booster, predict_scores
from models.frame import feature_matrix, feature_names
from models.metrics import score_report
from pipelines.modeling import calibration_holdout, fit_settings, load_model, read_split
from pipelines.params import category_grouper, section
from pipelines.splits import SPLITS

log = logging.getLogger(__name__)

NOT_OUT_OF_TIME = (
    "not out of time: folds mix periods; the out-of-time test split is the honest figure"
)


def run_cross_validate(
    params: dict[str, Any],
    training: str | Path,
    out: str | Path,
    folds: int = 5,
    seed: int = 0,
    stop_fraction: float = 0.2,
    model: str | Path | None = None,
) -> dict[str, Any]:
    """Stratified, lead-grouped ``folds``-fold cross-validation of the booster on every labelled
    row of the training set (train, validation and test together); a JSON report to ``out``.
    ``stop_fraction``: the share of each fold's training leads that early stopping uses, when no
    ``model`` (a ``leadscore train`` folder) gives the settings and the number of trees."""
    refuse_overlap({"--training": training, "--model": model}, {"--out": out})
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    frame = pd.concat([read_split(Path(training), name) for name in SPLITS], ignore_index=True)
    y = frame["label"].to_numpy(dtype=int)
    leads = frame["lead_id"].astype(str).to_numpy()
    names = feature_names(frame)
    settings = dict(section(params, "train"))
    settings["search"] = {"trials": 0}  # no search per fold (see the module doc)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    chosen = None
    if model is not None:
        meta = load_model(model)[3]
        chosen = (meta["lightgbm"], int(meta["best_iteration"]))
        log.info("cross-validation with the model's settings: %d trees of %s", chosen[1], model)
    mono = list(settings.get("monotone_increasing", []))
    oof = np.full(len(frame), np.nan)
    per_fold = []
    for k, (fit_idx, test_idx) in enumerate(splitter.split(frame, y, leads), start=1):
        part = frame.iloc[fit_idx]
        if chosen is not None:
            x_part = feature_matrix(part, names)
            grouper = category_grouper(params).fit(x_part)
            booster = fixed_booster(grouper.transform(x_part), y[fit_idx], *chosen, mono)
        else:
            booster, grouper = _early_stopped(params, settings, part, names, stop_fraction)
        x_test = feature_matrix(frame.iloc[test_idx], names, grouper)
        oof[test_idx] = predict_scores(booster, x_test)
        # Early-stopped: its best iteration; refitted with the model's trees: all of them.
        trees = int(booster.best_iteration or booster.current_iteration())
        report = score_report(y[test_idx], oof[test_idx])
        per_fold.append(
            {
                "fold": k,
                "rows": len(test_idx),
                "leads": int(pd.unique(leads[test_idx]).size),
                "trees": trees,
                **{m: report[m] for m in ("roc_auc", "pr_auc", "lift_top_decile")},
            }
        )
        log.info(
            "cross-validation fold %d/%d: ROC AUC %.4f, PR AUC %.4f, %d trees",
            k, folds, report["roc_auc"], report["pr_auc"], trees,
        )  # fmt: skip
    table = pd.DataFrame(per_fold)
    summary = {
        "what": f"{folds}-fold cross-validation, stratified by outcome, grouped by lead",
        "caveat": NOT_OUT_OF_TIME,
        "settings": f"the model's ({model})" if chosen else "scaled to each fold, early-stopped",
        "rows": len(frame),
        "leads": int(pd.unique(leads).size),
        "positives": int(y.sum()),
        "mean": {m: float(table[m].mean()) for m in ("roc_auc", "pr_auc", "lift_top_decile")},
        "sd": {m: float(table[m].std(ddof=1)) for m in ("roc_auc", "pr_auc", "lift_top_decile")},
        "pooled_roc_auc": float(roc_auc_score(y, oof)),
        "folds": per_fold,
    }
    write_json(Path(out), summary)
    return summary


def _early_stopped(
    params: dict[str, Any],
    settings: dict[str, Any],
    part: pd.DataFrame,
    names: list[str],
    stop_fraction: float,
):
    """A booster for one fold without a trained model: scaled settings, early-stopped on a share
    of the fold's training leads; and the fold's category grouping."""
    y = part["label"].to_numpy(dtype=int)
    stop = calibration_holdout(part["lead_id"], stop_fraction)
    x_all = feature_matrix(part, names)
    grouper = category_grouper(params).fit(x_all[~stop])
    x_fit, x_stop = grouper.transform(x_all[~stop]), grouper.transform(x_all[stop])
    return fit_settings(settings, x_fit, y[~stop], x_stop, y[stop]).booster, grouper
