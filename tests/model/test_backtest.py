"""The backtest: each month scored by the model a team would have had then, never a later one."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.backtest import BacktestPlan, _phase, known_at, month_cutoffs, recovery


def cli(*args: str):
    from pipelines.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_a_label_is_known_on_the_day_its_window_closes_and_not_a_day_before():
    as_of = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", "2023-12-31"]))
    cutoff = pd.Timestamp("2024-01-31")  # 2024-01-01 + 30 days
    assert known_at(as_of, cutoff, 30).tolist() == [True, False, True]
    assert known_at(as_of, cutoff - pd.Timedelta(seconds=1), 30).tolist() == [False, False, True]


def test_the_walk_starts_when_enough_wins_are_known_and_ends_with_the_last_complete_month():
    leads = [f"l{i}" for i in range(6)]
    frame = pd.DataFrame(
        {
            "lead_id": leads,
            "as_of": pd.to_datetime(
                ["2024-01-05", "2024-01-20", "2024-02-03", "2024-02-10", "2024-03-01", "2024-06-01"]
            ),
            "label": [1, 0, 1, 1, 0, 1],
        }
    )
    plan = BacktestPlan(min_won_leads=2)
    # The second win (2024-02-03) is known 30 days later, on 2024-03-04: the walk starts 04-01.
    cutoffs = month_cutoffs(frame, 30, pd.Timestamp("2024-09-15"), plan)
    assert cutoffs[0] == pd.Timestamp("2024-04-01")
    # July's snapshots (to 07-31) are known by 08-31 at the latest; August's by 09-30: not yet.
    assert cutoffs[-1] == pd.Timestamp("2024-07-01")
    end = {
        d: month_cutoffs(frame, 30, pd.Timestamp(d), plan)[-1] for d in ("2024-08-31", "2024-08-30")
    }
    assert end == {
        "2024-08-31": pd.Timestamp("2024-07-01"),
        "2024-08-30": pd.Timestamp("2024-06-01"),
    }
    # A window closing on a month's first day starts the walk that day; a day later, a month on.
    for second_win, first in (("2024-03-02", "2024-04-01"), ("2024-03-03", "2024-05-01")):
        as_of = ["2024-01-05", "2024-01-20", second_win, "2024-03-10", "2024-03-01", "2024-06-01"]
        moved = frame.assign(as_of=pd.to_datetime(as_of))
        assert month_cutoffs(moved, 30, pd.Timestamp("2024-09-15"), plan)[0] == pd.Timestamp(first)
    with pytest.raises(ValueError, match="fewer than backtest.min_won_leads"):
        month_cutoffs(frame, 30, pd.Timestamp("2024-09-15"), BacktestPlan(min_won_leads=9))
    with pytest.raises(ValueError, match="at least two months"):
        month_cutoffs(frame, 30, pd.Timestamp("2024-05-10"), plan)


def test_the_synthetic_shift_date_is_read_from_the_generator_config():
    from pipelines.synthetic_crm import shift_date

    config = {"start": "2024-01-01", "months": 12, "shift": {"after_fraction": 0.5}}
    assert shift_date(config) is None  # no effect: no shift
    market_wide = {**config, "shift": {"after_fraction": 0.5, "everyone": -0.5}}
    assert shift_date(market_wide) == pd.Timestamp("2024-07-02")  # day 183 of 366


def test_a_plan_with_an_unknown_or_impossible_setting_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['every_month'\]"):
        BacktestPlan.from_params({"every_month": 1})
    with pytest.raises(ValueError, match="first day of a month"):
        BacktestPlan.from_params({"first_cutoff": "2024-01-15"})
    with pytest.raises(ValueError, match="every_months must be at least 1"):
        BacktestPlan.from_params({"every_months": 0})


def test_phases_follow_what_a_model_could_have_learned_by_then():
    shift, horizon = pd.Timestamp("2024-07-01"), 30
    retrained = list(pd.date_range("2024-01-01", "2024-12-01", freq="MS"))
    phase = {f"{c:%Y-%m}": _phase(c, shift, retrained, horizon) for c in retrained}
    # May's outcomes (windows to 06-30) closed before the shift; June's reach past it.
    assert phase["2024-05"] == ("before shift", None)
    assert phase["2024-06"] == ("shift under way", None)
    # July's model knows no outcome after the shift; August's knows those of 07-01 and 07-02
    # (windows closed by 08-01): its first cycle.
    assert phase["2024-07"] == ("not yet learnable", 0)
    assert phase["2024-08"] == ("cycles 1-2", 1)
    assert phase["2024-09"] == ("cycles 1-2", 2)
    assert phase["2024-10"] == ("cycles 3+", 3)
    assert _phase(retrained[9], shift, retrained, horizon, pool_cycles=1) == ("cycles 2+", 3)
    assert _phase(retrained[3], None, retrained, horizon) == ("all months", None)


def test_recovery_is_the_share_of_the_lost_auc_that_retraining_wins_back():
    rng = np.random.default_rng(0)
    n = 4000

    def phase(static_noise: float, retrained_noise: float, start: int) -> pd.DataFrame:
        oracle = rng.uniform(0.01, 0.2, n)
        y = (rng.uniform(size=n) < oracle).astype(int)
        return pd.DataFrame(
            {
                "lead_id": [f"l{i}" for i in range(start, start + n)],
                "label": y,
                "p_oracle": oracle,
                "p_static": np.clip(oracle + rng.normal(0, static_noise, n), 1e-4, 1),
                "p_retrained": np.clip(oracle + rng.normal(0, retrained_noise, n), 1e-4, 1),
                "p_recalibrated": np.clip(oracle + rng.normal(0, static_noise, n), 1e-4, 1),
            }
        )

    before = phase(0.0, 0.0, 0)
    plan = BacktestPlan(n_boot=50)
    # After the shift the static model is blurred; the retrained one is exact again: all won back.
    after = phase(0.2, 0.0, n)
    got = recovery(before, after, plan, ece_bins=10)
    assert got["auc_lost_to_shift"]["value"] > 0.05
    assert got["auc_share_recovered"]["value"] == pytest.approx(1.0, abs=1e-3)
    low, high = got["auc_share_recovered"]["low"], got["auc_share_recovered"]["high"]
    assert low <= 1.0 <= high
    # A retrained model as blurred as the static one wins back about nothing.
    stale = phase(0.2, 0.2, n)
    assert abs(recovery(before, stale, plan, ece_bins=10)["auc_share_recovered"]["value"]) < 0.3


@pytest.mark.slow
def test_every_model_learns_only_outcomes_known_at_its_cutoff(trained_world, tmp_path):
    world, params = trained_world
    params = copy.deepcopy(params)
    params["backtest"].update(min_won_leads=20, n_boot=50)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    out = tmp_path / "bt"
    done = cli("-q", "backtest", "-p", str(p), "--features", str(world / "f" / "features.parquet"),
               "--snapshots", str(world / "labels.parquet"), "--validated", str(world / "v"),
               "--out", str(out), "--oracle", str(world / "oracle.parquet"))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "backtest:" in done.output and "phase" in done.output
    summary = json.loads((out / "summary.json").read_text())
    horizon = pd.Timedelta(days=params["label"]["horizon_days"])
    # The synthetic CRM's shift, read from its validated meta: the day half-way through its days.
    first = pd.Timestamp(params["generate"]["start"])
    days = (first + pd.DateOffset(months=params["generate"]["months"]) - first).days
    half = round(params["generate"]["shift"]["after_fraction"] * days)
    assert summary["shift"] == f"{first + pd.Timedelta(days=half):%Y-%m-%d}"
    cutoffs = [pd.Timestamp(c) for c in summary["cutoffs"]]
    assert len(cutoffs) >= 3 and summary["retrained_at"] == summary["cutoffs"]
    for cutoff in cutoffs:
        work = out / "models" / f"{cutoff:%Y-%m}"
        learned = pd.concat(
            [pd.read_parquet(work / "training" / f"{s}.parquet") for s in ("train", "validation")]
        )
        # The invariant: every outcome a model learned from was known on its cutoff day.
        assert (learned["as_of"] + horizon <= cutoff).all(), cutoff
        assert (learned["as_of"] + horizon > cutoff - pd.DateOffset(months=1)).any()
        assert "p_oracle" not in learned and "label" in learned
        recalibrated = work / "recalibration_set" / "validation.parquet"
        if recalibrated.exists():  # the static booster never saw its calibration rows
            static = json.loads(
                (out / "models" / f"{cutoffs[0]:%Y-%m}" / "model" / "model_meta.json").read_text()
            )
            last = pd.Timestamp(static["training_data"]["booster_range"].split("..")[1])
            assert (pd.read_parquet(recalibrated)["as_of"] > last).all()
            assert (pd.read_parquet(recalibrated)["as_of"] + horizon <= cutoff).all()
    months = pd.read_csv(out / "months.csv")
    assert set(months["scorer"]) == {"static", "retrained", "recalibrated", "oracle"}
    assert months["month"].nunique() == len(cutoffs)
    scored = pd.read_parquet(out / "predictions.parquet")
    # Each month's rows are that month's snapshots, scored once by each variant.
    assert (scored["as_of"].dt.strftime("%Y-%m") == scored["month"]).all()
    assert not scored.duplicated(["lead_id", "as_of"]).any()
    first = scored[scored["month"] == f"{cutoffs[0]:%Y-%m}"]
    assert np.allclose(first["p_static"], first["p_retrained"])  # the same model on day one
    assert (out / "backtest.png").stat().st_size > 10_000
    phases = [ph["phase"] for ph in summary["phases"]]
    assert "cycles 1-2" in phases, phases
