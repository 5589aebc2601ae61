"""MLflow tracking of a training: one run per model folder, from fitting to registration.

``leadscore train`` opens the run and logs what a data scientist looks for: params.yaml (secrets
masked) and the settings the search chose, the training, validation and test splits as MLflow
datasets (file digest, source, rows, leads and positives), the validation metrics with their
intervals, LightGBM's validation log loss per iteration (a step metric: the training curve),
the search's trials, the feature importance (gain and splits, CSV and a plot), and the standard
``mlflow.source.git.commit`` tag. ``leadscore evaluate`` adds the test metrics and plots, and
``leadscore register`` the packaged model, the explanations and the registered version, all to
the same run: they find it by the model folder's digest (tag ``leadscore.model_digest``), so
the steps may run in separate processes (DVC stages, cron) and still meet in one run.

The experiment is marked as classic machine learning (``mlflow.experimentKind``), so MLflow 3's
UI opens it on its runs, not on GenAI traces. Tracking is not the registry: an experiment
(``dvc exp run``) adds runs here, and never a registered version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.urls import display_url, redact_settings

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: The run tag a model folder's steps find their run by.
DIGEST_TAG = "leadscore.model_digest"
#: MLflow 3's experiment kind for classic ML: its UI then opens on runs (not GenAI traces).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
SPLITS = ("train", "validation", "test")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}`` (into ``out``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def model_digest(model_dir: str | Path) -> str:
    """A hash of everything in a `leadscore train` folder (booster, calibrator, metadata): the
    folder's identity in the tracking store and the registry."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an embedded SQLite store (``mlruns/``
    next to the file, so a store in a scratch folder keeps everything there); a server decides
    for itself (None)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix) :]).resolve().parent / "mlruns").as_uri()


def use_experiment(name: str) -> None:
    """Point MLflow at the tracking store and at experiment ``name`` (created if new, artifacts
    beside an embedded store), marked as classic ML."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=_artifact_root(uri), tags=EXPERIMENT_KIND)
    experiment = mlflow.set_experiment(name)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)


def find_run(digest: str, experiment: str) -> str | None:
    """The newest run of ``experiment`` that tracks the model folder with this digest."""
    import mlflow

    found = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0].info.run_id if found else None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def log_datasets(training: Path, manifest: Mapping[str, Any]) -> None:
    """The splits as MLflow datasets of the active run: each file's digest and path, with its
    rows, leads, positives and dates as tags (the data stays where it is)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    splits = manifest.get("splits", {})
    for split in SPLITS:
        path = training / f"{split}.parquet"
        if not path.is_file():
            continue
        with warnings.catch_warnings():
            # MLflow registers its local artifact source twice and warns that a path could be
            # either (they are the same class): not ours to fix, and the choice is right.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            source = resolve_dataset_source(str(path.resolve()))
        dataset = MetaDataset(
            source=source,
            name=split,
            digest=_file_digest(path),
        )
        info = splits.get(split, {})
        tags = {k: str(v) for k, v in info.items() if isinstance(v, int | float | str)}
        context = "training" if split == "train" else split
        mlflow.log_input(dataset, context=context, tags=tags)


def log_curve(curve: Sequence[float], key: str = "validation.log_loss_by_iteration") -> None:
    """A per-iteration metric of the active run as one batch of steps (the training curve)."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, step) for step, v in enumerate(curve, start=1)]
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):  # the store's batch limit
        mlflow.MlflowClient().log_batch(run_id, metrics=metrics[start : start + 1000])


def importance_table(booster: Any) -> pd.DataFrame:
    """Each feature's LightGBM importance: total gain and number of splits, largest gain first."""
    table = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": booster.feature_importance(importance_type="gain"),
            "splits": booster.feature_importance(importance_type="split"),
        }
    )
    table["gain_share"] = table["gain"] / max(float(table["gain"].sum()), np.finfo(float).tiny)
    return table.sort_values("gain", ascending=False, ignore_index=True)


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries (not booleans), as floats: what MLflow takes as metrics."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def model_kind(meta: Mapping[str, Any]) -> str:
    """How a model's run and registered version name its kind: ``rules-only`` (points from
    params.yaml, below the data-sufficiency bar) or ``lightgbm``."""
    return "rules-only" if meta.get("kind") == "rules" else "lightgbm"


def log_model_summary(
    params: dict[str, Any],
    params_path: str | Path | None,
    training: Path,
    model_dir: Path,
    meta: Mapping[str, Any],
) -> None:
    """What every model's run holds, to the active run: params.yaml (secrets masked) and the
    settings chosen, validation metrics and cutoffs, the splits as datasets, the tags (the
    folder's digest that later steps find the run by, git commit, data ranges, warnings) and
    model_meta.json. ``train`` logs it; ``register`` too, for a model trained without tracking."""
    import mlflow

    manifest_path = training / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    learned = meta.get("training_data", {})
    safe = redact_settings(params)  # a URL's password never reaches the tracking store
    mlflow.log_params({k: str(v)[:500] for k, v in flatten("", safe, {}).items()})
    search = meta.get("search") or {}
    mlflow.log_params(
        {f"chosen.lightgbm.{k}": str(v) for k, v in meta.get("lightgbm", {}).items()}
        | {
            "chosen.trees": meta.get("best_iteration"),
            "chosen.calibration": meta["calibration"]["method"],
            "search.trials_run": search.get("n_trials"),
            "search.best_trial": search.get("best_trial"),
        }
    )
    metrics = {f"validation.{k}": v for k, v in meta.get("validation", {}).items()}
    if search.get("best_score") is not None:  # a rules-only model searched nothing
        metrics["search.best_validation_log_loss"] = search["best_score"]
        metrics["search.base_validation_log_loss"] = search["base_score"]
    metrics |= {f"cutoff.{k}": v for k, v in meta["cutoffs"].items()}
    value = meta.get("value") or {}  # the value model (models/value.py), on validation
    for key in ("validation_log_mae", "validation_log_mae_baseline", "best_iteration"):
        if key in value:
            metrics[f"value.{key}"] = value[key]
    mlflow.log_metrics(_numbers(metrics))
    log_datasets(training, manifest)
    mlflow.set_tags(
        {
            DIGEST_TAG: model_digest(model_dir),
            "model_kind": model_kind(meta),
            "value_model": (meta.get("value") or {}).get("kind", "absent"),
            "mlflow.source.git.commit": git_commit() or "unknown",
            "input_fingerprint": str(manifest.get("input_fingerprint", "unknown")),
            "training_data_range": learned.get("booster_range", "unknown"),
            "validation_range": learned.get("validation_range", "unknown"),
            "cutoff_warnings": "; ".join(meta.get("cutoff_warnings", [])) or "none",
            "leakage_warnings": "; ".join(meta.get("leakage_scan", {}).get("warnings", []))
            or "none",
        }
    )
    if params_path is not None and Path(params_path).exists():
        mlflow.log_text(yaml.safe_dump(safe, sort_keys=False), Path(params_path).name)
    mlflow.log_dict(dict(meta), "model_meta.json")


def log_training(
    params: dict[str, Any],
    params_path: str | Path | None,
    training: Path,
    model_dir: Path,
    meta: Mapping[str, Any],
    booster: Any,
    curve: Sequence[float],
    trials: pd.DataFrame | None,
    experiment: str,
) -> str:
    """One run for the model just written to ``model_dir`` (see the module doc); its run id."""
    import matplotlib.pyplot as plt
    import mlflow

    from features.catalog import FeatureSpec
    from models.plots import importance_figure

    use_experiment(experiment)
    with mlflow.start_run(run_name=f"train {model_dir.name}") as run:
        log_model_summary(params, params_path, training, model_dir, meta)
        log_curve(curve)
        importance = importance_table(booster)
        mlflow.log_text(importance.to_csv(index=False), "importance/feature_importance.csv")
        titles = {d["name"]: FeatureSpec.from_dict(d).title for d in meta.get("catalog", [])}
        figure = importance_figure(importance, titles)
        mlflow.log_figure(figure, "importance/feature_importance.png")
        plt.close(figure)
        if trials is not None and len(trials):
            mlflow.log_metric("search.seconds", float(trials["seconds"].sum()))
            table = trials.assign(params=trials["params"].map(json.dumps))
            mlflow.log_text(table.to_csv(index=False), "search/trials.csv")
        log.info(
            "tracked the training in MLflow run %s (%s)",
            run.info.run_id,
            display_url(tracking_uri()),
        )
        return run.info.run_id


def log_test_results(evaluation: Path) -> None:
    """The evaluation's test metrics (model, baseline, oracle), metrics.json and its plots, to
    the active run."""
    import mlflow

    metrics = json.loads((evaluation / "metrics.json").read_text())
    flat = {f"test.{name}.{k}": v for name, r in metrics["test"].items() for k, v in r.items()}
    if "model_roc_auc_vs_oracle" in metrics:
        flat["test.model_roc_auc_vs_oracle"] = metrics["model_roc_auc_vs_oracle"]
    value = metrics.get("value") or {}
    captured = (value.get("intervals") or {}).get("captured", {}).get("top_0.1", {})
    flat |= {f"test.value.top10_revenue_share.{k}": v["value"] for k, v in captured.items()}
    flat |= {f"test.value.log_mae.{k}": v for k, v in (value.get("log_mae") or {}).items()}
    mlflow.log_metrics(_numbers(flat))
    mlflow.log_artifact(str(evaluation / "metrics.json"))
    if (evaluation / "plots").exists():
        mlflow.log_artifacts(str(evaluation / "plots"), artifact_path="plots")


def log_evaluation(model_dir: Path, evaluation: Path, experiment: str) -> str | None:
    """The test metrics and plots of ``evaluation``, added to the training run of ``model_dir``
    (None, and nothing logged, if the model was trained without tracking)."""
    import mlflow

    use_experiment(experiment)
    run_id = find_run(model_digest(model_dir), experiment)
    if run_id is None:
        log.info(
            "no MLflow run tracks %s (trained with --no-mlflow): evaluation not logged", model_dir
        )
        return None
    with mlflow.start_run(run_id=run_id):
        log_test_results(evaluation)
    log.info("logged the test metrics and plots to MLflow run %s", run_id)
    return run_id
