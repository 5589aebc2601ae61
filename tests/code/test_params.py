"""params.yaml sections become typed settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.params import (
    behavioral_params,
    load_params,
    section,
    snapshot_offsets,
    synthetic_config,
)

ROOT = Path(__file__).resolve().parents[2]


def test_project_params_build_every_setting():
    params = load_params(ROOT / "params.yaml")
    cfg = synthetic_config(params)
    assert cfg.horizon_days == params["label"]["horizon_days"]
    assert cfg.snapshot_offsets_days == tuple(params["snapshots"]["offsets_days"])
    assert cfg.shift.effects == params["generate"]["shift"]["effects"]
    assert behavioral_params(params).windows_days == tuple(
        params["features"]["behavioral"]["windows_days"]
    )


def test_command_line_overrides_win():
    cfg = synthetic_config(load_params(ROOT / "params.yaml"), n_leads=123, seed=9)
    assert (cfg.n_leads, cfg.seed) == (123, 9)


def test_missing_file_and_section_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(KeyError, match="'split'"):
        section({}, "split")


def test_snapshot_policies():
    assert snapshot_offsets(
        {"snapshots": {"policy": "after_creation", "offsets_days": [30, 7, 7]}}
    ) == [7, 30]
    weekly = {"snapshots": {"policy": "periodic", "every_days": 7, "max_days": 30}}
    assert snapshot_offsets(weekly) == [7, 14, 21, 28]
    assert synthetic_config(
        {**load_params(ROOT / "params.yaml"), **weekly}
    ).snapshot_offsets_days == (7, 14, 21, 28)
    with pytest.raises(ValueError, match="policy"):
        snapshot_offsets({"snapshots": {"policy": "hourly"}})
