"""The register step: track the run in MLflow and register the packaged model.

The tracking URI is ``MLFLOW_TRACKING_URI`` if set, else the embedded ``sqlite:///mlflow.db``
(artifacts beside it). Each run logs params.yaml, the test metrics, the plots, the training-set
manifest and data fingerprint, and the git commit. The packaged model (booster + calibrator +
gates + cutoffs) is registered as ``register.model_name``; its version carries the MQL and SQL
cutoffs, the gate rules and the training data range as tags, so a scoring job reads the cutoffs
of the version it loads, never today's params. The first version gets the alias ``champion``.
A model that misses the thresholds in ``register`` on validation is logged but not registered:
the test split only reports, so it is never a selection set.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from features.urls import display_url
from pipelines.tracking import (
    find_run,
    log_model_summary,
    log_test_results,
    model_digest,
    model_kind,
    tracking_uri,
    use_experiment,
)

log = logging.getLogger(__name__)

CHAMPION = "champion"
#: What the registered model is, for whoever opens it in the MLflow UI.
MODEL_DESCRIPTION = (
    "Lead-conversion propensity (leadscore): the calibrated probability that a lead becomes a "
    "customer (closed-won) within the label horizon, from its demographic, firmographic and "
    "behavioral history as of the scoring date (LightGBM, calibrated), with the MQL/SQL cutoffs "
    "and BANT gates of each version in its tags. The pyfunc returns probability, score 1-99, "
    "stage and why, gate results and reasons in words. Alias `champion`: the version the "
    "nightly job scores with."
)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    # numba: the compiled kernel that ranks the reasons (models.reasons)
    names = ["lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "joblib", "mlflow", "numba"]
    return [f"{n}=={version(n)}" for n in names]


def plain_features(features: pd.DataFrame) -> pd.DataFrame:
    """Features as a scoring client sends them: text instead of category, numbers as float64
    (pyfunc schemas reject ``category``, and integers cannot hold missing values)."""

    def plain(column: pd.Series) -> pd.Series:
        if isinstance(column.dtype, pd.CategoricalDtype):
            return column.astype(object).where(column.notna(), None)
        if pd.api.types.is_integer_dtype(column.dtype):
            return column.astype("float64")
        return column

    return features.apply(plain)


def _signature_and_example(model_dir: Path, training: Path):
    """Output: the scorer's frame with reasons, and a ``reasons`` parameter; no input schema, so
    that the training set's own columns (category or text, integers with or without missing
    values, the gates' ``unsubscribed``) reach the scorer as they are: MLflow's schema check
    refuses ``category`` columns, and the scorer converts what it gets (``LeadScorer.matrix``).
    Example: five validation rows as a client sends them (plain columns)."""
    from mlflow.models import ModelSignature, infer_signature

    from models.frame import NOT_FEATURES
    from models.packaged import PYFUNC_REASONS, LeadScorer

    sample = pd.read_parquet(training / "validation.parquet").head(200)
    features = sample.drop(columns=[c for c in NOT_FEATURES if c in sample.columns])
    output = LeadScorer.from_folder(model_dir).score(features, reasons=PYFUNC_REASONS)
    plain = plain_features(features)
    with warnings.catch_warnings():
        # The output's score and bant_score are whole numbers by design and never missing.
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer column", category=UserWarning
        )
        inferred = infer_signature(plain, output, params={"reasons": PYFUNC_REASONS})
    return ModelSignature(outputs=inferred.outputs, params=inferred.params), plain.head(5)


def _log_explain(folder: Path, model_dir: Path) -> None:
    """Attach a `leadscore explain` folder to the active run, if it explains this model."""
    import mlflow

    from pipelines.explain import explain_files
    from pipelines.scoring import folder_version

    summary = folder / "summary.json"
    if not summary.is_file():
        log.warning("%s holds no explain summary.json: explanations not logged", folder)
        return
    explained = json.loads(summary.read_text()).get("model", {}).get("version")
    if explained != folder_version(model_dir):
        log.warning(
            "%s explains model %s, not %s (%s): explanations not logged (run `leadscore explain` "
            "on this model first)", folder, explained, model_dir, folder_version(model_dir),
        )  # fmt: skip
        return
    for path in explain_files(folder):
        mlflow.log_artifact(str(path), artifact_path="explain")
    log.info("logged the explanations in %s to the run (explain/)", folder)


def registration_failures(meta: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """Why a model may not be registered, judged on validation (its calibration part, which
    neither early stopping nor the search saw); the test split only reports, so it stays a test.
    """
    validation = meta.get("validation")
    if validation is None:
        return ["the model has no validation report (trained before it existed): retrain it"]
    failures = []
    if validation["roc_auc"] < float(settings["min_validation_roc_auc"]):
        failures.append(
            f"validation ROC AUC {validation['roc_auc']:.3f} < {settings['min_validation_roc_auc']}"
        )
    if validation["ece"] > float(settings["max_validation_ece"]):
        failures.append(
            f"validation ECE {validation['ece']:.4f} > {settings['max_validation_ece']}"
        )
    return failures


def _registered_as(client: Any, name: str, digest: str) -> int | None:
    """The version of ``name`` that holds this model folder already, if any."""
    import mlflow

    try:
        found = client.search_model_versions(f"name='{name}' and tags.model_digest='{digest}'")
    except mlflow.exceptions.MlflowException:  # no such registered model yet
        return None
    return min((int(v.version) for v in found), default=None)


def _version_description(
    meta: dict[str, Any], test: dict[str, Any], data_range: str, run_id: str
) -> str:
    """One paragraph on a version: what it learned from and how good it is."""
    v = meta["validation"]
    cut = meta["cutoffs"]
    if meta.get("kind") == "rules":
        missing = "; ".join((meta.get("data_sufficiency") or {}).get("missing", []))
        return (
            f"RULES-ONLY: points from params.yaml `rules` (the history was below the "
            f"data-sufficiency bar: {missing}), calibrated to a probability on validation "
            f"{meta['training_data'].get('validation_range')}. Validation ROC AUC "
            f"{v['roc_auc']:.3f}; out-of-time test ROC AUC {test['roc_auc']:.3f}. Cutoffs: SQL "
            f"{cut['sql']:.2%}, MQL {cut['mql']:.2%}. A trained model replaces it through "
            f"`leadscore challenge` once the data suffices. Run {run_id}."
        )
    return (
        f"Trained on snapshots {data_range} ({meta['best_iteration']} trees, calibration "
        f"{meta['calibration']['method']}). Validation ROC AUC {v['roc_auc']:.3f}, ECE "
        f"{v['ece']:.4f}; out-of-time test ROC AUC {test['roc_auc']:.3f}, ECE {test['ece']:.4f}. "
        f"Cutoffs: SQL {cut['sql']:.2%}, MQL {cut['mql']:.2%}. Training run {run_id}."
    )


def _log_model_card(
    name: str, version: str, meta: dict, metrics: dict, manifest: dict, model_dir: Path,
    run_id: str,
) -> str:  # fmt: skip
    """The version's model card (Markdown and HTML) in its run; the HTML's artifact URI."""
    import lightgbm as lgb
    import mlflow

    from pipelines.model_card import model_card, render_html
    from pipelines.tracking import importance_table

    booster = lgb.Booster(model_file=str(model_dir / "booster.txt"))
    text = model_card(name, version, meta, metrics, manifest, importance_table(booster), run_id)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_text(text, "model_card/model_card.md")
        mlflow.log_text(
            render_html(text, f"{name} version {version}"), "model_card/model_card.html"
        )
    return f"runs:/{run_id}/model_card/model_card.html"


def run_register(
    params: dict[str, Any],
    model_dir: str | Path,
    evaluation: str | Path,
    training: str | Path,
    params_path: str | Path = "params.yaml",
    explain: str | Path | None = None,
) -> dict[str, Any]:
    """Log the run and register the model version (if it meets the thresholds); return a summary.
    ``explain``: a `leadscore explain` folder of this model, logged to the run as ``explain/``."""
    import mlflow
    from mlflow import MlflowClient

    import features as features_package
    import models as models_package
    from models.pyfunc import LeadPropensityModel
    from pipelines.params import section

    settings = section(params, "register")
    model_dir, evaluation, training = Path(model_dir), Path(evaluation), Path(training)
    metrics = json.loads((evaluation / "metrics.json").read_text())
    meta = json.loads((model_dir / "model_meta.json").read_text())
    manifest = json.loads((training / "manifest.json").read_text())
    test = metrics["test"]["model"]
    failures = registration_failures(meta, settings)

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    name, digest = settings["model_name"], model_digest(model_dir)
    already = _registered_as(MlflowClient(), name, digest)
    if already is not None:  # e.g. `make demo` run again on the same model: nothing new
        log.info(
            "%s is registered already as %s version %d: nothing to do", model_dir, name, already
        )
        try:
            MlflowClient().get_model_version_by_alias(name, CHAMPION)
        except mlflow.exceptions.MlflowException:  # the first registration was cut short
            MlflowClient().set_registered_model_alias(name, CHAMPION, str(already))
            log.info("%s version %d had no champion before it: now champion", name, already)
        return {
            "tracking_uri": display_url(uri), "registered": True, "model_name": name,
            "version": already, "already_registered": True, "cutoffs": meta["cutoffs"],
            "run_id": MlflowClient().get_model_version(name, str(already)).run_id,
        }  # fmt: skip
    use_experiment(settings["experiment"])
    splits = manifest["splits"]
    learned = meta.get("training_data", {})
    # What the booster learned from: the training split only (validation stopped and
    # calibrated it; test only reports).
    data_range = learned.get("booster_range") or (
        f"{splits['train']['as_of_from']}..{splits['train']['as_of_to']}"
    )
    # The model's training run, if `leadscore train` tracked it: the version joins it.
    tracked = find_run(digest, settings["experiment"])
    with mlflow.start_run(run_id=tracked, run_name=None if tracked else "register") as run:
        if tracked is None:
            log.info(
                "no MLflow run tracks %s (trained with --no-mlflow): a run of its own", model_dir
            )
            log_model_summary(params, params_path, training, model_dir, meta)
        if not any(k.startswith("test.") for k in mlflow.get_run(run.info.run_id).data.metrics):
            log_test_results(evaluation)
        mlflow.log_artifact(str(training / "manifest.json"))
        if explain is not None:
            _log_explain(Path(explain), model_dir)
        signature, example = _signature_and_example(model_dir, training)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=LeadPropensityModel(),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[
                str(Path(models_package.__file__).parent),
                str(Path(features_package.__file__).parent),
            ],
            pip_requirements=_pip_requirements(),
            signature=signature,
            input_example=example,
        )
        summary: dict[str, Any] = {
            "tracking_uri": display_url(uri),
            "run_id": run.info.run_id,
            "model_uri": info.model_uri,
            "registered": False,
        }
        if failures:
            mlflow.set_tag("registration", "refused: " + "; ".join(failures))
            log.warning("model not registered: %s", "; ".join(failures))
            summary["refused"] = failures
            return summary

    client = MlflowClient()
    # The digest with the version, at once: a run cut short later still finds it next time.
    version = mlflow.register_model(info.model_uri, name, tags={"model_digest": digest})
    tags = {
        **{f"{key}_cutoff": f"{cut:.6f}" for key, cut in meta["cutoffs"].items()},
        "cutoff_policies": json.dumps(meta["cutoff_policies"]),
        "gates": json.dumps(meta["gates"]),
        "training_data_range": data_range,
        "validation_range": learned.get("validation_range", "unknown"),
        "input_fingerprint": manifest["input_fingerprint"],
        "validation_roc_auc": f"{meta['validation']['roc_auc']:.4f}",
        "validation_ece": f"{meta['validation']['ece']:.4f}",
        "test_roc_auc": f"{test['roc_auc']:.4f}",
        "test_ece": f"{test['ece']:.4f}",
        # A degenerate cutoff (everyone SQL, MQL = SQL, a gate nobody answers) travels along.
        "cutoff_warnings": "; ".join(meta.get("cutoff_warnings", [])) or "none",
        "population": json.dumps(meta.get("population")),
        "model_kind": model_kind(meta),
        # The value model in this version (models/value.py): lightgbm, segment_median or none.
        "value_model": (meta.get("value") or {}).get("kind", "absent"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    card = _log_model_card(name, str(version.version), meta, metrics, manifest, model_dir,
                           run.info.run_id)  # fmt: skip
    client.update_model_version(name, version.version, description=_version_description(
        meta, test, data_range, run.info.run_id) + f" Model card: {card}.")  # fmt: skip
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION)
    try:
        client.get_model_version_by_alias(name, CHAMPION)
        has_champion = True
    except mlflow.exceptions.MlflowException:
        has_champion = False
    if not has_champion:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    summary |= {
        "registered": True,
        "model_name": name,
        "version": int(version.version),
        "champion": not has_champion or None,
        "cutoffs": meta["cutoffs"],
    }
    log.info(
        "registered %s version %s%s",
        name,
        version.version,
        " as champion" if not has_champion else "",
    )
    return summary
