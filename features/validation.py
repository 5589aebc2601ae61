"""Validate raw CRM tables against the data contract: type, clean, quarantine.

``validate_crm`` turns the raw tables (as read by :mod:`features.readers`) into typed tables in
contract column order, and moves every row it cannot use into a per-table *rejects* frame with a
reason. A problem with a whole column (a required one missing, or mostly of the wrong type) is
not a row problem: it raises :class:`ContractError`, which says what to fix.

Only what a label needs is required (see :mod:`features.contract`): the leads and opportunities
tables and a few columns. An optional table left out of the export (accounts, events) becomes an
empty table; an optional column left out becomes a column missing in every row; both are
reported (``ValidationResult.absent_tables`` / ``absent_columns``), so later steps always see the
full contract shape.

Steps per table (tables in the order accounts, leads, events, opportunities, so relational rules
can look at the rows already kept):

a. required contract columns present (else ``ContractError``); optional ones added, missing;
   extra columns dropped.
b. coercion per :class:`~features.contract.Kind`; a present value that cannot be read is
   *unparseable*: too many in one column -> ``ContractError``, otherwise the row is rejected.
   Category values outside the vocabulary become missing (reported), except ``events.event_type``.
c. a pandera schema built from the contract (nullability, dtypes, minimum values).
d. relational rules: timestamps in the future, events before their lead existed, unknown leads,
   inconsistent opportunity outcomes, then duplicate keys, resolved by a time rule
   (:func:`_duplicates`). Opportunities opened before their lead record are kept, with a note.

Personal columns (``Knowledge.PERSONAL``) never appear in messages or log lines.
Everything is vectorised: no Python loop over rows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from features import contract as ct
from features.behavioral import BUILT_IN_TYPES
from features.contract import Column, Kind, Knowledge, Table
from features.frames import keep_rows
from features.mapping.contract import NATIVE, EffectiveContract, ReadRule, with_export_history
from features.mapping.file import MappingError
from features.mapping.normalise import normalise_key, normalise_values
from features.outputs import remove_file, write_json, write_parquet
from features.text_bytes import ascii_byte_set, edge_suspects, may_hold_byte
from features.timestamps import to_naive_utc

log = logging.getLogger(__name__)

#: The pandas string dtype used for ID and TEXT columns (pandas' default ``str``).
STRING = pd.StringDtype(na_value=np.nan)
#: Order in which tables are validated (relational rules read the tables kept before them).
TABLE_ORDER = ("accounts", "leads", "events", "opportunities", "field_history")
#: Shown instead of the value of a personal column.
REDACTED = "<redacted personal data>"
#: How many example rows / values a message shows.
N_EXAMPLES = 5
#: Rows per slice where a long column is worked through in slices: the temporaries (a few
#: MB each) stay in cache and are reused, where whole-column ones cost page faults.
SLICE_ROWS = 1 << 21
#: Rows kept but worth a note: note -> the log line's explanation.
OPENED_BEFORE_LEAD = "opportunity created before its lead record"
NOTES = {
    OPENED_BEFORE_LEAD: (
        "opportunity(ies) created before their lead record (kept: they count for labels and "
        "for 'already won/lost'; common after a CRM merge)"
    ),
}
EXPECTED_CLOSE_DATE = "expected close date of an open opportunity ignored"
UNDECLARED_TYPE = "event of an undeclared activity type"
NOTES[EXPECTED_CLOSE_DATE] = (
    "open opportunity(ies) with an expected close date (ignored while open: "
    "opportunities.expected_close_date)"
)
NOTES[UNDECLARED_TYPE] = (
    "event(s) of activity types the mapping does not declare (kept as history, not features)"
)
UNTRACKED_CHANGE = "change of a field not read from history"
NOTES[UNTRACKED_CHANGE] = "field-history row(s) of fields not read from history (kept, unused)"
#: Columns of :attr:`ValidationResult.categories`.
CATEGORY_REPORT = ["table", "column", "status", "rows", "distinct", "examples"]
#: A partition's counts behind the checks made over all partitions (:func:`check_partitions`):
#: ``count`` of ``of`` (unparseable of present values, present values of rows, rows a value map
#: matched of rows with a value), with example rows (export row numbers) and values.
DEFERRED_COLUMNS = ["table", "column", "check", "count", "of", "rows", "values"]
#: The column whose latest value (at or before extraction) breaks a tie between duplicates.
UPDATED_AT = "updated_at"
_INT64_MAX = np.iinfo(np.int64).max

_SEPARATORS = r"[\s\-_]+"
_SEPARATORS_RE = re.compile(_SEPARATORS)
_BOOL_WORDS = {
    "true": 1, "t": 1, "yes": 1, "y": 1, "1": 1, "1.0": 1,
    "false": 0, "f": 0, "no": 0, "n": 0, "0": 0, "0.0": 0,
}  # fmt: skip


class ContractError(ValueError):
    """The data breaks the CRM contract in a way that is not a per-row problem.

    Attributes: ``table``; ``column`` (None when the problem is the table); ``rows``: example
    0-based row numbers of the input (may be empty).
    """

    def __init__(
        self, message: str, *, table: str, column: str | None = None, rows: Iterable[int] = ()
    ) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.rows = [int(r) for r in rows]

    def __reduce__(self):  # keyword-only fields: pickled whole (raised on a Dask worker)
        return (_contract_error, (str(self), self.table, self.column, self.rows))


def _contract_error(message: str, table: str, column: str | None, rows: list[int]) -> ContractError:
    return ContractError(message, table=table, column=column, rows=rows)


@dataclass(frozen=True)
class ValidationResult:
    """Clean tables, quarantined rows and counts of one ``validate_crm`` run."""

    tables: dict[str, pd.DataFrame]
    rejects: dict[str, pd.DataFrame]
    counts: pd.DataFrame  # table, rows_in, rows_rejected, rows_out
    reasons: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "reason", "rows"])
    )  # table, reason (the rule, without values), rows
    unknown_categories: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "column", "value", "rows"])
    )  # table, column, value (as found), rows: values set to missing
    repaired: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "column", "problem", "rows"])
    )  # table, column, problem, rows: unusable values of non-essential columns set to missing
    absent_tables: tuple[str, ...] = ()  # optional tables not in the export (empty here)
    absent_columns: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "column"])
    )  # table, column: optional columns not in the export (missing in every row here)
    notes: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "note", "rows"])
    )  # table, note, rows: rows kept, but counted (e.g. opportunities before their lead)
    categories: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=CATEGORY_REPORT)
    )  # per category (or value-mapped) column and status: rows, distinct values, examples
    undeclared_types: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["event_type", "rows"])
    )  # activity types of kept events that the contract does not declare, with their rows
    deferred: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=DEFERRED_COLUMNS)
    )  # one partition of many: the counts behind checks that need every row (check_partitions)

    def columns_not_in_export(self, table: str) -> list[str]:
        """The optional columns of ``table`` the export left out (empty for an absent table)."""
        return self.absent_columns.loc[self.absent_columns["table"] == table, "column"].tolist()

    def summary(self) -> str:
        """One line per table: rows in / rejected / out with the count of each reject reason,
        rows kept with a note; then what the export left out and the values repaired."""
        lines = []
        for rec in self.counts.itertuples(index=False):
            by_reason = self.reasons[self.reasons["table"] == rec.table]
            detail = ", ".join(
                f"{r}: {n}" for r, n in zip(by_reason["reason"], by_reason["rows"], strict=True)
            )
            line = (
                f"{rec.table}: {rec.rows_in} in, {rec.rows_rejected} rejected, {rec.rows_out} out"
            )
            line = f"{line} ({detail})" if detail else line
            noted = self.notes[self.notes["table"] == rec.table]
            if len(noted):
                line += "; kept with notes: " + ", ".join(
                    f"{t}: {n}" for t, n in zip(noted["note"], noted["rows"], strict=True)
                )
            lines.append(line)
        left_out = [f"{t} table" for t in self.absent_tables] + [
            f"{t}: {', '.join(cols)}"
            for t, cols in self.absent_columns.groupby("table", sort=False)["column"]
        ]
        if left_out:
            lines.append("not in the export (filled as missing): " + "; ".join(left_out))
        if len(self.repaired):
            lines.append(
                "unusable values set to missing (rows kept): "
                + ", ".join(
                    f"{r.table}.{r.column} {r.problem}: {r.rows}"
                    for r in self.repaired.itertuples(index=False)
                )
            )
        unknown = self.unknown_categories
        if len(unknown):
            per_col = unknown.groupby(["table", "column"], sort=False)["rows"].sum()
            lines.append(
                "category values set to missing (unmapped: missing): "
                + ", ".join(f"{t}.{c}: {n}" for (t, c), n in per_col.items())
            )
        changed = self.categories[self.categories["status"] != "kept"]
        for rec in changed.itertuples(index=False):
            lines.append(
                f"{rec.table}.{rec.column}: {rec.status}: {rec.rows:,} row(s), "
                f"{rec.distinct:,} value(s), e.g. {rec.examples}"
            )
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------
def _is_personal(column: Column | None) -> bool:
    return column is not None and column.knowledge == Knowledge.PERSONAL


def _examples(column: Column | None, rows: Sequence[int], values: Sequence[object]) -> str:
    """``row 3: 'abc', row 7: 'x'`` (values of personal columns redacted)."""
    shown = [
        f"row {int(r)}: {REDACTED if _is_personal(column) else repr(str(v))}"
        for r, v in zip(list(rows)[:N_EXAMPLES], list(values)[:N_EXAMPLES], strict=True)
    ]
    return ", ".join(shown)


def _quoted(values: pd.Series, column: Column) -> pd.Series:
    """``'value'`` per row (vectorised), or a redaction for personal columns."""
    if _is_personal(column):
        return pd.Series(REDACTED, index=values.index, dtype=STRING)
    return "'" + values.astype(STRING).fillna("<missing>") + "'"


# ------------------------------------------------------------------------------------------------
# Categories
# ------------------------------------------------------------------------------------------------
@cache
def _lookup(vocabulary: tuple[str, ...], synonyms: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Normalised spelling -> canonical value (canonical spellings win over synonyms)."""
    table = {normalise_key(k): v for k, v in synonyms}
    table.update({normalise_key(v): v for v in vocabulary})
    return table


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes (-1 = missing) and the distinct values as strings (categories kept as they are)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        uniques = values.cat.categories
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, pd.Series(np.asarray(uniques, dtype=object), dtype=STRING)


def _unique_codes(
    uniques: pd.Series, vocabulary: tuple[str, ...], synonyms: dict[str, str]
) -> np.ndarray:
    """Vocabulary code of each distinct value: >= 0 canonical, -1 unknown, -2 empty (missing)."""
    normalised = normalise_values(uniques)
    target = normalised.map(_lookup(vocabulary, tuple(sorted(synonyms.items()))))
    codes = pd.Index(vocabulary).get_indexer(target.astype(object)).astype(np.int16)
    codes[normalised.str.len().eq(0).to_numpy()] = -2
    return codes


def normalise_category(
    values: pd.Series, vocabulary: tuple[str, ...], synonyms: dict[str, str]
) -> pd.Series:
    """Map spellings to canonical vocabulary values (vectorised over distinct values).

    Normalise (:func:`features.mapping.contract.normalise_key`), map ``synonyms`` (keys are
    compared in that normalised form), then the normalised canonical values (``"C-Level"`` ->
    ``"c_level"``). Values still outside the vocabulary are returned unchanged; empty values
    become missing. Returns a ``str`` Series with the index and name of ``values``.
    """
    raw_codes, uniques = _factorize(values)
    codes = _unique_codes(uniques, vocabulary, synonyms)
    canonical = np.asarray(vocabulary, dtype=object)[np.maximum(codes, 0)]
    mapped = np.where(
        codes >= 0, canonical, np.where(codes == -1, uniques.to_numpy(dtype=object), np.nan)
    )
    out = pd.array(mapped, dtype=STRING).take(raw_codes, allow_fill=True)
    return pd.Series(out, index=values.index, name=values.name)


# ------------------------------------------------------------------------------------------------
# Coercion: each returns (typed series, unparseable mask or None)
# ------------------------------------------------------------------------------------------------
def _arrow_text(values: pd.Series) -> pa_arrow.Array | pa_arrow.ChunkedArray:
    """A text column's Arrow data (no copy for pandas' Arrow-backed ``str``)."""
    return pa_arrow.array(values.array)


def _needs_strip(values: pd.Series) -> bool:
    """Whether some id has whitespace around it or is empty (what stripping would change)."""
    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        return True
    arr = _arrow_text(values)
    suspects = edge_suspects(arr)
    if not suspects.any():  # the usual case: every id begins and ends with printable ASCII
        return False
    few = arr.filter(pa_arrow.array(suspects))
    changed = pc.or_(
        pc.not_equal(pc.utf8_trim_whitespace(few), few), pc.equal(pc.utf8_length(few), 0)
    )
    return bool(pc.any(changed).as_py())


def _as_string(values: pd.Series, strip: bool) -> pd.Series:
    out = values.astype(STRING)
    # Most exports' ids are clean: then nothing is stripped (a copy of every id less).
    if strip and _needs_strip(out):
        out = out.str.strip()
        blank = out.str.len().eq(0)
        if blank.any():
            out = out.mask(blank)
    return out


def _to_timestamp(
    values: pd.Series, rule: ReadRule | None = None
) -> tuple[pd.Series, np.ndarray | None]:
    """Naive UTC datetime64[us] with the mapping's format and zone (:mod:`features.timestamps`)."""
    if rule is None:
        return to_naive_utc(values)
    return to_naive_utc(values, rule.timestamp_format, rule.time_zone)


def _to_float(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        out = values.astype("float64")
    else:
        out = pd.to_numeric(values.astype(STRING).str.strip(), errors="coerce").astype("float64")
    out = out.where(np.isfinite(out))
    bad = out.isna() & values.notna()
    return out, (bad.to_numpy() if bad.any() else None)


def _to_int(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64"), None
    as_float, _ = _to_float(values)
    integral = (as_float == np.round(as_float)) & (as_float.abs() < 2**53)
    as_float = as_float.where(integral)
    bad = as_float.isna() & values.notna()
    return as_float.astype("Int64"), (bad.to_numpy() if bad.any() else None)


def _to_bool(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), None
    raw_codes, uniques = _factorize(values)
    words = uniques.str.strip().str.lower().map(_BOOL_WORDS)
    lut = np.append(words.fillna(-1).to_numpy(dtype=np.int8), np.int8(-2))
    codes = lut[raw_codes]  # 1 true, 0 false, -1 unreadable, -2 missing
    out = pd.arrays.BooleanArray(codes == 1, codes < 0)
    bad = codes == -1
    return pd.Series(out, index=values.index, name=values.name), (bad if bad.any() else None)


# ------------------------------------------------------------------------------------------------
# Schema
# ------------------------------------------------------------------------------------------------
def _dtype(column: Column) -> object:
    return {
        Kind.ID: STRING,
        Kind.TEXT: STRING,
        Kind.TIMESTAMP: np.dtype("datetime64[us]"),
        Kind.FLOAT: np.dtype("float64"),
        Kind.INT: pd.Int64Dtype(),
        Kind.BOOL: pd.BooleanDtype(),
        # Open: a CRM's own values are kept, so the categories are the values found.
        Kind.CATEGORY: pd.CategoricalDtype([]),
    }[column.kind]


def _fmt_number(x: float) -> str:
    return f"{x:g}"


def contract_schema(table_name: str | Table) -> pa.DataFrameSchema:
    """The pandera schema of a contract table (typed frame, contract column order); a
    :class:`Table` (a mapping's, with custom fields) or the name of a native one."""
    if isinstance(table_name, str):
        return _schema({**ct.TABLES, **ct.EXTRA_TABLES}[table_name])
    return _schema(table_name)


@cache
def _schema(table: Table) -> pa.DataFrameSchema:
    columns = {}
    for col in table.columns:
        checks = []
        if col.min_value is not None:
            checks.append(
                pa.Check.ge(col.min_value, error=f"below minimum {_fmt_number(col.min_value)}")
            )
        # A category's levels are the values found (open vocabularies): any categorical.
        dtype = None if col.kind == Kind.CATEGORY else _dtype(col)
        columns[col.name] = pa.Column(dtype, checks=checks, nullable=col.nullable)
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name=table.name)


# ------------------------------------------------------------------------------------------------
# Per-table state
# ------------------------------------------------------------------------------------------------
@dataclass
class _Rejects:
    """Reject reasons of one table: the first reason given to a row wins."""

    n: int
    #: The row numbers reasons name (a partition's rows in the export); None: the positions.
    labels: np.ndarray | None = None
    rejected: np.ndarray = field(init=False)
    positions: list[np.ndarray] = field(default_factory=list)
    texts: list[pd.Series] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rejected = np.zeros(self.n, dtype=bool)

    def add(self, mask: np.ndarray | pd.Series, kind: str, detail=None) -> np.ndarray:
        """Reject rows of ``mask`` not rejected yet; ``detail(positions)`` -> per-row text suffix."""
        mask = np.asarray(mask, dtype=bool)
        pos = np.flatnonzero(mask & ~self.rejected)
        if len(pos) == 0:
            return pos
        self.rejected[pos] = True
        if detail is None:
            text = pd.Series(kind, index=pos, dtype=STRING)
        else:
            text = (kind + pd.Series(detail(pos), index=pos, dtype=STRING)).astype(STRING)
        self.positions.append(pos)
        self.texts.append(text)
        self.kinds[kind] = self.kinds.get(kind, 0) + len(pos)
        return pos

    def label(self, positions: np.ndarray) -> np.ndarray:
        """The row numbers of ``positions`` as a reason names them."""
        return positions if self.labels is None else self.labels[positions]

    def reasons(self) -> pd.Series:
        if not self.texts:
            return pd.Series([], dtype=STRING)
        return pd.concat(self.texts).sort_index()


def _check_columns(table: Table, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Step a: every required column present. An optional column the export left out is added,
    missing in every row and typed per the contract (later steps see the full contract shape),
    and logged. Returns the frame and the names of the columns added."""
    found = [str(c) for c in raw.columns]
    duplicated = sorted({c for c in found if found.count(c) > 1})
    if duplicated:
        raise ContractError(
            f"{table.name}: column(s) {', '.join(duplicated)} appear more than once; keep one "
            f"column per name in the {table.name} export.",
            table=table.name,
            column=duplicated[0],
        )
    missing = [c for c in table.required_column_names if c not in found]
    if missing:
        raise ContractError(
            f"{table.name}: required column(s) {', '.join(missing)} missing; found columns: "
            f"{', '.join(found) or '(none)'}. Add the column(s) to the {table.name} export or "
            "rename the source fields to the contract names (features/contract.py).",
            table=table.name,
            column=missing[0],
        )
    absent = [c.name for c in table.columns if c.name not in found]
    if absent:
        raw = raw.assign(
            **{c: pd.Series(index=raw.index, dtype=_dtype(table.by_name[c])) for c in absent}
        )
        log.info(
            "%s: %d optional column(s) not in the export, missing in every row: %s",
            table.name, len(absent), ", ".join(absent),
        )  # fmt: skip
    extra = [c for c in found if c not in table.by_name]
    if extra:
        log.info(
            "%s: dropping %d column(s) not in the contract: %s",
            table.name,
            len(extra),
            ", ".join(extra),
        )
    return raw, absent


def empty_table(name: str, contract: EffectiveContract = NATIVE) -> pd.DataFrame:
    """A clean table of the contract with no rows (its kept columns, typed)."""
    table = contract.tables[name]
    return _absent_table(table)[table.kept_column_names]


def _absent_table(table: Table) -> pd.DataFrame:
    """An optional table the export left out: no rows, every contract column, typed."""
    return pd.DataFrame({c.name: pd.Series(dtype=_dtype(c)) for c in table.columns})


def _wrong_type(table: Table, column: Column, raw_col: pd.Series, bad: np.ndarray, limit: float):
    rows = np.flatnonzero(bad)[:N_EXAMPLES]
    examples = _examples(column, rows, raw_col.iloc[rows].tolist())
    return _wrong_type_error(
        table, column, int(bad.sum()), int(raw_col.notna().sum()), limit, examples, rows
    )


def _wrong_type_error(
    table: Table, column: Column, n_bad: int, n_present: int, limit: float, examples: str, rows
) -> ContractError:
    return ContractError(
        f"{table.name}.{column.name} has the wrong type: {n_bad} of {n_present} present values "
        f"({n_bad / n_present:.1%}) cannot be read as {column.kind.value}, more than the allowed "
        f"{limit:.1%}. Examples: {examples}. Check that the export maps "
        f"the right source field to {column.name} and writes {column.kind.value} values "
        "(timestamps as ISO 8601), or raise max_unparseable_fraction if these rows may be dropped.",
        table=table.name,
        column=column.name,
        rows=rows,
    )


def _repaired(
    table: Table,
    col: Column,
    problem: str,
    mask: np.ndarray,
    raw_col: pd.Series,
    repaired: list[dict],
) -> None:
    """Record values of a non-essential column set to missing (the row itself is kept)."""
    rows = np.flatnonzero(mask)
    repaired.append(
        {"table": table.name, "column": col.name, "problem": problem, "rows": len(rows)}
    )
    log.warning(
        "%s.%s: %d %s value(s) set to missing, rows kept (e.g. %s)",
        table.name, col.name, len(rows), problem,
        _examples(col, rows, [_safe(v) for v in raw_col.iloc[rows[:N_EXAMPLES]]]),
    )  # fmt: skip


def _safe(value: object) -> object:
    """A value fit for a log line: anything that looks like an email or a phone is redacted;
    control characters are shown as U+FFFD (a NUL or an escape sequence never reaches a log)."""
    text = str(value)
    if "@" in text or len(re.findall(r"\d", text)) >= 7:
        return REDACTED
    return (
        re.sub(ct.ID_CONTROL_CHARACTERS, "\ufffd", text)
        if re.search(ct.ID_CONTROL_CHARACTERS, text)
        else value
    )


def _coerce(
    table: Table,
    frame: pd.DataFrame,
    rej: _Rejects,
    limit: float,
    unknown: list[dict],
    repaired: list[dict],
    rules: dict[str, ReadRule] | None = None,
    categories: list[dict] | None = None,
    deferred: list[dict] | None = None,
) -> pd.DataFrame:
    """Step b: typed columns in contract order; unusable essential values reject the row.

    ``rules`` (the mapping's, by column): value maps applied first, then timestamp formats and
    time zones. Category values are kept as found, normalised, and reported in ``categories``.
    ``deferred`` (one partition of many): the column-level checks are counted there, not made.
    """
    rules = rules or {}
    categories = [] if categories is None else categories
    out = {}
    for col in table.columns:
        raw_col = frame[col.name]
        rule = rules.get(col.name)
        if rule is not None and rule.values:
            raw_col = _apply_value_map(table, col, raw_col, rule, categories, unknown, deferred)
        bad: np.ndarray | None = None
        if col.kind in (Kind.ID, Kind.TEXT):
            typed = _as_string(raw_col, strip=col.kind == Kind.ID)
        elif col.kind == Kind.TIMESTAMP:
            typed, bad = _to_timestamp(raw_col, rule)
        elif col.kind == Kind.FLOAT:
            typed, bad = _to_float(raw_col)
        elif col.kind == Kind.INT:
            typed, bad = _to_int(raw_col)
        elif col.kind == Kind.BOOL:
            typed, bad = _to_bool(raw_col)
        else:
            typed = _to_category(table, col, raw_col, categories)
        if deferred is not None and col.kind in _PARSED:  # judged over all partitions
            rows = np.flatnonzero(bad)[:N_EXAMPLES] if bad is not None else []
            deferred.append(
                _deferred(table, col, "unparseable", 0 if bad is None else int(bad.sum()),
                          int(raw_col.notna().sum()), rows, [_safe(v) for v in raw_col.iloc[rows]])
            )  # fmt: skip
        if bad is not None and bad.any():
            n_present = int(raw_col.notna().sum())
            if deferred is None and bad.sum() > limit * n_present:
                raise _wrong_type(table, col, raw_col, bad, limit)
            if col.is_essential:
                rej.add(
                    bad,
                    f"unparseable {col.name}",
                    lambda pos, c=col, r=raw_col: (": " + _quoted(r.iloc[pos], c)).to_numpy(),
                )
            else:  # the row is still usable: the value becomes missing, and is counted
                _repaired(table, col, "unparseable", bad, raw_col, repaired)
        if col.min_value is not None and not col.is_essential:
            below = (typed < col.min_value).fillna(False).to_numpy(dtype=bool)
            if below.any():
                _repaired(
                    table,
                    col,
                    f"below minimum {_fmt_number(col.min_value)}",
                    below,
                    raw_col,
                    repaired,
                )
                typed = typed.mask(below)
        typed = _implausible(table, col, typed, raw_col, rej, repaired)
        out[col.name] = typed
    return pd.DataFrame(out, index=frame.index)


def _printable(values: pd.Series, pattern: str) -> pd.Series:
    """Values with every control character shown as U+FFFD (messages never carry a NUL)."""
    return values.astype(STRING).str.replace(pattern, "\ufffd", regex=True)


def _implausible(
    table: Table,
    col: Column,
    typed: pd.Series,
    raw_col: pd.Series,
    rej: _Rejects,
    repaired: list[dict],
) -> pd.Series:
    """Values no CRM record can hold: control characters in ids and text, timestamps before
    :data:`~features.contract.EARLIEST_TIMESTAMP`, numbers above the column's ``max_value``.
    In an essential column the row is quarantined with the reason; elsewhere the value is set
    to missing and counted."""
    checks: list[tuple[np.ndarray, str]] = []
    if col.kind in (Kind.ID, Kind.TEXT):
        pattern = ct.ID_CONTROL_CHARACTERS if col.kind == Kind.ID else ct.CONTROL_CHARACTERS
        present = typed.notna().to_numpy()
        if present.any():
            checks.append((_control_characters(typed, pattern) & present, "control character"))
    elif col.kind == Kind.TIMESTAMP:
        early = (typed < pd.Timestamp(ct.EARLIEST_TIMESTAMP)).fillna(False).to_numpy(dtype=bool)
        checks.append((early, f"before {ct.EARLIEST_TIMESTAMP} (implausible)"))
    if col.max_value is not None:
        above = (typed > col.max_value).fillna(False).to_numpy(dtype=bool)
        checks.append((above, f"above maximum {_fmt_number(col.max_value)} (implausible)"))
    for mask, problem in checks:
        if not mask.any():
            continue
        if col.is_essential:
            # Only the quarantined rows' values are made printable (not a 50M-row column).
            rej.add(
                mask,
                f"{col.name} {problem}",
                lambda pos, c=col: (
                    ": " + _quoted(_printable(raw_col.iloc[pos], ct.ID_CONTROL_CHARACTERS), c)
                ).to_numpy(),
            )
        else:
            _repaired(table, col, problem, mask, raw_col, repaired)
            typed = typed.mask(mask)
    return typed


def _control_characters(typed: pd.Series, pattern: str) -> np.ndarray:
    """Per row, whether the text holds a character of ``pattern`` (missing: False)."""
    if not (isinstance(typed.dtype, pd.StringDtype) and typed.dtype.storage == "pyarrow"):
        return typed.str.contains(pattern, regex=True).fillna(False).to_numpy(dtype=bool)
    arr = _arrow_text(typed)
    if not may_hold_byte(arr, ascii_byte_set(pattern)):  # the usual case, from the bytes
        return np.zeros(len(typed), dtype=bool)
    hits = pc.match_substring_regex(arr, pattern)
    return pc.fill_null(hits, False).to_numpy(zero_copy_only=False).astype(bool)


def _examples_by_rows(values: pd.Series, rows: np.ndarray) -> str:
    """``'a' (12), 'b' (3)``: the most frequent of some distinct values, for a message."""
    order = np.lexsort((np.arange(len(rows)), -rows))[:N_EXAMPLES]
    return ", ".join(f"{_safe(values.iloc[i])!r} ({int(rows[i]):,})" for i in order)


def _report(categories: list[dict], table: Table, col: Column, status: str, values, rows) -> None:
    """One line of the category report: how many rows (and distinct values) had ``status``."""
    rows = np.asarray(rows)
    if rows.sum() == 0:
        return
    present = rows > 0
    shown = _examples_by_rows(values[present], rows[present])
    categories.append(
        {
            "table": table.name,
            "column": col.name,
            "status": status,
            "rows": int(rows.sum()),
            "distinct": int(present.sum()),
            "examples": REDACTED if _is_personal(col) else shown,
        }
    )


def _value_map_error(table: Table, col: Column, found: str) -> MappingError:
    return MappingError(
        f"mapping: {table.name}.{col.name}: no key of its value map matches a value of the "
        f"export (found e.g. {found}): check the keys' spelling and the column they map"
    )


def _apply_value_map(
    table: Table,
    col: Column,
    raw_col: pd.Series,
    rule: ReadRule,
    categories: list[dict],
    unknown: list[dict],
    deferred: list[dict] | None = None,
) -> pd.Series:
    """The mapping's value map on one column (keys compared normalised), before typing.

    Values the map does not name are kept as found (``unmapped: keep``) or set to missing and
    counted (``unmapped: missing``). A map none of whose keys matches a value of a non-empty
    column is a mistake of the mapping (a wrong column or spelling): one-line MappingError.
    """
    raw_codes, uniques = _factorize(raw_col)
    if len(uniques) == 0:
        return raw_col
    keys = normalise_values(uniques)
    lookup = dict(rule.values)
    hit = keys.isin(list(lookup)).to_numpy(dtype=bool)
    rows = _count_codes(raw_codes, len(uniques))
    if deferred is not None:  # one partition may well hold none of the keys
        found = [f"{_safe(v)}{_COUNT}{int(n)}" for v, n in zip(uniques, rows, strict=True)]
        deferred.append(
            _deferred(table, col, "value_map", int(rows[hit].sum()), int(rows.sum()), (), found)
        )
    elif not hit.any():
        raise _value_map_error(table, col, _examples_by_rows(uniques, rows))
    unused = sorted(set(lookup) - set(keys[hit]))
    if unused and deferred is None:  # a partition holds only some values: not worth a line
        log.info(
            "%s.%s: %d value-map key(s) match no value of this export: %s",
            table.name, col.name, len(unused), ", ".join(map(repr, unused[:N_EXAMPLES])),
        )  # fmt: skip
    mapped = np.array([lookup.get(k) for k in keys.fillna("")], dtype=object)  # per distinct
    kept = uniques.to_numpy(dtype=object) if rule.unmapped == "keep" else None
    values = np.where(hit, mapped, kept if kept is not None else None)
    if col.kind == Kind.CATEGORY:
        # A categorical from the codes already in hand: no 61M-element object column, and the
        # typing step after it takes the categorical fast path (two keys may map to one value).
        text = pd.Series(values, dtype=object).map(lambda v: v if v is None else str(v))
        value_codes, levels = pd.factorize(text, use_na_sentinel=True)
        lut = np.append(value_codes, -1).astype(np.int32)  # raw code -1 (missing) -> missing
        out = pd.Series(
            pd.Categorical.from_codes(lut[raw_codes], categories=pd.Index(levels, dtype=STRING)),
            index=raw_col.index,
            name=raw_col.name,
        )
    else:
        values = np.append(values, None)  # code -1 (missing) -> missing
        out = pd.Series(values[raw_codes], index=raw_col.index, name=raw_col.name, dtype=object)
    to_missing = hit & pd.isna(mapped)
    _report(
        categories, table, col, "value map: mapped", uniques, np.where(hit & ~to_missing, rows, 0)
    )
    _report(
        categories, table, col, "value map: set to missing", uniques, np.where(to_missing, rows, 0)
    )
    if rule.unmapped == "missing":
        dropped = np.where(hit, 0, rows)
        _report(categories, table, col, "not in the value map: set to missing", uniques, dropped)
        found = np.flatnonzero(dropped)
        unknown.extend(
            {
                "table": table.name,
                "column": col.name,
                "value": _safe(uniques.iloc[i]),
                "rows": int(dropped[i]),
            }
            for i in found[np.argsort(-dropped[found], kind="stable")][:100]
        )
        if len(found):
            log.info(
                "%s.%s: %d row(s) with values the value map does not name, set to missing "
                "(unmapped: missing): %s",
                table.name, col.name, int(dropped.sum()), _examples_by_rows(uniques, dropped),
            )  # fmt: skip
    return out


def _count_codes(codes: np.ndarray, n: int) -> np.ndarray:
    """Rows per code ``0..n-1`` (-1, missing, not counted), in slices of the codes."""
    rows = np.zeros(n + 1, dtype=np.int64)
    for start in range(0, len(codes), SLICE_ROWS):
        # Shifted past missing (-1), widened as it goes (int8 codes would wrap at 127).
        rows += np.bincount(
            np.add(codes[start : start + SLICE_ROWS], 1, dtype=np.intp), minlength=n + 1
        )
    return rows[1:]


def _to_category(
    table: Table, col: Column, raw_col: pd.Series, categories: list[dict]
) -> pd.Series:
    """A category column, values kept: normalised (case, white space, ``-``/``_``), known
    spellings mapped to the canonical value (contract synonyms), everything else kept as it is.

    Where the contract has a vocabulary (a rule reads the column: BANT bands, seniority),
    values outside it are kept too, reported, and read as unknown by the rules. Categories are
    the values found, sorted. Reported per column: rows kept, rows whose spelling was mapped,
    rows outside the vocabulary. Vectorised over the distinct values.
    """
    raw_codes, uniques = _factorize(raw_col)
    normalised = normalise_values(uniques)
    vocab = tuple(col.vocabulary or ())
    lookup = _lookup(vocab, tuple(sorted(ct.SYNONYMS.get(col.name, {}).items())))
    canonical = normalised.map(lookup).astype(object)
    value = pd.Series(
        np.where(canonical.notna(), canonical, normalised.astype(object)), dtype=STRING
    )
    value = value.mask(normalised.fillna("").str.len().eq(0))  # blank: missing
    levels = pd.Index(value.dropna().unique()).sort_values()
    lut = np.append(levels.get_indexer(value.astype(object)), -1).astype(np.int32)
    rows = _count_codes(raw_codes, len(uniques))
    changed = (value != uniques).fillna(False).to_numpy(dtype=bool)
    outside = (
        (~value.isin(vocab)).fillna(False).to_numpy(dtype=bool) & value.notna().to_numpy()
        if vocab
        else np.zeros(len(uniques), dtype=bool)
    )
    present = value.notna().to_numpy()
    synonym = canonical.notna().to_numpy()
    _report(
        categories, table, col, "kept", uniques, np.where(present & ~changed & ~outside, rows, 0)
    )
    _report(
        categories,
        table,
        col,
        "mapped to the canonical value",
        uniques,
        np.where(present & changed & synonym & ~outside, rows, 0),
    )
    _report(
        categories,
        table,
        col,
        "spelling normalised",
        uniques,
        np.where(present & changed & ~synonym & ~outside, rows, 0),
    )
    if outside.any():
        _report(
            categories,
            table,
            col,
            "outside the vocabulary (kept)",
            uniques,
            np.where(outside, rows, 0),
        )
        log.warning(
            "%s.%s: %d row(s) with values outside the %s vocabulary, kept as they are (the "
            "rules reading this column see them as unknown; map them in the mapping file): %s",
            table.name, col.name, int(rows[outside].sum()), col.name,
            _examples_by_rows(uniques[outside], rows[outside]),
        )  # fmt: skip
    return pd.Series(
        pd.Categorical.from_codes(lut[raw_codes], categories=levels),
        index=raw_col.index,
        name=raw_col.name,
    )


def _schema_rejects(table: Table, typed: pd.DataFrame, rej: _Rejects) -> None:
    """Step c: pandera checks; row-level failures become rejects, others a ContractError."""
    try:
        contract_schema(table).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        table_level = fc[fc["index"].isna()]
        if len(table_level):
            first = table_level.iloc[0]
            column = table.by_name.get(str(first["column"]))
            value = REDACTED if _is_personal(column) else first["failure_case"]
            raise ContractError(
                f"{table.name}.{first['column']} failed the contract check {first['check']} "
                f"(found {value}). Fix the column type before validation (see features/contract.py).",
                table=table.name,
                column=None if column is None else column.name,
            ) from None
        fc = fc.assign(index=fc["index"].astype("int64"))
        for name in table.column_names:  # contract order: the first failing column names the row
            col = table.by_name[name]
            here = fc[fc["column"] == name]
            if here.empty:
                continue
            for check, cases in here.groupby("check", sort=False):
                mask = np.zeros(rej.n, dtype=bool)
                mask[cases["index"].to_numpy()] = True
                if check == "not_nullable":
                    rej.add(mask, f"missing {name}")
                else:
                    by_row = pd.Series(
                        cases["failure_case"].to_numpy(), index=cases["index"].to_numpy()
                    )
                    by_row = by_row[~by_row.index.duplicated()].astype(STRING)
                    if _is_personal(col):
                        by_row = pd.Series(REDACTED, index=by_row.index, dtype=STRING)
                    rej.add(
                        mask,
                        f"{name} {check}",
                        lambda pos, s=by_row: (": " + s.loc[pos]).to_numpy(),
                    )


def _microseconds(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch of a typed timestamp column, and where it is missing."""
    stamps = values.to_numpy(dtype="datetime64[us]")
    return stamps.view(np.int64), np.isnat(stamps)


def _row_lists(group: np.ndarray, rows: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, its rows as text ("3, 9"; the first N_EXAMPLES, then "... (12 rows)").

    ``group`` (sorted) and ``rows`` are parallel; Arrow joins the lists, no loop per group.
    """
    out = np.full(n_groups, "", dtype=object)
    if len(group) == 0:
        return out
    begins = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[begins, len(group)])
    rank = np.arange(len(group)) - np.repeat(begins, sizes)
    shown = rows[rank < N_EXAMPLES]
    offsets = np.r_[0, np.cumsum(np.minimum(sizes, N_EXAMPLES))].astype(np.int32)
    lists = pa_arrow.ListArray.from_arrays(
        pa_arrow.array(offsets), pa_arrow.array(shown).cast(pa_arrow.string())
    )
    joined = pd.Series(pc.binary_join(lists, ", ").to_numpy(zero_copy_only=False), dtype=STRING)
    more = pd.Series(sizes, dtype="int64").astype(STRING)
    joined = joined.where(sizes <= N_EXAMPLES, joined + ", ... (" + more + " rows)")
    out[group[begins]] = joined.to_numpy(dtype=object)
    return out


def _duplicates(
    table: Table, typed: pd.DataFrame, rej: _Rejects, extracted_at: pd.Timestamp
) -> None:
    """Resolve rows sharing a key by the time rule of docs/data-contract.md, not by position.

    Among the rows of one key (rows already rejected aside): the earliest ``created_at`` is
    the original record (a later-dated copy is a re-import or a merge leftover); among those
    tied, the latest ``updated_at`` at or before ``extracted_at`` (a later one is ignored for
    the choice); a missing time ranks last. Rows still tied whose kept values are equal after
    typing and normalisation (``updated_at`` aside) are true duplicates: the first in the file
    is kept. Tied rows that differ cannot be told apart: a conflict, every one quarantined.
    Vectorised: one sort over the rows of shared keys, group bounds with numpy.
    """
    key = table.key
    alive = np.flatnonzero(~rej.rejected & typed[key].notna().to_numpy())
    codes, _ = pd.factorize(typed[key].iloc[alive])
    shared = pd.Series(codes).duplicated(keep=False).to_numpy()
    if not shared.any():
        return
    pos, code = alive[shared], codes[shared]
    created = np.zeros(len(pos), dtype=np.int64)  # accounts have no creation time
    if "created_at" in table.by_name:
        us, nat = _microseconds(typed["created_at"].iloc[pos])
        created = np.where(nat, _INT64_MAX, us)
    updated = np.full(len(pos), _INT64_MAX, dtype=np.int64)
    if UPDATED_AT in table.by_name:
        us, nat = _microseconds(typed[UPDATED_AT].iloc[pos])
        limit = np.datetime64(extracted_at.to_datetime64(), "us").view(np.int64)
        ignored = nat | (us > limit)
        updated = np.where(ignored, _INT64_MAX, -us)  # latest first
    content = [c for c in table.kept_column_names if c != UPDATED_AT]
    digest = pd.util.hash_pandas_object(typed[content].iloc[pos], index=False).to_numpy()

    order = np.lexsort((pos, updated, created, code))
    pos, code, created, updated, digest = (a[order] for a in (pos, code, created, updated, digest))
    begins = np.r_[True, code[1:] != code[:-1]]
    group = np.cumsum(begins) - 1
    first = np.flatnonzero(begins)[group]  # per row: the first row of its key in rule order
    tied = (created == created[first]) & (updated == updated[first])
    in_conflict = np.zeros(group[-1] + 1, dtype=bool)  # per key: tied rows that differ
    in_conflict[group[tied & (digest != digest[first])]] = True
    conflict = in_conflict[group]
    conflicting = tied & conflict
    rows = _row_lists(group[conflicting], rej.label(pos[conflicting]), len(in_conflict))[group]

    kept_row = pd.Series(rej.label(pos[first]), dtype="int64").astype(STRING).to_numpy(dtype=object)
    why = np.where(created != created[first], "earliest created_at", "latest updated_at")
    detail = np.select(
        [~tied & ~conflict, ~tied & conflict, tied & ~conflict],
        [
            " (row " + kept_row + " kept: " + why + ")",
            " (conflicting rows " + rows + " have the " + why + ")",
            " (same as row " + kept_row + ")",
        ],
        default=" (rows " + rows + ")",
    )
    by_row = pd.Series(detail, index=pos, dtype=STRING)
    mask = np.zeros(rej.n, dtype=bool)
    mask[pos[~conflicting & ~begins]] = True
    rej.add(mask, f"duplicate {key}", lambda p: by_row.loc[p].to_numpy())
    mask = np.zeros(rej.n, dtype=bool)
    mask[pos[conflicting]] = True
    rej.add(mask, f"conflicting duplicate {key}", lambda p: by_row.loc[p].to_numpy())


def _positions(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each value in the unique ``keys`` (-1 when absent or missing)."""
    if isinstance(values.dtype, pd.StringDtype) and isinstance(keys.dtype, pd.StringDtype):
        # Arrow's hash lookup: no conversion of the (possibly 50M) strings to Python objects.
        arr = _arrow_text(values)
        value_set = _arrow_text(keys).cast(arr.type)
        # One hash lookup per row: encoding the values first (to look each distinct one up
        # once) costs more than it saves once a column has a million distinct ids.
        found = pc.index_in(arr, value_set=value_set)
        # int32 as Arrow gives it: a cast of 64M positions to int64 costs more than the gathers
        # it would speed up.
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    return pd.Index(keys).get_indexer(values)


def _before_created(where: np.ndarray, times: np.ndarray, created: np.ndarray) -> np.ndarray:
    """Per row, whether ``times`` is before its lead's ``created`` (``where``: the lead's
    position, -1 unknown; NaT is never before). In slices: the gathered creation times of 64M
    events stay a few MB, in cache, instead of a fresh 512 MB array."""
    out = np.empty(len(where), dtype=bool)
    for start in range(0, len(where), SLICE_ROWS):
        at = slice(start, start + SLICE_ROWS)
        lead = where[at]
        out[at] = (lead >= 0) & (times[at] < created[np.maximum(lead, 0)])
    return out


def _relational(
    table: Table,
    typed: pd.DataFrame,
    rej: _Rejects,
    extracted_at: pd.Timestamp,
    kept: dict[str, pd.DataFrame],
    absent: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Step d: relational rules (time travel, unknown leads, outcomes), then duplicate keys,
    so that a copy rejected for its own fault never wins over a good one.

    Returns the rows to keep with a note, per note (masks over the table's rows): an
    opportunity opened before its lead record (common after a CRM merge) is kept, since its
    outcome is the lead's label; an event before its lead existed is quarantined.
    """
    notes: dict[str, np.ndarray] = {}
    tcol = table.time_column
    if table.name == "leads":
        rej.add((typed[tcol] > extracted_at).to_numpy(), f"{tcol} in the future")
    if table.name in ("events", "opportunities"):
        leads = kept["leads"]
        where = _positions(typed["lead_id"], leads["lead_id"])
        rej.add(where < 0, "unknown lead_id")
        rej.add((typed[tcol] > extracted_at).to_numpy(), f"{tcol} in the future")
        if len(leads):
            before = _before_created(where, typed[tcol].to_numpy(), leads["created_at"].to_numpy())
        else:
            before = np.zeros(len(typed), dtype=bool)
        if table.name == "events":
            rej.add(before, f"{tcol} before the lead was created")
        else:
            notes[OPENED_BEFORE_LEAD] = before
    if table.name == "opportunities":
        closed = typed["closed_at"]
        rej.add((closed < typed["created_at"]).to_numpy(), "closed_at before created_at")
        rej.add((closed > extracted_at).to_numpy(), "closed_at in the future")
        rej.add(
            (typed["is_won"].notna() & closed.isna()).to_numpy(), "is_won set but closed_at missing"
        )
        rej.add(
            (typed["is_won"].isna() & closed.notna()).to_numpy(), "closed_at set but is_won missing"
        )
    if table.name == "field_history":
        known_ids = np.zeros(len(typed), dtype=bool)
        checked = np.zeros(len(typed), dtype=bool)
        for entity, key in (("leads", "lead_id"), ("accounts", "account_id")):
            rows = (typed["entity"].astype(object) == entity).to_numpy()
            if entity in kept:
                checked |= rows
                known_ids |= rows & (_positions(typed["entity_id"], kept[entity][key]) >= 0)
        rej.add(checked & ~known_ids, "unknown entity_id")
        rej.add((typed[tcol] > extracted_at).to_numpy(), f"{tcol} in the future")
    if table.key is not None and table.key not in absent:  # no ids exported: nothing to match
        _duplicates(table, typed, rej, extracted_at)
    if table.name == "leads":
        accounts = kept.get("accounts")
        if accounts is not None:
            has = typed["account_id"].notna() & ~rej.rejected
            # Arrow's hash lookup: Series.isin on Arrow text walks the keys in Python (2.4 s
            # for 1M leads against 400k accounts).
            known = _positions(typed["account_id"], accounts["account_id"]) >= 0
            orphan = has & ~known
            if orphan.any():
                log.warning(
                    "leads: %d lead(s) reference an account_id not in accounts (kept, account_id unchanged)",
                    int(orphan.sum()),
                )
    return notes


def _reject_frame(table: Table, raw: pd.DataFrame, rej: _Rejects) -> pd.DataFrame:
    """The quarantined rows as found (text), with their source row and reason. Only contract
    columns that are not personal data: a rejects file must not become a copy of the CRM's
    names, emails and phones (extra columns may hold such data too)."""
    reasons = rej.reasons()
    pos = reasons.index.to_numpy()
    kept = table.kept_column_names
    # The rejected rows in order (the reasons' positions, sorted): a filter, not a take, which
    # would first join the chunks of every long Arrow column.
    found = keep_rows(raw[kept], rej.rejected)
    columns = {c: found[c].astype(STRING) for c in kept}
    columns["source_row"] = pd.Series(pos, dtype="int64")
    columns["reject_reason"] = reasons.reset_index(drop=True).astype(STRING)
    return pd.DataFrame(columns)


def _extracted_at(value: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def _check_not_empty(table: Table, frame: pd.DataFrame, required: Sequence[str]) -> None:
    if len(frame) == 0 and table.name in required:
        raise ContractError(
            f"{table.name} has no rows (empty or header only): export the {table.name} table "
            f"again, or remove {table.name} from validate.nonempty_tables if it may be empty.",
            table=table.name,
        )


def _check_required_present(
    table: Table, raw: pd.DataFrame, typed: pd.DataFrame, deferred: list[dict] | None = None
) -> None:
    """A required column with no value in any row is a broken export, not a row problem.
    (Values present but unreadable or unknown are said by their own checks.) ``deferred``: the
    present values are counted there instead (one partition of many)."""
    if len(typed) == 0:
        return
    for col in table.columns:
        if col.nullable:
            continue
        present = raw[col.name].notna()
        if col.kind in (Kind.ID, Kind.TEXT):
            present &= typed[col.name].notna()
        if deferred is not None:
            deferred.append(_deferred(table, col, "present", int(present.sum()), len(typed)))
        elif not present.any():
            raise _empty_column(table, col, len(typed))


def _empty_column(table: Table, col: Column, rows: int) -> ContractError:
    return ContractError(
        f"{table.name}.{col.name} is empty in all {rows:,} rows: the export left "
        f"out the field mapped to {col.name}; export it again with that field filled.",
        table=table.name,
        column=col.name,
    )


def _check_quarantine_share(table: Table, rej: _Rejects, limit: float | None) -> None:
    """Stop when more than ``limit`` of a table's rows were quarantined: a broken export (ids
    of another type, a wrong time zone, a truncated file), not a few bad rows."""
    n_rej = int(rej.rejected.sum())
    if limit is None or rej.n == 0 or n_rej <= limit * rej.n:
        return
    raise _quarantine_error(
        table.name, n_rej, rej.n, rej.kinds, np.flatnonzero(rej.rejected)[:N_EXAMPLES], limit
    )


def _quarantine_error(
    name: str, n_rej: int, n: int, kinds: Mapping[str, int], first: Sequence[int], limit: float
) -> ContractError:
    top = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:3]  # ties: by name, not order
    return ContractError(
        f"{name}: {n_rej:,} of {n:,} rows ({n_rej / n:.1%}) would be quarantined, "
        f"more than validate.max_quarantined_fraction ({limit:.1%}): "
        + ", ".join(f"{kind}: {n:,}" for kind, n in top)
        + f" (rows {', '.join(map(str, first))}, ...). Nothing was written. Fix the export, or "
        "raise the limit if these rows may be dropped.",
        table=name,
        rows=first,
    )


def _check_tables(
    raw: dict[str, pd.DataFrame], nonempty_tables: Sequence[str], contract: EffectiveContract
) -> list[str]:
    """Required tables present, and every table of ``nonempty_tables``; returns the optional
    tables the export left out (logged)."""
    tables = contract.tables
    missing = [t for t in TABLE_ORDER if tables[t].required and t not in raw]
    if missing:
        required = " and ".join(t for t in TABLE_ORDER if tables[t].required)
        optional = " and ".join(t for t in ct.TABLES if not tables[t].required)
        raise ContractError(
            f"table(s) {', '.join(missing)} missing from the CRM input; found tables: "
            f"{', '.join(map(str, raw)) or '(none)'}. Export {required} ({optional} may be "
            "left out).",
            table=missing[0],
        )
    absent = [t for t in TABLE_ORDER if t not in raw and t != "field_history"]
    for name in absent:
        if name in nonempty_tables:
            raise ContractError(
                f"{name} table not found in the export: export it, or remove {name} from "
                f"validate.nonempty_tables if this CRM has no {name}",
                table=name,
            )
    if absent:
        log.info("optional table(s) not in the export, validated as empty: %s", ", ".join(absent))
    return absent


def validate_crm(
    raw: dict[str, pd.DataFrame],
    extracted_at: pd.Timestamp,
    max_unparseable_fraction: float = 0.05,
    max_quarantined_fraction: float | None = None,
    nonempty_tables: Sequence[str] = (),
    progress=None,
    contract: EffectiveContract = NATIVE,
    *,
    part_of_many: bool = False,
    validated: Mapping[str, pd.DataFrame] | None = None,
    source_rows: Mapping[str, np.ndarray] | None = None,
) -> ValidationResult:
    """Type, check and clean the raw CRM tables; quarantine rows that break the contract.

    ``contract``: the contract as the CRM's mapping fills it (custom fields, read rules: value
    maps, timestamp formats and zones; activity types); default the native one. Category
    values are kept (normalised) and reported per column in ``categories``; events of activity
    types the contract does not declare are kept and counted.

    Raises ``ContractError`` for table- or column-level problems (a required table or column
    missing, a column mostly of the wrong type, a required column empty in every row, a table
    of ``nonempty_tables`` absent or without rows, more than ``max_quarantined_fraction`` of a
    table's rows quarantined). An optional table or column the export left out is supplied
    empty and reported. Every input row ends up in ``tables`` or ``rejects``. Personal columns
    are checked but not kept. ``progress(task, done, total)`` is called after each table.

    ``part_of_many``: ``raw`` is one partition of a partitioned CRM (features/partitioned.py).
    The checks that need every row of a table (a table empty, a required column empty in all
    rows, a column mostly of the wrong type, a value map matching nothing, the quarantined
    share) are not made but counted in ``deferred``; :func:`check_partitions` makes them over
    all partitions, with the same messages. ``validated``: tables validated already (the shared
    accounts), used as they are for the relational checks and not counted again.
    ``source_rows``: per table, the export's row number of each row (a partition's), named by
    reasons that point at other rows ("same as row 12").
    """
    validated = dict(validated or {})
    # A native export's field history names the fields it tracks: those are read from it.
    contract = with_export_history(contract, raw.get("field_history"))
    deferred: list[dict] | None = [] if part_of_many else None
    if part_of_many:
        nonempty_tables = ()
    absent_tables = _check_tables({**dict.fromkeys(validated), **raw}, nonempty_tables, contract)
    extracted = _extracted_at(extracted_at)
    tables: dict[str, pd.DataFrame] = {}
    rejects: dict[str, pd.DataFrame] = {}
    counts, reasons, unknown, repaired, left_out, noted, categories = [], [], [], [], [], [], []
    undeclared: list[dict] = []
    # field_history is an extra of some CRMs: absent is the usual case, not worth a report line
    order = [t for t in TABLE_ORDER if t != "field_history" or t in raw]
    for name in order:
        table = contract.tables[name]
        if name in validated and name not in raw:
            tables[name] = validated[name]
            continue
        rules = {c: r for (t, c), r in contract.read_rules.items() if t == name}
        frame = raw[name] if name in raw else _absent_table(table)
        if (
            not isinstance(frame.index, pd.RangeIndex)
            or frame.index.start != 0
            or frame.index.step != 1
        ):
            frame = frame.reset_index(drop=True)
        frame, absent = _check_columns(table, frame)
        left_out.extend({"table": name, "column": c} for c in absent)
        _check_not_empty(table, frame, nonempty_tables)
        rej = _Rejects(len(frame), (source_rows or {}).get(name))
        typed = _coerce(
            table, frame, rej, max_unparseable_fraction, unknown, repaired, rules, categories,
            deferred,
        )  # fmt: skip
        _check_required_present(table, frame, typed, deferred)
        _schema_rejects(table, typed, rej)
        notes = _mapping_notes(table, typed, contract, undeclared)
        if name == "field_history":
            notes |= _history_values(typed, contract, unknown, repaired, categories)
        # An absent table is no reference: leads are not "orphans" of accounts never exported.
        known = {t: f for t, f in tables.items() if t not in absent_tables}
        notes |= _relational(table, typed, rej, extracted, known, absent)
        if not part_of_many:
            _check_quarantine_share(table, rej, max_quarantined_fraction)
        clean = keep_rows(typed[table.kept_column_names], ~rej.rejected)
        tables[name] = clean
        rejects[name] = _reject_frame(table, frame, rej)
        n_in, n_rej, n_out = len(frame), int(rej.rejected.sum()), len(clean)
        assert n_in == n_out + n_rej == n_out + len(rejects[name]), f"{name}: rows lost"
        counts.append({"table": name, "rows_in": n_in, "rows_rejected": n_rej, "rows_out": n_out})
        reasons.extend({"table": name, "reason": k, "rows": v} for k, v in rej.kinds.items())
        log.info("%s: %d rows in, %d rejected, %d out", name, n_in, n_rej, n_out)
        for kind, n in rej.kinds.items():
            log.info("%s: rejected %d row(s): %s", name, n, kind)
        for note, mask in notes.items():
            n_noted = int((mask & ~rej.rejected).sum())  # only rows that are kept
            if n_noted:
                noted.append({"table": name, "note": note, "rows": n_noted})
                log.warning("%s: %d %s", name, n_noted, NOTES[note])
        if progress is not None:
            progress("validate", order.index(name) + 1, len(order))
    return ValidationResult(
        tables=tables,
        rejects=rejects,
        counts=pd.DataFrame(counts, columns=["table", "rows_in", "rows_rejected", "rows_out"]),
        reasons=pd.DataFrame(reasons, columns=["table", "reason", "rows"]),
        unknown_categories=pd.DataFrame(unknown, columns=["table", "column", "value", "rows"]),
        repaired=pd.DataFrame(repaired, columns=["table", "column", "problem", "rows"]),
        absent_tables=tuple(absent_tables),
        absent_columns=pd.DataFrame(left_out, columns=["table", "column"]),
        notes=pd.DataFrame(noted, columns=["table", "note", "rows"]),
        categories=pd.DataFrame(categories, columns=CATEGORY_REPORT),
        undeclared_types=pd.DataFrame(undeclared, columns=["event_type", "rows"]),
        deferred=pd.DataFrame(deferred or [], columns=DEFERRED_COLUMNS),
    )


def _history_values(
    typed: pd.DataFrame,
    contract: EffectiveContract,
    unknown: list[dict],
    repaired: list[dict],
    categories: list[dict],
) -> dict[str, np.ndarray]:
    """Type the values of field history as the columns they change (in place, as text).

    Each tracked field's values go through the same reading as the column itself (its value
    map, normalisation, number or flag parsing; an unreadable value becomes missing and is
    counted under ``field_history[table.column]``) and are stored as text that the as-of
    lookup (:mod:`features.history`) reads back exactly. Rows of fields the contract does not
    read from history are kept and counted.
    """
    # Rows per (entity, field), from one group-by (both columns factorised once, in C).
    groups = typed.groupby(["entity", "field"], observed=True, sort=False).indices
    # Arrow text throughout: no Python string per value (3.7M changes: 3.4 s -> ~1 s).
    raw_values = _arrow_text(typed["value"].astype(STRING))
    if isinstance(raw_values, pa_arrow.ChunkedArray):
        raw_values = raw_values.combine_chunks()
    tracked = np.zeros(len(typed), dtype=bool)
    positions, texts = [], []
    for table_name, column in sorted(contract.history):
        rows = groups.get((table_name, column))
        if rows is None or not len(rows):
            continue
        target = contract.tables[table_name].by_name[column]
        col = replace(target, nullable=True, essential=False, knowledge=Knowledge.AS_OF_SNAPSHOT)
        table = Table(name=f"field_history[{table_name}.{column}]", key=None, columns=(col,))
        rule = contract.read_rules.get((table_name, column))
        values = pd.DataFrame({column: pd.array(raw_values.take(rows), dtype=STRING)})
        typed_values = _coerce(
            table,
            values,
            _Rejects(len(values)),
            1.0,  # a history value that cannot be read is set to missing, never a stop
            unknown,
            repaired,
            {column: rule} if rule is not None else {},
            categories,
        )[column]
        text = typed_values.astype(object).astype(STRING).where(typed_values.notna())
        positions.append(rows)
        texts.append(_arrow_text(text).cast(raw_values.type))
        tracked[rows] = True
    if tracked.any():  # the column rebuilt once: typed rows, then the others, back in order
        untouched = np.flatnonzero(~tracked)
        order = np.concatenate([*positions, untouched])
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        column = pa_arrow.chunked_array([*texts, raw_values.take(untouched)], raw_values.type)
        typed["value"] = pd.array(column.combine_chunks().take(back), dtype=STRING)
    return {UNTRACKED_CHANGE: ~tracked} if (~tracked).any() else {}


def _mapping_notes(
    table: Table, typed: pd.DataFrame, contract: EffectiveContract, undeclared_types: list[dict]
) -> dict[str, np.ndarray]:
    """What the mapping says about rows that are kept: an open opportunity's expected close
    date is no close date (blanked in ``typed``, counted); an event of an activity type the
    mapping does not declare is history, not a feature (counted, logged with examples)."""
    notes: dict[str, np.ndarray] = {}
    mapping = contract.mapping
    if table.name == "opportunities" and mapping is not None:
        if getattr(getattr(mapping, "opportunities", None), "expected_close_date", False):
            expected = (typed["is_won"].isna() & typed["closed_at"].notna()).to_numpy()
            if expected.any():
                typed["closed_at"] = typed["closed_at"].mask(expected)
                notes[EXPECTED_CLOSE_DATE] = expected
    if table.name == "events":
        declared = [t.name for t in contract.activity_types or BUILT_IN_TYPES]
        undeclared = (~typed["event_type"].isin(declared)).to_numpy() & typed[
            "event_type"
        ].notna().to_numpy()
        if undeclared.any():
            counts = typed.loc[undeclared, "event_type"].value_counts()
            counts = counts[counts > 0]
            undeclared_types.extend(
                {"event_type": str(v), "rows": int(n)} for v, n in counts.items()
            )
            log.info(
                "events: undeclared activity types (kept, not features): %s",
                ", ".join(f"{v!r} ({n:,})" for v, n in counts.head(N_EXAMPLES).items()),
            )
            notes[UNDECLARED_TYPE] = undeclared
    return notes


def write_rejects(result: ValidationResult, folder: str | os.PathLike) -> list[Path]:
    """Write ``{table}.parquet`` per table with rejects and ``summary.json``; return the paths.

    ``summary.json`` holds per table the row counts, the reject reasons, unknown category
    values, values set to missing, rows kept with a note, and what the export left out.

    Files are written atomically and only over files leadscore wrote (features/outputs.py); a
    stale rejects file of an earlier run is removed only if leadscore wrote it.
    """
    folder = Path(folder)
    paths = []
    for name, frame in result.rejects.items():
        path = folder / f"{name}.parquet"
        if len(frame):
            paths.append(write_parquet(path, frame))
        else:
            remove_file(path)  # no stale file from an earlier run (only one we wrote)
    summary = {}
    for rec in result.counts.to_dict("records"):
        t = rec["table"]
        by_reason = result.reasons[result.reasons["table"] == t]
        unknown = result.unknown_categories[result.unknown_categories["table"] == t]
        fixed = result.repaired[result.repaired["table"] == t]
        noted = result.notes[result.notes["table"] == t]
        summary[t] = {
            "rows_in": int(rec["rows_in"]),
            "rows_rejected": int(rec["rows_rejected"]),
            "rows_out": int(rec["rows_out"]),
            "reasons": {
                str(r): int(n) for r, n in zip(by_reason["reason"], by_reason["rows"], strict=True)
            },
            "unknown_categories": {
                str(c): int(n)
                for c, n in unknown.groupby("column", sort=False)["rows"].sum().items()
            },
            "values_set_to_missing": {
                f"{c} {p}": int(n)
                for c, p, n in zip(fixed["column"], fixed["problem"], fixed["rows"], strict=True)
            },
            "kept_with_notes": {
                str(k): int(n) for k, n in zip(noted["note"], noted["rows"], strict=True)
            },
            "categories": [
                {k: rec[k] for k in ("column", "status", "rows", "distinct", "examples")}
                for rec in result.categories[result.categories["table"] == t].to_dict("records")
            ],
            "undeclared_activity_types": (
                dict(
                    zip(
                        result.undeclared_types["event_type"],
                        result.undeclared_types["rows"].astype(int).tolist(),
                        strict=True,
                    )
                )
                if t == "events"
                else {}
            ),
            "table_in_export": t not in result.absent_tables,
            "columns_not_in_export": result.columns_not_in_export(t),
        }
    paths.append(write_json(folder / "summary.json", summary))
    log.info("wrote %d reject file(s) to %s", len(paths) - 1, folder)
    return paths


# ------------------------------------------------------------------------------------------------
# A partitioned CRM: one validation per partition, the checks over all of them
# ------------------------------------------------------------------------------------------------
#: Kinds read by parsing: a share of their values may be unreadable (a column's wrong type).
_PARSED = (Kind.TIMESTAMP, Kind.FLOAT, Kind.INT, Kind.BOOL)
#: Between a value and its rows in a value map's deferred check.
_COUNT = "\x1f"


def _deferred(
    table: Table, col: Column, check: str, count: int, of: int, rows=(), values=()
) -> dict:
    return {
        "table": table.name, "column": col.name, "check": check, "count": count, "of": of,
        "rows": [int(r) for r in rows], "values": [str(v) for v in values],
    }  # fmt: skip


def in_export_rows(
    result: ValidationResult, source_rows: Mapping[str, np.ndarray]
) -> ValidationResult:
    """``result`` of one partition with its row numbers (quarantined rows, examples) turned into
    the export's (``source_rows[table][position]``), and without its clean tables (the caller
    has used them): what a partition hands back to be merged."""
    rejects = {}
    for name, frame in result.rejects.items():
        rows = source_rows.get(name)
        if rows is not None and len(frame):
            frame = frame.assign(source_row=rows[frame["source_row"].to_numpy()])
        rejects[name] = frame
    deferred = result.deferred.copy()
    if len(deferred):
        deferred["rows"] = [
            [int(source_rows[t][r]) for r in rows] if t in source_rows else rows
            for t, rows in zip(deferred["table"], deferred["rows"], strict=True)
        ]
    return replace(result, tables={}, rejects=rejects, deferred=deferred)


def merge_results(results: Sequence[ValidationResult]) -> ValidationResult:
    """One result of many partitions' (:func:`in_export_rows`): counts and report rows summed,
    quarantined rows together in export order. ``distinct`` of a category report is the most any
    partition saw (a value may be in several)."""
    results = list(results)
    if not results:
        raise ValueError("merge_results needs at least one partition's result")

    def total(attr: str, keys: list[str], how: dict | None = None) -> pd.DataFrame:
        frames = [getattr(r, attr) for r in results if len(getattr(r, attr))]
        columns = list(getattr(results[0], attr).columns)
        if not frames:
            return getattr(results[0], attr).iloc[:0]
        both = pd.concat(frames, ignore_index=True)
        agg = how or {c: "sum" for c in columns if c not in keys}
        return both.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()[columns]

    rejects: dict[str, list[pd.DataFrame]] = {}
    for r in results:
        for name, frame in r.rejects.items():
            rejects.setdefault(name, []).append(frame)
    first = results[0]
    order = {t: i for i, t in enumerate(TABLE_ORDER)}
    counts = total("counts", ["table"])
    counts = counts.sort_values("table", key=lambda t: t.map(order), kind="stable")
    return ValidationResult(
        tables={},
        rejects={
            n: pd.concat(f, ignore_index=True)
            .sort_values("source_row", kind="stable")
            .reset_index(drop=True)
            for n, f in rejects.items()
        },  # fmt: skip
        counts=counts.reset_index(drop=True),
        reasons=total("reasons", ["table", "reason"]),
        unknown_categories=total("unknown_categories", ["table", "column", "value"]),
        repaired=total("repaired", ["table", "column", "problem"]),
        absent_tables=first.absent_tables,
        absent_columns=first.absent_columns,
        notes=total("notes", ["table", "note"]),
        categories=total(
            "categories",
            ["table", "column", "status"],
            {"rows": "sum", "distinct": "max", "examples": "first"},
        ),
        undeclared_types=total("undeclared_types", ["event_type"]),
        deferred=pd.concat([r.deferred for r in results], ignore_index=True)
        if any(len(r.deferred) for r in results)
        else first.deferred,
    )


def check_partitions(
    merged: ValidationResult,
    max_unparseable_fraction: float = 0.05,
    max_quarantined_fraction: float | None = None,
    nonempty_tables: Sequence[str] = (),
    contract: EffectiveContract = NATIVE,
) -> None:
    """The checks :func:`validate_crm` makes on a whole table, made on the partitions' merged
    counts (:func:`merge_results`): the same ContractError (or MappingError) the whole CRM in one
    piece would raise, naming the export's rows."""
    present_tables = [t for t in TABLE_ORDER if t not in merged.absent_tables]
    _check_tables(dict.fromkeys(present_tables), nonempty_tables, contract)
    rows_in = merged.counts.set_index("table")["rows_in"]
    deferred = merged.deferred
    for name in TABLE_ORDER:
        if name not in rows_in.index:
            continue
        table = contract.tables[name]
        _check_not_empty(table, pd.DataFrame(index=range(int(rows_in[name]))), nonempty_tables)
        mine = deferred[deferred["table"] == name]
        # The order validate_crm checks in: per column its value map, then its type; then
        # every required column's presence.
        steps = [(c, k) for c in table.columns for k in ("value_map", "unparseable")]
        steps += [(c, "present") for c in table.columns]
        for col, check in steps:
            group = mine[(mine["column"] == col.name) & (mine["check"] == check)]
            if group.empty:
                continue
            count, of = int(group["count"].sum()), int(group["of"].sum())
            if check == "value_map" and of and not count:
                found = pd.Series([v for vs in group["values"] for v in vs], dtype=object)
                split = found.str.rsplit(_COUNT, n=1, expand=True)
                per_value = split[1].astype(int).groupby(split[0], sort=False).sum()
                shown = _examples_by_rows(per_value.index.to_series(), per_value.to_numpy())
                raise _value_map_error(table, col, shown)
            if check == "unparseable" and count > max_unparseable_fraction * of:
                rows = [r for rs in group["rows"] for r in rs]
                values = [v for vs in group["values"] for v in vs]
                shown = np.argsort(rows, kind="stable")[:N_EXAMPLES]
                rows, values = [rows[i] for i in shown], [values[i] for i in shown]
                examples = _examples(col, rows, values)
                raise _wrong_type_error(
                    table, col, count, of, max_unparseable_fraction, examples, rows
                )
            if check == "present" and of and not count:
                raise _empty_column(table, col, of)
        if max_quarantined_fraction is None:
            continue
        n = int(rows_in[name])
        n_rej = int(merged.counts.set_index("table").loc[name, "rows_rejected"])
        if n and n_rej > max_quarantined_fraction * n:
            reasons = merged.reasons[merged.reasons["table"] == name]
            kinds = dict(zip(reasons["reason"], reasons["rows"].astype(int), strict=True))
            first = merged.rejects[name]["source_row"].head(N_EXAMPLES).tolist()
            raise _quarantine_error(name, n_rej, n, kinds, first, max_quarantined_fraction)
