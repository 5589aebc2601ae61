"""Read params.yaml and turn its sections into the typed settings the library functions take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from features.behavioral import BehavioralParams
from pipelines.synthetic_crm import DefectRates, MarketShift, SyntheticCRMConfig

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The parsed params.yaml; a clear error if it is missing or not a mapping."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file {path} not found (run from the project root or pass --params)")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of params.yaml, with an error naming it if absent."""
    if name not in params:
        raise KeyError(f"params.yaml has no '{name}' section")
    return params[name]


def synthetic_config(params: dict[str, Any], **overrides: Any) -> SyntheticCRMConfig:
    """SyntheticCRMConfig from the generate, snapshots and label sections."""
    g = dict(section(params, "generate"))
    settings = {
        **g,
        "shift": MarketShift(**g.get("shift", {})),
        "defects": DefectRates(**g.get("defects", {})),
        "snapshot_offsets_days": tuple(section(params, "snapshots")["offsets_days"]),
        "horizon_days": int(section(params, "label")["horizon_days"]),
    }
    return SyntheticCRMConfig(**{**settings, **overrides})


def behavioral_params(params: dict[str, Any]) -> BehavioralParams:
    """BehavioralParams from features.behavioral."""
    b = dict(section(params, "features").get("behavioral", {}))
    if "windows_days" in b:
        b["windows_days"] = tuple(b["windows_days"])
    return BehavioralParams(**b)
