"""Assemble the feature frame: run the builders chosen in params.yaml over a set of snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from features import contract as ct
from features.bant import bant_specs, build_bant
from features.behavioral import BehavioralParams, behavioral_specs, build_behavioral
from features.catalog import FeatureSpec, check_point_in_time_safe
from features.custom import build_custom, custom_specs
from features.demographic import build_demographic, demographic_specs
from features.firmographic import build_firmographic, firmographic_specs
from features.history import field_history
from features.lifecycle import build_lifecycle, lifecycle_specs
from features.mapping.contract import NATIVE, EffectiveContract, with_export_history

log = logging.getLogger(__name__)

Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Builder:
    """A named feature builder: how to build its columns and what they are.

    ``build(tables, snapshots, behavioral, contract, history)`` and ``specs(behavioral,
    contract)``; the contract is the mapping's (custom fields, knowledge times), ``history`` the
    fields read as of each snapshot from their history (None: none).
    """

    name: str
    build: Callable[..., pd.DataFrame]
    specs: Callable[[BehavioralParams, EffectiveContract], list[FeatureSpec]]


BUILDERS: dict[str, Builder] = {
    "demographic": Builder(
        "demographic",
        lambda t, s, p, c, h: build_demographic(t, s, h),
        lambda p, c: demographic_specs(),
    ),
    "firmographic": Builder(
        "firmographic",
        lambda t, s, p, c, h: build_firmographic(t, s, h),
        lambda p, c: firmographic_specs(),
    ),
    "bant": Builder("bant", lambda t, s, p, c, h: build_bant(t, s, h), lambda p, c: bant_specs()),
    "lifecycle": Builder(
        "lifecycle", lambda t, s, p, c, h: build_lifecycle(t, s, h), lambda p, c: lifecycle_specs()
    ),
    "behavioral": Builder(
        "behavioral",
        lambda t, s, p, c, h: build_behavioral(t["events"], s, p),
        lambda p, c: behavioral_specs(p),
    ),
    "custom": Builder(
        "custom",
        lambda t, s, p, c, h: build_custom(t, s, c.custom, h),
        lambda p, c: custom_specs(c.custom),
    ),
}


@dataclass(frozen=True)
class FeaturePlan:
    """The features the chosen builders make, and those a mapping's knowledge times leave out."""

    specs: list[FeatureSpec]
    #: feature name -> why it is left out ("leads.budget (at_extraction)")
    left_out: dict[str, str]

    @property
    def names(self) -> list[str]:
        """The features built, in column order."""
        return [s.name for s in self.specs if s.name not in self.left_out]


def _is_native(source: str) -> bool:
    table, column = source.split(".", 1)
    return table in ct.TABLES and column in ct.TABLES[table].by_name


def _chosen(builders: Sequence[str]) -> list[Builder]:
    unknown = [b for b in builders if b not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown feature builder(s) {unknown}; choose from {sorted(BUILDERS)}")
    if not builders:
        raise ValueError("no feature builder chosen")
    twice = sorted({b for b in builders if list(builders).count(b) > 1})
    if twice:
        raise ValueError(f"features.builders lists {twice} more than once: list each once")
    return [BUILDERS[b] for b in builders]


def feature_specs(
    builders: Sequence[str],
    behavioral: BehavioralParams = BehavioralParams(),
    contract: EffectiveContract = NATIVE,
) -> list[FeatureSpec]:
    """Specs of every feature the chosen builders produce, in column order."""
    specs = [spec for b in _chosen(builders) for spec in b.specs(behavioral, contract)]
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(
            f"two builders produce the same feature name(s) {duplicated}: rename the custom "
            "field in the mapping"
        )
    return specs


def feature_plan(
    builders: Sequence[str],
    behavioral: BehavioralParams = BehavioralParams(),
    contract: EffectiveContract = NATIVE,
) -> FeaturePlan:
    """Every feature the builders make under ``contract``, and which ones it leaves out.

    A built-in builder reading a field the *native* contract does not know at the snapshot is a
    bug in the code: ValueError. A field that only the mapping makes unknown at the snapshot (a
    BANT answer exported as its current value, without history) leaves its features out.
    """
    specs = feature_specs(builders, behavioral, contract)
    check_point_in_time_safe([s for s in specs if all(map(_is_native, s.sources))])
    left_out = {s.name: ", ".join(unsafe) for s in specs if (unsafe := s.unsafe_sources(contract))}
    return FeaturePlan(specs, left_out)


def build_features(
    tables: Tables,
    snapshots: pd.DataFrame,
    builders: Sequence[str],
    behavioral: BehavioralParams = BehavioralParams(),
    progress: Callable[[str, int, int], None] | None = None,
    contract: EffectiveContract = NATIVE,
) -> pd.DataFrame:
    """lead_id, as_of and every chosen builder's features, one row per snapshot (same order).

    Refuses any built-in builder whose features read a field not known at the snapshot; leaves
    out (and logs) the features of fields that ``contract`` (the mapping's) makes unknown at the
    snapshot. ``progress("features", done, total)`` is called after each builder, if given.
    """
    contract = with_export_history(contract, tables.get("field_history"))
    plan = feature_plan(builders, behavioral, contract)
    if plan.left_out:
        log.warning(
            "left out %d feature(s) whose fields are not known at the snapshot under this "
            "mapping (declare their knowledge, or map their field history): %s",
            len(plan.left_out),
            "; ".join(f"{name} reads {why}" for name, why in list(plan.left_out.items())[:10]),
        )
    snaps = snapshots[["lead_id", "as_of"]].reset_index(drop=True)
    parts = [snaps]
    chosen = _chosen(builders)
    history = field_history(
        tables,
        contract.history,
        {(t, c): contract.tables[t].by_name[c].kind for t, c in contract.history},
    )
    for done, b in enumerate(chosen, start=1):
        part = b.build(tables, snaps, behavioral, contract, history)
        expected = [s.name for s in b.specs(behavioral, contract)]
        if list(part.columns) != expected or len(part) != len(snaps):
            raise AssertionError(f"builder {b.name} returned columns/rows not matching its specs")
        kept = [c for c in part.columns if c not in plan.left_out]
        parts.append(part[kept])
        log.info("built %d %s features for %d snapshots", len(kept), b.name, len(snaps))
        if progress is not None:
            progress("features", done, len(chosen))
    return pd.concat(parts, axis=1)
