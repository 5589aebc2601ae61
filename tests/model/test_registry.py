"""The registered model, loaded back by URI, scores exactly as in memory; versions carry cutoffs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trained(trained_world):
    """The session's small synthetic CRM taken through the pipeline up to evaluation."""
    return trained_world


def register(tmp: Path, params: dict, monkeypatch) -> dict:
    from pipelines.registry import run_register

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    monkeypatch.chdir(tmp)  # artifacts land beside the store, not in the project
    return run_register(
        params, tmp / "model", tmp / "eval", tmp / "sets", params_path=tmp / "params.yaml"
    )


@pytest.mark.slow
def test_champion_loaded_by_uri_scores_like_memory_and_carries_its_cutoffs(trained, monkeypatch):
    import mlflow

    from models.frame import NOT_FEATURES
    from models.packaged import LeadScorer
    from pipelines.registry import plain_features

    tmp, params = trained
    first = register(tmp, params, monkeypatch)
    assert first["registered"] and first["version"] == 1 and first["champion"]
    test = pd.read_parquet(tmp / "sets" / "test.parquet")
    # The pyfunc's input is the features (its signature); the gate input unsubscribed is not one.
    features = test.drop(columns=[c for c in NOT_FEATURES if c in test])
    loaded = mlflow.pyfunc.load_model("models:/lead-conversion@champion")
    by_uri = loaded.predict(plain_features(features))
    in_memory = LeadScorer.from_folder(tmp / "model").score(features)
    np.testing.assert_array_equal(
        by_uri["probability"].to_numpy(), in_memory["probability"].to_numpy()
    )
    assert (by_uri["stage"].to_numpy() == in_memory["stage"].to_numpy()).all()
    assert set(by_uri["stage"]) <= {"disqualified", "SQL", "MQL", "nurture"}

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("lead-conversion", "champion")
    meta = json.loads((tmp / "model" / "model_meta.json").read_text())
    assert float(version.tags["sql_cutoff"]) == pytest.approx(meta["cutoffs"]["sql"], abs=1e-6)
    assert float(version.tags["mql_cutoff"]) == pytest.approx(meta["cutoffs"]["mql"], abs=1e-6)
    assert json.loads(version.tags["gates"]) == params["gates"]
    assert ".." in version.tags["training_data_range"]

    # The same folder again is the same version (make demo run twice registers nothing new).
    again = register(tmp, params, monkeypatch)
    assert again["already_registered"] and again["version"] == 1
    assert len(client.search_model_versions("name='lead-conversion'")) == 1
    # Another model is version 2; the champion stays version 1 until promoted.
    meta["note"] = "another model"
    (tmp / "model" / "model_meta.json").write_text(json.dumps(meta))
    second = register(tmp, params, monkeypatch)
    assert second["version"] == 2 and not second["champion"]
    assert int(client.get_model_version_by_alias("lead-conversion", "champion").version) == 1
    described = client.get_model_version("lead-conversion", "2")
    assert "out-of-time test ROC AUC" in described.description
    assert (
        "Lead-conversion propensity" in client.get_registered_model("lead-conversion").description
    )


@pytest.mark.slow
def test_the_registered_model_explains_itself_from_the_training_sets_columns(
    trained, monkeypatch, tmp_path
):
    """The pyfunc takes the training set's columns as they are (text or category, the gates'
    unsubscribed), returns reasons in the catalog's words (the scoring job's), and its input
    example is what `mlflow models predict` sends."""
    import mlflow

    from models.frame import NOT_FEATURES
    from models.packaged import REASON_COLUMNS, LeadScorer

    tmp, params = trained
    work = tmp_path / "copy"
    shutil.copytree(tmp, work, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", "mlartifacts"))
    result = register(work, params, monkeypatch)
    loaded = mlflow.pyfunc.load_model(f"models:/lead-conversion/{result['version']}")
    assert loaded.metadata.signature.inputs is None  # no schema check: category is accepted
    test = pd.read_parquet(work / "sets" / "test.parquet").head(300)
    features = test.drop(columns=[c for c in NOT_FEATURES if c in test])
    as_category = features.apply(
        lambda c: c.astype("category") if pd.api.types.is_string_dtype(c) else c
    )
    in_memory = LeadScorer.from_folder(work / "model").score(test, reasons=3)
    for frame in (features, as_category, test):
        out = loaded.predict(frame)
        assert out.columns[-2:].tolist() == REASON_COLUMNS
        np.testing.assert_allclose(out["probability"], in_memory["probability"])
        assert out["reasons_for"].tolist() == in_memory["reasons_for"].tolist()
    # The gates read unsubscribed when it is sent, as the scoring job's do.
    assert (loaded.predict(test)["stage"] == in_memory["stage"]).all()
    assert loaded.predict(features, params={"reasons": 0}).columns[-1] == "gate_timeline"
    # The logged input example, through `mlflow models predict` (its Python entry point).
    uri = f"models:/lead-conversion/{result['version']}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    answer = tmp_path / "predictions.json"
    mlflow.models.predict(
        uri, input_path=str(local / "serving_input_example.json"), content_type="json",
        output_path=str(answer), env_manager="local",
    )  # fmt: skip
    served = pd.DataFrame(json.loads(answer.read_text())["predictions"])
    said = served["reasons_for"].str.len() + served["reasons_against"].str.len()
    assert len(served) == 5 and (said > 0).all()


@pytest.mark.slow
def test_a_model_below_the_thresholds_is_not_registered(trained, monkeypatch, tmp_path):
    tmp, params = trained
    strict = {**params, "register": {**params["register"], "min_validation_roc_auc": 0.999}}
    work = tmp_path / "copy"
    shutil.copytree(tmp, work, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", "mlartifacts"))
    result = register(work, strict, monkeypatch)
    assert not result["registered"] and "ROC AUC" in result["refused"][0]


@pytest.mark.slow
def test_a_fresh_demo_request_never_lowers_the_probability(trained):
    """Behavioural: the monotone constraints make 'more demo requests' a guarantee, all else equal."""
    from models.packaged import LeadScorer

    tmp, params = trained
    assert "n_demo_request_7d" in params["train"]["monotone_increasing"]
    scorer = LeadScorer.from_folder(tmp / "model")
    test = pd.read_parquet(tmp / "sets" / "test.parquet").drop(
        columns=["lead_id", "as_of", "label"]
    )
    more = test.copy()
    for column in (
        "n_demo_request_7d",
        "n_demo_request_30d",
        "n_demo_request_90d",
        "events_7d",
        "events_30d",
        "events_90d",
    ):
        more[column] = more[column] + 1
    more["days_since_last_demo_request"] = 0.5
    before, after = scorer.predict_proba(test), scorer.predict_proba(more)
    # The guarantee covers the constrained features: moving only those never lowers a score.
    only = test.copy()
    for column in params["train"]["monotone_increasing"]:
        only[column] = only[column] + 1
    assert (scorer.predict_proba(only) >= before - 1e-12).all()
    # With recency and totals moved too (unconstrained), a demo request helps on average.
    assert (after - before).mean() > 0


@pytest.mark.slow
def test_one_mlflow_run_holds_training_evaluation_and_the_registered_version(
    trained, monkeypatch, tmp_path
):
    """Train, evaluate and register as three processes would: they meet in one run, which holds
    what a data scientist looks for; the experiment opens on runs (classic ML)."""
    import mlflow
    from typer.testing import CliRunner

    from pipelines.cli import app

    world, params = trained
    work = tmp_path / "w"
    shutil.copytree(world / "sets", work / "sets")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    p = world / "params.yaml"

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli("train", "--params", str(p), "--training", str(work / "sets"), "--out", str(work / "model"))
    cli("evaluate", "--params", str(p), "--training", str(work / "sets"),
        "--model", str(work / "model"), "--out", str(work / "eval"))  # fmt: skip
    cli("register", "--params", str(p), "--model", str(work / "model"),
        "--evaluation", str(work / "eval"), "--training", str(work / "sets"))  # fmt: skip

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(params["register"]["experiment"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    version = client.get_model_version_by_alias(params["register"]["model_name"], "champion")
    assert version.run_id == run.info.run_id
    # Validation and test metrics, the training curve step by step, the chosen settings.
    assert {"validation.roc_auc", "test.model.roc_auc", "test.baseline.roc_auc"} <= set(
        run.data.metrics
    )
    curve = client.get_metric_history(run.info.run_id, "validation.log_loss_by_iteration")
    meta = json.loads((work / "model" / "model_meta.json").read_text())
    assert len(curve) >= meta["best_iteration"] and [m.step for m in curve[:3]] == [1, 2, 3]
    assert run.data.params["chosen.trees"] == str(meta["best_iteration"])
    assert run.data.tags["mlflow.source.git.commit"]
    # The splits as datasets, with their digest and size.
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    tags = {t.key: t.value for t in inputs["train"].tags}
    assert tags["mlflow.data.context"] == "training" and int(tags["rows"]) > 0
    assert inputs["test"].dataset.digest
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"importance", "search", "plots", "model_meta.json", "metrics.json"} <= artifacts
    importance = {a.path for a in client.list_artifacts(run.info.run_id, "importance")}
    assert importance == {"importance/feature_importance.csv", "importance/feature_importance.png"}
    # The version's model card, linked from its description.
    assert "model_card/model_card.html" in version.description
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card/model_card.md")
    for section in ("## Data", "## Quality", "## Stages", "## BANT gates", "## Top drivers",
                    "## Leakage alarm", "## Known limits"):  # fmt: skip
        assert section in card
    assert f"{meta['cutoffs']['sql'] * 100:.2f}%" in card
    # The small world is below the data-sufficiency bar (about 40 won leads): the card says so.
    assert "- Trained below the data-sufficiency bar:" in card and "120 needed" in card
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card/model_card.html")
    assert "<table>" in page and "<script" not in page


def test_a_model_card_is_one_page_without_scripts():
    from pipelines.model_card import render_html

    page = render_html(
        "# t\n\n| a | b |\n|---|---|\n| 1 | <x> |\n\n![](https://x.example/p.png) "
        "[x](https://phish.example) <https://auto.example>\n",
        "card <1>",
    )
    assert "<table>" in page and "<script" not in page
    assert "<img" not in page and "href" not in page  # nothing fetched, nowhere led
    assert "&lt;x&gt;" in page and "<title>card &lt;1&gt;</title>" in page


def test_a_stage_nobody_reached_reads_n_a_on_the_model_card():
    from pipelines.model_card import _pct

    # A stage with no test leads has no conversion rate (null in metrics.json): the card still
    # renders, where it used to stop the registration half-way.
    assert [_pct(v) for v in (None, float("nan"), 0.0123)] == ["n/a", "n/a", "1.23%"]
