"""What a mapping means for the contract: the effective tables, how to read each column, and
which fields are features.

- **Tables**: the contract's tables plus each table's custom fields as columns (number ->
  float, category -> open category, boolean -> bool, text and personal -> text).
- **Knowledge**: with a mapping, a field that can change in the CRM (BANT answers, seniority,
  country, firmographics, any custom field) is ``at_extraction`` (never a feature) unless the
  mapping declares otherwise or field history gives its value as of each snapshot: nothing
  enters a model on a guess. Without a mapping (the native contract) the contract's own
  declarations hold. :attr:`EffectiveContract.declared` lists the fields whose knowledge rests on
  a declaration rather than on history, so reports can say which features depend on one.
- **Read rules**: per column, the timestamp format and time zone and the value map, applied by
  validation where it types the column, so every value is counted once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from features import contract as ct
from features.behavioral import ActivityType, BehavioralParams, EventValue
from features.contract import Column, Kind, Knowledge, Table
from features.mapping.apply import export_table_names
from features.mapping.file import (
    ColumnMap,
    CustomField,
    Mapping,
    MappingError,
    RelationalMapping,
    TableMap,
)
from features.mapping.normalise import normalise_key

#: The mapping's words for knowledge times.
KNOWLEDGE_WORDS = {
    "at_creation": Knowledge.AT_CREATION,
    "as_of": Knowledge.AS_OF_SNAPSHOT,
    "at_extraction": Knowledge.AT_EXTRACTION,
    "after_outcome": Knowledge.AFTER_OUTCOME,
}
#: The contract kind of each custom-field kind.
CUSTOM_KINDS = {
    "number": Kind.FLOAT,
    "category": Kind.CATEGORY,
    "boolean": Kind.BOOL,
    "text": Kind.TEXT,
    "personal": Kind.TEXT,
}
#: Contract fields a CRM user can edit after creation (per table). Keys, the creation time and
#: dated rows (events, opportunities) are facts of their own time and stay as declared.
MUTABLE = {
    "leads": (
        "source", "email_domain_kind", "job_title", "seniority", "department", "country",
        "account_id", "budget", "authority", "need", "timeline",
    ),
    "accounts": ("industry", "employee_count", "annual_revenue", "country", "region"),
}  # fmt: skip


@dataclass(frozen=True)
class ReadRule:
    """How validation reads one column of the export (from the mapping)."""

    timestamp_format: str | None = None
    time_zone: str | None = None
    #: (normalised export value, contract value or None) pairs, in the file's order
    values: tuple[tuple[str, object], ...] = ()
    unmapped: str = "keep"


@dataclass(frozen=True)
class CustomFeature:
    """A custom field and how it reads as a feature."""

    table: str
    name: str
    kind: str  # the mapping's kind: number, category, boolean, text, personal
    knowledge: Knowledge
    label: str

    @property
    def is_feature(self) -> bool:
        """A number, category or boolean known at the snapshot is a feature; text and personal
        data never are."""
        return (
            self.kind in ("number", "category", "boolean")
            and self.knowledge in ct.FEATURE_SAFE_KNOWLEDGE
        )


@dataclass(frozen=True)
class EffectiveContract:
    """The contract as one mapping fills it."""

    tables: dict[str, Table]
    read_rules: dict[tuple[str, str], ReadRule] = field(default_factory=dict)
    custom: tuple[CustomFeature, ...] = ()
    #: The CRM's own activity types (None: the built-in ones) and the numbers events carry.
    activity_types: tuple[ActivityType, ...] | None = None
    event_values: tuple[EventValue, ...] = ()
    #: (table, column) read as of each snapshot from field history
    history: frozenset[tuple[str, str]] = frozenset()
    #: (table, column) whose knowledge is a declaration of the mapping, not history
    declared: frozenset[tuple[str, str]] = frozenset()
    #: contract table -> the export table it is read from
    export_tables: dict[str, str] = field(default_factory=dict)
    #: the mapping file this contract comes from (None: the native contract)
    mapping: Mapping | None = None

    @property
    def flat(self) -> bool:
        """True for one table, one row per lead (no accounts, events or field history)."""
        return self.mapping is not None and self.mapping.layout == "flat"

    def knowledge(self, table: str, column: str) -> Knowledge:
        """When ``table.column`` is known under this mapping; KeyError naming both if unknown."""
        try:
            return self.tables[table].by_name[column].knowledge
        except KeyError:
            raise KeyError(f"{table}.{column} is not in the CRM data contract") from None

    def behavioral(self, params: BehavioralParams) -> BehavioralParams:
        """``params`` (params.yaml's windows and half-life) with this CRM's activity types."""
        if self.activity_types is None and not self.event_values:
            return params
        return replace(
            params,
            activity_types=self.activity_types or params.activity_types,
            event_values=self.event_values,
        )


NATIVE = EffectiveContract(tables={**ct.TABLES, **ct.EXTRA_TABLES})


def with_export_history(contract: EffectiveContract, history) -> EffectiveContract:
    """The native contract reading from ``history`` (the export's ``field_history`` table, raw
    or validated) every field a rep can edit that it names, as of each snapshot.

    A native export's history names the contract's own tables and columns (``entity`` leads or
    accounts, ``field`` budget, industry, ...); each field it names is never read from its
    current value. Fields it does not name keep the contract's declaration. Under a mapping,
    the mapping's ``field_history.fields`` decides: ``contract`` is returned unchanged, as it is
    when there is no history.
    """
    if contract.mapping is not None or history is None or not len(history):
        return contract
    if not {"entity", "field"} <= set(history.columns):
        return contract  # validation names the missing column
    # The distinct (entity, field) pairs: a group-by factorises both columns in C (a history can
    # hold millions of rows; drop_duplicates on text was 8x slower).
    pairs = history.groupby(["entity", "field"], observed=True, sort=False).size().index
    named = {(normalise_key(str(t)), normalise_key(str(c))) for t, c in pairs}
    tracked = {(t, c) for t, columns in MUTABLE.items() for c in columns if (t, c) in named}
    if tracked <= contract.history:
        return contract
    tables = {
        name: replace(
            table,
            columns=tuple(
                replace(c, knowledge=Knowledge.AS_OF_SNAPSHOT) if (name, c.name) in tracked else c
                for c in table.columns
            ),
        )
        for name, table in contract.tables.items()
    }
    # The history's field names are read as the contract's own, spelled as the export spells
    # them: a rule only when some name is spelled otherwise (else every row would be reported as
    # "mapped" by a value map the user never wrote).
    rules = dict(contract.read_rules)
    if any(str(c) != normalise_key(str(c)) for _, c in pairs):
        rules[("field_history", "field")] = ReadRule(
            values=tuple((normalise_key(c), c) for t, columns in MUTABLE.items() for c in columns)
        )
    return replace(
        contract, tables=tables, read_rules=rules, history=contract.history | frozenset(tracked)
    )


def _rule(cmap: ColumnMap | CustomField | None, time_zone: str, timestamp: bool) -> ReadRule | None:
    """The read rule of a mapped column (None: nothing to do beyond the contract's typing)."""
    if cmap is None:
        return ReadRule(time_zone=time_zone) if timestamp and time_zone != "UTC" else None
    values = tuple((normalise_key(k), v) for k, v in cmap.values.items())
    keys = [k for k, _ in values]
    clash = sorted({k for k in keys if keys.count(k) > 1})
    if clash:
        raise MappingError(
            f"mapping: value map keys {clash[0]!r} collide once normalised (case, spaces, - and _ "
            "are not told apart): keep one"
        )
    fmt = getattr(cmap, "format", None)
    zone = (getattr(cmap, "time_zone", None) or time_zone) if timestamp else None
    if not values and fmt is None and zone in (None, "UTC") and cmap.unmapped == "keep":
        return None
    return ReadRule(fmt, zone, values, cmap.unmapped)


def _check_as_of(table: str, name: str, word: str | None, history: set) -> None:
    """``as_of`` on a lead or account field means "read from its history": it needs some."""
    if word == "as_of" and table in MUTABLE and (table, name) not in history:
        raise MappingError(
            f"mapping: {table}.{name}: knowledge as_of needs the field's history (list it under "
            "field_history.fields); without history declare at_creation or at_extraction"
        )


def _knowledge(
    table: str, column: Column, cmap: ColumnMap | None, history: set[tuple[str, str]]
) -> tuple[Knowledge, bool]:
    """(knowledge, rests on a declaration) of a contract column under a mapping."""
    _check_as_of(table, column.name, cmap.knowledge if cmap else None, history)
    if (table, column.name) in history:
        return Knowledge.AS_OF_SNAPSHOT, False
    if cmap is not None and cmap.knowledge is not None:
        declared = KNOWLEDGE_WORDS[cmap.knowledge]
        return declared, declared in ct.FEATURE_SAFE_KNOWLEDGE
    if column.name in MUTABLE.get(table, ()):
        return Knowledge.AT_EXTRACTION, False
    return column.knowledge, False


def _custom_column(table: str, key: str, spec: CustomField, history: set) -> Column:
    _check_as_of(table, key, spec.knowledge, history)
    knowledge = (
        Knowledge.PERSONAL
        if spec.kind == "personal"
        else Knowledge.AS_OF_SNAPSHOT
        if (table, key) in history
        else KNOWLEDGE_WORDS[spec.knowledge]
    )
    return Column(key, CUSTOM_KINDS[spec.kind], knowledge, f"Custom field ({spec.kind}).")


def _history_fields(mapping: RelationalMapping) -> set[tuple[str, str]]:
    """(table, column) pairs field history gives values for."""
    hmap = mapping.field_history
    if hmap is None:
        return set()
    tables = set(hmap.entities.values())
    found = set()
    for target in hmap.fields.values():
        for table in tables:
            tmap = mapping.leads if table == "leads" else mapping.accounts
            columns = set(ct.TABLES[table].column_names) | set(tmap.custom if tmap else ())
            if target in columns:
                found.add((table, target))
    unknown = [t for t in hmap.fields.values() if not any(t == c for _, c in found)]
    if unknown:
        raise MappingError(
            f"mapping: field_history.fields maps to {unknown[0]!r}, which is neither a contract "
            "column nor a custom field of leads or accounts"
        )
    return found


def effective_contract(mapping: Mapping | None) -> EffectiveContract:
    """The contract filled by ``mapping`` (``None``: the native contract, unchanged)."""
    if mapping is None:
        return NATIVE
    flat = not isinstance(mapping, RelationalMapping)
    history = set() if flat else _history_fields(mapping)
    tables: dict[str, Table] = {}
    rules: dict[tuple[str, str], ReadRule] = {}
    custom: list[CustomFeature] = []
    declared: set[tuple[str, str]] = set()
    for name, base in {**ct.TABLES, **ct.EXTRA_TABLES}.items():
        tmap: TableMap | None = mapping.leads if name == "leads" else getattr(mapping, name, None)
        unknown = [c for c in (tmap.columns if tmap else {}) if c not in base.by_name]
        if unknown:
            raise MappingError(
                f"mapping: {name}.columns names {unknown[0]!r}, which is not a contract column "
                f"of {name} (declare it under {name}.custom instead)"
            )
        columns = []
        for col in base.columns:
            cmap = tmap.column_map(col.name) if tmap else None
            knowledge, rests = _knowledge(name, col, cmap, history)
            columns.append(replace(col, knowledge=knowledge))
            if rests:
                declared.add((name, col.name))
            rule = _rule(cmap, mapping.time_zone, col.kind == Kind.TIMESTAMP)
            if rule is not None:
                rules[(name, col.name)] = rule
        for key, spec in (getattr(tmap, "custom", None) or {}).items():
            column = _custom_column(name, key, spec, history)
            columns.append(column)
            rule = _rule(spec, mapping.time_zone, timestamp=False)
            if rule is not None:
                rules[(name, key)] = rule
            if (name, key) not in history and column.knowledge in ct.FEATURE_SAFE_KNOWLEDGE:
                declared.add((name, key))
            label = spec.label or f"{key.replace('_', ' ').capitalize()}: {{value}}"
            custom.append(CustomFeature(name, key, spec.kind, column.knowledge, label))
        tables[name] = replace(base, columns=tuple(columns))
    hmap = None if flat else mapping.field_history
    if hmap is not None:  # whose field changed, and which of our columns it is
        rules[("field_history", "entity")] = ReadRule(
            values=tuple((normalise_key(k), v) for k, v in hmap.entities.items())
        )
        if hmap.fields:
            rules[("field_history", "field")] = ReadRule(
                values=tuple((normalise_key(k), v) for k, v in hmap.fields.items())
            )
    events = getattr(mapping, "events", None)
    values = (
        ()
        if events is None
        else tuple(EventValue(key, spec.label) for key, spec in events.values.items())
    )
    types = None
    if events is not None and events.types is not None:
        types = tuple(
            ActivityType(key, t.count, t.last, t.never, t.weight, t.actor, tuple(t.values))
            for key, t in events.types.items()
        )
    if types is not None:  # the declared activity types are the event_type vocabulary
        base = tables["events"]
        vocabulary = tuple(t.name for t in types)
        tables["events"] = replace(
            base,
            columns=tuple(
                replace(c, vocabulary=vocabulary) if c.name == "event_type" else c
                for c in base.columns
            ),
        )
    if values:  # the numbers events carry: columns of the events table, dated like their row
        base = tables["events"]
        extra = tuple(
            Column(v.name, Kind.FLOAT, Knowledge.AS_OF_SNAPSHOT, "Event value.") for v in values
        )
        tables["events"] = replace(base, columns=base.columns + extra)
    return EffectiveContract(
        tables=tables,
        read_rules=rules,
        custom=tuple(custom),
        activity_types=types,
        event_values=values,
        history=frozenset(history),
        declared=frozenset(declared),
        export_tables={"flat": mapping.from_} if flat else export_table_names(mapping),
        mapping=mapping,
    )
