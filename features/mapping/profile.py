"""Profile a CRM export: what ``leadscore inspect`` tells a new user about it.

Frames in, results out: nothing here reads or writes a file (``pipelines/inspect_export.py``
does), nor writes the draft mapping (:mod:`features.mapping.draft` does, from this profile).
The steps, each a public function:

1. :func:`profile_column` / :func:`profile_table`: per column an inferred type (integer, number,
   boolean, date with its format, text), missing values, distinct values, the most frequent
   values, the range; per table the candidate id and created-time columns and the contract table
   it most likely is (:func:`guess_role`).
2. :func:`find_join_keys`: in a relational export, the columns whose values are (mostly) ids of
   another table.
3. :func:`outcome_candidates` and :func:`converted_leads`: which column says a lead converted, and
   the 0/1 outcome per lead it gives (in a relational export, through the deals table).
4. :func:`leak_hints`: columns filled mostly for converted leads (or mostly for the others), and
   columns that alone separate the two too well: probably recorded after the outcome.
5. :func:`profile_export` runs 1-4; :func:`profile_report`, :func:`profile_summary` and
   :func:`profile_markdown` say what it found, for tools and for a reader.

Counts, missing values and ranges come from the whole column (vectorised); the type and date-format
guesses and the value patterns (e-mail, phone) from a sample of ``sample_size`` non-missing values,
so a 1M-row export is profiled in seconds. Values of personal columns never appear in a report,
a comment or a log line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute

from features.readers import ids_as_text

log = logging.getLogger(__name__)

#: Inferred column types, from the most to the least specific.
TYPES = ("empty", "boolean", "integer", "number", "date", "text")
#: The date format of ISO 8601 text (the mapping's default: no ``format:`` needed).
ISO_8601 = "ISO 8601"
#: Formats tried on a date-like column besides ISO 8601; a day-first format and its month-first
#: twin that both read every sampled value make the column *ambiguous*, never a guess.
DATE_FORMATS = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M %p",
    "%d/%m/%Y %I:%M %p",
    "%d/%m/%y",
    "%m/%d/%y",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%d-%b-%Y",
    "%d %b %Y",
    "%b %d, %Y",
)
_ISO_RE = (
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)
#: Spellings of true / false (compared lower-cased and trimmed).
BOOL_WORDS = {
    "true": True, "t": True, "yes": True, "y": True, "1": True, "1.0": True,
    "false": False, "f": False, "no": False, "n": False, "0": False, "0.0": False,
}  # fmt: skip
#: Normalised outcome values that mean won / lost (lower case, letters and digits only).
WON_WORDS = frozenset(
    "won closedwon win yes y true t 1 converted customer success successful subscribed signed "
    "purchased sold paid".split()
)
LOST_WORDS = frozenset(
    "lost closedlost no n false f 0 notconverted failure failed fail unsuccessful rejected "
    "disqualified unqualified churned declined".split()
)
#: Words that say "outcome" on their own (a yes/no column needs one of these names to count).
_STRONG_WON = frozenset({"won", "closedwon", "converted", "customer"})
#: Column names (normalised) that hold an outcome, and name parts that suggest one.
OUTCOME_NAMES = frozenset(
    "y target label outcome converted isconverted conversion won iswon result status stage "
    "dealstage stagename leadstatus hsleadstatus lifecyclestage subscribed closedwon".split()
)
_OUTCOME_PARTS = ("converted", "conversion", "won", "outcome", "stage", "status", "result")
#: Endings of personal column names (normalised): ``work_email``, ``mobilephone``, ``billing_address``;
#: ``hs_email_optout`` is a flag, not personal data.
PERSONAL_NAME_ENDINGS = (
    "email",
    "emailaddress",
    "phone",
    "phonenumber",
    "mobile",
    "mobilenumber",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "address",
    "address1",
    "address2",
    "street",
    "zip",
    "zipcode",
    "postalcode",
    "postcode",
    "birthdate",
    "dateofbirth",
    "birthday",
    "ssn",
    "passport",
    "linkedin",
    "linkedinurl",
)
_EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE_RE = r"^\+?[\d\s().\-/]{7,24}$"
_MISSING_LEVEL = "\x00missing"

#: Export table name parts -> the contract table it fills (field history is checked first:
#: "contact_property_history" is history, not contacts).
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "field_history": (
        "history",
        "histories",
        "fieldhistory",
        "propertyhistory",
        "changes",
        "audit",
    ),
    "leads": ("lead", "leads", "contact", "contacts", "person", "people", "prospect", "prospects"),
    "accounts": (
        "account",
        "accounts",
        "company",
        "companies",
        "organization",
        "organizations",
        "organisation",
        "organisations",
    ),
    "events": (
        "event",
        "events",
        "engagement",
        "engagements",
        "activity",
        "activities",
        "touchpoint",
        "touchpoints",
        "interaction",
        "interactions",
        "task",
        "tasks",
        "call",
        "calls",
        "email",
        "emails",
        "meeting",
        "meetings",
    ),
    "opportunities": ("opportunity", "opportunities", "opp", "opps", "deal", "deals"),
}
#: Column names (normalised) typical of each contract table.
ROLE_COLUMNS: dict[str, frozenset[str]] = {
    "leads": frozenset(
        "email firstname lastname phone jobtitle lifecyclestage leadsource hsanalyticssource "
        "leadstatus hsleadstatus title".split()
    ),
    "accounts": frozenset(
        "industry numberofemployees employees annualrevenue domain website companyname "
        "employeecount".split()
    ),
    "events": frozenset(
        "type eventtype engagementtype activitytype hstimestamp timestamp occurredat "
        "activitydate".split()
    ),
    "opportunities": frozenset(
        "dealstage stagename amount closedate iswon dealname pipeline closedat".split()
    ),
    "field_history": frozenset(
        "property field propertyname fieldname value newvalue oldvalue changedat".split()
    ),
}

#: Contract column -> export column names (normalised) it is filled from, best first, per table.
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "leads": {
        "lead_id": (
            "leadid",
            "contactid",
            "hsobjectid",
            "id",
            "recordid",
            "vid",
            "personid",
            "prospectid",
            "leadnumber",
        ),
        "created_at": (
            "createdat",
            "createdate",
            "createddate",
            "created",
            "creationdate",
            "datecreated",
            "createdon",
            "createdtime",
            "signupdate",
        ),
        "account_id": (
            "accountid",
            "associatedcompanyid",
            "companyid",
            "hscompanyid",
            "organizationid",
            "organisationid",
        ),
        "source": ("source", "leadsource", "hsanalyticssource", "originalsource", "leadorigin"),
        "email": ("email", "emailaddress", "hsemail"),
        "first_name": ("firstname", "givenname", "forename"),
        "last_name": ("lastname", "surname", "familyname"),
        "phone": ("phone", "phonenumber", "mobilephone", "mobile", "telephone"),
        "country": ("country", "countrycode", "countryname"),
        "job_title": ("jobtitle", "title"),
        "seniority": ("seniority", "hsseniority"),
        "department": ("department", "jobfunction"),
        "budget": ("budget",),
        "authority": ("authority",),
        "need": ("need",),
        "timeline": ("timeline", "timeframe", "purchasetimeline"),
        "unsubscribed": (
            "unsubscribed",
            "hsemailoptout",
            "emailoptout",
            "optout",
            "hasoptedoutofemail",
            "donotemail",
        ),
        "consent": ("consent", "gdprconsent"),
        "email_domain_kind": ("emaildomainkind",),
    },
    "accounts": {
        "account_id": ("accountid", "companyid", "hsobjectid", "id", "organizationid", "recordid"),
        "industry": ("industry", "sector"),
        "employee_count": (
            "employeecount",
            "numberofemployees",
            "employees",
            "numemployees",
            "headcount",
        ),
        "annual_revenue": ("annualrevenue", "revenue"),
        "country": ("country", "billingcountry", "countrycode"),
        "region": ("region",),
        "is_customer": ("iscustomer",),
    },
    "events": {
        "lead_id": ("leadid", "contactid", "associatedcontactid", "hscontactid", "whoid", "vid"),
        "timestamp": (
            "timestamp",
            "hstimestamp",
            "occurredat",
            "activitydate",
            "eventdate",
            "eventtime",
            "date",
            "time",
            "createdat",
            "createdate",
            "createddate",
        ),
        "event_type": (
            "eventtype",
            "type",
            "activitytype",
            "engagementtype",
            "hsengagementtype",
            "hsactivitytype",
            "eventname",
            "action",
            "activity",
        ),
    },
    "opportunities": {
        "opportunity_id": ("opportunityid", "dealid", "hsobjectid", "id", "recordid", "oppid"),
        "lead_id": (
            "leadid",
            "contactid",
            "associatedcontactid",
            "hscontactid",
            "primarycontactid",
            "convertedcontactid",
        ),
        "created_at": ("createdat", "createdate", "createddate", "created", "creationdate"),
        "closed_at": ("closedat", "closedate", "closeddate", "dateclosed", "closedon"),
        "is_won": ("iswon", "won", "dealstage", "stagename", "stage", "status", "outcome"),
        "amount": ("amount", "dealamount", "dealvalue", "value"),
    },
    "field_history": {
        "entity": ("entity", "objecttype", "object", "entitytype", "sobjecttype"),
        "entity_id": ("entityid", "objectid", "recordid", "parentid", "hsobjectid", "id"),
        "field": ("field", "property", "propertyname", "fieldname"),
        "value": ("value", "newvalue", "propertyvalue"),
        "changed_at": (
            "changedat",
            "timestamp",
            "changedate",
            "createddate",
            "createdat",
            "updatedat",
        ),
    },
}
#: Contract table -> its own id column.
OWN_ID = {"leads": "lead_id", "accounts": "account_id", "opportunities": "opportunity_id"}


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DateFormat:
    """The date format of a column's sample: one format, or several that read it (ambiguous)."""

    #: ``ISO 8601``, a strftime format, or None (not a date, or ambiguous)
    format: str | None
    #: every format that read all sampled values (two or more: day and month cannot be told apart)
    candidates: tuple[str, ...] = ()

    @property
    def ambiguous(self) -> bool:
        """True when day and month cannot be told apart in the sample."""
        return self.format is None and len(self.candidates) > 1

    @property
    def reading(self) -> str | None:
        """The format its dates are read with: the format, or the first candidate if ambiguous."""
        return self.candidates[0] if self.ambiguous else self.format

    @property
    def is_date(self) -> bool:
        """True when the sample reads as dates (ambiguous or not)."""
        return self.format is not None or bool(self.candidates)


@dataclass(frozen=True)
class ColumnProfile:
    """What one column of an export holds."""

    name: str
    type: str
    rows: int
    missing: int
    distinct: int
    #: most frequent values and their counts (empty for a personal column)
    top: tuple[tuple[str, int], ...] = ()
    minimum: Any = None
    maximum: Any = None
    date_format: str | None = None
    #: formats that all read the sample when the date format is ambiguous
    date_candidates: tuple[str, ...] = ()
    #: values of the whole column the inferred type does not read (the sample read them all)
    unparsed: int = 0
    #: why the column looks personal (None: it does not)
    personal: str | None = None
    mean_length: float | None = None
    #: integers written with leading zeros ("0012"): a code, not a number
    leading_zeros: bool = False
    #: long, mostly unique text (notes, descriptions): its values are not shown anywhere
    free_text: bool = False

    @property
    def filled(self) -> int:
        """Rows with a value."""
        return self.rows - self.missing

    @property
    def null_rate(self) -> float:
        """Share of rows without a value."""
        return self.missing / self.rows if self.rows else 0.0

    @property
    def unique(self) -> bool:
        """Every value appears once and no row is empty."""
        return self.missing == 0 and self.rows > 0 and self.distinct == self.rows

    @property
    def date_ambiguous(self) -> bool:
        """A date column whose day and month cannot be told apart."""
        return self.type == "date" and self.date_format is None


@dataclass(frozen=True)
class TableProfile:
    """What one export table holds, and what it most likely is."""

    name: str
    rows: int
    columns: tuple[ColumnProfile, ...]
    #: the contract table it most likely fills (``leads``, ..., ``field_history``), or None
    role: str | None = None
    role_reason: str = ""
    #: unique, never-empty columns with an id-like name, best first
    id_columns: tuple[str, ...] = ()
    #: date columns named like a creation time, best first
    created_columns: tuple[str, ...] = ()

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


@dataclass(frozen=True)
class JoinKey:
    """A column of one table whose values are ids of another table."""

    table: str
    column: str
    to_table: str
    to_column: str
    #: share of the column's distinct values found among the other table's ids
    match_rate: float


@dataclass(frozen=True)
class OutcomeCandidate:
    """A column that may say whether a lead converted, with its won and lost values."""

    table: str
    column: str
    won: tuple[str, ...]
    lost: tuple[str, ...]
    #: other values (open deals, intermediate stages), neither won nor lost
    other: tuple[str, ...]
    score: int
    reason: str


@dataclass(frozen=True)
class LeakHint:
    """A column that probably became known after the outcome, and why."""

    table: str
    column: str
    reason: str
    filled_converted: float
    filled_others: float
    #: single-column ROC AUC against the outcome (either direction), if computed
    auc: float | None = None


@dataclass(frozen=True)
class ExportProfile:
    """The whole export: tables, keys, the outcome, leak hints."""

    layout: Literal["flat", "relational"]
    tables: dict[str, TableProfile]
    #: contract table -> the export table that fills it
    roles: dict[str, str]
    join_keys: tuple[JoinKey, ...] = ()
    outcome_candidates: tuple[OutcomeCandidate, ...] = ()
    #: the outcome used for leak hints (detected or given)
    outcome: OutcomeCandidate | None = None
    #: how the per-lead outcome was built, in words
    outcome_source: str = ""
    converted: int | None = None
    leak_hints: tuple[LeakHint, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def role_of(self, table: str) -> str | None:
        """The contract table export table ``table`` fills (None: it fills none)."""
        return next((role for role, name in self.roles.items() if name == table), None)


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------
def normalise_name(name: object) -> str:
    """A column or table name compared loosely: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def name_tokens(name: object) -> list[str]:
    """The words of a name: ``hs_analyticsSource`` -> ``['hs', 'analytics', 'source']``."""
    return [t.lower() for t in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", str(name))]


_ID_WORDS = frozenset({"id", "ids", "key", "uuid", "guid", "vid"})
_ID_ENDING = re.compile(
    r"(object|company|contact|deal|account|lead|owner|user|record|person|organi[sz]ation|"
    r"engagement|opportunity|activity|event|customer|prospect)(ids?|number|no|key)$"
)


def is_id_name(name: str) -> bool:
    """``id``, ``hs_object_id``, ``AccountId``, ``associatedcompanyid``, ``Lead Number``: not
    ``paid``."""
    norm = normalise_name(name)
    tokens = name_tokens(name)
    return (
        norm in _ID_WORDS
        or (bool(tokens) and tokens[-1] in _ID_WORDS)
        or bool(_ID_ENDING.search(norm))
    )


def _is_key_name(name: str) -> bool:
    """A name a foreign key could have: ``associatedcompanyid``, ``contact_id``, ``AccountId``."""
    return is_id_name(name) or "associated" in normalise_name(name)


# ------------------------------------------------------------------------------------------------
# Columns
# ------------------------------------------------------------------------------------------------
def _swap_day_month(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def detect_date_format(
    sample: pd.Series, formats: Sequence[str] = DATE_FORMATS, probe: int = 50
) -> DateFormat:
    """The date format that reads every value of ``sample`` (text, no missing values).

    ISO 8601 first (with or without time, ``T`` or space, zone or not); then each of
    ``formats`` (first tried on ``probe`` values, then on the whole sample). If a day-first
    format and its month-first twin both read everything (every day is 12 or less), the result
    is ambiguous: ``format`` None and both ``candidates``, never a guess. Not a date: no format
    and no candidates.
    """
    text = sample.astype(str).str.strip()
    if text.empty or not text.str.contains(r"\d", regex=True).all():
        return DateFormat(None)
    if text.str.fullmatch(_ISO_RE).all():
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        if parsed.notna().all():
            return DateFormat(ISO_8601, (ISO_8601,))
    head = text.iloc[:probe]
    found = []
    for fmt in formats:
        if pd.to_datetime(head, format=fmt, errors="coerce").isna().any():
            continue
        if pd.to_datetime(text, format=fmt, errors="coerce").notna().all():
            found.append(fmt)
    if not found:
        return DateFormat(None)
    twins = [f for f in found if f != _swap_day_month(f) and _swap_day_month(f) in found]
    if twins:
        return DateFormat(None, tuple(twins))
    return DateFormat(found[0], tuple(found))


def _draw(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` of the positions ``0..n-1`` (``size`` < ``n``), drawn with ``seed``, in order."""
    # Generator.choice draws without a full permutation: pandas' sample shuffles all 1M rows.
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _sample(values: pd.Series, size: int, seed: int) -> pd.Series:
    """At most ``size`` non-missing values, drawn with ``seed``, in the column's order."""
    values = values.dropna()
    if len(values) <= size:
        return values
    return values.iloc[_draw(len(values), size, seed)]


def _personal_by_name(name: str, role: str | None) -> str | None:
    norm = normalise_name(name)
    ending = next((e for e in PERSONAL_NAME_ENDINGS if norm.endswith(e)), None)
    if ending is not None:
        return f"its name says {ending}"
    if norm in {"name", "contactname", "leadname"} and role in (None, "leads"):
        return "its name says name"
    return None


def _personal_by_values(text: pd.Series, threshold: float) -> str | None:
    if text.empty:
        return None
    if text.str.fullmatch(_EMAIL_RE).mean() >= threshold:
        return "its values look like e-mail addresses"
    phone = text.str.fullmatch(_PHONE_RE) & (text.str.count(r"\d") >= 7)
    if phone.mean() >= threshold:
        return "its values look like phone numbers"
    return None


def _infer_text_type(sample: pd.Series) -> tuple[str, DateFormat | None, bool]:
    """(type, date format, leading zeros) of a sample of text values."""
    text = sample.astype(str).str.strip()
    lower = text.str.lower()
    if lower.isin(list(BOOL_WORDS)).all() and lower.map(BOOL_WORDS).nunique() <= 2:
        return "boolean", None, False
    if text.str.fullmatch(r"[+-]?\d+").all():
        zeros = bool(text.str.fullmatch(r"[+-]?0\d+").any())
        return ("text" if zeros else "integer"), None, zeros
    if pd.to_numeric(text, errors="coerce").notna().all():
        return "number", None, False
    found = detect_date_format(text)
    if found.is_date:
        return "date", found, False
    return "text", None, False


def _top(counts: pd.Series, n: int) -> tuple[tuple[str, int], ...]:
    head = counts.iloc[:n]
    return tuple(zip(map(str, head.index), map(int, head.to_numpy()), strict=True))


def _scalar_out(value: Any) -> Any:
    """A min or max as plain JSON-able Python."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def trimmed_text(values: pd.Series) -> pd.Series:
    """``values`` as trimmed text, missing where a value is missing."""
    return values.astype("str").str.strip().where(values.notna())


def as_numbers(values: pd.Series) -> pd.Series:
    """``values`` as float64, missing where a value does not read as a number.

    Arrow's cast first (a 1M-row text column in milliseconds); pandas' slower, value-by-value
    reading only when some value does not read (the cast refuses the whole column then).
    """
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    try:
        arr = pa.array(values, from_pandas=True)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            numbers = pa_compute.cast(pa_compute.utf8_trim_whitespace(arr), pa.float64())
            return pd.Series(
                numbers.to_numpy(zero_copy_only=False), index=values.index, name=values.name
            )
    except (pa.ArrowException, TypeError, ValueError):
        pass
    return pd.to_numeric(trimmed_text(values), errors="coerce").astype("float64")


def parse_dates(values: pd.Series, date_format: str | None) -> pd.Series:
    """``values`` as timestamps with a format :func:`detect_date_format` found (missing where not)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    text = trimmed_text(values)
    if date_format in (None, ISO_8601):
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        return parsed.dt.tz_localize(None)
    return pd.to_datetime(text, format=date_format, errors="coerce")


def profile_column(
    values: pd.Series,
    *,
    role: str | None = None,
    sample_size: int = 10_000,
    top_n: int = 20,
    personal_share: float = 0.5,
    unique_share: float = 0.5,
    text_min_length: float = 30.0,
    seed: int = 0,
) -> ColumnProfile:
    """Profile one column: type, missing, distinct and top values, range, personal data.

    ``sample_size`` non-missing values (drawn with ``seed``) decide the type and the date format
    and are matched against e-mail and phone patterns (``personal_share`` of them matching makes
    the column personal); counts, the range and the values the type does not read come from the
    whole column. ``top_n`` most frequent values are kept (none for a personal column, nor for
    free text: more than ``unique_share`` of its values distinct and ``text_min_length``
    characters long on average, as notes are, which may hold anything). ``role``
    is the contract table of the column's table (a ``name`` column is personal in leads only).
    """
    name = str(values.name)
    rows = len(values)
    missing = int(values.isna().sum())
    try:
        counts = values.value_counts(dropna=True)
    except TypeError:  # lists or dicts in a Parquet column: profiled as their text
        values = values.astype("str").where(values.notna())
        counts = values.value_counts(dropna=True)
    distinct = len(counts)
    sample = _sample(values, sample_size, seed)
    dtype = values.dtype
    date: DateFormat | None = None
    zeros = False
    if missing == rows:
        kind = "empty"
    elif pd.api.types.is_bool_dtype(dtype):
        kind = "boolean"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        kind, date = "date", DateFormat(ISO_8601, (ISO_8601,))
    elif pd.api.types.is_numeric_dtype(dtype):
        if set(counts.index.tolist()) <= {0, 1}:
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(dtype) or bool(
            (sample == np.floor(sample)).all() if len(sample) else True
        ):
            kind = "integer"
        else:
            kind = "number"
    else:
        kind, date, zeros = _infer_text_type(sample)
    # Patterns on text only: an integer id of 7 digits is not a phone number.
    text_sample = sample.astype(str).str.strip() if kind == "text" else None
    personal = _personal_by_name(name, role)
    if personal is None and text_sample is not None:
        personal = _personal_by_values(text_sample, personal_share)
    minimum = maximum = None
    unparsed = 0
    filled = values.dropna()
    if kind in ("integer", "number"):
        numbers = as_numbers(filled)
        unparsed = int(numbers.isna().sum())
        minimum, maximum = numbers.min(), numbers.max()
    elif kind == "date":
        # An ambiguous column's range is under its first reading (and flagged as such).
        stamps = parse_dates(filled, date.reading if date else None)
        unparsed = int(stamps.isna().sum())
        minimum, maximum = stamps.min(), stamps.max()
    elif kind == "boolean" and not pd.api.types.is_numeric_dtype(dtype):
        unparsed = int((~filled.astype(str).str.strip().str.lower().isin(list(BOOL_WORDS))).sum())
    mean_length = (
        float(sample.astype(str).str.len().mean()) if kind == "text" and len(sample) else None
    )
    free_text = (
        kind == "text"
        and distinct > unique_share * (rows - missing)
        and (mean_length or 0) >= text_min_length
    )
    redact = personal is not None
    return ColumnProfile(
        name=name,
        type=kind,
        rows=rows,
        missing=missing,
        distinct=distinct,
        top=() if redact or free_text else _top(counts, top_n),
        minimum=None if redact else _scalar_out(minimum),
        maximum=None if redact else _scalar_out(maximum),
        date_format=date.format if date else None,
        date_candidates=date.candidates if date and date.ambiguous else (),
        unparsed=unparsed,
        personal=personal,
        mean_length=mean_length,
        leading_zeros=zeros,
        free_text=free_text,
    )


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
def guess_role(name: str, columns: Iterable[str]) -> tuple[str | None, str]:
    """The contract table an export table most likely fills, and why (None if nothing fits).

    The table's name counts most (``contacts`` -> leads, ``deals`` -> opportunities, a name with
    ``history`` -> field_history); typical columns (``dealstage``, ``numberofemployees``) break
    ties and decide when the name says nothing.
    """
    tokens = set(name_tokens(name)) | {normalise_name(name)}
    norms = {normalise_name(c) for c in columns}
    best, best_score, why = None, 0, ""
    for role, words in ROLE_NAMES.items():
        by_name = bool(tokens & set(words))
        typical = sorted(norms & ROLE_COLUMNS[role])
        # History is a name-first role: "contact_property_history" is not the contacts table.
        score = (4 if role == "field_history" else 3) * by_name + min(len(typical), 3)
        if score > best_score:
            best, best_score = role, score
            parts = ["its name" if by_name else ""] + (
                [f"columns {', '.join(typical[:3])}"] if typical else []
            )
            why = " and ".join(p for p in parts if p)
    return best, why


def _alias_rank(name: str, aliases: Sequence[str]) -> int:
    """Where ``name`` stands among ``aliases`` (normalised), after them all if it is not one."""
    norm = normalise_name(name)
    return aliases.index(norm) if norm in aliases else len(aliases)


def profile_table(
    frame: pd.DataFrame,
    name: str,
    *,
    role: str | None = None,
    sample_size: int = 10_000,
    top_n: int = 20,
    personal_share: float = 0.5,
    unique_share: float = 0.5,
    text_min_length: float = 30.0,
    seed: int = 0,
) -> TableProfile:
    """Profile every column of one export table and find its id and created-time candidates.

    ``role`` is the contract table it fills (default: :func:`guess_role`). Id candidates are
    unique, never-empty integer or text columns with an id-like name (``hs_object_id``, ``Id``,
    ``lead_id``), the role's own id names first; created candidates are date columns named like a
    creation time (``createdate``, ``CreatedDate``, ``created_at``). Other arguments: see
    :func:`profile_column`.
    """
    why = ""
    if role is None:
        role, why = guess_role(name, frame.columns)
    columns = tuple(
        profile_column(
            frame[c],
            role=role,
            sample_size=sample_size,
            top_n=top_n,
            personal_share=personal_share,
            unique_share=unique_share,
            text_min_length=text_min_length,
            seed=seed,
        )
        for c in frame.columns
    )
    key = OWN_ID.get(role or "", "lead_id")
    own_ids = ALIASES.get(role or "leads", {}).get(key, ())
    ids = [
        c
        for c in columns
        if c.unique and c.type in ("integer", "text") and is_id_name(c.name) and not c.personal
    ]
    ids.sort(key=lambda c: _alias_rank(c.name, own_ids))
    created_names = ALIASES["leads"]["created_at"]
    created = [c for c in columns if c.type == "date" and normalise_name(c.name) in created_names]
    created.sort(key=lambda c: _alias_rank(c.name, created_names))
    return TableProfile(
        name=name,
        rows=len(frame),
        columns=columns,
        role=role,
        role_reason=why,
        id_columns=tuple(c.name for c in ids),
        created_columns=tuple(c.name for c in created),
    )


# ------------------------------------------------------------------------------------------------
# Keys between tables
# ------------------------------------------------------------------------------------------------
def _as_id_text(values: pd.Series) -> pd.Series:
    """Ids compared as trimmed text, integers without ``.0`` (the readers' id rule)."""
    return ids_as_text(values.dropna()).astype(str).str.strip()


def find_join_keys(
    frames: Mapping[str, pd.DataFrame],
    profiles: Mapping[str, TableProfile],
    *,
    min_match: float = 0.9,
) -> list[JoinKey]:
    """Columns of one table whose distinct values are mostly ids of another table.

    For each table with an id candidate, every other table's integer or text column with a
    key-like name (ending in id, or ``associated...``) is checked: at least ``min_match`` of its
    distinct values must be found among those ids. Best match first, one key per (table, column).
    """
    ids = {
        name: set(_as_id_text(frames[name][p.id_columns[0]]))
        for name, p in profiles.items()
        if p.id_columns
    }
    found: dict[tuple[str, str], JoinKey] = {}
    for name, profile in profiles.items():
        own = profile.id_columns[:1]
        for col in profile.columns:
            if col.name in own or col.type not in ("integer", "text") or col.personal:
                continue
            if col.filled == 0 or not _is_key_name(col.name):
                continue
            values = pd.Series(_as_id_text(frames[name][col.name]).unique())
            for other, other_ids in ids.items():
                if other == name:
                    continue
                rate = float(values.isin(other_ids).mean())
                best = found.get((name, col.name))
                if rate >= min_match and (best is None or rate > best.match_rate):
                    found[(name, col.name)] = JoinKey(
                        name, col.name, other, profiles[other].id_columns[0], rate
                    )
    return sorted(found.values(), key=lambda k: (-k.match_rate, k.table, k.column))


# ------------------------------------------------------------------------------------------------
# The outcome
# ------------------------------------------------------------------------------------------------
def outcome_value(value: object) -> bool | None:
    """True for a won-like value (``closedwon``, ``yes``, ``Converted``), False for a lost-like
    one (``Closed Lost``, ``no``), None for anything else (open stages)."""
    norm = normalise_name(value)
    if norm in WON_WORDS or norm.endswith("won"):
        return True
    if norm in LOST_WORDS or norm.endswith("lost"):
        return False
    return None


def outcome_candidates(profile: TableProfile, *, max_levels: int = 20) -> list[OutcomeCandidate]:
    """Columns of one table that may hold the outcome, best first.

    A candidate has at most ``max_levels`` distinct values (all among its top values), at least
    one won-like value (:func:`outcome_value`), and either an outcome-like name (``y``,
    ``converted``, ``is_won``, ``dealstage``, ``status``, ``lifecyclestage``...) or values that say
    so on their own (``won``, ``closedwon``, ``converted``, with a lost-like value beside them):
    a plain yes/no column with another name is a flag, not the outcome.
    """
    out = []
    for col in profile.columns:
        if col.personal or col.type in ("empty", "date") or col.distinct > max_levels:
            continue
        if col.distinct > len(col.top) or col.distinct < 2 and col.missing == 0:
            continue
        values = [v for v, _ in col.top]
        verdict = {v: outcome_value(v) for v in values}
        won = tuple(v for v in values if verdict[v] is True)
        lost = tuple(v for v in values if verdict[v] is False)
        other = tuple(v for v in values if verdict[v] is None)
        norm = normalise_name(col.name)
        named = norm in OUTCOME_NAMES or any(p in norm for p in _OUTCOME_PARTS)
        strong = any(
            normalise_name(v) in _STRONG_WON or normalise_name(v).endswith("won") for v in won
        )
        if not won or not (named or (strong and lost)):
            continue
        score = (3 if norm in OUTCOME_NAMES else 2 if named else 0) + (2 if lost else 0)
        score += 1 if not other else 0
        score += 1 if profile.role == "opportunities" else 0
        why = (
            f"{'its name and ' if named else ''}values "
            f"{', '.join(won[:3])} (won){' / ' + ', '.join(lost[:3]) + ' (lost)' if lost else ''}"
        )
        out.append(OutcomeCandidate(profile.name, col.name, won, lost, other, score, why))
    return sorted(out, key=lambda c: -c.score)


def outcome_labels(values: pd.Series, won: Iterable[str]) -> pd.Series:
    """1 where ``values`` (compared as trimmed text) is one of ``won``, else 0 (lost, open or
    missing: "the others")."""
    won_text = {str(w).strip() for w in won}
    return trimmed_text(values).isin(won_text).astype("int8")


def converted_leads(
    leads: pd.Series,
    opportunities: pd.DataFrame,
    *,
    lead_column: str,
    outcome: OutcomeCandidate,
) -> pd.Series:
    """1 for each lead id in ``leads`` with a won opportunity, else 0 (aligned with ``leads``).

    ``opportunities[lead_column]`` holds the lead id; ``outcome`` names the opportunity column
    and its won values. Ids are compared as text.
    """
    won = outcome_labels(opportunities[outcome.column], outcome.won).astype(bool)
    won_ids = set(_as_id_text(opportunities.loc[won, lead_column]))
    lead_ids = ids_text_aligned(leads)
    return lead_ids.isin(won_ids).astype("int8")


def ids_text_aligned(values: pd.Series) -> pd.Series:
    """:func:`_as_id_text` keeping every row (missing stays missing), aligned with ``values``."""
    text = ids_as_text(values).astype("str").str.strip()
    return text.where(values.notna())


# ------------------------------------------------------------------------------------------------
# Leak hints
# ------------------------------------------------------------------------------------------------
def column_auc(values: pd.Series, converted: pd.Series, *, min_rows: int = 10) -> float | None:
    """ROC AUC of one numeric column against a 0/1 outcome, in either direction (>= 0.5).

    Rows without a value are left out; None when fewer than ``min_rows`` converted or other
    rows have one. Computed from ranks (Mann-Whitney), ties averaged: no Python loop. Not
    sklearn's ``roc_auc_score``: the same AUC (to the last bit or two), but it refuses infinite
    values (text such as ``inf`` or ``1e400`` reads as one) and takes about three times as long.
    """
    keep = values.notna() & converted.notna()
    x = values[keep].astype("float64")
    y = converted[keep].astype(bool).to_numpy()
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives < min_rows or negatives < min_rows:
        return None
    ranks = x.rank(method="average").to_numpy()
    auc = (ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return float(max(auc, 1 - auc))


def category_auc(
    values: pd.Series,
    converted: pd.Series,
    *,
    min_rows: int = 10,
    max_levels: int = 50,
    min_level_rows: float = 5.0,
) -> float | None:
    """ROC AUC of the converted share of each value (missing is a value too) against the outcome.

    A category column that alone sorts converted leads from the others (``lifecyclestage`` =
    ``customer``) scores near 1. None for more than ``max_levels`` distinct values, or fewer than
    ``min_level_rows`` rows per value on average: the converted share of a value seen once or
    twice is the outcome itself, not evidence. Too few rows of a class: see :func:`column_auc`.
    """
    levels = values.astype("object").where(values.notna(), _MISSING_LEVEL)
    n_levels = levels.nunique()
    if n_levels > max_levels or len(levels) < min_level_rows * n_levels:
        return None
    share = converted.astype("float64").groupby(levels).transform("mean")
    return column_auc(share, converted, min_rows=min_rows)


def _numeric(values: pd.Series) -> pd.Series | None:
    """``values`` as numbers if every value reads as one, else None."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return None
    numbers = as_numbers(values)
    return numbers if numbers.notna().sum() == values.notna().sum() else None


def leak_hints(
    frame: pd.DataFrame,
    converted: pd.Series,
    *,
    table: str = "leads",
    exclude: Iterable[str] = (),
    numeric: Iterable[str] | None = None,
    fill_ratio: float = 3.0,
    fill_difference: float = 0.5,
    min_fill_gap: float = 0.05,
    auc_threshold: float = 0.8,
    max_levels: int = 50,
    min_rows: int = 10,
    auc_rows: int = 200_000,
    seed: int = 0,
    outcome_name: str = "converted",
) -> list[LeakHint]:
    """Columns of ``frame`` that were probably recorded after the outcome.

    ``converted`` is the 0/1 outcome per row of ``frame``. A column is flagged when

    - its fill rate among converted rows and among the others differs by more than
      ``fill_difference``, or one is more than ``fill_ratio`` times the other (and they differ by
      at least ``min_fill_gap``, so 0.3% against 0.1% is not a hint): a field a rep fills once the
      deal is won (or lost: a lost reason);
    - or, alone, it separates converted rows from the others with ROC AUC above
      ``auc_threshold`` (either direction): numeric columns by their values, category columns of
      at most ``max_levels`` values by each value's converted share. 0.8 is low for a leak and
      high for an honest single field: in the bank-marketing export the call ``duration`` (known
      only once the call ended, with its outcome) scores 0.82 and the best honest column 0.75.

    ``numeric`` names the numeric columns (default: those whose every value reads as a number);
    ``exclude`` the columns not to judge (the outcome, ids); ``min_rows`` is the fewest rows of
    each class an AUC needs; AUCs are computed on ``auc_rows`` rows at most (drawn with
    ``seed``; fill rates use every row). ``outcome_name`` is how reasons call a converted row.
    """
    if len(converted) != len(frame):
        raise ValueError(f"converted has {len(converted)} rows, the frame {len(frame)}")
    # One outcome per row of the frame, in order, whatever the two indexes say.
    converted = pd.Series(np.asarray(converted, dtype="int8"), index=frame.index)
    skip = set(exclude)
    columns = [c for c in frame.columns if c not in skip]
    n_pos = int(converted.sum())
    n_neg = len(converted) - n_pos
    if n_pos < min_rows or n_neg < min_rows or not columns:
        return []
    filled = frame[columns].notna().groupby(converted.to_numpy()).mean()
    # AUCs on a sample of rows: its error at 200,000 rows (about 0.002) is far below what a
    # threshold can tell apart, and ranking 1M rows per column is what would make inspect slow.
    rows = np.arange(len(converted))
    if len(rows) > auc_rows:
        rows = _draw(len(rows), auc_rows, seed)
    sampled = converted.iloc[rows]
    pos_rates, neg_rates = filled.loc[1], filled.loc[0]
    numeric = None if numeric is None else set(numeric)
    hints = []
    for column in columns:
        pos, neg = float(pos_rates[column]), float(neg_rates[column])
        gap = abs(pos - neg)
        ratio = max(pos, neg) / min(pos, neg) if min(pos, neg) > 0 else np.inf
        values = frame[column]
        reason = None
        auc = None
        if gap > fill_difference or (ratio > fill_ratio and gap >= min_fill_gap):
            reason = (
                f"filled for {pos:.0%} of {outcome_name} rows and {neg:.0%} of the others: "
                "probably recorded after the outcome"
            )
        if numeric is None:
            numbers = _numeric(values.iloc[rows])
        else:
            numbers = as_numbers(values.iloc[rows]) if column in numeric else None
        if numbers is not None and numbers.notna().any():
            auc = column_auc(numbers, sampled, min_rows=min_rows)
            what = "its values"
        else:
            auc = category_auc(values.iloc[rows], sampled, min_rows=min_rows, max_levels=max_levels)
            what = "its values' converted shares"
        if reason is None and auc is not None and auc > auc_threshold:
            reason = (
                f"alone, {what} separate {outcome_name} rows from the others with AUC {auc:.2f}: "
                "probably known only after (or because of) the outcome"
            )
        if reason is not None:
            hints.append(LeakHint(table, str(column), reason, pos, neg, auc))
    return hints


# ------------------------------------------------------------------------------------------------
# The whole export
# ------------------------------------------------------------------------------------------------
def _assign_roles(profiles: Mapping[str, TableProfile], layout: str) -> tuple[dict, list[str]]:
    """Contract table -> export table (the best-scoring one per role), and notes on the rest."""
    if layout == "flat":
        only = next(iter(profiles))
        return {"leads": only}, []
    by_role: dict[str, list[str]] = {}
    for name, p in profiles.items():
        if p.role is not None:
            by_role.setdefault(p.role, []).append(name)
    roles, notes = {}, []
    for role, names in by_role.items():
        names.sort(key=lambda n: -profiles[n].rows)
        roles[role] = names[0]
        for extra in names[1:]:
            notes.append(
                f"{extra} also looks like {role}, which reads {names[0]}: a mapping reads one "
                f"table per contract table, so combine them into one file to use both"
            )
    if "leads" not in roles:
        rest = [n for n in profiles if n not in roles.values()]
        if rest:
            pick = max(rest, key=lambda n: profiles[n].rows)
            roles["leads"] = pick
            notes.append(f"no table is named like leads or contacts: {pick} is a guess")
    for name in profiles:
        if name not in roles.values():
            notes.append(f"{name} fills no contract table: it is left out of the draft")
    return roles, notes


def _pick_outcome(
    profiles: Mapping[str, TableProfile],
    candidates: Sequence[OutcomeCandidate],
    outcome: str | None,
    won: Sequence[str] | None,
    roles: Mapping[str, str],
) -> OutcomeCandidate | None:
    """The outcome to use: the one given (``column`` or ``table.column``), else the best found
    (in a relational export, in the opportunities table first)."""
    if outcome is not None:
        table, _, column = outcome.rpartition(".")
        if not table or table not in profiles:
            table, column = roles.get("leads", next(iter(profiles))), outcome
            if column not in {c.name for c in profiles[table].columns}:
                found = [t for t, p in profiles.items() if column in {c.name for c in p.columns}]
                if not found:
                    raise ValueError(
                        f"outcome column {outcome!r} is in no table of the export: give "
                        "COLUMN or TABLE.COLUMN as the export spells it"
                    )
                table = found[0]
        col = profiles[table].column(column)
        match = next((c for c in candidates if (c.table, c.column) == (table, column)), None)
        values = [v for v, _ in col.top]
        won_values = tuple(won) if won else (match.won if match else ())
        if not won_values:
            won_values = tuple(v for v in values if outcome_value(v) is True)
        if not won_values:
            raise ValueError(
                f"outcome column {outcome!r}: no value looks like a win "
                f"(values: {', '.join(values[:8])}): give the won value(s) too"
            )
        lost = tuple(v for v in values if v not in won_values and outcome_value(v) is False)
        other = tuple(v for v in values if v not in won_values and v not in lost)
        return OutcomeCandidate(table, column, won_values, lost, other, 99, "given")
    if not candidates:
        return None
    opportunities = roles.get("opportunities")
    preferred = [c for c in candidates if c.table == opportunities]
    return (preferred or list(candidates))[0]


def profile_export(
    frames: Mapping[str, pd.DataFrame],
    *,
    layout: Literal["auto", "flat", "relational"] = "auto",
    outcome: str | None = None,
    won: Sequence[str] | None = None,
    sample_size: int = 10_000,
    top_n: int = 20,
    seed: int = 0,
    personal_share: float = 0.5,
    unique_share: float = 0.5,
    text_min_length: float = 30.0,
    min_join_match: float = 0.9,
    fill_ratio: float = 3.0,
    fill_difference: float = 0.5,
    min_fill_gap: float = 0.05,
    auc_threshold: float = 0.8,
    min_rows: int = 10,
) -> ExportProfile:
    """Profile an export (export table name -> frame): tables, keys, outcome, leak hints.

    ``layout`` ``auto`` is flat for one table, relational for more. ``outcome`` names the outcome
    column (``y``, or ``deals.dealstage``; default: the best candidate) and ``won`` its won values
    (default: the won-looking ones). In a flat export leak hints judge the table's columns against
    that outcome; in a relational one the leads' columns (and the accounts', through the leads'
    account key) against "has a won opportunity" when the opportunities table reaches the leads
    through a join key, else against an outcome column of the leads table itself.
    Thresholds: see :func:`profile_column`, :func:`find_join_keys` and :func:`leak_hints`.
    """
    if not frames:
        raise ValueError("the export holds no table")
    if layout == "auto":
        layout = "flat" if len(frames) == 1 else "relational"
    if layout == "flat" and len(frames) != 1:
        raise ValueError(
            f"a flat export is one table; this one has {len(frames)} "
            f"({', '.join(frames)}): inspect one file, or use the relational layout"
        )
    options = {
        "sample_size": sample_size,
        "top_n": top_n,
        "seed": seed,
        "personal_share": personal_share,
        "unique_share": unique_share,
        "text_min_length": text_min_length,
    }
    profiles = {}
    for name, frame in frames.items():
        role = "leads" if layout == "flat" else None
        profiles[name] = profile_table(frame, name, role=role, **options)
        log.info("profiled %s: %d rows, %d columns", name, *frame.shape)
    roles, notes = _assign_roles(profiles, layout)
    joins = find_join_keys(frames, profiles, min_match=min_join_match) if layout != "flat" else []
    candidates = [c for name in roles.values() for c in outcome_candidates(profiles[name])]
    candidates.sort(key=lambda c: -c.score)
    chosen = _pick_outcome(profiles, candidates, outcome, won, roles)
    leads_name = roles["leads"]
    leads_frame, leads_profile = frames[leads_name], profiles[leads_name]
    converted = None
    source = ""
    opp_name = roles.get("opportunities")
    if chosen is not None and chosen.table == opp_name and chosen.table != leads_name:
        key = next((k for k in joins if k.table == opp_name and k.to_table == leads_name), None)
        if key is not None and leads_profile.id_columns:
            converted = converted_leads(
                leads_frame[leads_profile.id_columns[0]],
                frames[opp_name],
                lead_column=key.column,
                outcome=chosen,
            )
            source = (
                f"a {opp_name} row with {chosen.column} in ({', '.join(chosen.won)}), "
                f"joined by {opp_name}.{key.column}"
            )
        else:
            notes.append(
                f"no column of {opp_name} holds {leads_name} ids: the outcome per lead, which "
                "leak hints need, comes from the leads table if it has an outcome column"
            )
            own = [c for c in candidates if c.table == leads_name]
            chosen = own[0] if own and outcome is None else chosen
    if chosen is not None and chosen.table == leads_name:
        converted = outcome_labels(leads_frame[chosen.column], chosen.won)
        source = f"{leads_name}.{chosen.column} in ({', '.join(chosen.won)})"
    hints: list[LeakHint] = []
    if converted is not None:
        leak_options = {
            "fill_ratio": fill_ratio,
            "fill_difference": fill_difference,
            "min_fill_gap": min_fill_gap,
            "auc_threshold": auc_threshold,
            "min_rows": min_rows,
            "seed": seed,
            "outcome_name": "converted",
        }
        keys = {k.column for k in joins if k.table == leads_name}
        exclude = set(leads_profile.id_columns) | keys
        if chosen.table == leads_name:
            exclude.add(chosen.column)
        hints += leak_hints(
            leads_frame,
            converted,
            table=leads_name,
            exclude=exclude,
            numeric=_numeric_columns(leads_profile),
            **leak_options,
        )
        acc_name = roles.get("accounts")
        account_key = next(
            (k for k in joins if k.table == leads_name and k.to_table == acc_name), None
        )
        if account_key is not None:
            # An account converted if any of its leads did.
            by_account = converted.groupby(ids_text_aligned(leads_frame[account_key.column])).max()
            acc_ids = ids_text_aligned(frames[acc_name][account_key.to_column])
            acc_converted = acc_ids.map(by_account).fillna(0).astype("int8")
            acc_profile = profiles[acc_name]
            hints += leak_hints(
                frames[acc_name],
                acc_converted,
                table=acc_name,
                exclude=set(acc_profile.id_columns),
                numeric=_numeric_columns(acc_profile),
                **leak_options,
            )
        n_converted = int(converted.sum())
    else:
        n_converted = None
    return ExportProfile(
        layout=layout,
        tables=profiles,
        roles=roles,
        join_keys=tuple(joins),
        outcome_candidates=tuple(candidates),
        outcome=chosen,
        outcome_source=source,
        converted=n_converted,
        leak_hints=tuple(hints),
        notes=tuple(notes),
    )


def _numeric_columns(profile: TableProfile) -> list[str]:
    return [c.name for c in profile.columns if c.type in ("integer", "number")]


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------
def one_line(text: str) -> str:
    """``text`` as one line of a comment or a table cell (line breaks and control characters
    removed)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def shorten(value: str, width: int = 30) -> str:
    """:func:`one_line` of ``value``, cut to ``width`` characters with ``...``."""
    value = one_line(value)
    return value if len(value) <= width else value[: width - 3] + "..."


def profile_report(export: ExportProfile) -> dict[str, Any]:
    """The whole profile as JSON-able data (personal columns show no values)."""
    return json.loads(json.dumps(asdict(export), default=str))


def profile_summary(export: ExportProfile) -> dict[str, Any]:
    """The short summary: tables, rows, columns, candidate ids / created / outcome, leak hints."""
    return {
        "layout": export.layout,
        "tables": {
            name: {"rows": p.rows, "columns": len(p.columns), "role": p.role}
            for name, p in export.tables.items()
        },
        "roles": dict(export.roles),
        "id_columns": {n: list(p.id_columns) for n, p in export.tables.items()},
        "created_columns": {n: list(p.created_columns) for n, p in export.tables.items()},
        "outcome_columns": [f"{c.table}.{c.column}" for c in export.outcome_candidates],
        "outcome": None
        if export.outcome is None
        else {
            "table": export.outcome.table,
            "column": export.outcome.column,
            "won": list(export.outcome.won),
            "lost": list(export.outcome.lost),
            "per_lead": export.outcome_source,
            "converted": export.converted,
        },
        "join_keys": [
            f"{k.table}.{k.column} -> {k.to_table}.{k.to_column} ({k.match_rate:.0%})"
            for k in export.join_keys
        ],
        "leak_hints": [
            {"table": h.table, "column": h.column, "reason": h.reason, "auc": h.auc}
            for h in export.leak_hints
        ],
        "ambiguous_dates": [
            f"{n}.{c.name}" for n, p in export.tables.items() for c in p.columns if c.date_ambiguous
        ],
        "personal_columns": [
            f"{n}.{c.name}" for n, p in export.tables.items() for c in p.columns if c.personal
        ],
        "notes": list(export.notes),
    }


def _md(text: object) -> str:
    return one_line(str(text)).replace("|", "\\|")


def profile_markdown(
    export: ExportProfile, *, source: str = "the export", unique_share: float = 0.5
) -> str:
    """The profile for a reader: per table, one line per column; then keys, outcome, leak hints.

    Values are shown for category-like columns only: not for personal columns, nor for text with
    more than ``unique_share`` of its values distinct (ids, notes).
    """
    out = [f"# Profile of {_md(source)}", ""]
    out.append(f"Layout: **{export.layout}**.")
    for note in export.notes:
        out.append(f"- Note: {_md(note)}")
    leak = {(h.table, h.column): h for h in export.leak_hints}
    for name, p in export.tables.items():
        role = export.role_of(name)
        out += ["", f"## {_md(name)}: {p.rows:,} rows, {len(p.columns)} columns"]
        out.append(
            f"Fills **{role or 'nothing'}**"
            + (f" ({_md(p.role_reason)})." if p.role_reason else ".")
        )
        out.append(
            f"Id candidates: {', '.join(p.id_columns) or 'none'}. "
            f"Created-time candidates: {', '.join(p.created_columns) or 'none'}."
        )
        out += [
            "",
            "| column | type | empty | distinct | values / range | notes |",
            "|---|---|---|---|---|---|",
        ]
        for c in p.columns:
            notes = []
            if c.personal:
                notes.append(f"personal ({c.personal})")
            if c.date_ambiguous:
                notes.append(f"ambiguous date: {' or '.join(c.date_candidates)}")
            elif c.type == "date":
                notes.append(f"format {c.date_format}")
            if c.unparsed:
                notes.append(f"{c.unparsed:,} values not read as {c.type}")
            if (name, c.name) in leak:
                notes.append(f"**leak?** {leak[(name, c.name)].reason}")
            if c.type in ("integer", "number", "date") and not c.personal:
                shown = f"{c.minimum} to {c.maximum}"
            elif c.type == "text" and c.distinct > unique_share * c.filled:
                shown = ""
            else:
                shown = ", ".join(f"{shorten(v, 20)} ({n:,})" for v, n in c.top[:3])
            out.append(
                f"| {_md(c.name)} | {c.type} | {c.null_rate:.1%} | {c.distinct:,} | {_md(shown)} | "
                f"{_md('; '.join(notes))} |"
            )
    out += ["", "## Keys and outcome", ""]
    for k in export.join_keys:
        out.append(
            f"- join: {_md(k.table)}.{_md(k.column)} -> {_md(k.to_table)}.{_md(k.to_column)} ({k.match_rate:.0%} found)"
        )
    for c in export.outcome_candidates:
        out.append(f"- outcome candidate: {_md(c.table)}.{_md(c.column)}: {_md(c.reason)}")
    if export.outcome is not None:
        out.append(
            f"- outcome used: {_md(export.outcome.table)}.{_md(export.outcome.column)}, won = "
            f"{_md(', '.join(export.outcome.won))}; per lead: {_md(export.outcome_source or 'not available')}"
            + (f"; {export.converted:,} converted" if export.converted is not None else "")
        )
    else:
        out.append("- no outcome column found: give one with --outcome")
    out += ["", "## Leak hints", ""]
    out += [f"- {_md(h.table)}.{_md(h.column)}: {_md(h.reason)}" for h in export.leak_hints] or [
        "- none found"
    ]
    return "\n".join(out) + "\n"
