"""The CRM data contract: the four tables, their columns, types, vocabularies and knowledge times.

Everything that reads CRM data (readers, validation, feature builders, the synthetic generator)
takes its column names and vocabularies from here, so the contract is written once.

Knowledge time says *when* a field's value is known, which decides whether a feature may read it:

- ``at_creation``: fixed when the lead (or account) is created; safe for every snapshot.
- ``as_of_snapshot``: a dated row (event, opportunity creation); visible to a snapshot only if its
  timestamp is strictly before ``as_of``.
- ``at_extraction``: the value the CRM holds *today* (when it was exported); it may have changed
  after any past as_of (an account becomes a customer *because* the lead was won), so it is never
  a feature for historical snapshots. Gates may read it at scoring time.
- ``after_outcome``: known only once the outcome is known (won/lost, close date, amount); never a
  feature, only a label.
- ``personal``: personal data (name, email, phone); never a feature, never logged.

Only what a label needs is required (``Table.required``, ``Column.is_required``): the leads and
opportunities tables; ``leads.lead_id`` and ``created_at``; ``opportunities.lead_id``,
``closed_at`` and ``is_won``; and, in an accounts or events table that is exported, the columns a
row of it is unusable without. Every other table and column may be left out of an export:
validation then supplies it, empty or missing in every row, and reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Knowledge(StrEnum):
    """When the value of a field becomes known."""

    AT_CREATION = "at_creation"
    AS_OF_SNAPSHOT = "as_of_snapshot"
    AT_EXTRACTION = "at_extraction"
    AFTER_OUTCOME = "after_outcome"
    PERSONAL = "personal"


#: Knowledge times a feature may read.
FEATURE_SAFE_KNOWLEDGE = frozenset({Knowledge.AT_CREATION, Knowledge.AS_OF_SNAPSHOT})


class Kind(StrEnum):
    """Logical column types of the contract (mapped to pandas dtypes by validation)."""

    ID = "id"  # string identifier
    TIMESTAMP = "timestamp"  # naive UTC datetime
    CATEGORY = "category"  # one of a vocabulary, normalised
    TEXT = "text"  # free text
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"


#: Plausibility bounds of every timestamp: earlier is a default or sentinel date (1900-01-01,
#: the Unix epoch 0 written as a date), not a CRM record; no CRM predates it.
EARLIEST_TIMESTAMP = "1970-01-02"
#: Control characters (C0 and DEL, but tab, line feed and carriage return) never belong in an
#: identifier or a text field: a NUL byte breaks PostgreSQL and most CRMs' APIs.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
#: In an identifier, no control character at all (tab and newlines included).
ID_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"


@dataclass(frozen=True)
class Column:
    """One column of a CRM table."""

    name: str
    kind: Kind
    knowledge: Knowledge
    description: str
    nullable: bool = True
    vocabulary: tuple[str, ...] | None = None
    min_value: float | None = None
    #: Plausibility bound: a larger value is a typo or a sentinel (1e308), not data.
    max_value: float | None = None
    #: a row is unusable without a valid value here (keys, times, label sources): an invalid
    #: value quarantines the row; in any other column it is set to missing and counted.
    essential: bool | None = None

    @property
    def is_essential(self) -> bool:
        """Non-nullable columns are essential unless said otherwise."""
        return (not self.nullable) if self.essential is None else self.essential

    @property
    def is_required(self) -> bool:
        """Whether an export of the table must hold this column: exactly the essential ones.
        Any other column may be left out; validation adds it, missing in every row."""
        return self.is_essential


@dataclass(frozen=True)
class Table:
    """One CRM table: its key, its time column (if any) and its columns."""

    name: str
    key: str | None
    columns: tuple[Column, ...]
    time_column: str | None = None
    description: str = ""
    #: an export must hold this table; an optional one may be left out (read as empty).
    required: bool = False
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> list[str]:
        """Column names in contract order."""
        return [c.name for c in self.columns]

    @property
    def required_column_names(self) -> list[str]:
        """The columns an export of this table must hold, in contract order."""
        return [c.name for c in self.columns if c.is_required]

    @property
    def kept_column_names(self) -> list[str]:
        """The columns validation keeps, in contract order: all but personal data, which no
        later step reads and no derived file may hold."""
        return [c.name for c in self.columns if c.knowledge != Knowledge.PERSONAL]


# ---------------------------------------------------------------------------------------------
# Vocabularies (canonical values after normalisation)
# ---------------------------------------------------------------------------------------------
SOURCES = (
    "organic_search",
    "paid_search",
    "paid_social",
    "webinar",
    "event",
    "referral",
    "partner",
    "outbound",
    "content_syndication",
    "direct",
)
EMAIL_DOMAIN_KINDS = ("corporate", "free")
SENIORITIES = ("c_level", "vp", "director", "manager", "individual_contributor", "student")
DEPARTMENTS = (
    "it",
    "engineering",
    "marketing",
    "sales",
    "finance",
    "operations",
    "hr",
    "executive",
    "other",
)
BUDGET_BANDS = ("under_10k", "10k_50k", "50k_250k", "over_250k")
AUTHORITIES = ("decision_maker", "economic_buyer", "influencer", "user", "unknown")
NEEDS = (
    "cost_reduction",
    "revenue_growth",
    "compliance",
    "process_automation",
    "replace_competitor",
    "none",
)
TIMELINES = ("under_3_months", "3_6_months", "6_12_months", "over_12_months", "no_timeline")
INDUSTRIES = (
    "software",
    "financial_services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "professional_services",
    "media",
    "logistics",
    "public_sector",
)
REGIONS = ("north_america", "emea", "apac", "latam")
COUNTRIES_BY_REGION = {
    "north_america": ("US", "CA"),
    "emea": ("GB", "DE", "FR", "NL", "ES", "SE", "ZA"),
    "apac": ("AU", "IN", "JP", "SG"),
    "latam": ("BR", "MX", "AR"),
}
COUNTRIES = tuple(c for cs in COUNTRIES_BY_REGION.values() for c in cs)

#: The documented event vocabulary; see docs/data-contract.md for what each one means.
EVENT_TYPES = (
    "page_view",
    "pricing_page_view",
    "email_open",
    "email_click",
    "content_download",
    "webinar_registration",
    "webinar_attendance",
    "demo_request",
    "trial_signup",
    "product_inquiry",
    "form_submit",
    "social_interaction",
    "sales_email",
)
#: Event types that are the company's own actions (a sales rep reaching out), not the lead's:
#: their own counts and recency, outside engagement (features/behavioral.py), and the touches
#: a follow-up reads (pipelines/follow_up.py).
COMPANY_EVENT_TYPES = ("sales_email",)

#: Known spellings of canonical category values, per vocabulary. Keys are compared after
#: lower-casing, trimming and collapsing whitespace, hyphens and underscores to one space.
SYNONYMS: dict[str, dict[str, str]] = {
    "seniority": {
        "c level": "c_level",
        "c suite": "c_level",
        "cxo": "c_level",
        "chief": "c_level",
        "vice president": "vp",
        "svp": "vp",
        "head of": "director",
        "mgr": "manager",
        "ic": "individual_contributor",
        "staff": "individual_contributor",
        "individual contributor": "individual_contributor",
    },
    "department": {
        "information technology": "it",
        "tech": "it",
        "r&d": "engineering",
        "eng": "engineering",
        "mktg": "marketing",
        "human resources": "hr",
        "people": "hr",
        "ops": "operations",
        "exec": "executive",
    },
    "authority": {
        "decision maker": "decision_maker",
        "dm": "decision_maker",
        "economic buyer": "economic_buyer",
        "budget holder": "economic_buyer",
        "champion": "influencer",
        "end user": "user",
        "n/a": "unknown",
        "dont know": "unknown",
    },
    "email_domain_kind": {"business": "corporate", "work": "corporate", "personal": "free"},
    "source": {
        "seo": "organic_search",
        "organic": "organic_search",
        "google ads": "paid_search",
        "ppc": "paid_search",
        "sem": "paid_search",
        "linkedin ads": "paid_social",
        "social": "paid_social",
        "trade show": "event",
        "conference": "event",
        "sdr": "outbound",
        "cold outreach": "outbound",
    },
    "industry": {
        "saas": "software",
        "tech": "software",
        "finance": "financial_services",
        "banking": "financial_services",
        "health care": "healthcare",
        "government": "public_sector",
        "consulting": "professional_services",
    },
    "budget": {
        "<10k": "under_10k",
        "less than 10k": "under_10k",
        "10-50k": "10k_50k",
        "10k-50k": "10k_50k",
        "50-250k": "50k_250k",
        "50k-250k": "50k_250k",
        ">250k": "over_250k",
        "250k+": "over_250k",
    },
    "timeline": {
        "<3 months": "under_3_months",
        "0-3 months": "under_3_months",
        "this quarter": "under_3_months",
        "3-6 months": "3_6_months",
        "6-12 months": "6_12_months",
        ">12 months": "over_12_months",
        "next year": "over_12_months",
        "none": "no_timeline",
    },
    "need": {"cost savings": "cost_reduction", "growth": "revenue_growth", "no need": "none"},
    "region": {"na": "north_america", "europe": "emea", "asia pacific": "apac"},
    "event_type": {
        "pageview": "page_view",
        "page view": "page_view",
        "pricing view": "pricing_page_view",
        "open": "email_open",
        "click": "email_click",
        "download": "content_download",
        "demo": "demo_request",
        "trial": "trial_signup",
    },
}

C = Column
K = Knowledge

LEADS = Table(
    name="leads",
    key="lead_id",
    time_column="created_at",
    description="One row per lead (a person who raised a hand or was sourced).",
    required=True,
    columns=(
        C("lead_id", Kind.ID, K.AT_CREATION, "Unique lead identifier.", nullable=False),
        C(
            "created_at",
            Kind.TIMESTAMP,
            K.AT_CREATION,
            "When the lead entered the CRM (UTC).",
            nullable=False,
        ),
        C("source", Kind.CATEGORY, K.AT_CREATION, "Acquisition channel.", vocabulary=SOURCES),
        C(
            "email_domain_kind",
            Kind.CATEGORY,
            K.AT_CREATION,
            "corporate or free-mail address.",
            vocabulary=EMAIL_DOMAIN_KINDS,
        ),
        C("job_title", Kind.TEXT, K.AT_CREATION, "Job title as typed on the form."),
        C(
            "seniority",
            Kind.CATEGORY,
            K.AT_CREATION,
            "Seniority derived from the title.",
            vocabulary=SENIORITIES,
        ),
        C(
            "department",
            Kind.CATEGORY,
            K.AT_CREATION,
            "Department / function.",
            vocabulary=DEPARTMENTS,
        ),
        C(
            "country",
            Kind.CATEGORY,
            K.AT_CREATION,
            "ISO 3166 alpha-2 country of the lead.",
            vocabulary=COUNTRIES,
        ),
        C("account_id", Kind.ID, K.AT_CREATION, "The lead's company (accounts.account_id)."),
        C(
            "budget",
            Kind.CATEGORY,
            K.AT_CREATION,
            "BANT Budget: stated budget band; null = not asked / not answered.",
            vocabulary=BUDGET_BANDS,
        ),
        C(
            "authority",
            Kind.CATEGORY,
            K.AT_CREATION,
            "BANT Authority: role in the purchase.",
            vocabulary=AUTHORITIES,
        ),
        C(
            "need",
            Kind.CATEGORY,
            K.AT_CREATION,
            "BANT Need: stated use case or pain; 'none' = no need stated.",
            vocabulary=NEEDS,
        ),
        C(
            "timeline",
            Kind.CATEGORY,
            K.AT_CREATION,
            "BANT Timeline: purchase timeframe band.",
            vocabulary=TIMELINES,
        ),
        C(
            "unsubscribed",
            Kind.BOOL,
            K.AT_EXTRACTION,
            "Opted out of marketing email (current value).",
        ),
        C("consent", Kind.BOOL, K.AT_EXTRACTION, "Gave processing consent (current value)."),
        C(
            "updated_at",
            Kind.TIMESTAMP,
            K.AT_EXTRACTION,
            "When the record was last modified (UTC).",
        ),
        C("first_name", Kind.TEXT, K.PERSONAL, "Personal data: never a feature, never logged."),
        C("last_name", Kind.TEXT, K.PERSONAL, "Personal data: never a feature, never logged."),
        C("email", Kind.TEXT, K.PERSONAL, "Personal data: never a feature, never logged."),
        C("phone", Kind.TEXT, K.PERSONAL, "Personal data: never a feature, never logged."),
    ),
)

ACCOUNTS = Table(
    name="accounts",
    key="account_id",
    description="One row per company.",
    columns=(
        C("account_id", Kind.ID, K.AT_CREATION, "Unique account identifier.", nullable=False),
        C("industry", Kind.CATEGORY, K.AT_CREATION, "Industry.", vocabulary=INDUSTRIES),
        C(
            "employee_count",
            Kind.INT,
            K.AT_CREATION,
            "Number of employees.",
            min_value=1,
            max_value=10_000_000,
        ),
        C(
            "annual_revenue",
            Kind.FLOAT,
            K.AT_CREATION,
            "Annual revenue in USD.",
            min_value=0,
            max_value=1e13,
        ),
        C("country", Kind.CATEGORY, K.AT_CREATION, "Headquarters country.", vocabulary=COUNTRIES),
        C("region", Kind.CATEGORY, K.AT_CREATION, "Sales region.", vocabulary=REGIONS),
        C(
            "is_customer",
            Kind.BOOL,
            K.AT_EXTRACTION,
            "Existing customer today (may be *because* a lead was won: never a feature).",
        ),
        C(
            "updated_at",
            Kind.TIMESTAMP,
            K.AT_EXTRACTION,
            "When the record was last modified (UTC).",
        ),
    ),
)

EVENTS = Table(
    name="events",
    key=None,
    time_column="timestamp",
    description="Behavioral history: one row per tracked interaction.",
    columns=(
        C("lead_id", Kind.ID, K.AS_OF_SNAPSHOT, "The lead (leads.lead_id).", nullable=False),
        C("timestamp", Kind.TIMESTAMP, K.AS_OF_SNAPSHOT, "When it happened (UTC).", nullable=False),
        C(
            "event_type",
            Kind.CATEGORY,
            K.AS_OF_SNAPSHOT,
            "One of the event vocabulary.",
            nullable=False,
            vocabulary=EVENT_TYPES,
        ),
    ),
)

OPPORTUNITIES = Table(
    name="opportunities",
    key="opportunity_id",
    time_column="created_at",
    description="Sales opportunities and their outcome (the label source).",
    required=True,
    columns=(
        C(
            "opportunity_id",
            Kind.ID,
            K.AS_OF_SNAPSHOT,
            "Unique opportunity identifier; optional (rows without one are not checked for "
            "duplicates).",
        ),
        C("lead_id", Kind.ID, K.AS_OF_SNAPSHOT, "The lead (leads.lead_id).", nullable=False),
        C(
            "created_at",
            Kind.TIMESTAMP,
            K.AS_OF_SNAPSHOT,
            "When the opportunity was opened (UTC); missing: never seen as opened by features.",
        ),
        C(
            "closed_at",
            Kind.TIMESTAMP,
            K.AFTER_OUTCOME,
            "When it was closed; null while open.",
            essential=True,
        ),
        C(
            "is_won",
            Kind.BOOL,
            K.AFTER_OUTCOME,
            "Closed-won (true), closed-lost (false), null while open.",
            essential=True,
        ),
        C(
            "amount",
            Kind.FLOAT,
            K.AFTER_OUTCOME,
            "Deal amount in USD.",
            min_value=0,
            max_value=1e11,
        ),
        C(
            "updated_at",
            Kind.TIMESTAMP,
            K.AT_EXTRACTION,
            "When the record was last modified (UTC).",
        ),
    ),
)

#: The tables whose fields a history may change.
HISTORY_ENTITIES = ("leads", "accounts")

FIELD_HISTORY = Table(
    name="field_history",
    key=None,
    time_column="changed_at",
    description="Field history: one row per change of a lead's or account's field (HubSpot "
    "property history, Salesforce field history tracking), from which a field that can change is "
    "read as of each snapshot.",
    columns=(
        C(
            "entity",
            Kind.CATEGORY,
            K.AS_OF_SNAPSHOT,
            "Whose field changed: leads or accounts.",
            nullable=False,
            vocabulary=HISTORY_ENTITIES,
        ),
        C("entity_id", Kind.ID, K.AS_OF_SNAPSHOT, "The lead or account id.", nullable=False),
        C("field", Kind.TEXT, K.AS_OF_SNAPSHOT, "The column that changed.", nullable=False),
        C("value", Kind.TEXT, K.AS_OF_SNAPSHOT, "Its value from then on (missing: cleared)."),
        C(
            "changed_at",
            Kind.TIMESTAMP,
            K.AS_OF_SNAPSHOT,
            "When the value was set (UTC).",
            nullable=False,
        ),
    ),
)

del C, K

#: The four tables of every CRM export (leads and opportunities required).
TABLES: dict[str, Table] = {t.name: t for t in (LEADS, ACCOUNTS, EVENTS, OPPORTUNITIES)}
#: Tables some CRMs can export beside them, read when present.
EXTRA_TABLES: dict[str, Table] = {FIELD_HISTORY.name: FIELD_HISTORY}


def knowledge_of(table: str, column: str) -> Knowledge:
    """Return when ``table.column`` becomes known; raise KeyError naming both if unknown."""
    try:
        return {**TABLES, **EXTRA_TABLES}[table].by_name[column].knowledge
    except KeyError:
        raise KeyError(f"{table}.{column} is not in the CRM data contract") from None
