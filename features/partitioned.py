"""A CRM as a partitioned Parquet dataset, for CRMs larger than one process's memory.

Layout (``leadscore partition`` writes it from any export, through its mapping; ``leadscore
generate --partitions`` writes the synthetic CRM straight into it)::

    ROOT/crm_meta.json                        format, partitions, extraction time, rows
    ROOT/leads/part=00007/chunk-00000.parquet
    ROOT/opportunities/part=00007/...         co-partitioned with leads by a hash of lead_id
    ROOT/events/part=00007/...
    ROOT/field_history/part=00007/...         lead fields' history (entity_id is a lead id)
    ROOT/accounts/part=shared/...             read by every partition
    ROOT/field_history/part=shared/...        accounts' fields' history, read by every partition

Every row of a lead (the lead, its opportunities, events and field history) lands in the same
partition, so the per-lead rules of validation (duplicates of a lead, events of unknown leads)
and every feature builder run on one partition exactly as on the whole CRM. Accounts are shared:
many leads of many partitions point at one account.

Tables are stored in the contract's names (the mapping applied) with their values as the export
holds them: validation reads them with the mapping's read rules as it reads the export. Each row
carries its row number in the export (``_source_row``), so that quarantined rows are reported by
the export's rows, not the partition's.

The partition of a lead is ``pandas.util.hash_array(lead id as text) % partitions``: SipHash
with pandas' fixed key, the same on every machine and Python process (Python's ``hash`` of a
string is salted per process and would scatter a lead's rows).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as ct
from features.contract import Kind
from features.mapping.normalise import normalise_values
from features.outputs import OutputError, owned_files, remove_file, write_json, write_parquet
from features.validation import ContractError, normalise_category

log = logging.getLogger(__name__)

FORMAT = "leadscore-partitioned/1"
META_FILE = "crm_meta.json"
#: The folder name of what every partition reads (accounts, the accounts' field history).
SHARED = "shared"
#: The column that ties each table's rows to a lead (the partition key), per table.
LEAD_KEYS = {
    "leads": "lead_id",
    "opportunities": "lead_id",
    "events": "lead_id",
    "field_history": "entity_id",
}
#: The export's row number of each row (quarantine reports name the export's rows).
SOURCE_ROW = "_source_row"
HASH = "pandas.util.hash_array(lead id as text) % partitions"


def partition_name(part: int | str) -> str:
    """The folder of one partition: ``part=00007``, or ``part=shared``."""
    return f"part={part}" if part == SHARED else f"part={int(part):05d}"


def partition_of(ids: pd.Series | np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each lead id (int64 in ``[0, partitions)``); a missing id is in 0.

    Ids are compared as text (the readers' rule: 12, 12.0 and "12" are one lead)."""
    values = pd.Series(ids).astype("str")
    missing = values.isna().to_numpy()
    hashed = pd.util.hash_array(values.fillna("").to_numpy(dtype=object), categorize=True)
    part = (hashed % np.uint64(partitions)).astype(np.int64)
    part[missing] = 0
    return part


def _account_rows(history: pd.DataFrame, contract=None) -> np.ndarray:
    """Rows of a field history whose entity is accounts (normalised as validation reads it)."""
    if "entity" not in history.columns or history.empty:
        return np.zeros(len(history), dtype=bool)
    table = (contract.tables if contract is not None else ct.EXTRA_TABLES)["field_history"]
    entity = table.by_name["entity"]
    rule = contract.read_rules.get(("field_history", "entity")) if contract is not None else None
    raw = history["entity"]
    if rule is not None and rule.values:  # the mapping's value map first, as validation does
        lookup = {k: v for k, v in rule.values if v is not None}
        keys = normalise_values(raw.astype("str"))
        raw = keys.map(lookup).fillna(raw.astype("str"))
    normalised = normalise_category(raw, entity.vocabulary or ct.HISTORY_ENTITIES, {})
    return (normalised == "accounts").fillna(False).to_numpy(dtype=bool)


@dataclass
class PartitionWriter:
    """Writes a CRM into a partitioned dataset, one chunk of rows at a time (out of core: a
    chunk of each table is split by partition and appended as one file per partition).

    ``root`` must be new, empty, or a dataset leadscore wrote (its files are replaced)."""

    root: Path
    partitions: int
    contract: Any = None
    rows: dict[str, int] = field(default_factory=dict)
    _chunks: dict[str, int] = field(default_factory=dict)
    _schemas: dict[str, pa.Schema] = field(default_factory=dict)
    _pairs: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not isinstance(self.partitions, int) or self.partitions < 1:
            raise ValueError(f"partitions must be a whole number >= 1, got {self.partitions!r}")
        check_dataset_writable(self.root)
        clear_dataset(self.root)

    def write(self, tables: Mapping[str, pd.DataFrame]) -> None:
        """Append one chunk of each table (rows in export order; offsets carried across chunks)."""
        for name, frame in tables.items():
            if name not in LEAD_KEYS and name != "accounts":
                log.info("partition: table %s is not part of the contract: not written", name)
                continue
            start = self.rows.get(name, 0)
            frame = frame.reset_index(drop=True)
            frame[SOURCE_ROW] = np.arange(start, start + len(frame), dtype=np.int64)
            self.rows[name] = start + len(frame)
            chunk = self._chunks.get(name, 0)
            self._chunks[name] = chunk + 1
            if name == "accounts":
                self._write(name, SHARED, chunk, frame)
                continue
            if name == "field_history" and {"entity", "field"} <= set(frame.columns):
                pairs = frame.groupby(["entity", "field"], observed=True, sort=False).size().index
                self._pairs |= {(str(e), str(f)) for e, f in pairs}
            shared = (
                _account_rows(frame, self.contract)
                if name == "field_history"
                else np.zeros(len(frame), dtype=bool)
            )
            if shared.any():
                self._write(name, SHARED, chunk, frame[shared])
            lead_rows = frame[~shared]
            part = partition_of(lead_rows[LEAD_KEYS[name]], self.partitions)
            order = np.argsort(part, kind="stable")  # export order kept inside a partition
            bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
            for i in range(self.partitions):
                rows = order[bounds[i] : bounds[i + 1]]
                if len(rows) or chunk == 0:  # every partition has a file: its schema
                    self._write(name, i, chunk, lead_rows.iloc[rows])

    def _write(self, name: str, part: int | str, chunk: int, frame: pd.DataFrame) -> None:
        arrow = _wide_dictionaries(pa.Table.from_pandas(frame, preserve_index=False))
        known = self._schemas.setdefault(name, arrow.schema)
        if arrow.schema != known:  # a later chunk typed otherwise (all-missing column, say)
            try:
                arrow = arrow.cast(known)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                arrow = arrow.cast(pa.unify_schemas([known, arrow.schema]), safe=False)
        path = self.root / name / partition_name(part) / f"chunk-{chunk:05d}.parquet"
        write_parquet(path, _ArrowFrame(arrow))

    def close(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``crm_meta.json`` (the format, partitions and rows, and ``meta``); returns it."""
        payload = {
            "format": FORMAT,
            "partitions": self.partitions,
            "hash": HASH,
            "rows": dict(self.rows),
            # What a native export's history tracks is the whole CRM's (features/mapping).
            "history_fields": sorted(map(list, self._pairs))
            if "field_history" in self.rows
            else None,
            **dict(meta),
        }
        write_json(self.root / META_FILE, payload)
        log.info(
            "wrote a CRM of %s in %d partitions to %s",
            ", ".join(f"{n:,} {t}" for t, n in self.rows.items()),
            self.partitions,
            self.root,
        )
        return payload


def _wide_dictionaries(table: pa.Table) -> pa.Table:
    """Category columns with 32-bit codes: pandas gives int8 codes to a chunk with under 128
    categories and int16 to a later one with more, which one dataset schema cannot hold."""
    fields = [
        pa.field(f.name, pa.dictionary(pa.int32(), f.type.value_type), f.nullable, f.metadata)
        if pa.types.is_dictionary(f.type)
        else f
        for f in table.schema
    ]
    wide = pa.schema(fields, metadata=table.schema.metadata)
    return table if wide.equals(table.schema, check_metadata=True) else table.cast(wide)


class _ArrowFrame:
    """An Arrow table that :func:`features.outputs.write_parquet` writes as it is (no pandas
    round trip: types stay exactly as read)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def to_parquet(self, path, index: bool = False) -> None:
        pq.write_table(self.table, path)


def check_dataset_writable(root: Path) -> None:
    """Refuse a folder that holds anything leadscore did not write there."""
    if not root.exists():
        return
    if not root.is_dir():
        raise OutputError(f"{root} is a file: give a folder for the partitioned CRM")
    for folder, _dirs, files in os.walk(root):
        ours = owned_files(folder) | {".leadscore-outputs.json"}
        foreign = [f for f in files if f not in ours and not f.startswith(".")]
        if foreign:
            raise OutputError(
                f"{Path(folder) / foreign[0]} was not written by leadscore: refusing to write a "
                f"partitioned CRM into {root}; choose an empty or new folder"
            )


def clear_dataset(root: Path) -> None:
    """Remove the chunks and meta of an earlier dataset written by leadscore in ``root``."""
    if not root.exists():
        return
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".parquet") or name == META_FILE:
                removed += remove_file(Path(folder) / name)
    if removed:
        log.info("removed %d file(s) of the earlier partitioned CRM in %s", removed, root)


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """The dataset's ``crm_meta.json``; a ContractError unless it is a partitioned CRM."""
    path = Path(root) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ContractError(
            f"{path} cannot be read ({str(error).splitlines()[0]}): not a partitioned CRM; "
            "write one with `leadscore partition`",
            table="",
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ContractError(
            f"{path} is not the meta of a partitioned CRM (format {FORMAT}): write one with "
            "`leadscore partition`",
            table="",
        )
    return meta


def is_partitioned(source: str | os.PathLike | Mapping) -> bool:
    """True for a folder holding a partitioned CRM (its ``crm_meta.json`` says so)."""
    if not isinstance(source, str | os.PathLike) or "://" in str(source):
        return False
    path = Path(source) / META_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _read_folder(folder: Path, table: str, schema_from: Path) -> pd.DataFrame | None:
    """Every chunk of one partition of one table, in chunk order; None if the table has none."""
    files = sorted(folder.glob("chunk-*.parquet")) if folder.is_dir() else []
    if not files:
        first = sorted(schema_from.glob("part=*/chunk-*.parquet"))
        if not first:
            return None
        files, empty = first[:1], True
    else:
        empty = False
    columns = ct.TABLES[table].columns if table in ct.TABLES else ()
    names = set(pq.read_schema(files[0]).names)
    dictionary = [c.name for c in columns if c.kind == Kind.CATEGORY and c.name in names]
    try:
        arrow = pa.concat_tables(
            [pq.read_table(f, read_dictionary=dictionary or None) for f in files],
            promote_options="permissive",
        )
    except (OSError, pa.ArrowException) as error:
        raise ContractError(
            f"{folder} holds a chunk that is not readable Parquet ({str(error).splitlines()[0]}): "
            "write the partitioned CRM again with `leadscore partition`",
            table=table,
        ) from None
    frame = arrow.to_pandas()
    return frame.iloc[:0] if empty else frame


@dataclass(frozen=True)
class Partition:
    """One partition's raw tables (the shared ones included) and each row's export row."""

    tables: dict[str, pd.DataFrame]
    source_rows: dict[str, np.ndarray]


def read_partition(
    root: str | os.PathLike, part: int | str, tables: Iterable[str] | None = None
) -> Partition:
    """The raw tables of partition ``part`` (``"shared"``: accounts and their field history).

    A lead partition holds leads, opportunities, events and field history of its leads; the
    shared tables are read apart (once per job, not once per partition)."""
    root = Path(root)
    names = list(tables or (LEAD_KEYS if part != SHARED else ("accounts", "field_history")))
    out: dict[str, pd.DataFrame] = {}
    rows: dict[str, np.ndarray] = {}
    for name in names:
        frame = _read_folder(root / name / partition_name(part), name, root / name)
        if frame is None:
            continue
        rows[name] = (
            frame.pop(SOURCE_ROW).to_numpy(dtype=np.int64)
            if SOURCE_ROW in frame
            else (np.arange(len(frame), dtype=np.int64))
        )
        out[name] = frame.reset_index(drop=True)
    return Partition(out, rows)


def history_pairs(root: str | os.PathLike) -> pd.DataFrame | None:
    """The distinct (entity, field) pairs of the whole field history (recorded at partitioning):
    what a native export's history tracks is a property of the CRM, not of one partition."""
    pairs = read_meta(root).get("history_fields")
    if pairs is None:
        return None
    return pd.DataFrame(pairs, columns=["entity", "field"], dtype="str")
