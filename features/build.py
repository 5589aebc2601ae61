"""Assemble the feature frame: run the builders chosen in params.yaml over a set of snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from features.bant import bant_specs, build_bant
from features.behavioral import BehavioralParams, behavioral_specs, build_behavioral
from features.catalog import FeatureSpec, check_point_in_time_safe
from features.demographic import build_demographic, demographic_specs
from features.firmographic import build_firmographic, firmographic_specs
from features.lifecycle import build_lifecycle, lifecycle_specs

log = logging.getLogger(__name__)

Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Builder:
    """A named feature builder: how to build its columns and what they are."""

    name: str
    build: Callable[[Tables, pd.DataFrame, BehavioralParams], pd.DataFrame]
    specs: Callable[[BehavioralParams], list[FeatureSpec]]


BUILDERS: dict[str, Builder] = {
    "demographic": Builder(
        "demographic", lambda t, s, p: build_demographic(t, s), lambda p: demographic_specs()
    ),
    "firmographic": Builder(
        "firmographic", lambda t, s, p: build_firmographic(t, s), lambda p: firmographic_specs()
    ),
    "bant": Builder("bant", lambda t, s, p: build_bant(t, s), lambda p: bant_specs()),
    "lifecycle": Builder(
        "lifecycle", lambda t, s, p: build_lifecycle(t, s), lambda p: lifecycle_specs()
    ),
    "behavioral": Builder(
        "behavioral", lambda t, s, p: build_behavioral(t["events"], s, p), behavioral_specs
    ),
}


def _chosen(builders: Sequence[str]) -> list[Builder]:
    unknown = [b for b in builders if b not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown feature builder(s) {unknown}; choose from {sorted(BUILDERS)}")
    if not builders:
        raise ValueError("no feature builder chosen")
    return [BUILDERS[b] for b in builders]


def feature_specs(
    builders: Sequence[str], behavioral: BehavioralParams = BehavioralParams()
) -> list[FeatureSpec]:
    """Specs of every feature the chosen builders produce, in column order."""
    specs = [spec for b in _chosen(builders) for spec in b.specs(behavioral)]
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"two builders produce the same feature name(s): {duplicated}")
    return specs


def build_features(
    tables: Tables,
    snapshots: pd.DataFrame,
    builders: Sequence[str],
    behavioral: BehavioralParams = BehavioralParams(),
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """lead_id, as_of and every chosen builder's features, one row per snapshot (same order).

    Refuses any builder whose features read a field not known at the snapshot.
    ``progress("features", done, total)`` is called after each builder, if given.
    """
    specs = feature_specs(builders, behavioral)
    check_point_in_time_safe(specs)
    snaps = snapshots[["lead_id", "as_of"]].reset_index(drop=True)
    parts = [snaps]
    chosen = _chosen(builders)
    for done, b in enumerate(chosen, start=1):
        part = b.build(tables, snaps, behavioral)
        expected = [s.name for s in b.specs(behavioral)]
        if list(part.columns) != expected or len(part) != len(snaps):
            raise AssertionError(f"builder {b.name} returned columns/rows not matching its specs")
        parts.append(part)
        log.info("built %d %s features for %d snapshots", part.shape[1], b.name, len(snaps))
        if progress is not None:
            progress("features", done, len(chosen))
    return pd.concat(parts, axis=1)
