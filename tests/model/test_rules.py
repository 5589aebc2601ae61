"""Cold start: a rules-only model (points compiled into a booster) until the data suffices."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from models.rules import POINT, compile_rules, rule_points, rule_steps

LEVELS = ["c_level", "vp", "manager", "other"] + [f"l{i}" for i in range(36)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from(LEVELS)),
            st.one_of(st.none(), st.floats(-5, 60, allow_nan=False)),
        ),
        min_size=1,
        max_size=80,
    ),
    st.dictionaries(st.sampled_from(LEVELS + ["never_seen"]), st.integers(-10, 20), max_size=6),
    st.lists(st.tuples(st.floats(-1, 50, allow_nan=False), st.integers(-5, 20)), max_size=4),
)
def test_the_compiled_booster_scores_exactly_the_points(rows, levels, steps):
    x = pd.DataFrame(
        {
            "seniority": pd.Categorical([r[0] for r in rows], categories=LEVELS),
            "engagement_score": [np.nan if r[1] is None else r[1] for r in rows],
        }
    )
    settings_ = {
        "levels": {"seniority": levels},
        "above": {"engagement_score": [list(s) for s in steps]},
    }
    try:
        rules = rule_steps(settings_)
    except ValueError:  # no points at all: refused (tested below)
        return
    booster = compile_rules(rules, x)
    expected = rule_points(rules, x)
    assert np.allclose(booster.predict(x, raw_score=True) / POINT, expected, atol=1e-9)
    # Contributions are the points against about the average row: they sum to the score, and
    # a feature that gives no row points contributes nothing.
    contributions = booster.predict(x, pred_contrib=True)
    assert np.allclose(contributions.sum(axis=1) / POINT, expected, atol=1e-9)
    for j, step_feature in enumerate(x.columns):
        if not any(r.feature == step_feature for r in rules):
            assert np.allclose(contributions[:, j], 0)


def test_a_malformed_rule_is_refused_in_one_line():
    with pytest.raises(ValueError, match="gives no points"):
        rule_steps({"levels": {"seniority": {"vp": 0}}})
    with pytest.raises(ValueError, match=r"\[threshold, points\] pairs"):
        rule_steps({"above": {"engagement_score": [5]}})
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['level'\]"):
        rule_steps({"level": {}})
    x = pd.DataFrame({"seniority": pd.Categorical(["vp"]), "n": [1.0]})
    with pytest.raises(ValueError, match="not a feature of this training set"):
        compile_rules(rule_steps({"above": {"missing": [[0, 1]]}}), x)
    with pytest.raises(ValueError, match="not a category feature"):
        compile_rules(rule_steps({"levels": {"n": {"1": 3}}}), x)


def cli(*args: str):
    from pipelines.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_below_the_bar_a_rules_only_version_serves_until_a_model_beats_it(registry_world, tmp_path):
    world, params, p = registry_world
    params["sufficiency"]["action"] = "rules"  # the small world is below the bar
    p.write_text(yaml.safe_dump(params))
    sets, rules = str(world / "sets"), tmp_path / "rules"
    done = cli("-q", "train", "-p", str(p), "--training", sets, "--out", str(rules))
    assert done.exit_code == 0, done.output
    meta = json.loads((rules / "model_meta.json").read_text())
    assert meta["kind"] == "rules" and meta["calibration"]["method"] == "sigmoid"
    assert meta["best_iteration"] == len(rule_steps(params["rules"]))  # one stump per step
    assert not meta["data_sufficiency"]["sufficient"] and meta["data_sufficiency"]["rules_only"]
    # Scored like any model: points, then the probability, the stage and the reasons in words.
    from models.packaged import LeadScorer

    test = pd.read_parquet(world / "sets" / "test.parquet")
    scorer = LeadScorer.from_folder(rules)
    raw = scorer.booster.predict(scorer.matrix(test), raw_score=True) / POINT
    assert np.allclose(raw, rule_points(rule_steps(params["rules"]), scorer.matrix(test)))
    scored = scorer.score(test, reasons=3)
    assert scored["probability"].between(0, 1).all() and scored["reasons_for"].str.len().gt(0).any()
    # The probability is an increasing map of the points (more points, likelier to convert).
    ranks = pd.Series(raw).corr(pd.Series(scored["probability"].to_numpy()), method="spearman")
    assert ranks > 0.999
    done = cli("-q", "evaluate", "-p", str(p), "--training", sets, "--model", str(rules),
               "--out", str(tmp_path / "rules_eval"))  # fmt: skip
    assert done.exit_code == 0, done.output
    done = cli("-q", "challenge", "-p", str(p), "--model", str(rules), "--evaluation",
               str(tmp_path / "rules_eval"), "--training", sets, "--crm", str(world / "crm"))  # fmt: skip
    assert done.exit_code == 0 and "first model: it becomes the champion" in done.output
    client = mlflow.MlflowClient()
    first = client.get_model_version("lead-conversion", "1")
    assert first.tags["model_kind"] == "rules-only" and first.description.startswith("RULES-ONLY")

    # Written back like any version, and said to be rules-only.
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    done = cli("-q", "score", str(world / "crm"), "-p", str(p), "--model", str(rules), "--to", db,
               "--create", "--summary", str(tmp_path / "scored.json"))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "rules-only" in done.output
    summary = json.loads((tmp_path / "scored.json").read_text())
    assert summary["model_kind"] == "rules" and summary["counts"]["scored"] > 0

    # The data suffices (a lower bar here): LightGBM challenges the rules through the same path.
    params["sufficiency"].update(min_leads=0, min_won_leads=0, min_won_leads_per_split=0)
    p.write_text(yaml.safe_dump(params))
    model = tmp_path / "model"
    for step in (["train", "--training", sets, "--out", str(model)],
                 ["evaluate", "--training", sets, "--model", str(model), "--out", str(tmp_path / "eval")]):  # fmt: skip
        done = cli("-q", step[0], "-p", str(p), *step[1:])
        assert done.exit_code == 0, done.output
    assert json.loads((model / "model_meta.json").read_text())["kind"] == "lightgbm"
    done = cli("-q", "challenge", "-p", str(p), "--model", str(model), "--evaluation",
               str(tmp_path / "eval"), "--training", sets, "--crm", str(world / "crm"))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "champion (version 1) against challenger" in done.output
    second = client.get_model_version("lead-conversion", "2")
    assert second.tags["model_kind"] == "lightgbm"
    champion = client.get_model_version_by_alias("lead-conversion", "champion")
    decision = second.tags["promotion.decision"]
    assert str(champion.version) == ("2" if decision == "promoted" else "1")
