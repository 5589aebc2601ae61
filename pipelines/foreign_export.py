"""The synthetic CRM re-exported the way a HubSpot user would get it: the foreign-shaped fixture.

Every real CRM names its tables, columns, categories and activity types its own way. This module
takes the **raw** native tables (``generate_crm(...).tables`` or ``read_crm(folder)``, defects
included) and writes them as a HubSpot export: ``contacts``, ``companies``, ``engagements``,
``deals`` and ``property_history``, with HubSpot's column names, UPPER_CASE enumerations, country
names, numeric record ids, US-style creation dates, epoch-millisecond activity times, a
``dealstage`` instead of a won flag, and properties the native CRM does not have.
``mappings/hubspot-example.yaml`` maps it back to the contract; the test
(tests/test_foreign_export.py) proves that the features built through the mapping equal the
native export's features exactly. docs/foreign-export.md is the guide.

When the native CRM has a ``field_history`` table (pipelines/synthetic_history.py: the BANT
answers and firmographics as set at creation, filled in, corrected and updated after a deal
closed, while leads and accounts hold today's values), it is exported as HubSpot's property
history, ``property_history``: one row per value a property took (``objectType`` CONTACT or
COMPANY, ``objectId``, ``property``, ``value``, ``timestamp``), with the same property names,
labels and ids as the contacts and companies tables. The mapping reads those fields as of each
snapshot from it, as the native contract reads them from ``field_history``. A native CRM folder
without field history still exports, without a property history.

What changes, and how it is undone:

- **Values** are translated through documented bijections (:data:`VALUE_LABELS`), each the
  inverse of a ``values`` map of the mapping file. A value the generator respelled on purpose
  (``"  Paid Search "``, ``GOOGLE ADS``) is first normalised as validation normalises it
  (:func:`features.validation.normalise_category`), then written as the HubSpot label of its
  canonical value, so both paths see one value; a missing value stays missing; a value outside
  the vocabulary is written as it was found.
- **Ids** become numbers through bijections that keep their digits (:class:`IdScheme`):
  ``L00000123`` -> ``100000123``. Same width, so ids sort alike on both paths and snapshots come
  out in the same order.
- **Every row is kept**, defects included (duplicate leads, events of unknown leads, events in
  the future or before their lead), so validation quarantines the same rows on both paths.
- **Added, with a reason each** (drawn with ``seed``, never from the hidden world):

  - ``company_size_band`` (from the account's employee count as it was when the contact was
    created: read from the field history when there is one, never from today's value, which an
    enrichment after a won deal may have filled in) and ``hs_lead_origin`` (from the source and
    the email type): custom properties known at creation that carry signal. They are
    deterministic recodings of fields the native CRM already has, so they tell a model nothing
    the oracle does not see: the oracle stays exact.
  - ``CALL`` and ``MEETING`` engagements (company actions, with ``hs_call_duration``) in the
    days *after* each opportunity opened, independent of its outcome: given the opportunity's
    opening (observable), they are noise, so the oracle stays exact. None is placed before the
    opening: that would tell a model an opportunity is coming, which the oracle cannot know.
  - ``NOTE`` engagements, which the mapping does not declare (counted by validation, ignored).
  - ``lifecyclestage`` (today's stage: ``customer`` after a won deal, ``opportunity`` with an
    open one, else ``lead``), a leak if read as a feature: the mapping declares it
    ``at_extraction``. ``hs_analytics_num_visits`` (all-time page views) and
    ``notes_last_contacted`` (last call or meeting): today's values too, left out of the mapping.
  - For open deals, ``closedate`` holds an *expected* close date after the extraction, as
    HubSpot fills it (the mapping says ``expected_close_date: true``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as ct
from features.outputs import check_writable, refuse_overlap, remove_file, write_json
from features.readers import check_crm_folder_writable, read_crm, write_crm
from features.urls import display_url
from features.validation import normalise_category
from pipelines.params import section
from pipelines.steps import META_FILE, resolve_extracted_at

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Shape of the export
# ------------------------------------------------------------------------------------------------
#: The mapping file of this export, in the repository (the example users copy).
EXAMPLE_MAPPING = "mappings/hubspot-example.yaml"
#: The export's tables, by the contract table each one re-exports. ``property_history`` is
#: written only when the native CRM has a field history (:data:`OPTIONAL_TABLES`).
EXPORT_TABLES = {
    "leads": "contacts",
    "accounts": "companies",
    "events": "engagements",
    "opportunities": "deals",
    "field_history": "property_history",
}
#: Native tables an older synthetic CRM folder may lack: their export table is then not written.
OPTIONAL_TABLES = ("field_history",)
#: ``contacts.createdate`` is written as HubSpot's CSV export writes dates: US order, no zone
#: (UTC). The mapping names the format, so nothing is guessed when it is read back.
CONTACT_DATE_FORMAT = "%m/%d/%Y %H:%M:%S"
#: ``deals.createdate`` / ``closedate`` and ``contacts.notes_last_contacted``: ISO 8601, UTC.
ISO_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: ``property_history.timestamp``: ISO 8601 in UTC with milliseconds, as HubSpot's API writes a
#: property version (``2024-03-01T09:30:00.000Z``). The mapping names this format.
HISTORY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
US_PER_MS = 1_000
SECONDS_PER_DAY = 86_400

# ------------------------------------------------------------------------------------------------
# Value bijections: native canonical value -> HubSpot-style label
# ------------------------------------------------------------------------------------------------
SOURCE_LABELS = {
    "organic_search": "ORGANIC_SEARCH",
    "paid_search": "PAID_SEARCH",
    "paid_social": "PAID_SOCIAL",
    "referral": "REFERRALS",
    "direct": "DIRECT_TRAFFIC",
    "event": "OFFLINE",
    "webinar": "EVENT_WEBINAR",
    "partner": "OTHER_CAMPAIGNS",
    "outbound": "SALES_OUTREACH",
    "content_syndication": "PAID_CONTENT",
}
COUNTRY_NAMES = {
    "US": "United States",
    "CA": "Canada",
    "GB": "United Kingdom",
    "DE": "Germany",
    "FR": "France",
    "NL": "Netherlands",
    "ES": "Spain",
    "SE": "Sweden",
    "ZA": "South Africa",
    "AU": "Australia",
    "IN": "India",
    "JP": "Japan",
    "SG": "Singapore",
    "BR": "Brazil",
    "MX": "Mexico",
    "AR": "Argentina",
}
SENIORITY_LABELS = {
    "c_level": "C-Level",
    "vp": "Vice President",
    "director": "Director",
    "manager": "Manager",
    "individual_contributor": "Individual Contributor",
    "student": "Student",
}
DEPARTMENT_LABELS = {
    "it": "Information Technology",
    "engineering": "Engineering",
    "marketing": "Marketing",
    "sales": "Sales",
    "finance": "Finance",
    "operations": "Operations",
    "hr": "Human Resources",
    "executive": "Executive Leadership",
    "other": "Other",
}
EMAIL_TYPE_LABELS = {"corporate": "Business", "free": "Personal"}
BUDGET_LABELS = {
    "under_10k": "Under $10K",
    "10k_50k": "$10K - $50K",
    "50k_250k": "$50K - $250K",
    "over_250k": "Over $250K",
}
AUTHORITY_LABELS = {
    "decision_maker": "Decision Maker",
    "economic_buyer": "Economic Buyer",
    "influencer": "Influencer",
    "user": "End User",
    "unknown": "Unknown",
}
NEED_LABELS = {
    "cost_reduction": "Reduce costs",
    "revenue_growth": "Grow revenue",
    "compliance": "Compliance",
    "process_automation": "Automate processes",
    "replace_competitor": "Replace current vendor",
    "none": "No clear need",
}
TIMELINE_LABELS = {
    "under_3_months": "Less than 3 months",
    "3_6_months": "3 - 6 months",
    "6_12_months": "6 - 12 months",
    "over_12_months": "More than 12 months",
    "no_timeline": "No timeline",
}
INDUSTRY_LABELS = {
    "software": "COMPUTER_SOFTWARE",
    "financial_services": "FINANCIAL_SERVICES",
    "healthcare": "HOSPITAL_HEALTH_CARE",
    "manufacturing": "MACHINERY",
    "retail": "RETAIL",
    "education": "EDUCATION_MANAGEMENT",
    "professional_services": "MANAGEMENT_CONSULTING",
    "media": "MEDIA_PRODUCTION",
    "logistics": "LOGISTICS_AND_SUPPLY_CHAIN",
    "public_sector": "GOVERNMENT_ADMINISTRATION",
}
REGION_LABELS = {
    "north_america": "North America",
    "emea": "EMEA",
    "apac": "APAC",
    "latam": "LATAM",
}
ENGAGEMENT_TYPES = {
    "page_view": "PAGE_VIEW",
    "pricing_page_view": "PRICING_PAGE_VIEW",
    "email_open": "EMAIL_OPEN",
    "email_click": "EMAIL_CLICK",
    "content_download": "CONTENT_DOWNLOAD",
    "webinar_registration": "WEBINAR_REGISTRATION",
    "webinar_attendance": "WEBINAR_ATTENDED",
    "demo_request": "DEMO_REQUEST",
    "trial_signup": "TRIAL_SIGNUP",
    "product_inquiry": "PRODUCT_INQUIRY",
    "form_submit": "FORM_SUBMISSION",
    "social_interaction": "SOCIAL_INTERACTION",
    "sales_email": "EMAIL",  # a sales rep's email logged in HubSpot: the company's action
}
#: Activity types the native CRM does not have: sales-rep actions and notes.
CALL, MEETING, NOTE = "CALL", "MEETING", "NOTE"
#: The added types the mapping declares (its name -> the export's type); NOTE it does not.
COMPANY_ACTION_TYPES = {"call": CALL, "meeting": MEETING}

#: (native table, native column) -> (export column, native value -> HubSpot label). Each is a
#: bijection over the column's vocabulary, and the inverse of the mapping file's values map.
VALUE_LABELS: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    ("leads", "source"): ("hs_analytics_source", SOURCE_LABELS),
    ("leads", "email_domain_kind"): ("email_type", EMAIL_TYPE_LABELS),
    ("leads", "seniority"): ("seniority_level", SENIORITY_LABELS),
    ("leads", "department"): ("job_function", DEPARTMENT_LABELS),
    ("leads", "country"): ("country", COUNTRY_NAMES),
    ("leads", "budget"): ("budget_range", BUDGET_LABELS),
    ("leads", "authority"): ("authority_level", AUTHORITY_LABELS),
    ("leads", "need"): ("business_need", NEED_LABELS),
    ("leads", "timeline"): ("purchase_timeline", TIMELINE_LABELS),
    ("accounts", "industry"): ("industry", INDUSTRY_LABELS),
    ("accounts", "country"): ("country", COUNTRY_NAMES),
    ("accounts", "region"): ("sales_region", REGION_LABELS),
    ("events", "event_type"): ("type", ENGAGEMENT_TYPES),
}
#: Native number columns and the export's column for each (written as numbers).
NUMBER_COLUMNS = {
    ("accounts", "employee_count"): "numberofemployees",
    ("accounts", "annual_revenue"): "annualrevenue",
}
#: ``property_history.objectType`` of each native history entity.
OBJECT_TYPES = {"leads": "CONTACT", "accounts": "COMPANY"}
#: How the export writes the native booleans: (export column, true label, false label).
BOOLEAN_LABELS = {
    ("leads", "unsubscribed"): ("hs_email_optout", "true", "false"),
    ("leads", "consent"): ("gdpr_consent", "Yes", "No"),
    ("accounts", "is_customer"): ("hs_is_customer", "true", "false"),
}
#: Spellings of a boolean in a raw native table (a CSV holds "True", Parquet holds True).
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})

# ------------------------------------------------------------------------------------------------
# Added properties
# ------------------------------------------------------------------------------------------------
#: ``contacts.company_size_band``: upper bounds (employees, inclusive) and their labels.
COMPANY_SIZE_EDGES = (0, 10, 50, 200, 1_000, 5_000, np.inf)
COMPANY_SIZE_BANDS = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+")
#: ``contacts.hs_lead_origin``: the kind of channel of each source, then the email type.
ORIGIN_BY_SOURCE = {
    "organic_search": "Inbound",
    "direct": "Inbound",
    "referral": "Referral",
    "paid_search": "Paid media",
    "paid_social": "Paid media",
    "content_syndication": "Paid media",
    "event": "Events",
    "webinar": "Events",
    "partner": "Partner",
    "outbound": "Sales prospecting",
}
ORIGIN_EMAIL = {"corporate": "business email", "free": "personal email"}
#: ``contacts.lifecyclestage`` (today's value): a won deal, an open deal, anything else.
LIFECYCLE_CUSTOMER, LIFECYCLE_OPPORTUNITY, LIFECYCLE_LEAD = "customer", "opportunity", "lead"
#: ``deals.dealstage``: closed deals, and the stages an open deal is drawn from.
WON_STAGE, LOST_STAGE = "closedwon", "closedlost"
OPEN_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "contractsent")


@dataclass(frozen=True)
class CompanyActions:
    """How many sales-rep calls and meetings each opportunity gets, when, and how long."""

    #: mean number of calls / meetings per opportunity (Poisson)
    calls_per_opportunity: float = 2.0
    meetings_per_opportunity: float = 1.0
    #: they happen within this many days after the opportunity opened (uniformly)
    window_days: int = 30
    #: median call length (log-normal) and the lengths a meeting is booked for
    call_median_seconds: float = 360.0
    call_spread: float = 0.6
    meeting_minutes: tuple[int, ...] = (30, 45, 60)
    #: share of contacts with one note (an undeclared activity type)
    note_share: float = 0.05
    #: an open deal's expected close date: this many days after the extraction (uniformly)
    expected_close_days: tuple[int, int] = (7, 120)


# ------------------------------------------------------------------------------------------------
# Ids
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdScheme:
    """A bijection between native ids (a letter and ``digits`` digits) and HubSpot's numbers.

    ``<letter><n>`` <-> ``bases[letter] + n``. The bases are at least ``10**digits`` apart, so the
    ranges never overlap, and every number has the same count of digits, so text ids sort in
    the same order on both sides.
    """

    bases: Mapping[str, int]
    digits: int

    def to_hubspot(self, ids: pd.Series) -> pd.Series:
        """HubSpot's record ids (nullable ``Int64``) of native ``ids``; missing stays missing.

        ValueError naming an example if an id is not of this scheme.
        """
        codes, uniques = pd.factorize(pd.Series(ids), use_na_sentinel=True)
        text = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
        parts = text.str.extract(rf"^([A-Z])(\d{{{self.digits}}})$")
        base = parts[0].map(dict(self.bases))
        bad = base.isna()
        if bad.any():
            letters = "/".join(self.bases)
            raise ValueError(
                f"id {text[bad].iloc[0]!r} is not a synthetic CRM id ({letters} and "
                f"{self.digits} digits): the foreign-shaped export re-exports the synthetic CRM"
            )
        numbers = base.to_numpy(dtype=np.int64) + parts[1].to_numpy(dtype=np.int64)
        out = pd.array(numbers, dtype="Int64").take(codes, allow_fill=True)
        return pd.Series(out, index=getattr(ids, "index", None), name=getattr(ids, "name", None))

    def to_native(self, numbers: pd.Series) -> pd.Series:
        """The native ids of HubSpot record ids (numbers, or their text); missing stays missing.

        ValueError naming an example if a number is in none of the scheme's ranges.
        """
        codes, uniques = pd.factorize(pd.Series(numbers), use_na_sentinel=True)
        values = pd.to_numeric(pd.Series(np.asarray(uniques, dtype=object))).to_numpy(np.int64)
        span = 10**self.digits
        letter = np.full(len(values), None, dtype=object)
        offset = np.zeros(len(values), dtype=np.int64)
        for prefix, base in self.bases.items():  # a loop over the scheme's letters, not rows
            inside = (values >= base) & (values < base + span)
            letter[inside] = prefix
            offset[inside] = values[inside] - base
        unknown = pd.isna(letter)
        if unknown.any():
            raise ValueError(f"{values[unknown][0]} is not a record id this export writes")
        digits = pd.Series(offset).astype("str").str.zfill(self.digits)
        text = pd.Series(letter, dtype="str") + digits
        out = pd.array(text, dtype="str").take(codes, allow_fill=True)
        return pd.Series(
            out, index=getattr(numbers, "index", None), name=getattr(numbers, "name", None)
        )


#: Contacts: ``L00000123`` -> ``100000123``; events of unknown leads (``X...``) -> 9xxxxxxxx.
CONTACT_IDS = IdScheme({"L": 100_000_000, "X": 900_000_000}, digits=8)
#: Companies: ``A0000042`` -> ``20000042``.
COMPANY_IDS = IdScheme({"A": 20_000_000}, digits=7)
#: Deals: ``O00000007`` -> ``300000007``.
DEAL_IDS = IdScheme({"O": 300_000_000}, digits=8)
#: Engagements have no native id: numbered from here, in the order they are written.
FIRST_ENGAGEMENT_ID = 500_000_000


def hubspot_contact_id(lead_ids: pd.Series) -> pd.Series:
    """HubSpot contact ids of native lead ids: ``L00000123`` -> ``100000123`` (``Int64``)."""
    return CONTACT_IDS.to_hubspot(lead_ids)


def native_lead_id(contact_ids: pd.Series) -> pd.Series:
    """Native lead ids of HubSpot contact ids (numbers or text): ``100000123`` -> ``L00000123``."""
    return CONTACT_IDS.to_native(contact_ids)


# ------------------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------------------
def _relabel(
    values: pd.Series, labels: Mapping[str, str], vocabulary: tuple[str, ...], synonyms
) -> pd.Series:
    """Each value's HubSpot label, through its canonical value (normalised as validation does).

    Works on the distinct values only. Missing stays missing; a value outside the vocabulary is
    written as it was found (it would be unknown on both paths).
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    distinct = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
    canonical = normalise_category(distinct, vocabulary, synonyms)
    label = canonical.map(dict(labels)).fillna(canonical)  # blank text stays missing
    out = pd.array(label, dtype="str").take(codes, allow_fill=True)
    return pd.Series(out, index=values.index)


def _translate(table: str, column: str, values: pd.Series) -> pd.Series:
    """The export's values of native ``table.column`` (see :data:`VALUE_LABELS`)."""
    vocabulary = ct.TABLES[table].by_name[column].vocabulary or ()
    _, labels = VALUE_LABELS[(table, column)]
    return _relabel(values, labels, tuple(vocabulary), ct.SYNONYMS.get(column, {}))


def _canonical(table: str, column: str, values: pd.Series) -> pd.Series:
    """The canonical value of each raw native value (what validation makes of it)."""
    vocabulary = tuple(ct.TABLES[table].by_name[column].vocabulary or ())
    return normalise_category(values, vocabulary, ct.SYNONYMS.get(column, {}))


def _as_bool(values: pd.Series) -> pd.Series:
    """Raw booleans (True, "True", "yes", ...) as a nullable boolean; anything else missing."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    words = pd.Series(np.asarray(uniques, dtype=object)).astype("str").str.strip().str.lower()
    truth = pd.array(np.where(words.isin(TRUE_WORDS), True, False), dtype="boolean")
    truth[~(words.isin(TRUE_WORDS) | words.isin(FALSE_WORDS)).to_numpy()] = pd.NA
    return pd.Series(truth.take(codes, allow_fill=True), index=values.index)


def _bool_labels(values: pd.Series, yes: str, no: str) -> pd.Series:
    """Booleans as the export writes them; a value that is not a boolean is written as found."""
    truth = _as_bool(values)
    raw = values.astype("str").where(values.notna())
    out = np.where(truth.isna(), raw.to_numpy(dtype=object), np.where(truth.fillna(False), yes, no))
    return pd.Series(out, index=values.index, dtype="str")


def _times(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(naive UTC datetime64[us], the raw text where a value is there but not a timestamp)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = values
    else:
        parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        parsed = parsed.dt.tz_localize(None)
    parsed = parsed.astype("datetime64[us]")
    unparsed = values.notna() & parsed.isna()
    return parsed, values.astype("str").where(unparsed)


def _formatted(values: pd.Series, fmt: str) -> pd.Series:
    """Timestamps as text in ``fmt``; a value that is not a timestamp is written as found."""
    parsed, raw = _times(values)
    _warn_sub_second(parsed, values.name)
    return parsed.dt.strftime(fmt).astype("str").fillna(raw)


def _warn_sub_second(parsed: pd.Series, name: object) -> None:
    """The export writes whole seconds (as the synthetic CRM makes them): say if one is lost."""
    us = parsed.dropna().to_numpy(dtype="datetime64[us]").view(np.int64)
    lost = int((us % 1_000_000 != 0).sum())
    if lost:
        log.warning("%s: %d timestamp(s) with fractions of a second written whole", name, lost)


def _epoch_ms(values: pd.Series) -> pd.Series:
    """Timestamps as integer milliseconds since 1970 (HubSpot's ``hs_timestamp``)."""
    parsed, raw = _times(values)
    us = parsed.to_numpy(dtype="datetime64[us]").view(np.int64)
    missing = parsed.isna().to_numpy()
    lost = int(((us % US_PER_MS) != 0)[~missing].sum())
    if lost:
        log.warning("%s: %d timestamp(s) below a millisecond truncated", values.name, lost)
    ms = pd.array(us // US_PER_MS, dtype="Int64")
    ms[missing] = pd.NA
    if raw.notna().any():  # unreadable text stays as found: validation quarantines it
        return pd.Series(ms, index=values.index).astype("str").where(raw.isna(), raw)
    return pd.Series(ms, index=values.index)


def _iso_z(stamps: np.ndarray | pd.Series) -> pd.Series:
    """Naive UTC timestamps as ISO 8601 text with a ``Z`` (missing stays missing)."""
    return pd.Series(pd.to_datetime(pd.Series(stamps)).dt.strftime(ISO_UTC_FORMAT), dtype="str")


def _history_time(values: pd.Series) -> pd.Series:
    """Timestamps as HubSpot's property history writes them (:data:`HISTORY_TIME_FORMAT`:
    ISO 8601, UTC, milliseconds, a ``Z``); a value that is not a timestamp is written as found."""
    parsed, raw = _times(values)
    us = parsed.dropna().to_numpy(dtype="datetime64[us]").view(np.int64)
    lost = int((us % US_PER_MS != 0).sum())
    if lost:
        log.warning("%s: %d timestamp(s) below a millisecond truncated", values.name, lost)
    text = parsed.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"  # microseconds -> ms
    return text.astype("str").fillna(raw)


def _number_text(values: pd.Series) -> pd.Series:
    """Numbers as HubSpot's property history writes them: text, whole numbers without a decimal
    point (``"1200"``, not ``"1200.0"``). Missing stays missing; a value that is not a number is
    written as found. Works on the distinct values only."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    found = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
    number = pd.to_numeric(found.str.strip(), errors="coerce").astype("float64")
    finite = np.isfinite(number.to_numpy())
    whole = finite & (number == number.round()).to_numpy()
    text = found.copy()
    text[whole] = number[whole].astype("int64").astype("str")
    text[finite & ~whole] = number[finite & ~whole].astype("str")
    out = pd.array(text, dtype="str").take(codes, allow_fill=True)
    return pd.Series(out, index=values.index)


def _first_per_key(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per key (the first), indexed by it: duplicate leads look up like one."""
    return frame.drop_duplicates(key).set_index(key)


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
def _size_band(employee_count: pd.Series) -> pd.Series:
    """``company_size_band`` of an employee count (missing or unreadable: missing)."""
    count = pd.to_numeric(employee_count, errors="coerce").astype("float64")
    bands = pd.cut(count, bins=list(COMPANY_SIZE_EDGES), labels=list(COMPANY_SIZE_BANDS))
    return bands.astype("str").where(bands.notna())


def _history_rows(history: pd.DataFrame | None, entity: str, field: str) -> pd.DataFrame | None:
    """The rows of ``history`` that set ``entity``'s ``field`` (None when there are none)."""
    if history is None or not len(history):
        return None
    entities = normalise_category(history["entity"], ct.HISTORY_ENTITIES, {}).astype(object)
    rows = ((entities == entity) & (history["field"].astype(object) == field)).to_numpy(bool)
    return history[rows] if rows.any() else None


def _employees_at_creation(
    leads: pd.DataFrame, accounts: pd.DataFrame, history: pd.DataFrame | None
) -> pd.Series:
    """Each contact's company employee count as it was when the contact was created (aligned
    with ``leads``): the form's answer, which the contact keeps.

    From the field history when it tracks the employee count: the last value set at or before
    the contact's creation (missing before the first; a cleared value is missing). Today's
    value would leak: enrichment fills in the size of a company after one of its deals was won.
    Without such a history (an older synthetic CRM, whose accounts never change), the accounts
    table's value.
    """
    account_ids = leads["account_id"].astype("str")
    changes = _history_rows(history, "accounts", "employee_count")
    if changes is None:
        current = _first_per_key(
            accounts.assign(account_id=accounts["account_id"].astype("str")), "account_id"
        )["employee_count"]
        return pd.to_numeric(account_ids.map(current), errors="coerce").astype("float64")
    right = pd.DataFrame(
        {
            "account_id": changes["entity_id"].astype("str").to_numpy(),
            "at": _times(changes["changed_at"])[0].to_numpy(),
            "employees": pd.to_numeric(changes["value"], errors="coerce").to_numpy("float64"),
        }
    )
    right = right[right["account_id"].notna() & right["at"].notna()]
    left = pd.DataFrame(
        {
            "account_id": account_ids.to_numpy(),
            "at": _times(leads["created_at"])[0].to_numpy(),
            "_row": np.arange(len(leads)),
        }
    )
    left = left[left["account_id"].notna() & left["at"].notna()]
    found = pd.merge_asof(
        left.sort_values("at", kind="stable"),
        right.sort_values("at", kind="stable"),
        on="at",
        by="account_id",
        allow_exact_matches=True,  # the first lead's creation is the account's: the form saw it
        direction="backward",
    )
    out = np.full(len(leads), np.nan)
    out[found["_row"].to_numpy()] = found["employees"].to_numpy("float64")
    return pd.Series(out, index=leads.index)


def _lead_origin(leads: pd.DataFrame) -> pd.Series:
    """``hs_lead_origin``: the kind of channel and the email type ("Inbound - business email")."""
    origin = _canonical("leads", "source", leads["source"]).map(ORIGIN_BY_SOURCE)
    email = _canonical("leads", "email_domain_kind", leads["email_domain_kind"]).map(ORIGIN_EMAIL)
    both = origin + " - " + email
    return both.fillna(origin).astype("str")


def _lifecycle_stage(leads: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    """Today's ``lifecyclestage`` of each lead: a leak if it were read as a feature."""
    won = _as_bool(opportunities["is_won"])
    per_lead = pd.DataFrame(
        {
            "lead_id": opportunities["lead_id"].astype("str"),
            "won": won.fillna(False).astype(bool),
            "open": won.isna(),
        }
    )
    flags = per_lead.groupby("lead_id")[["won", "open"]].any()
    won_lead = leads["lead_id"].map(flags["won"]).fillna(False).astype(bool)
    open_lead = leads["lead_id"].map(flags["open"]).fillna(False).astype(bool)
    stage = np.where(
        won_lead, LIFECYCLE_CUSTOMER, np.where(open_lead, LIFECYCLE_OPPORTUNITY, LIFECYCLE_LEAD)
    )
    return pd.Series(stage, index=leads.index, dtype="str")


def _contacts(
    leads: pd.DataFrame,
    accounts: pd.DataFrame,
    events: pd.DataFrame,
    opportunities: pd.DataFrame,
    added: pd.DataFrame,
    history: pd.DataFrame | None,
) -> pd.DataFrame:
    """The contacts table: one row per native lead row (duplicates kept)."""
    lead_ids = leads["lead_id"].astype("str")
    views = _canonical("events", "event_type", events["event_type"]) == "page_view"
    visits = events.loc[views.to_numpy(), "lead_id"].astype("str").value_counts()
    contacted = added[added["type"].isin([CALL, MEETING])].groupby("lead_id")["timestamp"].max()
    out = {
        "hs_object_id": hubspot_contact_id(leads["lead_id"]),
        "createdate": _formatted(leads["created_at"], CONTACT_DATE_FORMAT),
        "firstname": leads.get("first_name"),
        "lastname": leads.get("last_name"),
        "email": leads.get("email"),
        "phone": leads.get("phone"),
        "jobtitle": leads.get("job_title"),
        "associatedcompanyid": COMPANY_IDS.to_hubspot(leads["account_id"]),
    }
    for (table, column), (name, _) in VALUE_LABELS.items():
        if table == "leads":
            out[name] = _translate(table, column, leads[column])
    for (table, column), (name, yes, no) in BOOLEAN_LABELS.items():
        if table == "leads":
            out[name] = _bool_labels(leads[column], yes, no)
    out |= {
        "company_size_band": _size_band(_employees_at_creation(leads, accounts, history)),
        "hs_lead_origin": _lead_origin(leads),
        "lifecyclestage": _lifecycle_stage(leads, opportunities),
        "hs_analytics_num_visits": lead_ids.map(visits).fillna(0).astype("int64"),
        "notes_last_contacted": _iso_z(lead_ids.map(contacted)),
    }
    return pd.DataFrame({k: v for k, v in out.items() if v is not None}).reset_index(drop=True)


def _companies(accounts: pd.DataFrame) -> pd.DataFrame:
    """The companies table: one row per native account row."""
    out = {
        "hs_object_id": COMPANY_IDS.to_hubspot(accounts["account_id"]),
        "name": "Company " + accounts["account_id"].astype("str"),
    }
    for (table, column), name in NUMBER_COLUMNS.items():
        if table == "accounts":
            out[name] = accounts[column]
    for (table, column), (name, _) in VALUE_LABELS.items():
        if table == "accounts":
            out[name] = _translate(table, column, accounts[column])
    for (table, column), (name, yes, no) in BOOLEAN_LABELS.items():
        if table == "accounts":
            out[name] = _bool_labels(accounts[column], yes, no)
    return pd.DataFrame(out).reset_index(drop=True)


def _company_actions(
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    extracted_at: pd.Timestamp,
    actions: CompanyActions,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """CALL and MEETING rows after each opportunity opened, and NOTE rows on some contacts.

    Columns: lead_id (native), timestamp (naive UTC, whole seconds), type, duration_s. All
    rows fall in [the later of the lead's and the opportunity's creation, the extraction).
    """
    created = _times(_first_per_key(leads, "lead_id")["created_at"])[0]
    opened, _ = _times(opportunities["created_at"])
    opp_lead = opportunities["lead_id"].astype("str")
    start = np.maximum(
        opened.to_numpy(dtype="datetime64[s]"),
        opp_lead.map(created).to_numpy(dtype="datetime64[s]"),
    )
    usable = ~np.isnat(start)
    start, opp_lead = start[usable], opp_lead.to_numpy()[usable]
    window = actions.window_days * SECONDS_PER_DAY
    parts = []
    for kind, mean in (
        (CALL, actions.calls_per_opportunity),
        (MEETING, actions.meetings_per_opportunity),
    ):  # two kinds, not rows
        n = rng.poisson(mean, len(start))
        at = np.repeat(start, n) + rng.integers(0, window, n.sum()).astype("timedelta64[s]")
        if kind == CALL:
            duration = np.round(
                rng.lognormal(np.log(actions.call_median_seconds), actions.call_spread, n.sum())
            )
        else:
            duration = 60.0 * rng.choice(np.asarray(actions.meeting_minutes), n.sum())
        parts.append(
            pd.DataFrame(
                {"lead_id": np.repeat(opp_lead, n), "timestamp": at, "type": kind},
            ).assign(duration_s=duration)
        )
    known = created.dropna()
    noted = rng.random(len(known)) < actions.note_share
    first = known.to_numpy(dtype="datetime64[s]")[noted]
    span = (np.datetime64(extracted_at, "s") - first).astype(np.int64)
    note_at = first + (rng.random(len(first)) * np.maximum(span, 0)).astype("timedelta64[s]")
    parts.append(
        pd.DataFrame(
            {
                "lead_id": known.index[noted],
                "timestamp": note_at,
                "type": NOTE,
                "duration_s": np.nan,
            }
        )
    )
    added = pd.concat(parts, ignore_index=True)
    added = added[added["timestamp"] < np.datetime64(extracted_at, "s")]
    added = added.sort_values(["timestamp", "lead_id"], kind="stable", ignore_index=True)
    added["timestamp"] = added["timestamp"].astype("datetime64[us]")
    return added


def _engagements(events: pd.DataFrame, added: pd.DataFrame) -> pd.DataFrame:
    """The native events (their order kept, defects included), then the added engagements.

    The native rows come first and in their order, so that both paths validate the same event
    rows in the same order: the behavioral builder's float sums (the engagement score) could
    otherwise differ in the last bit where one lead has two events at the same instant.
    """
    native = pd.DataFrame(
        {
            "contact_id": hubspot_contact_id(events["lead_id"]).to_numpy(),
            "hs_timestamp": _epoch_ms(events["timestamp"]).to_numpy(),
            "type": _translate("events", "event_type", events["event_type"]).to_numpy(),
            "hs_call_duration": np.nan,
        }
    )
    extra = pd.DataFrame(
        {
            "contact_id": hubspot_contact_id(added["lead_id"]).to_numpy(),
            "hs_timestamp": _epoch_ms(added["timestamp"]).to_numpy(),
            "type": added["type"].to_numpy(),
            "hs_call_duration": added["duration_s"].to_numpy(),
        }
    )
    out = pd.concat([native, extra], ignore_index=True)
    out.insert(0, "hs_engagement_id", FIRST_ENGAGEMENT_ID + np.arange(len(out), dtype=np.int64))
    out["hs_call_duration"] = out["hs_call_duration"].astype("Int64")
    return out


def _deals(
    opportunities: pd.DataFrame,
    extracted_at: pd.Timestamp,
    actions: CompanyActions,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The deals table: a stage instead of a won flag; open deals carry an expected close date."""
    won = _as_bool(opportunities["is_won"])
    is_open = won.isna().to_numpy()
    low, high = actions.expected_close_days
    expected = np.datetime64(extracted_at, "s") + rng.integers(
        low * SECONDS_PER_DAY, high * SECONDS_PER_DAY, len(opportunities)
    ).astype("timedelta64[s]")
    closed = _formatted(opportunities["closed_at"], ISO_UTC_FORMAT)
    stage = np.where(won.fillna(False), WON_STAGE, LOST_STAGE).astype(object)
    stage[is_open] = rng.choice(np.asarray(OPEN_STAGES, dtype=object), int(is_open.sum()))
    return pd.DataFrame(
        {
            "hs_object_id": DEAL_IDS.to_hubspot(opportunities["opportunity_id"]).to_numpy(),
            "associated_contact_id": hubspot_contact_id(opportunities["lead_id"]).to_numpy(),
            "createdate": _formatted(opportunities["created_at"], ISO_UTC_FORMAT).to_numpy(),
            "closedate": np.where(
                is_open, _iso_z(expected).to_numpy(dtype=object), closed.to_numpy(dtype=object)
            ),
            "dealstage": stage,
            "pipeline": "default",
            "amount": opportunities["amount"].to_numpy(),
        }
    ).astype({"closedate": "str", "dealstage": "str"})


def _property_history(history: pd.DataFrame) -> pd.DataFrame:
    """The native ``field_history`` as HubSpot's property history: every row, in its order.

    ``objectType`` CONTACT / COMPANY, ``objectId`` through the contacts' / companies' id
    bijection, ``property`` the export's column of the field and ``value`` as that column
    writes it (labels, booleans, numbers as text); ``timestamp`` in :data:`HISTORY_TIME_FORMAT`.
    A field the export has no column for keeps its name and its values as found.
    ValueError if a row changes something else than a lead or an account (the synthetic CRM's
    history does not).
    """
    history = history.reset_index(drop=True)
    entity = normalise_category(history["entity"], ct.HISTORY_ENTITIES, {})
    other = ~entity.isin(list(OBJECT_TYPES)).to_numpy(bool)
    if other.any():
        raise ValueError(
            f"field_history: entity {history['entity'][other].iloc[0]!r} is neither leads nor "
            "accounts: the foreign-shaped export re-exports the synthetic CRM"
        )
    field = history["field"].astype(object)
    object_id = pd.array(np.zeros(len(history), dtype=np.int64), dtype="Int64")
    prop = field.to_numpy(dtype=object).copy()
    value = history["value"].astype("str").to_numpy(dtype=object).copy()
    untranslated = 0
    fields = history.groupby([entity.to_numpy(), field.to_numpy()]).groups
    for (table, column), labels in fields.items():  # a loop over the tracked fields, not rows
        rows = np.asarray(labels)  # positions: the index was reset above
        values = history["value"].iloc[rows]
        if (table, column) in VALUE_LABELS:
            prop[rows] = VALUE_LABELS[(table, column)][0]
            value[rows] = _translate(table, column, values).to_numpy(dtype=object)
        elif (table, column) in NUMBER_COLUMNS:
            prop[rows] = NUMBER_COLUMNS[(table, column)]
            value[rows] = _number_text(values).to_numpy(dtype=object)
        elif (table, column) in BOOLEAN_LABELS:
            name, yes, no = BOOLEAN_LABELS[(table, column)]
            prop[rows] = name
            value[rows] = _bool_labels(values, yes, no).to_numpy(dtype=object)
        else:
            untranslated += len(rows)
    for table, ids in (("leads", CONTACT_IDS), ("accounts", COMPANY_IDS)):  # two schemes
        rows = (entity == table).to_numpy(bool)
        object_id[rows] = ids.to_hubspot(history["entity_id"][rows]).array
    if untranslated:
        log.info(
            "property_history: %d row(s) of fields without an export column, as found", untranslated
        )
    return pd.DataFrame(
        {
            "objectType": entity.map(OBJECT_TYPES).to_numpy(dtype=object),
            "objectId": object_id,
            "property": prop,
            "value": value,
            "timestamp": _history_time(history["changed_at"]).to_numpy(dtype=object),
        }
    ).astype({"objectType": "str", "property": "str", "value": "str", "timestamp": "str"})


def _latest_record(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """A stand-in for the extraction time: the latest lead creation or deal date."""
    stamps = [_times(tables["leads"]["created_at"])[0].max()]
    stamps += [_times(tables["opportunities"][c])[0].max() for c in ("created_at", "closed_at")]
    return max(s for s in stamps if pd.notna(s))


def export_like_hubspot(
    tables: Mapping[str, pd.DataFrame],
    seed: int = 0,
    extracted_at: pd.Timestamp | None = None,
    actions: CompanyActions = CompanyActions(),
) -> dict[str, pd.DataFrame]:
    """The raw native CRM ``tables`` re-exported as HubSpot would: contacts, companies,
    engagements, deals, and property_history when ``tables`` has a field_history (module
    docstring; docs/foreign-export.md).

    ``tables``: as ``generate_crm(...).tables`` or ``read_crm(folder)`` give them (defects
    included; every row is kept; field_history may be absent, as in older synthetic CRMs).
    ``seed`` draws the added calls, meetings, notes, open deals' stages and expected close dates.
    ``extracted_at`` (naive UTC): no added activity is dated at or after it, and open deals'
    expected close dates fall after it; default: the latest lead creation or deal date. The
    input is not modified.
    """
    missing = [t for t in EXPORT_TABLES if t not in tables and t not in OPTIONAL_TABLES]
    if missing:
        raise ValueError(f"the native CRM lacks table(s) {', '.join(missing)}")
    extracted_at = pd.Timestamp(extracted_at) if extracted_at is not None else None
    when = _latest_record(tables) if extracted_at is None else extracted_at
    rng = np.random.default_rng(seed)
    leads, accounts = tables["leads"], tables["accounts"]
    events, opportunities = tables["events"], tables["opportunities"]
    history = tables.get("field_history")
    added = _company_actions(leads, opportunities, when, actions, rng)
    export = {
        "contacts": _contacts(leads, accounts, events, opportunities, added, history),
        "companies": _companies(accounts),
        "engagements": _engagements(events, added),
        "deals": _deals(opportunities, when, actions, rng),
    }
    if history is not None:
        export[EXPORT_TABLES["field_history"]] = _property_history(history)
    else:
        log.warning(
            "the native CRM has no field_history table (an older synthetic CRM): no %s written. "
            "%s reads field history; without it, read this export with a mapping that has no "
            "field_history section",
            EXPORT_TABLES["field_history"],
            EXAMPLE_MAPPING,
        )
    counts = added["type"].value_counts()
    log.info(
        "HubSpot-shaped export: %s; added %d call(s), %d meeting(s), %d note(s)",
        ", ".join(f"{name} {len(frame)} rows" for name, frame in export.items()),
        int(counts.get(CALL, 0)),
        int(counts.get(MEETING, 0)),
        int(counts.get(NOTE, 0)),
    )
    return export


def run_export_foreign(
    params: dict[str, Any],
    crm_folder: str | Path,
    out_folder: str | Path,
    fmt: str = "csv",
    seed: int = 0,
) -> dict[str, Any]:
    """Re-export the native CRM at ``crm_folder`` as HubSpot would, into ``out_folder``.

    Writes contacts, companies, engagements, deals and, when the native CRM has a field
    history, property_history (``fmt`` csv or parquet; without a field history, a
    property_history an earlier run wrote there is removed, so that the folder holds one export)
    and ``crm_meta.json`` with the native CRM's extraction time (``crm.extracted_at`` in params,
    else the folder's crm_meta.json), so that validating the export uses the same instant.
    Nothing leadscore did not write is replaced (features/outputs.py), and the output may not
    overlap the input. Returns what was written: extraction time, rows per table written,
    activities added by type.
    """
    refuse_overlap({"crm": crm_folder}, {"--out": out_folder})
    out = Path(out_folder)
    check_crm_folder_writable(out, dict.fromkeys(EXPORT_TABLES.values()), fmt)
    check_writable(out / META_FILE)
    crm = section(params, "crm")
    extracted_at = resolve_extracted_at(crm_folder, crm.get("extracted_at"))
    native = read_crm(crm_folder, encoding=crm.get("encoding") or "utf-8")
    export = export_like_hubspot(native, seed=seed, extracted_at=extracted_at)
    write_crm(export, out, fmt=fmt)
    for name in EXPORT_TABLES.values():
        if name not in export:  # a stale table of an earlier export (ours; checked above)
            for ending in ("csv", "parquet"):
                remove_file(out / f"{name}.{ending}")
    types = export["engagements"]["type"]
    meta = {
        "extracted_at": extracted_at.isoformat(),
        "exported_from": display_url(crm_folder),
        "shape": "hubspot",
        "mapping": EXAMPLE_MAPPING,
        "seed": seed,
        "rows": {name: len(frame) for name, frame in export.items()},
        "added_engagements": {t: int((types == t).sum()) for t in (CALL, MEETING, NOTE)},
    }
    write_json(out / META_FILE, meta)
    log.info("wrote the HubSpot-shaped export of %s to %s", display_url(crm_folder), out)
    return meta
