"""The data-sufficiency bar: leads and won leads in the recent window, won leads per split."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.sufficiency import SufficiencyBar, check_sufficiency, enforce


def split(n_leads: int, n_won: int, start: str, days: int, prefix: str) -> pd.DataFrame:
    """Two snapshots per lead spread over ``days`` from ``start``; the first ``n_won`` leads won."""
    ids = [f"{prefix}{i}" for i in range(n_leads)]
    as_of = pd.date_range(start, periods=n_leads, freq=pd.Timedelta(days=days) / n_leads)
    first = pd.DataFrame({"lead_id": ids, "as_of": as_of, "label": 0})
    second = first.assign(as_of=first["as_of"] + pd.Timedelta(days=1))
    second.loc[: n_won - 1, "label"] = 1
    return pd.concat([first, second], ignore_index=True)


def test_enough_history_passes_and_counts_leads_not_rows():
    splits = {
        "train": split(2000, 200, "2024-01-01", 300, "a"),
        "validation": split(600, 60, "2024-11-01", 60, "b"),
        "test": split(600, 60, "2025-01-05", 60, "c"),
    }
    verdict = check_sufficiency(splits, SufficiencyBar())
    assert verdict["sufficient"] and verdict["missing"] == []
    assert verdict["won_leads_per_split"] == {"train": 200, "validation": 60, "test": 60}
    # The last 200 days reach back into the training split: its newest leads count too.
    assert 1200 < verdict["leads"] < 3200 and verdict["won_leads"] >= 120
    enforce(verdict, SufficiencyBar(action="stop"))  # no error


def test_a_young_crm_is_told_what_is_missing_in_one_line():
    splits = {
        "train": split(300, 30, "2024-01-01", 100, "a"),
        "validation": split(100, 8, "2024-04-15", 30, "b"),
        "test": split(100, 9, "2024-05-20", 30, "c"),
    }
    verdict = check_sufficiency(splits, SufficiencyBar())
    assert not verdict["sufficient"]
    assert verdict["missing"][0].startswith("500 leads in the last 200 days")
    assert verdict["missing"][1].startswith("47 won leads in the last 200 days")
    assert "8 won leads in the validation split, 20 needed" in verdict["missing"]
    assert "9 won leads in the test split, 20 needed" in verdict["missing"]
    with pytest.raises(
        ValueError, match=r"^not enough history to train a model: 500 leads"
    ) as stop:
        enforce(verdict, SufficiencyBar(action="stop"))
    assert "\n" not in str(stop.value)
    enforce(verdict, SufficiencyBar())  # warn: training goes on


def test_the_bar_is_exactly_the_bar():
    splits = {"train": split(1000, 120, "2024-01-01", 150, "a")}
    bar = SufficiencyBar(min_won_leads_per_split=0)
    assert check_sufficiency(splits, bar)["sufficient"]
    assert not check_sufficiency(splits, SufficiencyBar(min_leads=1001, min_won_leads_per_split=0))[
        "sufficient"
    ]
    assert not check_sufficiency(
        splits, SufficiencyBar(min_won_leads=121, min_won_leads_per_split=0)
    )["sufficient"]
    # A window one day shorter leaves out the oldest snapshots.
    assert (
        check_sufficiency(splits, SufficiencyBar(window_days=100, min_won_leads_per_split=0))[
            "leads"
        ]
        < 1000
    )


def test_a_bar_with_an_unknown_or_impossible_setting_is_refused():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['min_lead'\]"):
        SufficiencyBar.from_params({"min_lead": 5})
    with pytest.raises(ValueError, match="sufficiency.action must be one of rules, warn, stop"):
        SufficiencyBar.from_params({"action": "ignore"})
    assert SufficiencyBar.from_params(None) == SufficiencyBar()


@pytest.mark.slow
def test_train_stops_below_the_bar_or_trains_and_says_what_is_missing(trained_world, tmp_path):
    import copy
    import json

    import yaml
    from typer.testing import CliRunner

    from pipelines.cli import app

    world, params = trained_world
    params = copy.deepcopy(params)
    params["sufficiency"] = {"min_won_leads": 10_000, "action": "stop"}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    args = ["-q", "train", "-p", str(p), "--training", str(world / "sets"), "--no-mlflow"]
    stopped = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "no")])
    assert stopped.exit_code == 1
    assert "error: not enough history to train a model:" in stopped.output
    assert "won leads in the last 200 days" in stopped.output and "10,000 needed" in stopped.output
    assert not (tmp_path / "no").exists()  # nothing fitted, nothing written
    params["sufficiency"]["action"] = "warn"
    p.write_text(yaml.safe_dump(params))
    warned = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "yes")])
    assert warned.exit_code == 0, warned.output
    assert "below the data-sufficiency bar:" in warned.output
    verdict = json.loads((tmp_path / "yes" / "model_meta.json").read_text())["data_sufficiency"]
    assert not verdict["sufficient"] and verdict["bar"]["min_won_leads"] == 10_000
    assert set(verdict["won_leads_per_split"]) == {"train", "validation", "test"}
