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

import pandas as pd

from features import contract as ct
from features.mapping.file import (
    EventsMap,
    FieldHistoryMap,
    Mapping,
    MappingError,
    RelationalMapping,
    TableMap,
)

log = logging.getLogger(__name__)

#: The columns of the contract's field history table, in order.
HISTORY_COLUMNS = ("entity", "entity_id", "field", "value", "changed_at")


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
    targets = HISTORY_COLUMNS if table == "field_history" else tuple(ct.TABLES[table].column_names)
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
    names = export_table_names(mapping)
    tables, left_out = {}, {}
    for table, frame in raw.items():
        tmap = mapping.leads if table == "leads" else getattr(mapping, table, None)
        out, dropped = _select(table, names.get(table, table), frame, tmap)
        tables[table] = out
        if dropped:
            left_out[table] = dropped
            log.info(
                "%s: %d export column(s) not in the mapping, left out: %s%s",
                table,
                len(dropped),
                ", ".join(map(str, dropped[:20])),
                ", ..." if len(dropped) > 20 else "",
            )
    return MappedExport(tables, left_out)
