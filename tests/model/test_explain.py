"""One explainer: exact contributions, grouped, in words, as shap.Explanation; `leadscore explain`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.catalog import FeatureSpec
from models.explain import LeadExplainer
from models.reasons import top_reasons

DEMO = ("activity:demo", "Demo request (every window)")
SPECS = {
    "demo_7d": FeatureSpec("demo_7d", "Requested a demo {value} [time|times] in the last 7 days",
                           (), "t", group=DEMO[0], group_title=DEMO[1]),
    "demo_30d": FeatureSpec("demo_30d", "Requested a demo {value} [time|times] in the last 30 days",
                            (), "t", group=DEMO[0], group_title=DEMO[1]),
    "demo_last": FeatureSpec("demo_last", "Requested a demo {value} [day|days] ago", (), "t",
                             missing_label="Never requested a demo", group=DEMO[0],
                             group_title=DEMO[1], clause="last {value} [day|days] ago"),
    "size": FeatureSpec("size", "Company of {value} [employee|employees]", (), "t",
                        short="Company size"),
    "source": FeatureSpec("source", "Came in through {value}", (), "t", categorical=True,
                          short="Lead source"),
}  # fmt: skip
NAMES = list(SPECS)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    n = 3_000
    frame = pd.DataFrame(
        {
            "demo_7d": rng.poisson(0.3, n).astype(float),
            "demo_30d": rng.poisson(1.0, n).astype(float),
            "demo_last": np.where(rng.random(n) < 0.4, np.nan, rng.integers(0, 60, n)),
            "size": rng.lognormal(4, 1, n),
            "source": pd.Categorical(rng.choice(["web", "event", "partner"], n)),
        }
    )
    logit = -2 + 0.8 * frame["demo_7d"] + 0.3 * frame["demo_30d"] + 0.2 * np.log(frame["size"])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 6, "verbose": -1, "seed": 0},
        lgb.Dataset(frame, y),
        40,
    )
    return booster, frame, LeadExplainer(booster, NAMES, SPECS)


def test_contributions_equal_lightgbms_pred_contrib(fitted):
    booster, frame, explainer = fitted
    np.testing.assert_allclose(
        explainer.contributions(frame), booster.predict(frame, pred_contrib=True), atol=1e-10
    )


def test_explanations_per_feature_and_per_group_add_up_to_the_log_odds(fitted):
    booster, frame, explainer = fitted
    contributions = explainer.contributions(frame)
    raw = booster.predict(frame, raw_score=True)
    per_feature = explainer.explanation(frame, contributions)
    assert per_feature.feature_names == [
        "Requested a demo # times in the last 7 days",
        "Requested a demo # times in the last 30 days",
        "Requested a demo # days ago",
        "Company size",
        "Lead source",
    ]
    np.testing.assert_allclose(per_feature.values.sum(axis=1) + per_feature.base_values, raw)
    # Missing values stay missing; categories have no colour order (grey), but read as values.
    assert np.isnan(per_feature.data[:, 2]).mean() == pytest.approx(0.4, abs=0.03)
    assert np.isnan(per_feature.data[:, 4]).all()
    assert set(per_feature.display_data[:, 4]) == {"web", "event", "partner"}
    per_group = explainer.explanation(frame, contributions, grouped=True)
    assert per_group.feature_names == ["Demo request (every window)", "Company size", "Lead source"]
    np.testing.assert_allclose(per_group.values[:, 0], contributions[:, :3].sum(axis=1))
    np.testing.assert_allclose(per_group.values.sum(axis=1) + per_group.base_values, raw)


def test_a_leads_waterfall_speaks_its_reasons(fitted):
    booster, frame, explainer = fitted
    contributions = explainer.contributions(frame)
    i = int(np.argmax(contributions[:, :3].sum(axis=1)))  # the lead the demo group helps most
    lead = explainer.lead_explanation(frame, contributions, i)
    assert lead.values.sum() + lead.base_values == pytest.approx(
        booster.predict(frame.iloc[[i]], raw_score=True)[0]
    )
    reasons = top_reasons(contributions, frame, NAMES, SPECS, k=1)
    assert lead.feature_names[0] == reasons["reasons_for"].iloc[i]
    assert lead.feature_names[0].startswith("Requested a demo")


def test_probability_points_are_the_groups_worth(fitted):
    _, frame, explainer = fitted
    table = explainer.probability_points(explainer.contributions(frame))
    assert table["title"].tolist()[0] == "Demo request (every window)"
    assert (table["mean_abs_points"] >= table["mean_points"].abs() - 1e-12).all()
    assert table["mean_abs_log_odds"].is_monotonic_decreasing


# --- leadscore explain on the session's small synthetic CRM ------------------------------------
def _explain(root: Path, out: Path, *extra: str):
    from pipelines.cli import app

    lead = str(pd.read_parquet(root / "sets" / "test.parquet")["lead_id"].iloc[0])
    result = CliRunner().invoke(
        app,
        ["-q", "explain", "-p", str(root / "params.yaml"), "--training", str(root / "sets"),
         "--out", str(out), "--lead-id", lead, *extra],
        catch_exceptions=False,
    )  # fmt: skip
    return result, lead


def test_explain_writes_a_self_contained_report_without_personal_data(trained_world, tmp_path):
    root, _ = trained_world
    out = tmp_path / "explain"
    result, lead = _explain(
        root, out, "--model", str(root / "model"), "--compare", str(root / "model"), "--no-mlflow"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["leads"][0]["lead_id"] == lead and 1 <= summary["leads"][0]["score"] <= 99
    for name in ("importance.png", "beeswarm.png", "cohort_stage.png", f"lead_{lead}.png",
                 "comparison.png", "report.html", "importance.csv", "cohorts.csv"):  # fmt: skip
        assert (out / name).exists(), name
    assert any(out.glob("dependence_*.png"))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in out.glob("*.png"))
    page = (out / "report.html").read_text()
    # Self-contained: every image inline, nothing to fetch, no script.
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    assert page.count("data:image/png;base64,") == len(summary["figures"])
    # The same model on both sides: nothing gained or lost weight.
    assert pd.read_csv(out / "comparison.csv")["change"].abs().max() == 0
    # Lead ids only: none of the CRM's personal values reaches what explain wrote.
    leads = pd.read_parquet(root / "crm" / "leads.parquet")
    personal = pd.concat([leads[c] for c in ("first_name", "last_name", "email", "phone")])
    personal = {str(v) for v in personal.dropna() if len(str(v)) >= 5}
    written = " ".join(
        p.read_text(errors="ignore")
        for p in out.iterdir()
        if p.suffix in (".html", ".csv", ".json")
    )
    tokens = set(re.findall(r"[\w.@+()-]{5,}", written))
    assert not personal & tokens


def test_explain_of_a_registered_version_is_logged_to_its_run(trained_world, tmp_path, monkeypatch):
    import mlflow

    from pipelines.registry import run_register

    root, params = trained_world
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    registered = run_register(
        params, root / "model", root / "eval", root / "sets", params_path=root / "params.yaml"
    )
    uri = f"models:/lead-conversion/{registered['version']}"
    result, _ = _explain(root, tmp_path / "explain", "--model", uri)
    assert result.exit_code == 0, result.output
    run_id = (
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        .get_model_version("lead-conversion", registered["version"])
        .run_id
    )
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(run_id, "explain")}
    assert {"explain/report.html", "explain/importance.png", "explain/summary.json"} <= logged


def test_an_unknown_lead_is_one_line(trained_world, tmp_path):
    from pipelines.cli import app

    root, _ = trained_world
    result = CliRunner().invoke(
        app,
        ["explain", "-p", str(root / "params.yaml"), "--model", str(root / "model"),
         "--training", str(root / "sets"), "--out", str(tmp_path / "e"), "--lead-id", "NOPE",
         "--no-mlflow"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "1 lead id(s) have no snapshot in the explained split: ['NOPE']" in result.output
    assert "Traceback" not in result.output


def test_register_logs_the_explanations_of_its_own_model_only(trained_world, tmp_path, monkeypatch):
    import mlflow

    from pipelines.registry import run_register

    root, params = trained_world
    explained = tmp_path / "explain"
    result, _ = _explain(root, explained, "--model", str(root / "model"), "--no-mlflow")
    assert result.exit_code == 0, result.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"model": {"version": "local-000000000000"}}))
    monkeypatch.chdir(tmp_path)
    for n, (folder, expected) in enumerate(((explained, True), (other, False))):
        # A store each: the same model folder is registered once per store.
        store = f"sqlite:///{tmp_path / f'mlflow{n}.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
        client = mlflow.MlflowClient(tracking_uri=store)  # not whatever an earlier test set
        registered = run_register(
            params, root / "model", root / "eval", root / "sets",
            params_path=root / "params.yaml", explain=folder,
        )  # fmt: skip
        logged = {a.path for a in client.list_artifacts(registered["run_id"], "explain")}
        assert ("explain/report.html" in logged) is expected, logged
        assert not [p for p in logged if "/." in p]  # no bookkeeping marker


def test_explain_settings_are_checked_in_one_line():
    from pipelines.explain import ExplainSettings

    assert ExplainSettings.from_params({}).sample == 5000
    settings = ExplainSettings.from_params({"explain": {"cohorts": ["source"], "sample": 10}})
    assert settings.cohorts == ("source",) and settings.sample == 10
    with pytest.raises(ValueError, match=r"explain: unknown setting\(s\) \['samples'\]"):
        ExplainSettings.from_params({"explain": {"samples": 10}})
    with pytest.raises(ValueError, match="explain.lead_groups must be at least 1, got 0"):
        ExplainSettings.from_params({"explain": {"lead_groups": 0}})


def test_shap_plots_are_the_same_bits_every_time(tmp_path):
    # SHAP jitters and shuffles with numpy's global state: a re-run must not change the files
    # DVC hashes (dvc.lock), and the caller's random state is left as it was.
    import shap

    from models import explain_plots

    rng = np.random.default_rng(1)
    explanation = shap.Explanation(
        values=rng.normal(size=(300, 3)), base_values=np.zeros(300),
        data=rng.integers(0, 4, size=(300, 3)).astype(float), feature_names=["a", "b", "c"],
    )  # fmt: skip
    files = []
    for run in range(2):
        np.random.seed(run)  # noqa: NPY002 (SHAP's legacy global state is under test)
        before = np.random.get_state()[1].copy()  # noqa: NPY002
        files.append(explain_plots.beeswarm(explanation, tmp_path / f"b{run}.png", "t", 3))
        files.append(explain_plots.dependence(explanation, 0, tmp_path / f"d{run}.png", "t"))
        assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert files[0].read_bytes() == files[2].read_bytes()
    assert files[1].read_bytes() == files[3].read_bytes()
