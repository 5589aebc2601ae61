"""Champion against challenger: a worse model is never promoted; a better one is, after the
migration is shown; rollback swaps back; a dry run moves nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.challenge import PromotionPolicy, check_window, migration


def cli(*args: str) -> str:
    from pipelines.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def arena(registry_world, tmp_path):
    """The session's model registered as champion (version 1) in a scratch store, and a worse
    model trained on the same splits with the labels of train and validation turned around
    (it ranks the leads backwards: clearly worse even on the small world's few test wins). The
    worse model is registrable (as a challenger): only the promotion may stop it."""
    from pipelines.registry import run_register

    world, params, p = registry_world
    first = run_register(params, world / "model", world / "eval", world / "sets", params_path=p)
    assert first["version"] == 1 and first["champion"]
    backwards = tmp_path / "backwards"
    shutil.copytree(world / "sets", backwards)
    for split in ("train", "validation"):
        frame = pd.read_parquet(backwards / f"{split}.parquet")
        frame["label"] = 1 - frame["label"]
        frame.to_parquet(backwards / f"{split}.parquet")
    cli(
        "-q",
        "train",
        "-p",
        str(p),
        "--training",
        str(backwards),
        "--out",
        str(tmp_path / "worse"),
        "--no-mlflow",
    )
    cli("-q", "evaluate", "-p", str(p), "--training", str(backwards), "--model", str(tmp_path / "worse"),
        "--out", str(tmp_path / "worse_eval"), "--no-mlflow")  # fmt: skip
    return world, params, p, tmp_path


def aliases(name: str = "lead-conversion") -> dict[str, str]:
    import mlflow

    model = mlflow.MlflowClient().get_registered_model(name)
    return {alias: str(version) for alias, version in model.aliases.items()}


@pytest.mark.slow
def test_a_worse_challenger_is_never_promoted_and_a_better_one_is(arena):
    import mlflow

    from pipelines.challenge import run_challenge

    world, params, p, tmp = arena
    challenge = ["-q", "challenge", "-p", str(p), "--crm", str(world / "crm")]

    # A dry run shows the comparison and the migration and moves nothing.
    shown = cli(*challenge, "--model", str(tmp / "worse"), "--evaluation", str(tmp / "worse_eval"),
                "--training", str(world / "sets"), "--dry-run", "--out", str(tmp / "report"))  # fmt: skip
    assert "dry run: would be not promoted" in shown and "whose stage would change" in shown
    assert aliases() == {"champion": "1"}
    assert json.loads((tmp / "report" / "comparison.json").read_text())["promote"] is False

    # The worse model: registered as challenger, never champion.
    worse = run_challenge(params, tmp / "worse", tmp / "worse_eval", world / "sets",
                          world / "crm", params_path=p)  # fmt: skip
    assert worse["decision"] == "not promoted" and worse["challenger_version"] == "2"
    failed = [r["rule"] for r in worse["comparison"]["rules"] if not r["passed"]]
    assert any(r.startswith("roc_auc gain") for r in failed)
    assert aliases() == {"champion": "1", "challenger": "2"}
    tags = mlflow.MlflowClient().get_model_version("lead-conversion", "2").tags
    assert (
        tags["promotion.decision"] == "not promoted"
        and "roc_auc gain" in tags["promotion.failed_rules"]
    )
    assert worse["migration"][-1]["segment"] == "(all)"  # the total of leads changing stage

    # With the worse model in production, the better one (already version 1) is promoted.
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("lead-conversion", "champion", "2")
    better = run_challenge(params, world / "model", world / "eval", world / "sets",
                           world / "crm", params_path=p)  # fmt: skip
    assert better["decision"] == "promoted", better["comparison"]["rules"]
    assert aliases() == {"champion": "1", "challenger": "1", "previous": "2"}
    # Rollback puts the previous champion back (and can itself be undone).
    assert "champion is version 2 again" in cli("-q", "rollback", "-p", str(p))
    assert aliases()["champion"] == "2" and aliases()["previous"] == "1"
    # The champion's own folder is not a challenger.
    same = run_challenge(params, tmp / "worse", tmp / "worse_eval", world / "sets",
                         world / "crm", params_path=p)  # fmt: skip
    assert same["decision"].endswith("is the champion already (version 2)")


def test_the_champion_must_not_have_learned_from_the_window():
    window = pd.DataFrame({"as_of": pd.to_datetime(["2025-03-01", "2025-04-01"])})
    check_window({"training_data": {"booster_range": "2024-01-01..2025-02-28"}}, window)
    with pytest.raises(ValueError, match="inside the comparison window"):
        check_window({"training_data": {"booster_range": "2024-01-01..2025-03-01"}}, window)


def test_the_migration_counts_leads_changing_stage_by_segment():
    before = pd.DataFrame(
        {"lead_id": ["a", "b", "c", "d"], "stage": ["SQL", "MQL", "MQL", "nurture"]}
    )
    # e is scored by the challenger only (another population age cap): a change too.
    after = pd.DataFrame(
        {"lead_id": ["a", "b", "c", "d", "e"], "stage": ["SQL", "SQL", "SQL", "MQL", "MQL"]}
    )
    segment = pd.Series({"a": "web", "b": "web", "c": "web", "d": None, "e": "web"})
    table = migration(before, after, segment)
    assert table.to_dict(orient="records") == [
        {"segment": "web", "stage_now": "MQL", "stage_new": "SQL", "leads": 2},
        {"segment": "(none)", "stage_now": "nurture", "stage_new": "MQL", "leads": 1},
        {"segment": "web", "stage_now": "not scored", "stage_new": "MQL", "leads": 1},
        {"segment": "(all)", "stage_now": "any", "stage_new": "other", "leads": 4},
    ]


def test_a_policy_with_an_unknown_or_impossible_setting_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown setting"):
        PromotionPolicy.from_params({"min_gian": 0.01})
    with pytest.raises(ValueError, match="min_stage_rate_ratio"):
        PromotionPolicy.from_params({"min_stage_rate_ratio": 1.5})


class _Scorer:
    """A scorer of the window that returns given probabilities, staged by one cutoff."""

    def __init__(self, p, cutoff: float = 0.5):
        self.p, self.cutoff = p, cutoff

    def score(self, window):
        stage = np.where(self.p >= self.cutoff, "SQL", "nurture")
        return pd.DataFrame({"probability": self.p, "stage": stage}, index=window.index)


class _Model:
    def __init__(self, p):
        self.scorer = _Scorer(p)


def _window(n_leads: int = 150, rows: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    lead = np.repeat(np.arange(n_leads), rows)
    y = np.repeat(rng.random(n_leads) < 0.1, rows).astype(int)
    window = pd.DataFrame({"lead_id": lead.astype(str), "label": y,
                           "as_of": pd.Timestamp("2025-01-01")})  # fmt: skip
    return window, y, rng


def test_a_gain_whose_interval_reaches_zero_is_not_enough():
    from pipelines.challenge import compare

    window, y, rng = _window()
    base = rng.random(len(y))
    policy = PromotionPolicy(min_gain=0.005, n_boot=300, min_stage_leads=10**6)
    noisy = compare(
        _Model(base), _Model(base + 0.03 * y + 0.3 * rng.random(len(y))), window, policy
    )
    gain = noisy["differences"]["roc_auc"]
    assert gain["value"] >= 0.005 and gain["low"] < 0  # better on the point, not surely
    assert not noisy["rules"][0]["passed"] and noisy["promote"] is False
    clear = compare(_Model(base), _Model(base + 0.6 * y), window, policy)
    assert clear["differences"]["roc_auc"]["low"] > 0 and clear["rules"][0]["passed"]
