"""The train and evaluate steps: fit the booster, its calibrator and the baseline; score the test split.

Artifacts (``data/model/``): ``booster.txt`` (LightGBM, best iteration only),
``calibrator.joblib``, ``baseline.joblib`` and ``model_meta.json`` (features, the category
grouping fitted on the training split, settings, data).
Evaluation (``data/evaluation/``): ``metrics.json`` for ``dvc metrics show``, CSV plot data for
``dvc plots show``, and PNG plots.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.outputs import refuse_overlap, save_figure, write_csv, write_file, write_json
from models.baseline import logistic_baseline
from models.boosting import predict_scores, train_booster
from models.calibration import ProbabilityCalibrator
from models.categories import META_KEY, CategoryGrouper, stored_grouper
from models.cutoffs import assign_stages, choose_cutoffs, tier_table
from models.drift import drift_reference
from models.frame import categorical_names, feature_matrix, feature_names
from models.gates import BantGates
from models.leakage import check_leakage, check_model, single_feature_scan, warnings_for
from models.metrics import gains_table, reliability_table, score_report
from pipelines.oracle import attach_oracle
from pipelines.params import category_grouper, leakage_rules, section

log = logging.getLogger(__name__)

BOOSTER, CALIBRATOR, BASELINE, META = (
    "booster.txt",
    "calibrator.joblib",
    "baseline.joblib",
    "model_meta.json",
)
DRIFT_REFERENCE = "drift_reference.json"
LABELS = {
    "model": "model (calibrated LightGBM)",
    "model_uncalibrated": "model (uncalibrated)",
    "baseline": "baseline (logistic regression)",
    "oracle": "oracle (true probability)",
}


def _split(folder: Path, name: str) -> pd.DataFrame:
    path = folder / f"{name}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `leadscore training-set` first")
    return pd.read_parquet(path)


def _labels(frame: pd.DataFrame, name: str) -> np.ndarray:
    y = frame["label"].to_numpy(dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"the {name} split has only one outcome ({len(y)} rows): cannot train or evaluate"
        )
    return y


def run_train(
    params: dict[str, Any],
    training: str | Path,
    out: str | Path,
    validated: str | Path | None = None,
) -> dict[str, Any]:
    """Train the booster (early-stopped on validation), calibrate it on validation, fit the baseline.

    Category features are grouped first (``train.categories``): the rule is fitted on the
    training split only, applied to every split, and stored in ``model_meta.json``.
    ``validated``: the validated CRM, to record the drift reference as a scoring run would see it.
    """
    refuse_overlap({"--training": training, "--validated": validated}, {"--out": out})
    training, out = Path(training), Path(out)
    settings, calibration = section(params, "train"), section(params, "calibration")
    train, valid = _split(training, "train"), _split(training, "validation")
    names = feature_names(train)
    x_train = feature_matrix(train, names)
    grouper = category_grouper(params).fit(x_train)  # on the training rows only
    _log_grouping(grouper)
    x_train, x_valid = grouper.transform(x_train), feature_matrix(valid, names, grouper)
    y_train, y_valid = _labels(train, "train"), _labels(valid, "validation")
    # The leakage alarm, before anything is fitted or written: a refusal leaves nothing behind.
    rules = leakage_rules(params)
    scan = single_feature_scan(x_train, y_train, x_valid, y_valid, rules)
    _log_scan(scan, rules.allow)
    check_leakage(scan, rules)
    leak_warnings = warnings_for(scan, rules)

    booster = train_booster(
        x_train, y_train, x_valid, y_valid,
        params=settings["lightgbm"],
        num_boost_round=int(settings["num_boost_round"]),
        early_stopping_rounds=int(settings["early_stopping_rounds"]),
        monotone_increasing=list(settings.get("monotone_increasing", [])),
    )  # fmt: skip
    raw_valid = predict_scores(booster, x_valid)  # once: the calibrator and the cutoffs use it
    # The whole model, too good to be true (a leak spread over several features): before writing.
    model_warning = check_model(roc_auc_score(y_valid, raw_valid), scan, rules)
    if model_warning:
        leak_warnings.append(model_warning)
    for line in leak_warnings:
        log.warning("leakage alarm: %s", line)
    calibrator = ProbabilityCalibrator(
        methods=tuple(calibration["methods"]), cv=int(calibration["cv_folds"]), random_state=0
    ).fit(raw_valid, y_valid)
    log.info(
        "calibration: %s chosen (cross-validated log loss %s)",
        calibrator.method_,
        calibrator.cv_log_loss_,
    )
    p_valid = calibrator.predict(raw_valid)
    weeks = max((valid["as_of"].max() - valid["as_of"].min()).days + 1, 7) / 7
    cutoffs = choose_cutoffs(p_valid, y_valid, section(params, "cutoffs"), weeks)
    log.info("cutoffs chosen on validation: SQL %.4f, MQL %.4f", cutoffs["sql"], cutoffs["mql"])
    categorical = categorical_names(x_train)
    numeric = [n for n in names if n not in categorical]
    baseline = logistic_baseline(categorical, numeric, c=float(settings["baseline_c"])).fit(
        x_train, y_train
    )

    write_file(
        out / BOOSTER, lambda tmp: booster.save_model(tmp, num_iteration=booster.best_iteration)
    )
    write_file(out / CALIBRATOR, lambda tmp: joblib.dump(calibrator, tmp))
    write_file(out / BASELINE, lambda tmp: joblib.dump(baseline, tmp))
    manifest = (
        json.loads((training / "manifest.json").read_text())
        if (training / "manifest.json").exists()
        else {}
    )
    meta = {
        "features": names,
        "categorical_features": categorical,
        META_KEY: grouper.to_dict(),
        "best_iteration": int(booster.best_iteration),
        "calibration": {"method": calibrator.method_, "cv_log_loss": calibrator.cv_log_loss_},
        "cutoffs": cutoffs,
        "cutoff_policies": section(params, "cutoffs"),
        "gates": section(params, "gates"),
        # How to rebuild the features at scoring time, whatever params.yaml says by then.
        "feature_config": {
            "builders": list(section(params, "features")["builders"]),
            "behavioral": section(params, "features").get("behavioral", {}),
        },
        "lightgbm": settings["lightgbm"],
        # Each feature alone, out of time (the leakage alarm), and the features the user kept.
        "leakage_scan": {
            "allowed_features": list(rules.allow),
            "warnings": leak_warnings,
            "strongest": scan.head(10).round(4).to_dict(orient="records"),
        },
        "training_rows": {"train": len(train), "validation": len(valid)},
        "training_data": {
            "input_fingerprint": manifest.get("input_fingerprint"),
            "splits": manifest.get("splits"),
        },
    }
    write_json(out / META, meta)
    reference = _drift_reference(params, booster, calibrator, meta, valid, p_valid, validated)
    write_file(out / DRIFT_REFERENCE, lambda tmp: tmp.write_text(json.dumps(reference) + "\n"))
    return meta


def _log_scan(scan: pd.DataFrame, allowed: tuple[str, ...]) -> None:
    """One line: the strongest features alone, out of time (what the leakage alarm judged)."""
    top = ", ".join(
        f"{r.feature} {r.auc:.3f}{' (allowed)' if r.feature in allowed else ''}"
        for r in scan.head(5).itertuples()
    )
    log.info("leakage alarm: strongest features alone on validation (ROC AUC): %s", top)


def _log_grouping(grouper: CategoryGrouper) -> None:
    """One line: levels kept and grouped into "other", and the features that group most."""
    if not grouper.levels_:
        return
    grouped = pd.Series(grouper.n_grouped_, dtype="int64")
    grouped = grouped[grouped > 0].sort_values(ascending=False, kind="stable")
    most = ", ".join(f"{name}: {n}" for name, n in grouped.head(10).items())
    log.info(
        "categories (min_rows %s, max_levels %s, fitted on %d training rows): %d feature(s), "
        "%d level(s) kept, %d grouped into %r%s",
        grouper.min_rows, grouper.max_levels, grouper.n_rows_, len(grouper.levels_),
        sum(len(v) for v in grouper.levels_.values()), int(grouped.sum()), grouper.other,
        f" ({most})" if most else "",
    )  # fmt: skip


def _drift_reference(params, booster, calibrator, meta, valid, p_valid, validated) -> dict:
    """What scoring runs measure their drift (PSI) against.

    With the validated CRM: the population a scoring run would have seen at the end of the
    validation period (the open leads then, their features and scores), so that a nightly run
    is compared like for like: open leads of every age, not snapshots at fixed offsets.
    Without it: the validation split itself.
    """
    n_bins = int(section(params, "evaluate")["n_bins"])
    if validated is None:
        return drift_reference(valid[meta["features"]], p_valid, n_bins=n_bins)
    from features.build import build_features
    from features.readers import read_crm
    from models.packaged import LeadScorer
    from pipelines.params import behavioral_params
    from pipelines.scoring import open_leads
    from pipelines.steps import crm_contract

    tables = read_crm(validated)
    as_of = pd.Timestamp(valid["as_of"].max())
    snapshots, counts = open_leads(tables, as_of, params.get("score", {}).get("max_lead_age_days"))
    contract = crm_contract(params)
    frame = build_features(
        tables,
        snapshots,
        section(params, "features")["builders"],
        contract.behavioral(behavioral_params(params)),
        contract=contract,
    )
    scores = LeadScorer(booster, calibrator, meta).predict_proba(frame)
    log.info(
        "drift reference: %d open leads as of %s (end of the validation period)",
        counts["open"],
        as_of,
    )
    return drift_reference(frame[meta["features"]], scores, n_bins=n_bins) | {
        "population": f"open leads as of {as_of.isoformat()}"
    }


def load_model(folder: str | Path) -> tuple[lgb.Booster, ProbabilityCalibrator, Any, dict]:
    """The booster, calibrator, baseline and metadata written by :func:`run_train`."""
    folder = Path(folder)
    if not (folder / BOOSTER).exists():
        raise FileNotFoundError(f"{folder / BOOSTER} not found: run `leadscore train` first")
    booster = lgb.Booster(model_file=str(folder / BOOSTER))
    meta = json.loads((folder / META).read_text())
    return booster, joblib.load(folder / CALIBRATOR), joblib.load(folder / BASELINE), meta


def run_evaluate(
    params: dict[str, Any],
    training: str | Path,
    model: str | Path,
    out: str | Path,
    oracle: str | Path | None = None,
) -> dict[str, Any]:
    """Score the out-of-time test split: the model next to the baseline and, if given, the oracle."""
    refuse_overlap({"--training": training, "--model": model, "--oracle": oracle}, {"--out": out})
    from models import plots

    n_bins = int(section(params, "evaluate")["n_bins"])
    test = _split(Path(training), "test")
    y = _labels(test, "test")
    booster, calibrator, baseline, meta = load_model(model)
    x = feature_matrix(test, meta["features"], stored_grouper(meta))  # as LeadScorer.matrix
    raw = predict_scores(booster, x)
    scores = {
        "model": calibrator.predict(raw),
        "model_uncalibrated": raw,
        "baseline": baseline.predict_proba(x)[:, 1],
    }
    oracle_note = None
    if oracle is not None and Path(oracle).exists():
        p_true = attach_oracle(test, pd.read_parquet(oracle))
        if p_true.notna().all():
            scores["oracle"] = p_true.to_numpy()
        else:
            oracle_note = (
                f"oracle missing for {int(p_true.isna().sum())} test snapshots: not reported"
            )
    metrics: dict[str, Any] = {
        "test": {name: score_report(y, p, n_bins) for name, p in scores.items()},
        "calibration_method": meta["calibration"]["method"],
        "best_iteration": meta["best_iteration"],
    }
    if "oracle" in scores:
        metrics["model_roc_auc_vs_oracle"] = (
            metrics["test"]["model"]["roc_auc"] / metrics["test"]["oracle"]["roc_auc"]
        )
    if oracle_note:
        metrics["oracle_note"] = oracle_note
    gates = BantGates(**meta["gates"]).fit().transform(test)
    stages = assign_stages(scores["model"], gates, meta["cutoffs"])
    tiers = tier_table(y, stages["stage"])
    metrics["cutoffs"] = meta["cutoffs"]
    metrics["tiers"] = {
        row["stage"]: {
            k: (None if pd.isna(v) else float(v)) for k, v in row.items() if k != "stage"
        }
        for row in tiers.to_dict("records")
    }
    curves = {LABELS[k]: v for k, v in scores.items() if k != "model_uncalibrated"}
    calibration_curves = {LABELS[k]: scores[k] for k in ("model", "model_uncalibrated")}

    out = Path(out)
    write_json(out / "metrics.json", metrics)
    write_csv(out / "gains.csv", pd.concat(
        [gains_table(y, p, n_bins).assign(scorer=name) for name, p in curves.items()], ignore_index=True
    ))  # fmt: skip
    write_csv(out / "tiers.csv", tiers)
    write_csv(out / "reliability.csv", pd.concat(
        [reliability_table(y, p, n_bins).assign(scorer=LABELS[k]) for k, p in scores.items()], ignore_index=True
    ))  # fmt: skip
    figures = {
        "roc.png": plots.roc_figure(y, curves),
        "precision_recall.png": plots.precision_recall_figure(y, curves),
        "reliability.png": plots.reliability_figure(y, calibration_curves, n_bins),
        "gains.png": plots.gains_figure(y, curves, n_bins),
        "score_distribution.png": plots.score_distribution_figure(y, scores["model"]),
    }
    for name, fig in figures.items():
        save_figure(out / "plots" / name, fig, dpi=110)
        plots.plt.close(fig)
    return metrics
