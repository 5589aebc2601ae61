"""Apply a mapping's names to an export: export tables and columns in, contract-named tables out.

This step only *selects and renames* (cheap: no value is copied or parsed). Typing, value maps,
timestamp formats and time zones are validation's job, driven by the effective contract
(:func:`features.mapping.contract.effective_contract`), so every value that cannot be read is
counted and quarantined in one place. What the mapping does not name is reported, never a
silent loss: the export's columns left out, by table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import contract as ct
from features.mapping.file import (
    EventsMap,
    FieldHistoryMap,
    FlatMapping,
    Mapping,
    MappingError,
    RelationalMapping,
    TableMap,
)
from features.mapping.normalise import normalise_key, normalise_values
from features.timestamps import to_naive_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MappedExport:
    """Contract-named raw tables, and what the mapping left out of each export table."""

    tables: dict[str, pd.DataFrame]
    #: contract table -> export columns not named by the mapping (dropped, reported)
    left_out: dict[str, list[str]] = field(default_factory=dict)


def export_table_names(mapping: Mapping) -> dict[str, str]:
    """Contract table -> the export's table (file stem or database table) it is read from."""
    if not isinstance(mapping, RelationalMapping):
        raise MappingError("a flat mapping reads one table: see FlatMapping.from_")
    names = {"leads": mapping.leads.from_ or "leads"}
    for table in ("accounts", "events", "opportunities", "field_history"):
        tmap = getattr(mapping, table)
        if tmap is not None:
            names[table] = tmap.from_ or table
        elif table == "opportunities":
            names[table] = table
    return names


def _sources(table: str, tmap: TableMap | FieldHistoryMap | None) -> dict[str, str]:
    """Target column -> export column, contract columns first, then custom fields.

    A contract column the mapping does not name is read from an export column of the same name,
    if there is one: a mapping needs to say only what differs from the contract.
    """
    targets = tuple({**ct.TABLES, **ct.EXTRA_TABLES}[table].column_names)
    explicit = {} if tmap is None else {k: tmap.column_map(k).from_ for k in tmap.columns}
    taken = set(explicit.values())
    out = {}
    for name in targets:
        if name in explicit:
            out[name] = explicit[name]
        elif name not in taken:
            out[name] = name  # same name in the export (used only if present)
    if isinstance(tmap, TableMap):
        out |= {key: custom.from_ or key for key, custom in tmap.custom.items()}
    if isinstance(tmap, EventsMap):
        out |= {key: value.from_ or key for key, value in tmap.values.items()}
    return out


def _select(
    table: str,
    export_name: str,
    frame: pd.DataFrame,
    tmap: TableMap | FieldHistoryMap | None,
) -> tuple[pd.DataFrame, list[str]]:
    sources = _sources(table, tmap)
    named = (
        set()
        if tmap is None
        else set(tmap.columns) | set(getattr(tmap, "custom", {})) | set(getattr(tmap, "values", {}))
    )
    missing = [
        (target, src) for target, src in sources.items() if target in named and src not in frame
    ]
    if missing:
        target, src = missing[0]
        shown = ", ".join(map(str, frame.columns[:12])) + (", ..." if frame.shape[1] > 12 else "")
        raise MappingError(
            f"mapping: {table}.{target} comes from column {src!r}, which the export's "
            f"{export_name} table does not have (found: {shown})"
        )
    present = {target: src for target, src in sources.items() if src in frame}
    out = frame[list(present.values())].set_axis(list(present), axis=1)
    left_out = [c for c in frame.columns if c not in set(present.values())]
    return out, left_out


def apply_mapping(raw: MappingType[str, pd.DataFrame], mapping: Mapping) -> MappedExport:
    """Rename the export's tables (keyed by contract table name) and columns to the contract's.

    ``raw`` is what :func:`features.readers.read_crm` returns for the mapping's table names.
    A column the mapping names but the export lacks is a one-line ``MappingError``; export
    columns the mapping does not name are dropped and listed in ``left_out`` (and logged).
    """
    if not isinstance(mapping, RelationalMapping):
        raise MappingError("flat mappings are applied by features.mapping.flat")  # pragma: no cover
    tables, left_out = {}, {}
    for table, frame in raw.items():
        tables[table], dropped = map_table(table, frame, mapping)
        if dropped:
            left_out[table] = dropped
    return MappedExport(tables, left_out)


def map_table(
    table: str, frame: pd.DataFrame, mapping: Mapping, log_left_out: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """One export table (or a chunk of its rows) renamed to contract table ``table`` by a
    relational mapping: the frame and the export columns left out (logged unless told not)."""
    if not isinstance(mapping, RelationalMapping):
        raise MappingError("flat mappings are applied by features.mapping.flat")  # pragma: no cover
    tmap = mapping.leads if table == "leads" else getattr(mapping, table, None)
    out, dropped = _select(table, export_table_names(mapping).get(table, table), frame, tmap)
    if dropped and log_left_out:
        log.info(
            "%s: %d export column(s) not in the mapping, left out: %s%s",
            table,
            len(dropped),
            ", ".join(map(str, dropped[:20])),
            ", ..." if len(dropped) > 20 else "",
        )
    return out, dropped


def apply_flat(frame: pd.DataFrame, mapping: FlatMapping, name: str = "export") -> MappedExport:
    """One row per lead with an outcome column -> the contract's leads and opportunities.

    - leads: the mapping's ``leads`` columns and custom fields. Without a ``lead_id`` column the
      row number is the id (``row-0000001``); without a ``created_at`` column, ``pseudo_time``
      makes one from the row order (start + row x step), and every report says so.
    - opportunities: one per lead whose outcome is won or lost (any other value: still open,
      no opportunity), opened and closed at the outcome's date, or, without one, at the end
      of the lead's first day (``creation date + 1 day``): a snapshot one day after creation
      sees the lead before its outcome and labels it with it.
    """
    leads, left_out = _select("leads", name, frame, mapping.leads)
    n = len(frame)
    if "lead_id" not in leads:
        width = max(7, len(str(n)))
        ids = pd.Series(np.arange(1, n + 1), index=frame.index).astype("str").str.zfill(width)
        leads.insert(0, "lead_id", "row-" + ids)
    if "created_at" not in leads:
        if mapping.pseudo_time is None:
            raise MappingError(
                "mapping: a flat export needs leads.columns.created_at, or pseudo_time (the row "
                "order as time, only if the export is in time order)"
            )
        step = pd.Timedelta(minutes=mapping.pseudo_time.step_minutes)
        start = pd.Timestamp(mapping.pseudo_time.start)
        leads.insert(1, "created_at", start + step * np.arange(n))
        log.warning(
            "%s: no creation date: row order used as pseudo-time (%s + %s per row); every date "
            "in the reports is pseudo-time, not a date",
            name, start.date(), step,
        )  # fmt: skip
    outcome = mapping.outcome
    if outcome.from_ not in frame:
        raise MappingError(
            f"mapping: outcome comes from column {outcome.from_!r}, which the export {name} "
            "does not have"
        )
    used = {outcome.from_}
    keys = normalise_values(frame[outcome.from_].astype("str"))
    won = keys.isin([normalise_key(v) for v in outcome.won]).to_numpy()
    lost = keys.isin([normalise_key(v) for v in outcome.lost]).to_numpy()
    if not won.any():
        raise MappingError(
            f"mapping: outcome.won {list(outcome.won)} matches no value of column "
            f"{outcome.from_!r} (found e.g. {', '.join(map(repr, keys.dropna().unique()[:5]))})"
        )
    if outcome.closed_at is not None:
        source = (
            outcome.closed_at if isinstance(outcome.closed_at, str) else outcome.closed_at.from_
        )
        closed = frame[source]
        used.add(source)
    else:
        closed = _creation_dates(leads["created_at"], mapping).dt.normalize() + pd.Timedelta(days=1)
    decided = won | lost
    opportunities = pd.DataFrame(
        {
            "opportunity_id": leads["lead_id"].to_numpy()[decided],
            "lead_id": leads["lead_id"].to_numpy()[decided],
            "created_at": closed.to_numpy()[decided],
            "closed_at": closed.to_numpy()[decided],
            "is_won": won[decided],
        }
    )
    left_out = [c for c in left_out if c not in used]
    if left_out:
        log.info(
            "%s: %d column(s) not in the mapping, left out: %s",
            name, len(left_out), ", ".join(map(str, left_out[:20])),
        )  # fmt: skip
    return MappedExport({"leads": leads, "opportunities": opportunities}, {"leads": left_out})


def _creation_dates(values: pd.Series, mapping: FlatMapping) -> pd.Series:
    """The leads' creation times as naive UTC, read as validation will read them (the
    mapping's format and zone); unreadable ones are missing (validation quarantines the lead)."""
    cmap = mapping.leads.column_map("created_at")
    fmt = cmap.format if cmap is not None else None
    zone = (cmap.time_zone if cmap is not None else None) or mapping.time_zone
    return to_naive_utc(values, fmt, zone)[0]
