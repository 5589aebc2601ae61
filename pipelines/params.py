"""Read params.yaml and turn its sections into the typed settings the library functions take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from features.behavioral import BehavioralParams
from features.snapshots import periodic_offsets
from pipelines.synthetic_crm import (
    DealAmounts,
    DefectRates,
    MarketShift,
    SalesTouches,
    SyntheticCRMConfig,
)
from pipelines.synthetic_history import FieldChanges

if TYPE_CHECKING:
    from models.categories import CategoryGrouper

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The parsed params.yaml; a clear error if it is missing or not a mapping."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"params file {path} not found (run from the project root or pass --params)"
        )
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of params.yaml, with an error naming it if absent."""
    if name not in params:
        raise KeyError(f"params.yaml has no '{name}' section")
    return params[name]


def check_known(where: str, settings: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise a one-line ValueError naming the settings of ``where`` (a params.yaml block) that
    are not among ``known``: a typo must not silently fall back to a default."""
    known = sorted(known)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; expected {', '.join(known)}")


def synthetic_config(params: dict[str, Any], **overrides: Any) -> SyntheticCRMConfig:
    """SyntheticCRMConfig from the generate, snapshots and label sections."""
    g = dict(section(params, "generate"))
    settings = {
        **g,
        "shift": MarketShift(**g.get("shift", {})),
        "defects": DefectRates(**g.get("defects", {})),
        "field_changes": FieldChanges(**g.get("field_changes", {})),
        "amounts": DealAmounts(**g.get("amounts", {})),
        "touches": SalesTouches(**g.get("touches", {})),
        "snapshot_offsets_days": tuple(snapshot_offsets(params)),
        "horizon_days": int(section(params, "label")["horizon_days"]),
    }
    return SyntheticCRMConfig(**{**settings, **overrides})


def behavioral_params(params: dict[str, Any]) -> BehavioralParams:
    """BehavioralParams from features.behavioral."""
    b = dict(section(params, "features").get("behavioral", {}))
    if "windows_days" in b:
        b["windows_days"] = tuple(b["windows_days"])
    return BehavioralParams(**b)


def category_grouper(params: dict[str, Any]) -> CategoryGrouper:
    """An unfitted CategoryGrouper from ``train.categories`` (``min_rows``, ``max_levels``,
    ``other``). Without that block: every training level is kept, and only values first seen
    at scoring time become "other"."""
    from models.categories import CategoryGrouper  # scikit-learn: only when training

    settings = dict(section(params, "train").get("categories") or {})
    check_known("train.categories", settings, ("min_rows", "max_levels", "other"))
    return CategoryGrouper(**settings)


def leakage_rules(params: dict[str, Any]):
    """LeakageRules from ``train.leakage`` (thresholds) and ``train.allow_features`` (features
    the user has checked and keeps whatever they score). Without the block: the defaults."""
    from models.leakage import LeakageRules

    settings = section(params, "train")
    rules = dict(settings.get("leakage") or {})
    known = {
        "max_auc", "far_above", "min_auc_far", "warn_auc", "max_model_auc", "bins", "smoothing",
        "min_won_leads",
    }  # fmt: skip
    check_known("train.leakage", rules, known)
    allow = tuple(str(f) for f in settings.get("allow_features") or ())
    return LeakageRules(**rules, allow=allow)


def snapshot_offsets(params: dict[str, Any]) -> list[int]:
    """Days after creation of every snapshot, from the snapshots section's policy."""
    snaps = section(params, "snapshots")
    policy = snaps.get("policy", "after_creation")
    if policy == "after_creation":
        return sorted({int(k) for k in snaps["offsets_days"]})
    if policy == "periodic":
        return periodic_offsets(int(snaps["every_days"]), int(snaps["max_days"]))
    raise ValueError(f"snapshots.policy must be 'after_creation' or 'periodic', got {policy!r}")
