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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.outputs import refuse_overlap, save_figure, write_csv, write_file, write_json
from models.baseline import logistic_baseline
from models.boosting import InMemoryLearner, predict_scores
from models.calibration import ProbabilityCalibrator
from models.categories import META_KEY, CategoryGrouper, stored_grouper
from models.cutoffs import assign_stages, choose_cutoffs, cutoff_warnings, tier_table
from models.drift import drift_reference
from models.frame import categorical_names, feature_matrix, feature_names
from models.gates import BantGates
from models.intervals import clustered_bootstrap
from models.leakage import check_leakage, check_model, single_feature_scan, warnings_for
from models.metrics import gains_table, reliability_table, score_report
from models.score_scale import ScoreScale
from models.search import rounds_for_rate, scaled_defaults, scaled_rounds, search_params
from models.value import (
    VALUE_BOOSTER,
    expected_value,
    fit_value_model,
    load_value_model,
    won_rows,
)
from pipelines.engines import EngineSettings
from pipelines.oracle import attach_oracle
from pipelines.params import category_grouper, check_known, leakage_rules, section

log = logging.getLogger(__name__)

BOOSTER, CALIBRATOR, BASELINE, META = (
    "booster.txt",
    "calibrator.joblib",
    "baseline.joblib",
    "model_meta.json",
)
DRIFT_REFERENCE = "drift_reference.json"
#: Validation leads are assigned to the calibration part by their hash modulo this.
HASH_BUCKETS = 10_000
LABELS = {
    "model": "model (calibrated LightGBM)",
    "model_uncalibrated": "model (uncalibrated)",
    "baseline": "baseline (logistic regression)",
    "oracle": "oracle (true probability)",
}


def read_split(folder: Path, name: str) -> pd.DataFrame:
    """One split of a training set (``train``, ``validation``, ``test``)."""
    path = folder / f"{name}.parquet"
    if not path.exists() and (folder / name).is_dir():  # a partitioned training set's train
        return pd.read_parquet(folder / name)
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
    track: bool = False,
    params_path: str | Path | None = None,
    booster_from: str | Path | None = None,
    engine: EngineSettings | None = None,
) -> dict[str, Any]:
    """Train the booster, calibrate it, choose the cutoffs, fit the baseline (see ``leadscore
    train --help``): settings scaled and searched on one part of validation (by lead), early
    stopping there, then (``train.refit``) the same settings and number of trees refitted on
    train and validation, calibrated on cross-fitted validation scores; without refit, the
    booster of the training split, calibrated on the other part of validation.

    Category features are grouped first (``train.categories``): the rule is fitted on the
    training split only, applied to every split, and stored in ``model_meta.json``.
    ``validated``: the validated CRM, to record the drift reference as a scoring run would see it.
    ``track``: open the model's MLflow run (:func:`pipelines.tracking.log_training`; the
    experiment named in ``register.experiment``) with ``params_path`` as its params artifact.
    ``booster_from``: recalibrate instead (``leadscore recalibrate``): the booster and category
    grouping of that `leadscore train` folder as they are, a new calibrator fitted on all of
    this training set's validation split (which the booster must never have seen), and the
    cutoffs, validation report, drift reference and score scale derived again from it.
    ``engine``: where a partitioned training set's booster is fitted
    (:class:`~pipelines.engines.EngineSettings`; None: params.yaml ``engine``): the boosters
    learn from every train row there; what needs rows but not all of them (the leakage scan, the
    search, the baseline, the value model) reads a sample of whole leads
    (``engine.train_sample_rows``), and the category grouping is fitted on counts of every row.
    """
    refuse_overlap(
        {"--training": training, "--validated": validated, "--model": booster_from}, {"--out": out}
    )
    training, out = Path(training), Path(out)
    settings, calibration = section(params, "train"), section(params, "calibration")
    parts = train_parts(training)  # a partitioned training set's train split, else None
    valid = read_split(training, "validation")
    if parts is None:
        train = read_split(training, "train")
        every_train_row = train[["lead_id", "as_of", "label"]]
    else:
        if booster_from is not None:
            raise ValueError(
                f"{training} is a partitioned training set: recalibrate on a whole one"
            )
        engine = engine or EngineSettings.from_params(params)
        train = parts.sample(engine.train_sample_rows)
        every_train_row = parts.columns(["lead_id", "as_of", "label"])
    # Enough history? Before anything is fitted: a stop leaves nothing behind.
    sufficiency = _sufficiency(params, training, every_train_row, valid)
    names = feature_names(train)
    x_train = feature_matrix(train, names)
    frozen = None if booster_from is None else frozen_booster(booster_from, names, valid)
    # On the training rows only; a recalibrated booster keeps the grouping it was trained with.
    if frozen:
        grouper = frozen.grouper
    elif parts is None:
        grouper = category_grouper(params).fit(x_train)
    else:  # every train row's counts, summed part by part
        counts = parts.level_counts(categorical_names(x_train))
        grouper = category_grouper(params).fit_counts(counts, names, parts.rows)
    _log_grouping(grouper)
    x_train, x_valid = grouper.transform(x_train), feature_matrix(valid, names, grouper)
    y_train, y_valid = _labels(train, "train"), _labels(valid, "validation")
    # The leakage alarm, before anything is fitted or written: a refusal leaves nothing behind.
    rules = leakage_rules(params)
    scan = single_feature_scan(x_train, y_train, x_valid, y_valid, rules, valid["lead_id"])
    _log_scan(scan, rules.allow)
    check_leakage(scan, rules)
    leak_warnings = warnings_for(scan, rules)

    # Validation in two parts, by lead: one for early stopping and the search, the other (rows
    # neither has seen) for the calibrator, the cutoffs and the validation report.
    # Below the data-sufficiency bar with sufficiency.action rules: the points of params.yaml
    # `rules`, compiled into a booster; all of validation calibrates them (nothing to stop).
    rules_only = sufficiency.get("rules_only", False) and frozen is None
    if rules_only:
        from models.rules import compile_rules, rule_steps

        held = np.ones(len(valid), dtype=bool)
        x_hold, y_hold, hold = x_valid, y_valid, valid
        booster = compile_rules(rule_steps(section(params, "rules")), x_train)
        search = FittedSettings({}, booster, {"rules_only": True, "n_trials": 0})
    elif frozen is None:
        held = calibration_holdout(
            valid["lead_id"], float(calibration.get("holdout_fraction", 0.5))
        )
        x_stop, y_stop = x_valid[~held], y_valid[~held]
        x_hold, y_hold, hold = x_valid[held], y_valid[held], valid[held]
        _labels(hold, "calibration part of the validation")
        _labels(valid[~held], "early-stopping part of the validation")
        search = fit_settings(settings, x_train, y_train, x_stop, y_stop)
        booster = search.booster  # the chosen trial's, early-stopped on the stopping part
    else:  # recalibration: nothing to stop or search; all of validation calibrates
        held = np.ones(len(valid), dtype=bool)
        x_hold, y_hold, hold = x_valid, y_valid, valid
        booster = frozen.booster
        search = FittedSettings(
            dict(frozen.meta["lightgbm"]), booster, dict(frozen.meta.get("search") or {})
        )
    raw_hold = predict_scores(booster, x_hold)  # once: the calibrator and the cutoffs use it
    # The whole model, too good to be true (a leak spread over several features): before writing.
    model_warning = check_model(roc_auc_score(y_hold, raw_hold), scan, rules)
    if model_warning:
        leak_warnings.append(model_warning)
    for line in leak_warnings:
        log.warning("leakage alarm: %s", line)
    if frozen:
        trees = int(frozen.meta["best_iteration"])
    else:
        trees = booster.num_trees() if rules_only else max(int(booster.best_iteration), 1)
    refitted = bool(settings.get("refit", True)) and frozen is None and not rules_only
    mono = list(settings.get("monotone_increasing", []))
    learner = (
        InMemoryLearner(x_train, y_train)
        if parts is None
        else partitioned_learner(parts, names, grouper, engine)
    )
    try:
        if parts is not None and not refitted and not rules_only:
            # The search's booster learned from the sample: the model learns from every train row.
            booster = learner.fit(search.best_params, trees, mono)
            raw_hold = predict_scores(booster, x_hold)
        if refitted:
            # The model in production learns from everything before the test split: the most recent
            # leads carry the most of a drifting market. Its calibration data: each validation
            # part scored by a booster fitted on train and the other part (cross-fitting), so every
            # row is scored by a model that never saw its lead.

            def refit(x: pd.DataFrame, y: np.ndarray) -> lgb.Booster:
                """On every train row and ``x``."""
                return learner.fit(search.best_params, trees, mono, x, y)

            raw_cal = np.empty(len(valid))
            raw_cal[held] = predict_scores(refit(x_stop, y_stop), x_hold)
            raw_cal[~held] = predict_scores(refit(x_hold, y_hold), x_stop)
            cal, x_cal, y_cal = valid, x_valid, y_valid
            x_learned, y_learned = pd.concat([x_train, x_valid]), np.r_[y_train, y_valid]
            booster = refit(x_valid, y_valid)
            learned = pd.concat([every_train_row["as_of"], valid["as_of"]])
            log.info(
                "refit on train and validation (%d rows, %d trees); calibration on cross-fitted "
                "validation scores",
                len(every_train_row) + len(valid), trees,
            )  # fmt: skip
        else:
            raw_cal, cal, x_cal, y_cal = raw_hold, hold, x_hold, y_hold
            learned = every_train_row["as_of"]
            x_learned, y_learned = x_train, y_train
    finally:
        learner.close()  # a cluster it started
    calibrator = ProbabilityCalibrator(
        # Points are no probability: a rules-only model is always mapped (two parameters fit
        # on few wins; isotonic would need many).
        methods=("sigmoid",) if rules_only else tuple(calibration["methods"]),
        cv=int(calibration["cv_folds"]),
        random_state=0,
        tolerance_se=float(calibration.get("tolerance_se", 1.0)),
    ).fit(raw_cal, y_cal, groups=cal["lead_id"].to_numpy())
    log.info(
        "calibration on %d validation rows (%d leads), each scored by a booster that did not "
        "see it: %s chosen (cross-validated log loss %s)",
        len(cal), cal["lead_id"].nunique(), calibrator.method_, calibrator.cv_log_loss_,
    )  # fmt: skip
    p_cal = calibrator.predict(raw_cal)
    # The value model: E[amount | won], from the won rows (params.yaml `value`; none without it).
    value = (
        fit_value_model(
            {**params["value"], "allow_features": list(rules.allow)},
            x_train,
            train,
            x_valid,
            valid,
        )  # fmt: skip
        if "value" in params
        else None
    )
    ev_cal = None if value is None else expected_value(p_cal, value.expected_amount(x_cal))
    # Leads a week in the calibration rows: capacity policies count per week of all validation.
    span_days = (valid["as_of"].max() - valid["as_of"].min()).days + 1
    weeks = max(span_days, 7) / 7 * len(cal) / len(valid)
    cutoff_settings = section(params, "cutoffs")
    cutoffs = choose_cutoffs(p_cal, y_cal, cutoff_settings, weeks, ev_cal)
    gates = BantGates(**section(params, "gates")).fit().transform(cal)
    stages = assign_stages(p_cal, gates, cutoffs, ev_cal)["stage"]
    cutoff_notes = cutoff_warnings(
        p_cal, y_cal, cutoffs, cutoff_settings, gates=gates, stages=stages,
        max_unknown_share=float(cutoff_settings.get("warn_gate_unknown_share", 0.95)),
    )  # fmt: skip
    log.info("cutoffs chosen on validation: SQL %.4f, MQL %.4f", cutoffs["sql"], cutoffs["mql"])
    for line in cutoff_notes:
        log.warning("cutoffs: %s", line)
    validation_report = _validation_report(
        params, y_cal, raw_cal, calibrator.oof_predictions_, cal["lead_id"].to_numpy()
    )
    categorical = categorical_names(x_train)
    numeric = [n for n in names if n not in categorical]
    # The baseline learns from the same rows as the booster, so the comparison is fair.
    baseline = logistic_baseline(categorical, numeric, c=float(settings["baseline_c"])).fit(
        x_learned, y_learned
    )

    write_file(out / BOOSTER, lambda tmp: booster.save_model(tmp, num_iteration=trees))
    write_file(out / CALIBRATOR, lambda tmp: joblib.dump(calibrator, tmp))
    write_file(out / BASELINE, lambda tmp: joblib.dump(baseline, tmp))
    if value is not None and value.booster is not None:
        write_file(out / VALUE_BOOSTER, lambda tmp: value.booster.save_model(tmp))
    manifest = (
        json.loads((training / "manifest.json").read_text())
        if (training / "manifest.json").exists()
        else {}
    )
    meta = {
        "features": names,
        "categorical_features": categorical,
        META_KEY: grouper.to_dict(),
        "best_iteration": trees,
        "calibration": {
            "method": calibrator.method_,
            "cv_log_loss": calibrator.cv_log_loss_,
            "rows": len(cal),
            "leads": int(cal["lead_id"].nunique()),
            "cross_fitted": refitted,
        },
        "cutoffs": cutoffs,
        "cutoff_policies": cutoff_settings,
        "cutoff_warnings": cutoff_notes,
        "validation": validation_report,
        "gates": section(params, "gates"),
        # How to rebuild the features at scoring time, whatever params.yaml says by then.
        "feature_config": {
            "builders": list(section(params, "features")["builders"]),
            "behavioral": section(params, "features").get("behavioral", {}),
        },
        "lightgbm": search.best_params,
        "search": search.summary,
        # Each feature alone, out of time (the leakage alarm), and the features the user kept.
        "leakage_scan": {
            "allowed_features": list(rules.allow),
            "warnings": leak_warnings,
            "strongest": scan.head(10).round(4).to_dict(orient="records"),
        },
        "training_rows": {
            "booster": len(learned),
            "train": len(every_train_row),
            "early_stopping": int((~held).sum()),
            "calibration": len(cal),
        },
        # What the booster learned from (train), what stopped it and what calibrated it.
        "training_data": {
            "input_fingerprint": manifest.get("input_fingerprint"),
            "splits": manifest.get("splits"),
            "booster_range": _range(pd.DataFrame({"as_of": learned})),
            "refit_on_validation": refitted,
            "validation_range": _range(valid),
        },
        # Which leads the model is for and how old (scoring reads it from here, not params).
        "population": manifest.get("population") or {"policy": "all", "max_age_days": None},
        # Whether the history met params.yaml's sufficiency bar, and what it lacked.
        "data_sufficiency": sufficiency,
        # lightgbm (learned) or rules (points from params.yaml: a cold start).
        "kind": "rules" if rules_only else "lightgbm",
        # How each feature reads in words and which group it belongs to: the packaged model
        # (and every scoring run of it) says its reasons with the labels it was trained with.
        "catalog": _catalog(params, names),
    }
    if value is not None:  # the value model (models/value.py): its booster is VALUE_BOOSTER
        meta["value"] = value.to_meta()
    if parts is not None:  # what the booster and the rest learned from
        meta["training_data"]["partitioned"] = {
            "train_parts": len(parts.files),
            "train_rows": parts.rows,
            "sample_rows": len(train),
            "engine": learner.engine.name,
        }
    if rules_only:
        meta["rules"] = section(params, "rules")
        meta["training_data"]["booster_range"] = "none: points from params.yaml rules"
        meta["training_data"]["refit_on_validation"] = False
    if frozen is not None:  # what the booster learned from is the original's
        meta["training_data"]["booster_range"] = frozen.meta["training_data"]["booster_range"]
        meta["training_data"]["refit_on_validation"] = False
        # What its booster was tuned on (early stopping), for later windows' checks.
        meta["training_data"]["tuned_range"] = frozen.meta["training_data"].get("validation_range")
        meta["recalibrated_from"] = {
            "model_digest": frozen.digest,
            "calibration_range": _range(valid),
        }
        log.info(
            "recalibrated the booster of %s (learned from %s) on %d validation rows %s",
            booster_from, meta["training_data"]["booster_range"], len(valid), _range(valid),
        )  # fmt: skip
    p_valid = calibrator.predict(predict_scores(booster, x_valid))
    reference, reference_p = _drift_reference(
        params, booster, calibrator, meta, valid, p_valid, validated
    )
    # The 1-99 score: a percentile among the same leads the drift is measured against.
    scale = ScoreScale.fit(reference_p, reference.get("population", "the validation split"))
    meta["score_scale"] = scale.to_dict()
    log.log(
        logging.WARNING if scale.coarse else logging.INFO,
        "score scale: percentiles of %d reference leads (%s)%s; score 90 from probability %.2f%%",
        scale.leads, scale.population, ", too few for 98 distinct steps" if scale.coarse else "",
        100 * scale.lowest_probability(90),
    )  # fmt: skip
    write_json(out / META, meta)
    write_file(out / DRIFT_REFERENCE, lambda tmp: tmp.write_text(json.dumps(reference) + "\n"))
    if track:
        from pipelines.tracking import log_training

        log_training(
            params, params_path, training, out, meta, booster, search.curve, search.trials,
            experiment=section(params, "register")["experiment"],
        )  # fmt: skip
    return meta


def train_parts(training: str | Path):
    """The train split of a partitioned training set (:class:`~pipelines.partitioned_training.
    TrainParts`), or None for a whole one."""
    from pipelines.partitioned_training import TrainParts, is_partitioned_training

    return TrainParts(training) if is_partitioned_training(training) else None


def partitioned_learner(parts, names: list[str], grouper, engine: EngineSettings):
    """What fits a partitioned training set's boosters, on ``engine``."""
    from pipelines.partitioned_training import PartitionedLearner  # Dask is imported by it

    return PartitionedLearner(parts, names, grouper, engine)


def _sufficiency(
    params: dict[str, Any], training: Path, train: pd.DataFrame, valid: pd.DataFrame
) -> dict[str, Any]:
    """The data-sufficiency verdict on the training set's splits (:mod:`pipelines.sufficiency`),
    enforced by ``sufficiency.action``; the test split counts too when it is there."""
    from pipelines.sufficiency import SufficiencyBar, check_sufficiency, enforce

    bar = SufficiencyBar.from_params(params.get("sufficiency"))
    splits = {"train": train, "validation": valid}
    if (training / "test.parquet").is_file():
        splits["test"] = pd.read_parquet(
            training / "test.parquet", columns=["lead_id", "as_of", "label"]
        )
    verdict = check_sufficiency(splits, bar)
    enforce(verdict, bar)
    return verdict


@dataclass(frozen=True)
class FrozenBooster:
    """A trained model's booster, category grouping, metadata and digest, to recalibrate."""

    booster: lgb.Booster
    grouper: CategoryGrouper
    meta: dict[str, Any]
    digest: str


def last_seen(meta: Mapping[str, Any]) -> pd.Timestamp | None:
    """The newest snapshot a model's booster learned from or was tuned on: its booster range,
    and its validation split (early stopping and the search read it) unless it was refit on it
    (then it is in the booster range). None if the model does not say."""
    data = meta.get("training_data") or {}
    ends = [data.get("booster_range")]
    if not data.get("refit_on_validation"):
        ends.append(data.get("validation_range"))
    dates = [pd.Timestamp(str(e).split("..")[-1]) for e in ends if e and ".." in str(e)]
    return max(dates) if dates else None


def frozen_booster(folder: str | Path, names: list[str], valid: pd.DataFrame) -> FrozenBooster:
    """The booster of the `leadscore train` folder ``folder``, checked against a training set
    (its features ``names`` and validation split ``valid``): same features, and a validation
    split the booster never learned from (one-line errors otherwise)."""
    from pipelines.tracking import model_digest

    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    if list(meta["features"]) != list(names):
        missing = sorted(set(meta["features"]) - set(names))
        extra = sorted(set(names) - set(meta["features"]))
        raise ValueError(
            f"{folder} was trained on other features than this training set has (missing: "
            f"{missing[:5]}, new: {extra[:5]}): retrain instead of recalibrating"
        )
    grouper = stored_grouper(meta)
    if grouper is None:
        raise ValueError(f"{folder} predates category grouping: retrain instead of recalibrating")
    last = last_seen(meta)
    first = pd.Timestamp(valid["as_of"].min())
    if last is None or last >= first:
        raise ValueError(
            f"the booster of {folder} learned from (or was tuned on) snapshots up to "
            f"{'?' if last is None else f'{last:%Y-%m-%d}'}, which reach into this validation "
            f"split (from {first:%Y-%m-%d}): recalibrate on a training set built from a newer "
            "CRM export"
        )
    booster = lgb.Booster(model_file=str(folder / BOOSTER))
    return FrozenBooster(booster, grouper, meta, model_digest(folder))


def calibration_holdout(lead_id: pd.Series, fraction: float) -> np.ndarray:
    """Per validation row: True if its lead is in the calibration part (about ``fraction`` of
    the leads, chosen by a hash of the lead id: the same leads on every run, whatever the row
    order), False if in the early-stopping part. A lead's rows stay together."""
    if not 0 < fraction < 1:
        raise ValueError(f"calibration.holdout_fraction must be between 0 and 1, got {fraction}")
    hashed = pd.util.hash_pandas_object(lead_id.astype(str), index=False).to_numpy()
    return (hashed % HASH_BUCKETS) < round(fraction * HASH_BUCKETS)


@dataclass(frozen=True)
class SearchSetup:
    """What the search starts from: the size-scaled defaults, the base params (``train.lightgbm``
    over them), the base's round cap and patience, and the checked ``train.search`` budget."""

    scaled: dict[str, Any]
    base: dict[str, Any]
    rounds: dict[str, int]
    budget: dict[str, Any]


def set_lightgbm(settings: dict[str, Any]) -> dict[str, Any]:
    """The LightGBM params ``train.lightgbm`` sets (null: scaled to the data, as if absent; so
    params.yaml can list them and `dvc exp run -S train.lightgbm.num_leaves=8` can set one)."""
    return {k: v for k, v in (settings.get("lightgbm") or {}).items() if v is not None}


def search_setup(settings: dict[str, Any], n_rows: int, n_positives: int) -> SearchSetup:
    """The search's starting point for ``n_rows`` training rows with ``n_positives`` positives
    (see :func:`fit_settings`): round cap and patience from ``train`` if set, else from the
    learning rate (``scaled_rounds``)."""
    scaled = scaled_defaults(n_rows, n_positives)
    base = {**scaled, **set_lightgbm(settings)}
    rounds = scaled_rounds(float(base["learning_rate"]))
    for key in ("num_boost_round", "early_stopping_rounds"):
        if settings.get(key) is not None:
            rounds[key] = int(settings[key])
    budget = dict(settings.get("search") or {})
    check_known("train.search", budget, ("trials", "timeout_s", "seed"))
    return SearchSetup(scaled, base, rounds, budget)


@dataclass(frozen=True)
class FittedSettings:
    """The LightGBM params training uses, the booster they gave (early-stopped on the
    early-stopping part of validation), and how they were found."""

    best_params: dict[str, Any]
    booster: lgb.Booster
    summary: dict[str, Any]
    #: The chosen trial's validation log loss per iteration, and every trial with its seconds
    #: (for the MLflow run: not in the model folder, whose bits must not depend on timing).
    curve: list[float] = field(default_factory=list)
    trials: pd.DataFrame | None = None


def fit_settings(
    settings: dict[str, Any],
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_stop: pd.DataFrame,
    y_stop: np.ndarray,
) -> FittedSettings:
    """LightGBM params for this data: the size-scaled defaults (``scaled_defaults``), overridden
    by what ``train.lightgbm`` sets, then a budgeted search around them (``train.search``) on
    the early-stopping part of validation; and the chosen trial's booster."""
    setup = search_setup(settings, len(y_train), int(y_train.sum()))
    budget, rounds = setup.budget, setup.rounds
    result = search_params(
        x_train, y_train, x_stop, y_stop, setup.base,
        n_trials=int(budget.get("trials", 0)),
        timeout_s=None if budget.get("timeout_s") is None else float(budget["timeout_s"]),
        num_boost_round=rounds["num_boost_round"],
        early_stopping_rounds=rounds["early_stopping_rounds"],
        monotone_increasing=list(settings.get("monotone_increasing", [])),
        seed=int(budget.get("seed", 0)),
    )  # fmt: skip
    log.info(
        "LightGBM settings: %s (scaled to %d rows, %d positives%s); validation log loss %.5f "
        "(base %.5f), %d trial(s) in %.0f s",
        {k: result.best_params[k] for k in ("num_leaves", "min_data_in_leaf", "learning_rate")},
        len(y_train), int(y_train.sum()),
        f"; set in train.lightgbm: {sorted(set_lightgbm(settings))}" if set_lightgbm(settings) else "",
        result.best_score, result.base_score, result.n_trials, result.seconds,
    )  # fmt: skip
    summary = {
        "scaled_defaults": setup.scaled,
        # The chosen trial's: a slower rate than the base's had more rounds and patience.
        "rounds": rounds_for_rate(
            rounds["num_boost_round"],
            rounds["early_stopping_rounds"],
            float(setup.base["learning_rate"]),
            float(result.best_params["learning_rate"]),
        ),  # fmt: skip
        **{k: v for k, v in result.to_dict(timings=False).items() if k != "space"},
    }
    return FittedSettings(
        dict(result.best_params), result.booster, summary, list(result.curve), result.trials
    )


def _range(frame: pd.DataFrame) -> str:
    """``YYYY-MM-DD..YYYY-MM-DD``: the as_of dates of a split."""
    return f"{frame['as_of'].min():%Y-%m-%d}..{frame['as_of'].max():%Y-%m-%d}"


def _validation_report(
    params: dict[str, Any], y: np.ndarray, raw: np.ndarray, oof: np.ndarray, leads: np.ndarray
) -> dict[str, Any]:
    """The calibration part of validation, which registration is gated on (test only reports):
    ROC AUC of the booster, ECE of the calibrated model from its out-of-fold predictions (each
    row calibrated by a map fitted without its lead), with lead-clustered intervals."""
    evaluation = section(params, "evaluate")
    ece_bins = int(evaluation.get("ece_bins", 20))
    report = score_report(y, oof, int(evaluation["n_bins"]), ece_bins)
    report["roc_auc"] = float(roc_auc_score(y, raw))  # the booster's order, before calibration
    report["leads"] = int(pd.unique(leads).size)
    report["won_leads"] = int(pd.unique(leads[y == 1]).size)
    boot = _bootstrap_settings(params)
    report["intervals"] = clustered_bootstrap(
        y, {"model": oof}, leads, metrics=("roc_auc", "pr_auc", "ece"), pairs=(), ratios=(),
        ece_bins=ece_bins, **boot,
    )["scorers"]["model"]  # fmt: skip
    return report


def _bootstrap_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``evaluate.bootstrap``: replicates, alpha and seed of the lead-clustered intervals."""
    boot = dict(section(params, "evaluate").get("bootstrap") or {})
    return {
        "n_boot": int(boot.get("replicates", 1000)),
        "alpha": float(boot.get("alpha", 0.05)),
        "seed": int(boot.get("seed", 0)),
    }


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


def _catalog(params: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """The feature catalog entries of ``names`` (labels, groups) under params' builders and
    mapping; a feature the catalog does not know gets its name in words."""
    from features.build import feature_specs
    from models.reasons import fallback_spec
    from pipelines.params import behavioral_params
    from pipelines.steps import crm_contract

    contract = crm_contract(params)
    builders = section(params, "features")["builders"]
    specs = {
        s.name: s
        for s in feature_specs(builders, contract.behavioral(behavioral_params(params)), contract)
    }
    return [(specs.get(n) or fallback_spec(n)).to_dict() for n in names]


def _drift_reference(
    params, booster, calibrator, meta, valid, p_valid, validated
) -> tuple[dict, np.ndarray]:
    """What scoring runs measure their drift (PSI) against, and its leads' probabilities.

    With the validated CRM: the population a scoring run would have seen at the end of the
    validation period (the open leads then, their features and scores), so that a nightly run
    is compared like for like: open leads of every age, not snapshots at fixed offsets.
    Without it: the validation split itself.
    """
    n_bins = int(section(params, "evaluate")["n_bins"])
    if validated is None:
        return drift_reference(valid[meta["features"]], p_valid, n_bins=n_bins) | {
            "population": "the validation split"
        }, p_valid
    from features.build import build_features
    from features.readers import read_crm
    from models.packaged import LeadScorer
    from pipelines.params import behavioral_params
    from pipelines.scoring import open_leads
    from pipelines.steps import crm_contract

    tables = read_crm(validated)
    as_of = pd.Timestamp(valid["as_of"].max())
    snapshots, counts = open_leads(tables, as_of, meta["population"]["max_age_days"])
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
    }, scores


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
    validated: str | Path | None = None,
) -> dict[str, Any]:
    """Score the out-of-time test split: the model next to the baseline and, if given, the oracle.
    ``validated``: the validated CRM, for conversion by time to the first sales touch."""
    refuse_overlap(
        {"--training": training, "--model": model, "--oracle": oracle, "--validated": validated},
        {"--out": out},
    )
    from models import plots

    n_bins = int(section(params, "evaluate")["n_bins"])
    test = read_split(Path(training), "test")
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
    ece_bins = int(section(params, "evaluate").get("ece_bins", 20))
    leads = test["lead_id"].astype(str).to_numpy()
    metrics: dict[str, Any] = {
        "test": {name: score_report(y, p, n_bins, ece_bins) for name, p in scores.items()},
        "test_rows": {
            "rows": len(test),
            "leads": int(pd.unique(leads).size),
            "positives": int(y.sum()),
            "won_leads": int(pd.unique(leads[y == 1]).size),
        },
        "calibration_method": meta["calibration"]["method"],
        "best_iteration": meta["best_iteration"],
    }
    # Rows of one lead are not independent: intervals resample leads, paired across scorers.
    metrics["intervals"] = clustered_bootstrap(
        y, scores, leads, metrics=("roc_auc", "pr_auc", "ece"),
        pairs=(("model", "baseline"), ("model", "model_uncalibrated")),
        ratios=(("model", "oracle"),), ece_bins=ece_bins, **_bootstrap_settings(params),
    )  # fmt: skip
    if "oracle" in scores:
        metrics["model_roc_auc_vs_oracle"] = (
            metrics["test"]["model"]["roc_auc"] / metrics["test"]["oracle"]["roc_auc"]
        )
    worse = metrics["test"]["model"]["ece"] - metrics["test"]["model_uncalibrated"]["ece"]
    if worse > 0:
        metrics["calibration_note"] = (
            f"calibration made test ECE worse: {metrics['test']['model']['ece']:.4f} calibrated "
            f"vs {metrics['test']['model_uncalibrated']['ece']:.4f} uncalibrated"
        )
        log.warning("%s", metrics["calibration_note"])
    if oracle_note:
        metrics["oracle_note"] = oracle_note
    gates = BantGates(**meta["gates"]).fit().transform(test)
    value = load_value_model(model, meta)
    amount = None if value is None else value.expected_amount(x)
    ev = None if amount is None else expected_value(scores["model"], amount)
    stages = assign_stages(scores["model"], gates, meta["cutoffs"], ev)
    tiers = tier_table(y, stages["stage"])
    metrics["cutoffs"] = meta["cutoffs"]
    metrics["tiers"] = {
        row["stage"]: {
            k: (None if pd.isna(v) else float(v)) for k, v in row.items() if k != "stage"
        }
        for row in tiers.to_dict("records")
    }
    value_tables: dict[str, pd.DataFrame] = {}
    if value is not None and value.kind != "none" and won_rows(test).any():
        from pipelines.value_report import evaluate_value

        metrics["value"], value_tables = evaluate_value(
            params, test, x, scores["model"], ev, scores["baseline"], value, stages, gates,
            meta["cutoffs"],
        )  # fmt: skip
    if validated is not None:
        from pipelines.follow_up import first_touch_report

        metrics["follow_up"] = first_touch_report(params, test, validated)
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
    for name, table in value_tables.items():
        write_csv(out / f"{name}.csv", table)
    if value_tables:
        figures["value_gains.png"] = plots.value_gains_figure(
            value_tables["value_gains"], value_tables["value_deciles"]
        )
    for name, fig in figures.items():
        save_figure(out / "plots" / name, fig, dpi=110)
        plots.plt.close(fig)
    return metrics
