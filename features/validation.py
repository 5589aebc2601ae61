"""Validate raw CRM tables against the data contract: type, clean, quarantine.

``validate_crm`` turns the raw tables (as read by :mod:`features.readers`) into typed tables in
contract column order, and moves every row it cannot use into a per-table *rejects* frame with a
reason. A problem with a whole column (missing, or mostly of the wrong type) is not a row problem:
it raises :class:`ContractError`, which says what to fix.

Steps per table (tables in the order accounts, leads, events, opportunities, so relational rules
can look at the rows already kept):

a. required contract columns present (else ``ContractError``); extra columns dropped.
b. coercion per :class:`~features.contract.Kind`; a present value that cannot be read is
   *unparseable*: too many in one column -> ``ContractError``, otherwise the row is rejected.
   Category values outside the vocabulary become missing (reported), except ``events.event_type``.
c. a pandera schema built from the contract (nullability, dtypes, minimum values).
d. relational rules: duplicate keys, timestamps in the future or before the lead existed,
   unknown leads, inconsistent opportunity outcomes.

Personal columns (``Knowledge.PERSONAL``) never appear in messages or log lines.
Everything is vectorised: no Python loop over rows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from features import contract as ct
from features.contract import Column, Kind, Knowledge, Table
from features.outputs import remove_file, write_json, write_parquet

log = logging.getLogger(__name__)

#: The pandas string dtype used for ID and TEXT columns (pandas' default ``str``).
STRING = pd.StringDtype(na_value=np.nan)
#: Order in which tables are validated (relational rules read the tables kept before them).
TABLE_ORDER = ("accounts", "leads", "events", "opportunities")
#: Shown instead of the value of a personal column.
REDACTED = "<redacted personal data>"
#: How many example rows / values a message shows.
N_EXAMPLES = 5

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

    def summary(self) -> str:
        """One line per table: rows in / rejected / out, with the count of each reject reason."""
        lines = []
        for rec in self.counts.itertuples(index=False):
            by_reason = self.reasons[self.reasons["table"] == rec.table]
            detail = ", ".join(
                f"{r}: {n}" for r, n in zip(by_reason["reason"], by_reason["rows"], strict=True)
            )
            line = (
                f"{rec.table}: {rec.rows_in} in, {rec.rows_rejected} rejected, {rec.rows_out} out"
            )
            lines.append(f"{line} ({detail})" if detail else line)
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
                "unknown category values set to missing: "
                + ", ".join(f"{t}.{c}: {n}" for (t, c), n in per_col.items())
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
def _normalise_one(value: str) -> str:
    return _SEPARATORS_RE.sub(" ", value.lower()).strip()


def _normalise_text(values: pd.Series) -> pd.Series:
    """Vectorised ``_normalise_one``: lower-case, collapse whitespace/-/_ runs, trim."""
    return values.str.lower().str.replace(_SEPARATORS, " ", regex=True).str.strip()


@cache
def _lookup(vocabulary: tuple[str, ...], synonyms: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Normalised spelling -> canonical value (canonical spellings win over synonyms)."""
    table = {_normalise_one(k): v for k, v in synonyms}
    table.update({_normalise_one(v): v for v in vocabulary})
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
    normalised = _normalise_text(uniques)
    target = normalised.map(_lookup(vocabulary, tuple(sorted(synonyms.items()))))
    codes = pd.Index(vocabulary).get_indexer(target.astype(object)).astype(np.int16)
    codes[normalised.str.len().eq(0).to_numpy()] = -2
    return codes


def normalise_category(
    values: pd.Series, vocabulary: tuple[str, ...], synonyms: dict[str, str]
) -> pd.Series:
    """Map spellings to canonical vocabulary values (vectorised over distinct values).

    Lower-case, collapse runs of whitespace/-/_ to one space, trim; map ``synonyms`` (keys are
    compared in that normalised form), then the normalised canonical values (``"c level"`` ->
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
def _as_string(values: pd.Series, strip: bool) -> pd.Series:
    out = values.astype(STRING)
    if strip:
        out = out.str.strip()
        blank = out.str.len().eq(0)
        if blank.any():
            out = out.mask(blank)
    return out


def _to_timestamp(values: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """Naive UTC datetime64[us]; text must be ISO 8601 (no guessing of day/month order)."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        dtype = values.dtype
    if pd.api.types.is_datetime64_dtype(dtype):
        return values.dt.as_unit("us"), None  # already typed: nothing to parse
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        # Numbers are not ISO 8601: epoch seconds or milliseconds are ambiguous, so unparseable
        # (pandas would otherwise guess, and will read them as epochs in a future version).
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
        bad = values.notna().to_numpy()
        return parsed, (bad if bad.any() else None)
    parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    parsed = parsed.dt.tz_localize(None).dt.as_unit("us")
    bad = (parsed.isna() & values.notna()).to_numpy()
    return parsed, (bad if bad.any() else None)


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
        Kind.CATEGORY: pd.CategoricalDtype(list(column.vocabulary or ())),
    }[column.kind]


def _fmt_number(x: float) -> str:
    return f"{x:g}"


@cache
def contract_schema(table_name: str) -> pa.DataFrameSchema:
    """The pandera schema of a contract table (typed frame, contract column order)."""
    table = ct.TABLES[table_name]
    columns = {}
    for col in table.columns:
        checks = []
        if col.min_value is not None:
            checks.append(
                pa.Check.ge(col.min_value, error=f"below minimum {_fmt_number(col.min_value)}")
            )
        columns[col.name] = pa.Column(_dtype(col), checks=checks, nullable=col.nullable)
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name=table_name)


# ------------------------------------------------------------------------------------------------
# Per-table state
# ------------------------------------------------------------------------------------------------
@dataclass
class _Rejects:
    """Reject reasons of one table: the first reason given to a row wins."""

    n: int
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

    def reasons(self) -> pd.Series:
        if not self.texts:
            return pd.Series([], dtype=STRING)
        return pd.concat(self.texts).sort_index()


def _check_columns(table: Table, raw: pd.DataFrame) -> pd.DataFrame:
    """Step a: every required column present; personal columns may be left out of an export
    (no later step reads them), they are then missing in every row. Returns the frame."""
    found = [str(c) for c in raw.columns]
    duplicated = sorted({c for c in found if found.count(c) > 1})
    if duplicated:
        raise ContractError(
            f"{table.name}: column(s) {', '.join(duplicated)} appear more than once; keep one "
            f"column per name in the {table.name} export.",
            table=table.name,
            column=duplicated[0],
        )
    optional = [c.name for c in table.columns if _is_personal(c) and c.name not in found]
    if optional:
        raw = raw.assign(**{c: pd.Series(np.nan, index=raw.index, dtype=STRING) for c in optional})
    missing = [c for c in table.column_names if c not in found and c not in optional]
    if missing:
        raise ContractError(
            f"{table.name}: required column(s) {', '.join(missing)} missing; found columns: "
            f"{', '.join(found) or '(none)'}. Add the column(s) to the {table.name} export or "
            "rename the source fields to the contract names (features/contract.py).",
            table=table.name,
            column=missing[0],
        )
    extra = [c for c in found if c not in table.by_name]
    if extra:
        log.info(
            "%s: dropping %d column(s) not in the contract: %s",
            table.name,
            len(extra),
            ", ".join(extra),
        )
    return raw


def _wrong_type(table: Table, column: Column, raw_col: pd.Series, bad: np.ndarray, limit: float):
    n_bad = int(bad.sum())
    n_present = int(raw_col.notna().sum())
    rows = np.flatnonzero(bad)[:N_EXAMPLES]
    values = raw_col.iloc[rows].tolist()
    return ContractError(
        f"{table.name}.{column.name} has the wrong type: {n_bad} of {n_present} present values "
        f"({n_bad / n_present:.1%}) cannot be read as {column.kind.value}, more than the allowed "
        f"{limit:.1%}. Examples: {_examples(column, rows, values)}. Check that the export maps "
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
) -> pd.DataFrame:
    """Step b: typed columns in contract order; unusable essential values reject the row."""
    out = {}
    for col in table.columns:
        raw_col = frame[col.name]
        bad: np.ndarray | None = None
        if col.kind in (Kind.ID, Kind.TEXT):
            typed = _as_string(raw_col, strip=col.kind == Kind.ID)
        elif col.kind == Kind.TIMESTAMP:
            typed, bad = _to_timestamp(raw_col)
        elif col.kind == Kind.FLOAT:
            typed, bad = _to_float(raw_col)
        elif col.kind == Kind.INT:
            typed, bad = _to_int(raw_col)
        elif col.kind == Kind.BOOL:
            typed, bad = _to_bool(raw_col)
        else:
            typed = _to_category(table, col, raw_col, rej, unknown)
        if bad is not None and bad.any():
            n_present = int(raw_col.notna().sum())
            if bad.sum() > limit * n_present:
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
            hits = typed.str.contains(pattern, regex=True).fillna(False).to_numpy(dtype=bool)
            checks.append((hits & present, "control character"))
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


def _to_category(
    table: Table, col: Column, raw_col: pd.Series, rej: _Rejects, unknown: list[dict]
) -> pd.Series:
    vocab = tuple(col.vocabulary or ())
    dtype = pd.CategoricalDtype(list(vocab))
    if isinstance(raw_col.dtype, pd.CategoricalDtype) and list(raw_col.cat.categories) == list(
        vocab
    ):
        return raw_col.astype(dtype)  # already canonical: no string work
    raw_codes, uniques = _factorize(raw_col)
    lut = np.append(_unique_codes(uniques, vocab, ct.SYNONYMS.get(col.name, {})), np.int16(-2))
    row_codes = lut[raw_codes]  # raw code -1 (missing) -> -2
    is_unknown = row_codes == -1
    if is_unknown.any():
        per_value = np.bincount(raw_codes[is_unknown], minlength=len(uniques))
        found = np.flatnonzero(per_value)
        values = [_safe(v) for v in uniques.iloc[found].to_numpy()]
        counts = pd.DataFrame({"value": values, "rows": per_value[found]})
        counts = counts.groupby("value", as_index=False, sort=False)["rows"].sum()
        counts = counts.sort_values(["rows", "value"], ascending=[False, True])
        if col.nullable:
            examples = ", ".join(repr(v) for v in counts["value"].head(N_EXAMPLES))
            log.warning(
                "%s.%s: %d value(s) outside the vocabulary set to missing (%d distinct, e.g. %s)",
                table.name, col.name, int(is_unknown.sum()), len(counts), examples,
            )  # fmt: skip
            unknown.extend(
                {"table": table.name, "column": col.name, "value": v, "rows": int(n)}
                for v, n in zip(counts["value"], counts["rows"], strict=True)
            )
        else:
            rej.add(
                is_unknown,
                f"unknown {col.name}",
                lambda pos: (": " + _quoted(raw_col.iloc[pos], col)).to_numpy(),
            )
    codes = np.where(row_codes >= 0, row_codes, -1).astype(
        np.int16 if len(vocab) > 127 else np.int8
    )
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=raw_col.index)


def _schema_rejects(table: Table, typed: pd.DataFrame, rej: _Rejects) -> None:
    """Step c: pandera checks; row-level failures become rejects, others a ContractError."""
    try:
        contract_schema(table.name).validate(typed, lazy=True)
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


def _duplicates(table: Table, typed: pd.DataFrame, rej: _Rejects) -> None:
    key = table.key
    if key is None:
        return
    alive = np.flatnonzero(~rej.rejected)
    keys = typed[key].iloc[alive]
    codes, _ = pd.factorize(keys)
    dup = pd.Series(codes).duplicated().to_numpy() & (codes >= 0)
    if not dup.any():
        return
    _, first_idx = np.unique(codes, return_index=True)
    first_of_code = alive[first_idx]  # source row of the first occurrence per distinct key
    if (codes < 0).any():
        first_of_code = first_of_code[1:]  # np.unique sorts -1 (missing) first
    mask = np.zeros(rej.n, dtype=bool)
    mask[alive[dup]] = True
    first_by_row = pd.Series(first_of_code[codes[dup]], index=alive[dup])
    rej.add(
        mask,
        f"duplicate {key}",
        lambda pos: (
            " (first seen at row " + first_by_row.loc[pos].astype(STRING) + ")"
        ).to_numpy(),
    )


def _positions(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each value in the unique ``keys`` (-1 when absent or missing)."""
    if isinstance(values.dtype, pd.StringDtype) and isinstance(keys.dtype, pd.StringDtype):
        # Arrow's hash lookup: no conversion of the (possibly 50M) strings to Python objects.
        arr = pa_arrow.array(values.array)
        found = pc.index_in(arr, value_set=pa_arrow.array(keys.array).cast(arr.type))
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return pd.Index(keys).get_indexer(values)


def _relational(
    table: Table,
    typed: pd.DataFrame,
    rej: _Rejects,
    extracted_at: pd.Timestamp,
    kept: dict[str, pd.DataFrame],
) -> None:
    """Step d: relational rules (duplicate keys, time travel, unknown leads, outcomes)."""
    _duplicates(table, typed, rej)
    tcol = table.time_column
    if table.name == "leads":
        rej.add((typed[tcol] > extracted_at).to_numpy(), f"{tcol} in the future")
        accounts = kept.get("accounts")
        if accounts is not None:
            has = typed["account_id"].notna() & ~rej.rejected
            orphan = has & ~typed["account_id"].isin(accounts["account_id"])
            if orphan.any():
                log.warning(
                    "leads: %d lead(s) reference an account_id not in accounts (kept, account_id unchanged)",
                    int(orphan.sum()),
                )
    if table.name in ("events", "opportunities"):
        leads = kept["leads"]
        where = _positions(typed["lead_id"], leads["lead_id"])
        rej.add(where < 0, "unknown lead_id")
        rej.add((typed[tcol] > extracted_at).to_numpy(), f"{tcol} in the future")
        if len(leads):
            created = leads["created_at"].to_numpy()[np.maximum(where, 0)]
            before = (where >= 0) & (typed[tcol].to_numpy() < created)
        else:
            before = np.zeros(len(typed), dtype=bool)
        rej.add(before, f"{tcol} before the lead was created")
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


def _reject_frame(table: Table, raw: pd.DataFrame, rej: _Rejects) -> pd.DataFrame:
    """The quarantined rows as found (text), with their source row and reason. Only contract
    columns that are not personal data: a rejects file must not become a copy of the CRM's
    names, emails and phones (extra columns may hold such data too)."""
    reasons = rej.reasons()
    pos = reasons.index.to_numpy()
    kept = table.kept_column_names
    columns = {c: raw[c].iloc[pos].astype(STRING).reset_index(drop=True) for c in kept}
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


def _check_required_present(table: Table, raw: pd.DataFrame, typed: pd.DataFrame) -> None:
    """A required column with no value in any row is a broken export, not a row problem.
    (Values present but unreadable or unknown are said by their own checks.)"""
    if len(typed) == 0:
        return
    for col in table.columns:
        blank = typed[col.name].isna().all() if col.kind in (Kind.ID, Kind.TEXT) else False
        if not col.nullable and (raw[col.name].isna().all() or blank):
            raise ContractError(
                f"{table.name}.{col.name} is empty in all {len(typed):,} rows: the export left "
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
    top = sorted(rej.kinds.items(), key=lambda kv: -kv[1])[:3]
    first = np.flatnonzero(rej.rejected)[:N_EXAMPLES]
    raise ContractError(
        f"{table.name}: {n_rej:,} of {rej.n:,} rows ({n_rej / rej.n:.1%}) would be quarantined, "
        f"more than validate.max_quarantined_fraction ({limit:.1%}): "
        + ", ".join(f"{kind}: {n:,}" for kind, n in top)
        + f" (rows {', '.join(map(str, first))}, ...). Nothing was written. Fix the export, or "
        "raise the limit if these rows may be dropped.",
        table=table.name,
        rows=first,
    )


def validate_crm(
    raw: dict[str, pd.DataFrame],
    extracted_at: pd.Timestamp,
    max_unparseable_fraction: float = 0.05,
    max_quarantined_fraction: float | None = None,
    nonempty_tables: Sequence[str] = (),
    progress=None,
) -> ValidationResult:
    """Type, check and clean the raw CRM tables; quarantine rows that break the contract.

    Raises ``ContractError`` for table- or column-level problems (missing table or column, a
    column mostly of the wrong type, a required column empty in every row, a table of
    ``nonempty_tables`` without rows, more than ``max_quarantined_fraction`` of a table's rows
    quarantined). Every input row ends up in ``tables`` or ``rejects``. Personal columns are
    checked but not kept. ``progress(task, done, total)`` is called after each table.
    """
    missing = [t for t in TABLE_ORDER if t not in raw]
    if missing:
        raise ContractError(
            f"table(s) {', '.join(missing)} missing from the CRM input; found tables: "
            f"{', '.join(map(str, raw)) or '(none)'}. Export all of {', '.join(TABLE_ORDER)}.",
            table=missing[0],
        )
    extracted = _extracted_at(extracted_at)
    tables: dict[str, pd.DataFrame] = {}
    rejects: dict[str, pd.DataFrame] = {}
    counts, reasons, unknown, repaired = [], [], [], []
    for name in TABLE_ORDER:
        table = ct.TABLES[name]
        frame = raw[name]
        if (
            not isinstance(frame.index, pd.RangeIndex)
            or frame.index.start != 0
            or frame.index.step != 1
        ):
            frame = frame.reset_index(drop=True)
        frame = _check_columns(table, frame)
        _check_not_empty(table, frame, nonempty_tables)
        rej = _Rejects(len(frame))
        typed = _coerce(table, frame, rej, max_unparseable_fraction, unknown, repaired)
        _check_required_present(table, frame, typed)
        _schema_rejects(table, typed, rej)
        _relational(table, typed, rej, extracted, tables)
        _check_quarantine_share(table, rej, max_quarantined_fraction)
        clean = typed if not rej.rejected.any() else typed[~rej.rejected]
        tables[name] = clean[table.kept_column_names].reset_index(drop=True)
        rejects[name] = _reject_frame(table, frame, rej)
        n_in, n_rej, n_out = len(frame), int(rej.rejected.sum()), len(clean)
        assert n_in == n_out + n_rej == n_out + len(rejects[name]), f"{name}: rows lost"
        counts.append({"table": name, "rows_in": n_in, "rows_rejected": n_rej, "rows_out": n_out})
        reasons.extend({"table": name, "reason": k, "rows": v} for k, v in rej.kinds.items())
        log.info("%s: %d rows in, %d rejected, %d out", name, n_in, n_rej, n_out)
        for kind, n in rej.kinds.items():
            log.info("%s: rejected %d row(s): %s", name, n, kind)
        if progress is not None:
            progress("validate", TABLE_ORDER.index(name) + 1, len(TABLE_ORDER))
    return ValidationResult(
        tables=tables,
        rejects=rejects,
        counts=pd.DataFrame(counts, columns=["table", "rows_in", "rows_rejected", "rows_out"]),
        reasons=pd.DataFrame(reasons, columns=["table", "reason", "rows"]),
        unknown_categories=pd.DataFrame(unknown, columns=["table", "column", "value", "rows"]),
        repaired=pd.DataFrame(repaired, columns=["table", "column", "problem", "rows"]),
    )


def write_rejects(result: ValidationResult, folder: str | os.PathLike) -> list[Path]:
    """Write ``{table}.parquet`` per table with rejects and ``summary.json``; return the paths.

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
        }
    paths.append(write_json(folder / "summary.json", summary))
    log.info("wrote %d reject file(s) to %s", len(paths) - 1, folder)
    return paths
