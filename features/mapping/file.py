"""The mapping file: how a CRM export becomes the leadscore contract, written in YAML, no code.

Two layouts (``layout:``):

- ``relational``: one export table per contract table (leads/contacts, accounts/companies,
  events/engagements, opportunities/deals, field history). Per table: which export table it is
  (``from``), which export column fills each contract column (``columns``), and the CRM's own
  custom fields (``custom``), each with a kind and a knowledge time.
- ``flat``: one table, one row per lead with an outcome column, as most "export to CSV" buttons
  give. The leads block is the same; ``outcome`` says which column holds the result.

Everything here is the *file*: parsed and checked for shape (:func:`load_mapping`, which raises a
one-line :class:`MappingError` naming the file and the key at fault). What it means for the
contract is :mod:`features.mapping.contract`; how it is applied to data is
:mod:`features.mapping.apply`. docs/mapping.md is the user's guide to this file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: When a mapped value is known (the mapping's words; ``as_of`` = dated, or read from history).
KNOWLEDGE = ("at_creation", "as_of", "at_extraction", "after_outcome")
#: Kinds of a custom field. ``text`` and ``personal`` are never features.
KINDS = ("number", "category", "boolean", "text", "personal")
#: Contract tables a relational mapping may fill (field_history is the optional sixth).
MAPPED_TABLES = ("leads", "accounts", "events", "opportunities")
#: A leadscore name (custom field, event type, event value): lower-case words joined by "_".
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MappingError(ValueError):
    """The mapping file is missing, unreadable or wrong: one line naming the file and the key."""


class _Strict(BaseModel):
    # Unknown keys are refused: a typo ("knowlege:") must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


Value = str | int | float | bool | None


class ColumnMap(_Strict):
    """Where one contract column comes from, and how its values are read."""

    from_: str = Field(alias="from", description="The export's column.")
    format: str | None = Field(
        None,
        description="strftime format of a timestamp column, or epoch_s / epoch_ms for numbers "
        "of seconds / milliseconds since 1970 (default: ISO 8601).",
    )
    time_zone: str | None = Field(
        None, description="Zone of timestamps written without one (default: the file's)."
    )
    values: dict[str, Value] = Field(
        default_factory=dict,
        description="Export value -> contract value (null: missing), compared after normalising.",
    )
    unmapped: Literal["keep", "missing"] = Field(
        "keep", description="Values the map does not name: kept as they are, or set to missing."
    )
    knowledge: Literal[KNOWLEDGE] | None = Field(  # type: ignore[valid-type]
        None, description="When the value is known (default: the contract's, see docs)."
    )


class CustomField(_Strict):
    """A field of the CRM beyond the contract: a feature if its kind and knowledge allow."""

    from_: str | None = Field(
        None, alias="from", description="The export's column (default: the key)."
    )
    kind: Literal[KINDS]  # type: ignore[valid-type]
    knowledge: Literal[KNOWLEDGE] = "at_extraction"  # type: ignore[valid-type]
    label: str | None = Field(
        None, description="How a reason says it, with {value}: 'Lifecycle stage: {value}'."
    )
    values: dict[str, Value] = Field(default_factory=dict)
    unmapped: Literal["keep", "missing"] = "keep"

    @field_validator("label")
    @classmethod
    def _label_has_value(cls, label: str | None) -> str | None:
        if label is not None and "{value}" not in label:
            raise ValueError("a label must contain {value}, e.g. 'Lifecycle stage: {value}'")
        return label


ColumnEntry = Annotated[str | ColumnMap, Field(union_mode="left_to_right")]


class TableMap(_Strict):
    """One export table and the contract table it fills."""

    from_: str | None = Field(None, alias="from", description="The export's table or file name.")
    columns: dict[str, ColumnEntry] = Field(default_factory=dict)
    custom: dict[str, CustomField] = Field(default_factory=dict)

    def column_map(self, name: str) -> ColumnMap | None:
        """The mapping of contract column ``name`` (a bare string is the export column)."""
        entry = self.columns.get(name)
        return ColumnMap(**{"from": entry}) if isinstance(entry, str) else entry


class EventValue(_Strict):
    """A number carried by an event (call duration, pages viewed): summed over windows."""

    from_: str | None = Field(
        None, alias="from", description="The export's column (default: the key)."
    )
    label: str = Field(description="How a reason says the sum, with {value}.")


class EventType(_Strict):
    """One of the CRM's own activity types, after the event_type value map."""

    count: str = Field(
        description="'Had {value} [call|calls] with sales' ([one|many]: by the value)"
    )
    last: str = Field(description="'Last call {value} [day|days] ago'")
    never: str = Field(description="'No call with sales yet'")
    weight: float = Field(1.0, ge=0, description="Engagement points per event, before decay.")
    actor: Literal["lead", "company"] = Field(
        "lead", description="lead: the lead's action (engagement); company: ours (history only)."
    )
    values: tuple[str, ...] = Field((), description="Event values summed for this type.")

    @model_validator(mode="after")
    def _phrases_have_value(self) -> EventType:
        for key in ("count", "last"):
            if "{value}" not in getattr(self, key):
                raise ValueError(f"{key} must contain {{value}}")
        return self


class EventsMap(TableMap):
    """The activities table: columns, the activity types it holds, numbers on its rows."""

    types: dict[str, EventType] | None = Field(
        None, description="The activity types to build features from (default: the built-in 12)."
    )
    values: dict[str, EventValue] = Field(default_factory=dict)


class OpportunitiesMap(TableMap):
    """The deals table."""

    expected_close_date: bool = Field(
        False,
        description="True when the export fills the close date of open deals with an expected "
        "close date (HubSpot and Salesforce do): ignored, and counted, while the deal is open.",
    )


class FieldHistoryMap(_Strict):
    """Field history (HubSpot property history, Salesforce field history tracking)."""

    from_: str | None = Field(None, alias="from")
    columns: dict[str, ColumnEntry] = Field(default_factory=dict)
    entities: dict[str, Literal["leads", "accounts"]] = Field(
        default_factory=lambda: {"leads": "leads", "accounts": "accounts"},
        description="Export entity value -> the table whose records it changes.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Export field name -> the column it changes (contract or custom name).",
    )

    def column_map(self, name: str) -> ColumnMap | None:
        """The mapping of history column ``name`` (a bare string is the export column)."""
        entry = self.columns.get(name)
        return ColumnMap(**{"from": entry}) if isinstance(entry, str) else entry


class Outcome(_Strict):
    """The outcome column of a flat export."""

    from_: str = Field(alias="from")
    won: tuple[str, ...]
    lost: tuple[str, ...] = ()
    closed_at: ColumnEntry | None = Field(
        None, description="The outcome's date, if the export has one."
    )


class PseudoTime(_Strict):
    """Row order as time, for exports without a date (every report says so)."""

    start: str = "2000-01-01"
    step_minutes: float = Field(60.0, gt=0)


class CsvOptions(_Strict):
    """How CSV files of the export are read."""

    separator: str = ","
    encoding: str | None = None


class _Mapping(_Strict):
    version: Literal[1] = 1
    time_zone: str = "UTC"
    csv: CsvOptions = CsvOptions()
    leads: TableMap = TableMap()


class RelationalMapping(_Mapping):
    """A relational export: one export table per contract table."""

    layout: Literal["relational"] = "relational"
    accounts: TableMap | None = None
    events: EventsMap | None = None
    opportunities: OpportunitiesMap = OpportunitiesMap()
    field_history: FieldHistoryMap | None = None


class FlatMapping(_Mapping):
    """One table, one row per lead, with an outcome column."""

    layout: Literal["flat"]
    from_: str = Field(alias="from", description="The export's file or table.")
    outcome: Outcome
    pseudo_time: PseudoTime | None = None


Mapping = RelationalMapping | FlatMapping


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a mapping file must not say one thing twice."""


def _no_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the file's key path: ``leads.custom.stage.kind``."""
    parts = [str(p) for p in loc if p not in ("RelationalMapping", "FlatMapping")]
    # Union branches show up as type names in the path: drop them.
    parts = [p for p in parts if not p[:1].isupper() and not p.startswith(("str", "function"))]
    return ".".join(p.removesuffix("_") for p in parts) or "(top level)"


def _first_error(err: ValidationError) -> str:
    """The most useful pydantic error, as one line: the deepest location wins."""
    errors = sorted(err.errors(), key=lambda e: -len(e["loc"]))
    first = errors[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error":
        message = f"{message}, got {first['input']!r}"
    elif first["type"] == "extra_forbidden":
        message = "unknown key (check its spelling in docs/mapping.md)"
    return f"{_where(first['loc'])}: {message}"


def parse_mapping(data: Any, name: str = "mapping") -> Mapping:
    """Check the structure of a mapping (already parsed YAML) and return it as a ``Mapping``."""
    if not isinstance(data, dict):
        raise MappingError(f"{name}: must be a YAML mapping of keys (layout, leads, ...)")
    model = FlatMapping if data.get("layout") == "flat" else RelationalMapping
    try:
        mapping = model.model_validate(data)
    except ValidationError as err:
        raise MappingError(f"{name}: {_first_error(err)}") from None
    check_names(mapping, name)
    return mapping


def check_names(mapping: Mapping, name: str) -> None:
    """Cross-key rules: leadscore names well formed, no export column mapped twice in a table,
    event types' values declared."""
    tables: dict[str, TableMap | FieldHistoryMap] = {"leads": mapping.leads}
    if isinstance(mapping, RelationalMapping):
        tables |= {
            t: getattr(mapping, t)
            for t in ("accounts", "events", "opportunities", "field_history")
            if getattr(mapping, t) is not None
        }
    for table, tmap in tables.items():
        used: dict[str, str] = {}
        targets = dict(tmap.columns)
        if isinstance(tmap, EventsMap):
            targets |= {key: value.from_ or key for key, value in tmap.values.items()}
        if isinstance(tmap, TableMap):
            targets |= {key: field.from_ or key for key, field in tmap.custom.items()}
            for key in tmap.custom:
                if not NAME.match(key):
                    raise MappingError(
                        f"{name}: {table}.custom.{key}: a custom field's name must be lower-case "
                        "letters, digits and _ (it becomes a column and a feature name)"
                    )
                if key in tmap.columns:
                    raise MappingError(
                        f"{name}: {table}.{key} is both a contract column and a custom field"
                    )
        for target, entry in targets.items():
            source = entry if isinstance(entry, str) else entry.from_
            if source in used:
                raise MappingError(
                    f"{name}: {table}: export column {source!r} is mapped twice "
                    f"({used[source]} and {target}); map it once, or copy it in the export"
                )
            used[source] = target
    events = getattr(mapping, "events", None)
    if events is not None:
        for key in list(events.types or {}) + list(events.values):
            if not NAME.match(key):
                raise MappingError(
                    f"{name}: events.{key}: an event type or value name must be lower-case "
                    "letters, digits and _"
                )
        for type_name, spec in (events.types or {}).items():
            unknown = [v for v in spec.values if v not in events.values]
            if unknown:
                raise MappingError(
                    f"{name}: events.types.{type_name}.values names {unknown[0]!r}, which "
                    "events.values does not declare"
                )


def load_mapping(path: str | os.PathLike) -> Mapping:
    """Read and check a mapping file; any problem is a one-line ``MappingError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} does not exist: check the path") from None
    except IsADirectoryError:
        raise MappingError(f"mapping file {path} is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise MappingError(f"mapping file {path} is not UTF-8 text") from None
    except OSError as err:
        raise MappingError(f"mapping file {path} cannot be read ({err.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise MappingError(f"mapping file {path} is not valid YAML{where}: {problem}") from None
    return parse_mapping(data, str(path))
