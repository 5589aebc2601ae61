"""Write the draft mapping file of a profiled export: what ``leadscore inspect`` hands a new user.

:func:`draft_mapping` turns an :class:`~features.mapping.profile.ExportProfile` (what
:func:`features.mapping.profile.profile_export` found) into the YAML text of a mapping file, a
comment on every guess: contract columns filled from the export's columns (by name, by join key),
the outcome, the activity types (:func:`declared_event_types`), and every other column as a
custom field (:func:`custom_keys`, :func:`guess_kind`, :func:`describe_column`). Text out:
nothing here reads or writes a file (``pipelines/inspect_export.py`` does).

YAML is written line by line (``_Lines``) so that every key can carry its comment;
:func:`yaml_scalar` and :func:`yaml_flow_list` quote a value wherever YAML would read it as
something else, and keep it on one line.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from features import contract as ct
from features.contract import Kind
from features.mapping.contract import MUTABLE, normalise_key
from features.mapping.file import NAME
from features.mapping.profile import (
    ALIASES,
    ISO_8601,
    OWN_ID,
    ROLE_NAMES,
    ColumnProfile,
    ExportProfile,
    LeakHint,
    TableProfile,
    is_id_name,
    name_tokens,
    normalise_name,
    one_line,
    shorten,
)

#: The column kinds of the field history table (it has no contract Table).
_HISTORY_KINDS = {
    "entity": Kind.CATEGORY,
    "entity_id": Kind.ID,
    "field": Kind.CATEGORY,
    "value": Kind.TEXT,
    "changed_at": Kind.TIMESTAMP,
}
#: Contract columns that hold the CRM's *current* value: under a mapping they are at_extraction
#: (not features) unless declared; the draft says so where the user would change it.
_MUTABLE_DEFAULTS = frozenset((table, column) for table, cols in MUTABLE.items() for column in cols)
#: Event type names (normalised) that are your team's action, not the lead's.
_COMPANY_ACTIONS = ("call", "meeting", "task", "note", "outbound", "sequence", "sales")


def leadscore_name(name: object, taken: Iterable[str] = ()) -> str:
    """A valid leadscore name (``^[a-z][a-z0-9_]*$``) for an export column, unique in ``taken``.

    ``Lead Source`` -> ``lead_source``, ``emp.var.rate`` -> ``emp_var_rate``, ``2nd`` -> ``c_2nd``.
    """
    key = "_".join(
        re.findall(r"[a-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).lower())
    )
    if not key:
        key = "column"
    if not key[0].isalpha():
        key = f"c_{key}"
    taken = set(taken)
    out, n = key, 2
    while out in taken:
        out, n = f"{key}_{n}", n + 1
    if not NAME.match(out):  # pragma: no cover - the rule above builds only such names
        raise ValueError(f"cannot make a leadscore name of {name!r}")
    return out


# ------------------------------------------------------------------------------------------------
# The draft mapping (YAML with comments)
# ------------------------------------------------------------------------------------------------
def yaml_scalar(value: Any) -> str:
    """One YAML scalar on one line, quoted where YAML would read it as something else
    (``'yes'``, ``'2024-03-01'``, ``'%d/%m/%Y'``, ``'a: b'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    dumped = _dump(text, allow_unicode=True)
    if not _reads_back(dumped, text):
        # Line breaks (YAML counts NEL and U+2028 too): one double-quoted line, all escaped.
        dumped = _dump(text, allow_unicode=False, default_style='"')
    return dumped


def yaml_flow_list(values: Sequence[str]) -> str:
    """A list of strings as one YAML flow sequence (``[won, 'Closed, Won']``) on one line."""
    dumped = yaml.safe_dump(
        list(values), width=10**9, default_flow_style=True, allow_unicode=True
    ).strip()
    if not _reads_back(dumped, list(values)):
        quoted = (_dump(str(v), allow_unicode=False, default_style='"') for v in values)
        dumped = f"[{', '.join(quoted)}]"
    return dumped


_LINE_BREAKS = re.compile("[\n\r\x85\u2028\u2029]")


def _reads_back(dumped: str, value: Any) -> bool:
    """Whether YAML text ``dumped`` is one line that reads back as ``value``."""
    return not _LINE_BREAKS.search(dumped) and yaml.safe_load(f"k: {dumped}") == {"k": value}


def _dump(text: str, **options: Any) -> str:
    dumped = yaml.safe_dump(text, width=10**9, default_flow_style=True, **options)
    return dumped.removesuffix("\n").removesuffix("\n...")


class _Lines:
    """A YAML document written line by line, with comments."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, indent: int, text: str, width: int = 100) -> None:
        """A comment line (wrapped at ``width``)."""
        prefix = f"{'  ' * indent}# "
        wrapped = textwrap.wrap(one_line(text), width - len(prefix), break_long_words=False)
        self.lines += [prefix + line for line in wrapped or [""]]

    def key(self, indent: int, key: str, value: Any = ..., comment: str | None = None) -> None:
        """``key: value  # comment``; without a value, the key opens a block."""
        line = f"{'  ' * indent}{yaml_scalar(key)}:"
        if value is not ...:
            line += f" {yaml_scalar(value) if not isinstance(value, _Raw) else value.text}"
        if comment:
            line += f"  # {one_line(comment)}"
        self.lines.append(line)

    def blank(self) -> None:
        """An empty line between blocks."""
        self.lines.append("")

    def text(self) -> str:
        """The document."""
        return "\n".join(self.lines) + "\n"


@dataclass(frozen=True)
class _Raw:
    text: str


def _first_values(values: Sequence[str], most: int) -> str:
    """The first ``most`` of ``values``, shortened, then ``...`` if there are more."""
    return ", ".join(shorten(v) for v in values[:most]) + (", ..." if len(values) > most else "")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def describe_column(col: ColumnProfile, *, values: int = 4, unique_share: float = 0.5) -> str:
    """One line saying what a column holds: type, distinct values, examples or range, format.

    ``values`` most frequent values are named (never for a personal column, nor for text with
    more than ``unique_share`` of its values distinct: examples of ids or notes say nothing).
    """
    filled = f", {col.null_rate:.0%} empty" if col.missing else ""
    distinct = _plural(col.distinct, "distinct value")
    if col.personal:
        return f"personal data ({col.personal}){filled}"
    if col.type == "empty":
        return "empty in every row"
    if col.type == "date":
        if col.date_format is None:
            return (
                f"ambiguous date format: {' or '.join(col.date_candidates)}; read "
                f"{col.date_candidates[0]}: {col.minimum} to {col.maximum}{filled}"
            )
        return f"dates, {col.date_format}, {col.minimum} to {col.maximum}{filled}"
    if col.distinct == 1:
        return f"the same value in every filled row: {shorten(col.top[0][0])}{filled}"
    if col.type in ("integer", "number"):
        return f"{col.type}, {distinct}, {col.minimum} to {col.maximum}{filled}"
    if col.free_text or (col.type == "text" and col.distinct > unique_share * col.filled):
        length = f", {col.mean_length:.0f} characters on average" if col.mean_length else ""
        return f"text, {distinct} in {_plural(col.filled, 'row')}{length}{filled}"
    shown = ", ".join(f"{shorten(v)} ({n:,})" for v, n in col.top[:values])
    more = ", ..." if col.distinct > values else ""
    kind = "boolean-like" if col.type == "boolean" else "text"
    return f"{kind}, {distinct}: {shown}{more}{filled}"


def guess_kind(
    col: ColumnProfile, *, text_min_length: float = 30.0, unique_share: float = 0.5
) -> tuple[str, str]:
    """The custom-field kind a column most likely has, and what to check.

    Personal data -> ``personal``; a boolean-like column -> ``boolean``; integers and numbers ->
    ``number`` (an id-like, every-row-unique integer -> ``text``); dates -> ``text`` (a date is
    not a feature as it stands); text with more than ``unique_share`` of its values distinct and
    on average ``text_min_length`` characters or more -> ``text`` (free text), mostly unique short
    text -> ``text`` (an identifier); other text -> ``category``.
    """
    if col.personal:
        return "personal", "never a feature, never logged"
    if col.type == "empty":
        return "text", "empty: nothing to learn from"
    if col.type == "boolean":
        return "boolean", ""
    if col.type in ("integer", "number"):
        if col.unique and is_id_name(col.name):
            return "text", "unique per row: an identifier, not a number"
        return "number", ""
    if col.type == "date":
        return "text", "a date: not a feature as it stands"
    if col.filled and col.distinct / col.filled > unique_share:
        if (col.mean_length or 0) >= text_min_length:
            return "text", "free text (long, mostly unique values)"
        return "text", "mostly unique values: an identifier or free text"
    if col.leading_zeros:
        return "category", "digits with leading zeros: a code, not a number"
    return "category", ""


def _contract_kind(table: str, column: str) -> Kind:
    if table == "field_history":
        return _HISTORY_KINDS[column]
    return ct.TABLES[table].by_name[column].kind


def _fits(col: ColumnProfile, kind: Kind) -> bool:
    """Whether an export column can fill a contract column of ``kind``."""
    if kind == Kind.TIMESTAMP:
        return col.type == "date"
    if kind in (Kind.INT, Kind.FLOAT):
        return col.type in ("integer", "number")
    if kind == Kind.ID:
        return col.type in ("integer", "text") and not col.personal
    if kind == Kind.BOOL:
        return col.type == "boolean"
    return col.type not in ("date", "empty")


def _match_columns(
    role: str,
    profile: TableProfile,
    export: ExportProfile,
) -> dict[str, tuple[str, str]]:
    """Contract column -> (export column, why) for one table: keys first, then names."""
    names = {c.name: c for c in profile.columns}
    used: set[str] = set()
    out: dict[str, tuple[str, str]] = {}

    def take(target: str, column: str, why: str) -> None:
        if target not in out and column not in used:
            out[target] = (column, why)
            used.add(column)

    if role in OWN_ID and profile.id_columns:
        take(OWN_ID[role], profile.id_columns[0], "unique and never empty")
    columns = tuple(_HISTORY_KINDS) if role == "field_history" else ct.TABLES[role].column_names
    for key in export.join_keys:
        if key.table != profile.name:
            continue
        target_role = export.role_of(key.to_table)
        target = {"leads": "lead_id", "accounts": "account_id"}.get(target_role or "")
        if target and target in columns:
            found = f"{key.match_rate:.0%} of its values are {key.to_table}.{key.to_column}"
            take(target, key.column, found)
    outcome = export.outcome
    if role == "opportunities" and outcome is not None and outcome.table == profile.name:
        take("is_won", outcome.column, "the outcome")
    outcome_columns = {c.column for c in export.outcome_candidates if c.table == profile.name}
    for target, words in ALIASES.get(role, {}).items():
        kind = _contract_kind(role, target)
        matches = [
            col
            for c, col in names.items()
            if normalise_name(c) in words
            and c not in used
            # An outcome column is won / lost / open text as often as a boolean.
            and (
                (col.type == "boolean" or c in outcome_columns)
                if target == "is_won"
                else _fits(col, kind)
            )
        ]
        if matches:
            best = min(matches, key=lambda c: words.index(normalise_name(c.name)))
            own = OWN_ID.get(role) == target
            take(target, best.name, "NOT unique: check" if own and not best.unique else "")
    return out


def _date_entry(lines: _Lines, indent: int, col: ColumnProfile) -> None:
    """The ``format:`` line of a timestamp column (nothing for ISO 8601; a choice if ambiguous)."""
    if col.date_format not in (None, ISO_8601):
        lines.key(indent, "format", col.date_format, "detected on a sample of its values: check")
    elif col.date_ambiguous:
        first, *rest = col.date_candidates
        lines.comment(
            indent,
            f"AMBIGUOUS: {' and '.join(col.date_candidates)} both read every sampled value "
            "(no day above 12): uncomment the right one",
        )
        lines.comment(indent, f"format: {yaml_scalar(first)}")
        for other in rest:
            lines.comment(indent, f"format: {yaml_scalar(other)}")


def _write_is_won(
    lines: _Lines, indent: int, export: ExportProfile, table: str, col: ColumnProfile
) -> None:
    """The won/lost value map of an is_won column read from stage text (``closedwon``)."""
    outcome = next(
        (
            c
            for c in (export.outcome, *export.outcome_candidates)
            if c is not None and (c.table, c.column) == (table, col.name)
        ),
        None,
    )
    if outcome is None or col.type == "boolean":
        return
    lines.key(indent, "values", comment="won -> true, lost -> false: check")
    seen: set[str] = set()
    for value, flag in [(v, True) for v in outcome.won] + [(v, False) for v in outcome.lost]:
        # Keys are compared normalised: "closedwon" and "Closed Won" need one key, not two.
        if normalise_key(value) not in seen:
            seen.add(normalise_key(value))
            lines.key(indent + 1, value, flag)
    other = outcome.other
    shown = _first_values(other, 5)
    lines.key(
        indent,
        "unmapped",
        "missing",
        f"other values ({shown}) are still open: no outcome yet"
        if other
        else "any other value: no outcome",
    )


def _write_columns(
    lines: _Lines,
    role: str,
    profile: TableProfile,
    matched: Mapping[str, tuple[str, str]],
    export: ExportProfile,
    leaks: Mapping[str, LeakHint],
    indent: int,
    event_types: Mapping[str, str] | None = None,
) -> None:
    """The ``columns:`` block: a bare export column name, or the long form when a format, a
    value map or a knowledge time has to be said."""
    if not matched:
        lines.key(indent, "columns", _Raw("{}"), "no column matched a contract name: add them")
        return
    lines.key(indent, "columns")
    for target, (column, why) in matched.items():
        col = profile.column(column)
        kind = _contract_kind(role, target)
        note = "; ".join(p for p in (why, describe_column(col)) if p)
        odd_date = col.date_format not in (None, ISO_8601) or col.date_ambiguous
        types = event_types if target == "event_type" else None
        long_form = (
            (kind == Kind.TIMESTAMP and odd_date)
            or target == "is_won"
            or bool(types)
            or (role, target) in _MUTABLE_DEFAULTS
            or column in leaks
        )
        if not long_form:
            lines.key(indent + 1, target, column, note)
            continue
        lines.key(indent + 1, target, comment=note)
        lines.key(indent + 2, "from", column)
        if kind == Kind.TIMESTAMP:
            _date_entry(lines, indent + 2, col)
        if target == "is_won":
            _write_is_won(lines, indent + 2, export, profile.name, col)
        if types:
            lines.key(indent + 2, "values", comment="the CRM's type -> its name under types:")
            for value, name in types.items():
                lines.key(indent + 3, value, name)
        if column in leaks:
            lines.key(indent + 2, "knowledge", "after_outcome", f"LEAK? {leaks[column].reason}")
        elif (role, target) in _MUTABLE_DEFAULTS:
            lines.key(
                indent + 2,
                "knowledge",
                "at_extraction",
                "today's value in the CRM: at_creation only if it never changes after creation",
            )


def custom_keys(columns: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """Export column -> its custom field key: a valid leadscore name, unique beside ``taken``."""
    keys = set(taken)
    out = {}
    for column in columns:
        out[column] = leadscore_name(column, keys)
        keys.add(out[column])
    return out


def _write_custom(
    lines: _Lines,
    profile: TableProfile,
    keys: Mapping[str, str],
    leaks: Mapping[str, LeakHint],
    indent: int,
    *,
    text_min_length: float,
    unique_share: float,
) -> None:
    """The ``custom:`` block: every column not mapped to the contract, with a guessed kind."""
    if not keys:
        lines.key(indent, "custom", _Raw("{}"))
        return
    lines.key(
        indent,
        "custom",
        comment="the CRM's own fields: at_extraction = not a feature until you say when it is known",
    )
    for column, key in keys.items():
        col = profile.column(column)
        kind, check = guess_kind(col, text_min_length=text_min_length, unique_share=unique_share)
        lines.key(indent + 1, key, comment=describe_column(col, unique_share=unique_share))
        if key != column:
            lines.key(indent + 2, "from", column)
        lines.key(indent + 2, "kind", kind, check or None)
        if column in leaks:
            lines.key(indent + 2, "knowledge", "after_outcome", f"LEAK? {leaks[column].reason}")
        else:
            lines.key(indent + 2, "knowledge", "at_extraction")


def _write_history_maps(
    lines: _Lines,
    profile: TableProfile,
    matched: Mapping[str, tuple[str, str]],
    names: Mapping[str, Mapping[str, str]],
) -> None:
    """``entities:`` and ``fields:`` of a field history table, from the values it holds.

    ``names``: contract table -> export column -> its name in the draft (contract or custom).
    """
    entity = profile.column(matched["entity"][0]) if "entity" in matched else None
    entities = {}
    for value, _ in entity.top if entity is not None else ():
        tokens = set(name_tokens(value)) | {normalise_name(value)}
        role = next(
            (r for r in ("leads", "accounts") if tokens & set(ROLE_NAMES[r])),
            None,
        )
        if role is not None:
            entities[value] = role
    if entities:
        lines.key(
            1, "entities", comment="the export's entity -> the table whose records it changes"
        )
        for value, role in entities.items():
            lines.key(2, value, role)
    else:
        lines.comment(1, "entities: the export's entity values -> leads or accounts (none found)")
    field_col = profile.column(matched["field"][0]) if "field" in matched else None
    by_name = {
        normalise_name(column): target
        for table in ("accounts", "leads")  # leads last: a field both tables have is the lead's
        for column, target in names.get(table, {}).items()
    }
    values = [v for v, _ in field_col.top] if field_col is not None else []
    fields = {v: by_name[normalise_name(v)] for v in values if normalise_name(v) in by_name}
    unknown = [v for v in values if v not in fields]
    if not fields:
        lines.key(
            1,
            "fields",
            _Raw("{}"),
            "the export's field names -> the column each changes (contract or custom name)",
        )
    else:
        lines.key(1, "fields", comment="the export's field -> the column it changes in this draft")
        for value, target in fields.items():
            lines.key(2, value, target)
    if unknown:
        lines.comment(
            1, f"fields not in the draft's tables (left out): {_first_values(unknown, 8)}"
        )


def declared_event_types(
    profile: TableProfile, column: str | None, *, max_types: int = 30
) -> dict[str, str] | None:
    """Export activity type -> leadscore type name (``EMAIL`` -> ``email``), for an events
    table's type ``column``; None when there is none or more than ``max_types`` types."""
    if column is None:
        return None
    col = profile.column(column)
    if col.distinct == 0 or col.distinct > len(col.top) or col.distinct > max_types:
        return None
    out: dict[str, str] = {}
    seen: set[str] = set()
    for value, _ in col.top:
        # "EMAIL" and "Email" are one key once normalised: the first (most frequent) covers both.
        if normalise_key(value) not in seen:
            seen.add(normalise_key(value))
            out[value] = leadscore_name(value, out.values())
    return out


def _write_event_types(
    lines: _Lines, profile: TableProfile, column: str | None, types: Mapping[str, str] | None
) -> None:
    """The ``types:`` block of an events table: one entry per activity type found."""
    if column is None:
        lines.comment(1, "no activity type column found: map event_type, then declare types:")
        return
    col = profile.column(column)
    if not types:
        lines.comment(
            1,
            f"{col.distinct:,} activity types: declare the ones to use under types: "
            "(default: the 12 built-in ones)",
        )
        return
    lines.key(1, "types", comment="each activity type found: check the phrases, weight and actor")
    counts = dict(col.top)
    for value, key in types.items():
        words = key.replace("_", " ")
        # Calls, meetings and tasks are logged by reps: history, not the lead's engagement.
        company = any(p in normalise_name(value) for p in _COMPANY_ACTIONS)
        lines.key(2, key, comment=f"{shorten(value)}: {counts[value]:,} rows")
        lines.key(3, "count", f"Had {{value}} {words} [event|events]")
        lines.key(3, "last", f"Last {words} event {{value}} [day|days] ago")
        lines.key(3, "never", f"No {words} event yet")
        lines.key(3, "weight", 1.0)
        lines.key(
            3,
            "actor",
            "company" if company else "lead",
            "your team's action: history, not engagement"
            if company
            else "the lead's action? set company if your team does it",
        )


def draft_mapping(
    export: ExportProfile,
    *,
    source: str = "the export",
    files: Mapping[str, str] | None = None,
    separator: str | None = None,
    encoding: str | None = None,
    max_event_types: int = 30,
    text_min_length: float = 30.0,
    unique_share: float = 0.5,
    pseudo_time_start: str = "2000-01-01",
    pseudo_time_step_minutes: float = 60.0,
) -> str:
    """The draft mapping file for ``export``, as YAML text with a comment on every guess.

    Valid under :func:`features.mapping.file.parse_mapping`. Contract columns are filled where an
    export column's name is a known alias (``hs_object_id`` -> lead_id, ``createdate`` ->
    created_at, ``dealstage`` -> is_won with a won/lost value map) or a join key reaches the right
    table; every other column becomes a custom field with a guessed kind (:func:`guess_kind`) and
    knowledge ``at_extraction`` (not a feature until the user says so), except leak hints, which
    are ``after_outcome`` with the reason. ``source`` names the export in the header; ``files``
    maps export table names to file names (a flat mapping's ``from:``); ``separator`` and
    ``encoding`` of CSV files are written under ``csv:`` when not the defaults (``,``, UTF-8).
    ``max_event_types`` activity types at most are declared; ``pseudo_time_*`` are written when a
    flat export has no created date (row order as time).
    """
    files = dict(files or {})
    leaks_by_table: dict[str, dict[str, LeakHint]] = {}
    for hint in export.leak_hints:
        leaks_by_table.setdefault(hint.table, {})[hint.column] = hint
    lines = _Lines()
    n_tables = len(export.tables)
    lines.comment(
        0,
        f"Draft mapping written by `leadscore inspect` from {source} "
        f"({n_tables} table{'s' if n_tables > 1 else ''}). Edit it, then check it with "
        "`leadscore validate --mapping FILE`.",
    )
    lines.comment(
        0,
        "Every guess says what to check. Custom fields are at_extraction (not features) until "
        "you declare when they are known: at_creation, or as_of with a field history.",
    )
    for note in export.notes:
        lines.comment(0, f"NOTE: {note}")
    lines.key(0, "version", 1)
    lines.key(0, "layout", export.layout)
    if export.layout == "flat":
        table = export.roles["leads"]
        lines.key(0, "from", files.get(table, table))
    lines.key(
        0,
        "time_zone",
        "UTC",
        "zone of timestamps written without one: set your CRM's zone if it is not UTC",
    )
    if (separator not in (None, ",")) or (encoding not in (None, "utf-8", "utf8")):
        lines.key(0, "csv")
        if separator not in (None, ","):
            lines.key(1, "separator", _Raw(json.dumps(separator)), "detected in the files")
        if encoding not in (None, "utf-8", "utf8"):
            lines.key(1, "encoding", encoding)
    order = ("leads", "accounts", "events", "opportunities", "field_history")
    draft_names: dict[str, dict[str, str]] = {}  # role -> export column -> its draft name
    for role in order:
        name = export.roles.get(role)
        if name is None:
            if role in ("leads", "opportunities") and export.layout == "relational":
                lines.blank()
                lines.comment(0, f"{role}: no table of the export looks like it: add it here")
            continue
        profile = export.tables[name]
        leaks = leaks_by_table.get(name, {})
        matched = _match_columns(role, profile, export)
        excluded = {column for column, _ in matched.values()}
        lines.blank()
        if export.layout == "flat":
            _write_flat_outcome(lines, export, profile, matched, excluded)
        lines.key(
            0,
            role,
            comment=f"{profile.rows:,} rows, {len(profile.columns)} columns"
            + (f"; looks like {role} by {profile.role_reason}" if profile.role_reason else ""),
        )
        if export.layout == "relational":
            lines.key(1, "from", name, f"file {files[name]}" if name in files else None)
        if role == "field_history":
            _write_columns(lines, role, profile, matched, export, leaks, 1)
            _write_history_maps(lines, profile, matched, draft_names)
            continue
        _missing_keys(lines, role, profile, matched, export)
        type_column = matched["event_type"][0] if "event_type" in matched else None
        types = (
            declared_event_types(profile, type_column, max_types=max_event_types)
            if role == "events"
            else None
        )
        _write_columns(lines, role, profile, matched, export, leaks, 1, types)
        if role == "events":
            _write_event_types(lines, profile, type_column, types)
        rest = [c.name for c in profile.columns if c.name not in excluded]
        keys = custom_keys(rest, taken=set(ct.TABLES[role].column_names) | set(matched))
        draft_names[role] = {column: target for target, (column, _) in matched.items()} | keys
        _write_custom(
            lines,
            profile,
            keys,
            leaks,
            1,
            text_min_length=text_min_length,
            unique_share=unique_share,
        )
    flat_leads = export.tables[export.roles["leads"]] if export.layout == "flat" else None
    if flat_leads is not None and "created_at" not in _match_columns("leads", flat_leads, export):
        lines.blank()
        lines.key(
            0,
            "pseudo_time",
            comment="no created date found: row order is used as time, valid only if the export "
            "is in time order (every report will say pseudo-time, not dates)",
        )
        lines.key(1, "start", pseudo_time_start)
        lines.key(1, "step_minutes", float(pseudo_time_step_minutes))
    return lines.text()


def _missing_keys(lines, role, profile, matched, export) -> None:
    """Comments for the keys a table needs but the draft could not fill."""
    needed = {
        "leads": ("lead_id", "created_at"),
        "events": ("lead_id", "timestamp", "event_type"),
        "opportunities": ("lead_id", "closed_at", "is_won"),
    }.get(role, ())
    for target in needed:
        if target in matched:
            continue
        if target == "created_at" and export.layout == "flat":
            continue  # pseudo_time says it
        if target == "lead_id" and role == "leads":
            why = "no unique, never-empty, id-like column found"
        else:
            why = f"no column looks like {target}"
        lines.comment(1, f"{why}: name one under columns ({target}: <column>)")


def _write_flat_outcome(lines, export, profile, matched, excluded) -> None:
    """The ``outcome:`` block of a flat mapping (its columns are then not custom fields)."""
    outcome = export.outcome
    if outcome is None:
        lines.comment(
            0,
            "no outcome column found: name it (outcome: from: <column>, won: [<value>]) or run "
            "`leadscore inspect EXPORT --outcome COLUMN`",
        )
        lines.key(0, "outcome")
        lines.key(1, "from", "CHANGE_ME")
        lines.key(1, "won", _Raw("['CHANGE_ME']"))
        return
    col = profile.column(outcome.column)
    lines.key(0, "outcome", comment=f"{outcome.reason}; {describe_column(col)}")
    lines.key(1, "from", outcome.column)
    lines.key(1, "won", _Raw(yaml_flow_list(outcome.won)))
    if outcome.lost:
        lines.key(1, "lost", _Raw(yaml_flow_list(outcome.lost)))
    excluded.add(outcome.column)
    closed = next(
        (
            c
            for c in profile.columns
            if c.type == "date"
            and normalise_name(c.name) in ALIASES["opportunities"]["closed_at"]
            and c.name not in excluded
        ),
        None,
    )
    if closed is not None:
        if closed.date_format in (None, ISO_8601) and not closed.date_ambiguous:
            lines.key(1, "closed_at", closed.name, describe_column(closed))
        else:
            lines.key(1, "closed_at", comment=describe_column(closed))
            lines.key(2, "from", closed.name)
            _date_entry(lines, 2, closed)
        excluded.add(closed.name)
