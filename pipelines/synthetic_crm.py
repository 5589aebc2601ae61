"""A synthetic B2B CRM whose true conversion probability is known exactly.

The world is a hidden Markov model, one chain per lead, one step per day:

    dormant (D) <- cold (C) <-> engaged (E) <-> evaluating (V) -> opportunity (O) -> won (W)
                                                                                 -> lost (L)

- D, W and L are absorbing. O is *observable*: entering it opens an opportunity record; leaving
  it closes that record as won or lost. D, C, E and V are hidden.
- Each day, a lead in state s emits ``Poisson(rate[s, type] * weekday_factor)`` events of each
  type (D emits nothing, so a silent lead may be dormant or merely cold: recency matters).
- Transition odds depend on what the CRM shows about the lead: firmographics, demographics,
  source and BANT answers (a missing answer is its own level with no effect). After the market
  shift date, one segment's odds of reaching and winning an opportunity change.

Because everything the transitions depend on is observable, the exact Bayes probability that a
lead open at ``as_of`` is won within the horizon given *everything observable up to as_of* comes
from the forward algorithm: filter the state over the lead's observed days (events per type, and
whether an opportunity is open), then propagate the filtered state ``horizon_days`` ahead. The
generator runs that filter alongside the simulation and writes the result for every snapshot of
the policy it is given: the *oracle*, the ceiling for any model on this data. It is never a
feature. The only thing no model can see is the hidden state itself, and the day-to-day chance.

Data-quality defects are injected so that validation has work to do: missing values (applied
*before* the transition odds are computed, so the oracle sees exactly what the data shows),
inconsistent spelling of categories, duplicate lead rows, events for unknown leads, events dated
in the future or before their lead existed. All are undone or quarantined by validation.

BANT answers and firmographics also change after creation (pipelines/synthetic_history.py):
the tables hold today's values and ``field_history`` every value set. The world never sees
those changes: the chain's odds depend on the values at creation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import contract as ct
from pipelines.synthetic_history import FieldChanges, synthetic_field_history

log = logging.getLogger(__name__)

DORMANT, COLD, ENGAGED, EVALUATING, OPPORTUNITY, WON, LOST = range(7)
OPEN_STATES = 5  # D, C, E, V, O: the states a lead that has not closed can be in
EMITTING = (COLD, ENGAGED, EVALUATING, OPPORTUNITY)
HISTORY_STREAM = 13  # the field history's own random stream (seeded with the CRM's seed)
TOUCH_STREAM = 17  # the sales touches' own random stream: the chain's draws stay as they were
NEVER = np.iinfo(np.int32).max  # the touch day of a lead never touched

# Daily event rates per emitting state (rows C, E, V, O), columns in contract.EVENT_TYPES order.
DEFAULT_EVENT_RATES = {
    #                      C       E       V       O
    "page_view": (0.120, 0.420, 0.540, 0.450),
    "pricing_page_view": (0.008, 0.060, 0.105, 0.084),
    "email_open": (0.150, 0.200, 0.250, 0.250),
    "email_click": (0.008, 0.060, 0.110, 0.090),
    "content_download": (0.004, 0.040, 0.060, 0.030),
    "webinar_registration": (0.002, 0.015, 0.015, 0.004),
    "webinar_attendance": (0.001, 0.009, 0.011, 0.003),
    "demo_request": (0.0002, 0.003, 0.015, 0.008),
    "trial_signup": (0.0002, 0.003, 0.012, 0.012),
    "product_inquiry": (0.0004, 0.005, 0.020, 0.020),
    "form_submit": (0.002, 0.015, 0.040, 0.015),
    "social_interaction": (0.008, 0.030, 0.030, 0.015),
    # The company's own action, not the lead's: no hidden state emits it (see SalesTouches).
    "sales_email": (0.0, 0.0, 0.0, 0.0),
}


@dataclass(frozen=True)
class DefectRates:
    """Rates of injected data-quality defects (fractions of rows)."""

    missing_value: float = 0.03
    inconsistent_spelling: float = 0.05
    duplicate_lead: float = 0.005
    unknown_lead_event: float = 0.001
    future_event: float = 0.0005
    event_before_lead: float = 0.0005


@dataclass(frozen=True)
class MarketShift:
    """A change in one segment's odds after a date (so that retraining matters)."""

    after_fraction: float = 0.5  # when, as a fraction of the simulated period
    column: str = "industry"
    #: segment value -> log-odds change of winning and log change of reaching an opportunity
    effects: dict[str, float] = field(
        default_factory=lambda: {"financial_services": -1.5, "healthcare": 1.2, "software": -0.8}
    )
    #: log-odds change for every lead (a market-wide slowdown: the base rate moves, so a model
    #: trained before it is miscalibrated even where its ranking holds)
    everyone: float = 0.0


@dataclass(frozen=True)
class DealAmounts:
    """What a won deal is worth: log-normal around a median that grows with the company's size
    and moves with its stated budget and industry (values at creation, as the chain's odds).
    Amounts never change the odds of winning: the oracle stays exact."""

    #: the median deal (USD) of a one-employee company with no budget or industry effect
    median_usd: float = 8_000.0
    #: log change of the amount per tenfold employees (0.6: 10x employees, 1.8x the amount)
    per_decade_of_employees: float = 0.6
    #: spread of log amount around the median (what no feature explains)
    sigma: float = 0.6
    #: log change of the amount by the budget band stated at creation
    budget: dict[str, float] = field(
        default_factory=lambda: {
            "under_10k": -0.5, "10k_50k": 0.0, "50k_250k": 0.5, "over_250k": 0.9,
        }
    )  # fmt: skip
    #: log change of the amount by the account's industry
    industry: dict[str, float] = field(
        default_factory=lambda: {
            "financial_services": 0.4, "software": 0.2, "healthcare": 0.2, "public_sector": 0.3,
            "education": -0.3, "retail": -0.2, "media": -0.2,
        }
    )  # fmt: skip


#: The event type of a sales touch in the synthetic CRM (a company action: features/contract.py).
TOUCH_TYPE = "sales_email"


@dataclass(frozen=True)
class SalesTouches:
    """Sales reaching out: each lead's first sales touch (a ``sales_email`` event, the company's
    own action) comes on each day from its creation with probability ``daily_probability``
    times e^(effect of its source), decided from what the CRM shows, never from the hidden
    state. Once touched, the lead moves on faster: its engaged -> evaluating and evaluating ->
    opportunity hazards are multiplied by e^``effect``, so a lead touched sooner converts more
    often. The oracle sees the touch (an observed event) and weighs the touch still to come."""

    daily_probability: float = 0.08
    #: log change of the daily probability by source (inbound hand-raisers are called sooner)
    source: dict[str, float] = field(
        default_factory=lambda: {
            "referral": 1.2, "direct": 1.0, "event": 0.7, "webinar": 0.5, "partner": 0.5,
            "paid_social": -0.7, "content_syndication": -1.0, "outbound": 0.3,
        }
    )  # fmt: skip
    #: log change of the engaged -> evaluating and evaluating -> opportunity hazards once touched
    effect: float = 0.4


@dataclass(frozen=True)
class SyntheticCRMConfig:
    """Everything the generator needs; defaults give a plausible mid-market B2B funnel."""

    n_leads: int = 30_000
    start: str = "2024-01-01"
    months: int = 24
    seed: int = 7
    leads_per_account: float = 2.5
    #: snapshot offsets (days after creation) and horizon for which the oracle is written
    snapshot_offsets_days: tuple[int, ...] = (1, 7, 14, 30, 60, 90)
    horizon_days: int = 90
    defects: DefectRates = field(default_factory=DefectRates)
    shift: MarketShift = field(default_factory=MarketShift)
    field_changes: FieldChanges = field(default_factory=FieldChanges)
    amounts: DealAmounts = field(default_factory=DealAmounts)
    touches: SalesTouches = field(default_factory=SalesTouches)
    #: multiplies every covariate effect: 0 = covariates carry no signal, 1 = default world
    signal_strength: float = 1.0
    #: daily hazards of the chain (before covariate effects)
    base_hazards: dict[str, float] = field(
        default_factory=lambda: {
            "cold_to_dormant": 0.025,
            "cold_to_engaged": 0.020,
            "engaged_to_cold": 0.060,
            "engaged_to_evaluating": 0.030,
            "evaluating_to_engaged": 0.080,
            "evaluating_to_opportunity": 0.040,
            "opportunity_close": 0.007,
            "win_log_odds": -0.5,
            "buyer_log_odds": -1.5,
            "browser_opportunity_factor": 0.8,
            "browser_win_log_odds": -1.0,
        }
    )
    event_rates: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: dict(DEFAULT_EVENT_RATES)
    )


@dataclass(frozen=True)
class SyntheticCRM:
    """The generated CRM tables (with defects) and the oracle (never a feature)."""

    tables: dict[str, pd.DataFrame]
    oracle: pd.DataFrame
    extracted_at: pd.Timestamp


# ------------------------------------------------------------------------------------------------
# Covariate effects (log-multipliers of transition hazards). Missing = 0.
# ------------------------------------------------------------------------------------------------
FIT_EFFECTS = {
    "industry": {
        "software": 0.35,
        "financial_services": 0.25,
        "healthcare": 0.0,
        "manufacturing": -0.1,
        "retail": -0.2,
        "education": -0.45,
        "professional_services": 0.1,
        "media": -0.15,
        "logistics": 0.0,
        "public_sector": -0.5,
    },
    "seniority": {
        "c_level": 0.25,
        "vp": 0.35,
        "director": 0.3,
        "manager": 0.1,
        "individual_contributor": -0.2,
        "student": -1.5,
    },
    "department": {
        "it": 0.3,
        "engineering": 0.2,
        "operations": 0.1,
        "finance": 0.0,
        "executive": 0.15,
        "marketing": -0.05,
        "sales": -0.05,
        "hr": -0.3,
        "other": -0.3,
    },
    "email_domain_kind": {"corporate": 0.1, "free": -0.6},
    "region": {"north_america": 0.1, "emea": 0.0, "apac": -0.1, "latam": -0.25},
    "source": {
        "organic_search": 0.0,
        "paid_search": -0.1,
        "paid_social": -0.3,
        "webinar": 0.15,
        "event": 0.1,
        "referral": 0.5,
        "partner": 0.35,
        "outbound": -0.2,
        "content_syndication": -0.5,
        "direct": 0.3,
    },
}
INTENT_EFFECTS = {
    "budget": {"under_10k": -0.5, "10k_50k": 0.0, "50k_250k": 0.3, "over_250k": 0.4},
    "authority": {
        "decision_maker": 0.4,
        "economic_buyer": 0.5,
        "influencer": 0.1,
        "user": -0.3,
        "unknown": -0.1,
    },
    "need": {
        "cost_reduction": 0.35,
        "revenue_growth": 0.3,
        "compliance": 0.45,
        "process_automation": 0.35,
        "replace_competitor": 0.55,
        "none": -0.7,
    },
    "timeline": {
        "under_3_months": 0.6,
        "3_6_months": 0.3,
        "6_12_months": 0.0,
        "over_12_months": -0.4,
        "no_timeline": -0.7,
    },
}
WIN_EFFECTS = {
    "budget": {"under_10k": -0.4, "10k_50k": 0.0, "50k_250k": 0.25, "over_250k": 0.2},
    "authority": {"decision_maker": 0.45, "economic_buyer": 0.6, "influencer": 0.0, "user": -0.4},
    "industry": {"software": 0.2, "public_sector": -0.4, "education": -0.2},
}
# Where a lead starts, by source: P(cold), P(engaged), P(evaluating).
START_MIX = {
    "default": (0.80, 0.17, 0.03),
    "webinar": (0.55, 0.40, 0.05),
    "referral": (0.50, 0.35, 0.15),
    "direct": (0.55, 0.30, 0.15),
    "partner": (0.60, 0.30, 0.10),
    "content_syndication": (0.92, 0.07, 0.01),
    "outbound": (0.90, 0.08, 0.02),
}

_INDUSTRY_P = (0.20, 0.12, 0.10, 0.12, 0.09, 0.06, 0.11, 0.06, 0.07, 0.07)
_REGION_P = (0.45, 0.33, 0.14, 0.08)
_SOURCE_P = (0.22, 0.14, 0.08, 0.08, 0.05, 0.05, 0.05, 0.12, 0.11, 0.10)
_SENIORITY_P = (0.05, 0.09, 0.18, 0.30, 0.35, 0.03)
_DEPARTMENT_P = (0.18, 0.12, 0.20, 0.10, 0.08, 0.12, 0.05, 0.05, 0.10)
_BUDGET_MISSING, _AUTHORITY_MISSING, _NEED_MISSING, _TIMELINE_MISSING = 0.62, 0.40, 0.48, 0.58
_FIRST_NAMES = np.array(
    "Ana Ben Chloe Dev Emma Femi Gus Hana Ivan Jia Kofi Lea Mia Noor Omar Pia Raj Sofia Tom Yuki".split()
)
_LAST_NAMES = np.array(
    "Alvarez Brown Chen Dubois Evans Fischer Garcia Hansen Ito Jones Khan Larsen Moreau Novak "
    "Okafor Patel Rossi Silva Tanaka Weber".split()
)
_TITLE_WORDS = {
    "c_level": "Chief {d} Officer",
    "vp": "VP {d}",
    "director": "Director of {d}",
    "manager": "{d} Manager",
    "individual_contributor": "{d} Specialist",
    "student": "Student",
}


def _effect(values: pd.Series | np.ndarray, table: dict[str, float]) -> np.ndarray:
    """Vectorised lookup of a per-category effect; missing and unlisted values have effect 0."""
    return pd.Series(values).map(table).astype("float64").fillna(0.0).to_numpy()


def _choice(rng: np.random.Generator, options: tuple[str, ...], p, n: int) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=n, p=p / p.sum())]


# ------------------------------------------------------------------------------------------------
# Static tables
# ------------------------------------------------------------------------------------------------
def _make_accounts(cfg: SyntheticCRMConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = max(1, int(round(cfg.n_leads / cfg.leads_per_account)))
    employees = np.clip(np.round(rng.lognormal(np.log(60), 1.7, n)), 1, 400_000).astype("int64")
    revenue_per_employee = rng.lognormal(np.log(160_000), 0.55, n)
    region = _choice(rng, ct.REGIONS, _REGION_P, n)
    country = np.empty(n, dtype=object)
    for r, countries in ct.COUNTRIES_BY_REGION.items():  # loop over 4 regions, not rows
        mask = region == r
        country[mask] = rng.choice(np.asarray(countries, dtype=object), size=mask.sum())
    return pd.DataFrame(
        {
            "account_id": pd.Series([f"A{i:07d}" for i in range(n)], dtype="str"),
            "industry": _choice(rng, ct.INDUSTRIES, _INDUSTRY_P, n),
            "employee_count": employees,
            "annual_revenue": np.round(employees * revenue_per_employee, -3),
            "country": country,
            "region": region,
            "is_customer": rng.random(n) < 0.03,
        }
    )


def _lead_arrival_days(cfg: SyntheticCRMConfig, days: pd.DatetimeIndex, rng) -> np.ndarray:
    """Creation day index of each lead: weekly and yearly seasonality plus gentle growth."""
    weekday = np.where(days.day_of_week >= 5, 0.3, 1.0)
    yearly = 1.0 + 0.25 * np.cos(2 * np.pi * (days.day_of_year.to_numpy() - 75) / 365.25)
    december = np.where((days.month == 12) & (days.day >= 20), 0.4, 1.0)
    august = np.where(days.month == 8, 0.8, 1.0)
    growth = np.linspace(1.0, 1.3, len(days))
    weight = weekday * yearly * december * august * growth
    counts = rng.multinomial(cfg.n_leads, weight / weight.sum())
    return np.repeat(np.arange(len(days)), counts)


def _make_leads(
    cfg: SyntheticCRMConfig, accounts: pd.DataFrame, days: pd.DatetimeIndex, rng
) -> pd.DataFrame:
    n = cfg.n_leads
    created_day = _lead_arrival_days(cfg, days, rng)
    # Bigger companies produce more leads.
    weight = np.sqrt(accounts["employee_count"].to_numpy(dtype=float))
    acc_idx = rng.choice(len(accounts), size=n, p=weight / weight.sum())
    source = _choice(rng, ct.SOURCES, _SOURCE_P, n)
    free_p = np.where(source == "content_syndication", 0.45, 0.2)
    seniority = _choice(rng, ct.SENIORITIES, _SENIORITY_P, n)
    department = _choice(rng, ct.DEPARTMENTS, _DEPARTMENT_P, n)
    department = np.where(seniority == "c_level", "executive", department).astype(object)
    own_country = rng.random(n) < 0.9
    country = np.where(
        own_country,
        accounts["country"].to_numpy()[acc_idx],
        rng.choice(np.asarray(ct.COUNTRIES, dtype=object), size=n),
    )
    # BANT: often unanswered; budget grows with company size.
    size_rank = np.log10(accounts["employee_count"].to_numpy()[acc_idx])
    budget_idx = np.clip(np.round(size_rank / 1.3 + rng.normal(0, 0.8, n)), 0, 3).astype(int)
    budget = np.asarray(ct.BUDGET_BANDS, dtype=object)[budget_idx]
    authority = np.where(
        np.isin(seniority, ["c_level", "vp"]),
        _choice(rng, ("decision_maker", "economic_buyer", "influencer"), (0.5, 0.35, 0.15), n),
        _choice(
            rng, ("influencer", "user", "unknown", "decision_maker"), (0.45, 0.35, 0.12, 0.08), n
        ),
    )
    need = _choice(rng, ct.NEEDS, (0.2, 0.2, 0.12, 0.2, 0.1, 0.18), n)
    timeline = _choice(rng, ct.TIMELINES, (0.15, 0.22, 0.25, 0.18, 0.2), n)
    for values, p_missing in (
        (budget, _BUDGET_MISSING),
        (authority, _AUTHORITY_MISSING),
        (need, _NEED_MISSING),
        (timeline, _TIMELINE_MISSING),
    ):
        values[rng.random(n) < p_missing] = None
    # Timestamps: a time of day, busier during office hours.
    seconds = np.clip(rng.normal(14 * 3600, 4 * 3600, n), 0, 86_399).astype("int64")
    created_at = days.to_numpy()[created_day] + seconds.astype("timedelta64[s]")
    first = rng.choice(_FIRST_NAMES, n)
    last = rng.choice(_LAST_NAMES, n)
    domain_kind = np.where(rng.random(n) < free_p, "free", "corporate").astype(object)
    account_ids = accounts["account_id"].to_numpy()[acc_idx]
    domain = np.where(
        domain_kind == "free",
        "mail.example",
        pd.Series(account_ids).str.lower().to_numpy() + ".example",
    )
    dept_label = (
        pd.Series(department)
        .str.replace("_", " ")
        .str.title()
        .replace({"It": "IT", "Hr": "HR", "Executive": "Executive"})
    )
    title = pd.Series(seniority).map(_TITLE_WORDS)
    job_title = [t.format(d=d) for t, d in zip(title, dept_label, strict=True)]
    order = np.argsort(created_at, kind="stable")
    leads = pd.DataFrame(
        {
            "created_at": created_at,
            "source": source,
            "email_domain_kind": domain_kind,
            "job_title": job_title,
            "seniority": seniority,
            "department": department,
            "country": country,
            "account_id": account_ids,
            "budget": budget,
            "authority": authority,
            "need": need,
            "timeline": timeline,
            "unsubscribed": rng.random(n) < 0.04,
            "consent": rng.random(n) < 0.93,
            "first_name": first,
            "last_name": last,
            "email": pd.Series(first).str.lower()
            + "."
            + pd.Series(last).str.lower()
            + "@"
            + domain,
            "phone": pd.Series(rng.integers(10**9, 10**10, n)).map("+1{:010d}".format),
            "_account_row": acc_idx,
            "_created_day": created_day,
        }
    ).iloc[order]
    leads.insert(0, "lead_id", [f"L{i:08d}" for i in range(n)])
    return leads.reset_index(drop=True)


def _blank_out(frame: pd.DataFrame, columns: list[str], rate: float, rng) -> pd.DataFrame:
    """Missing-value defect: blank a fraction of each column (before effects are computed)."""
    out = frame.copy()
    for col in columns:
        mask = rng.random(len(out)) < rate
        if pd.api.types.is_integer_dtype(out[col]):
            out[col] = out[col].astype("Int64").mask(mask)
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].mask(mask)
        else:
            out[col] = out[col].astype(object).where(~mask, None)
    return out


# ------------------------------------------------------------------------------------------------
# The chain: per-lead hazards
# ------------------------------------------------------------------------------------------------
# Rows of the hazard table, each a daily probability (WIN is P(won | the opportunity closes)).
CD, CE, EC, EV, VE, VO, CLOSE, WIN = range(8)
#: Every daily hazard is at most this: two exits of one state never sum past 1.
MAX_HAZARD = 0.45
BUYER, BROWSER = 0, 1  # the hidden lead type: nobody sees it, behaviour only hints at it


@dataclass(frozen=True)
class _Chain:
    """Per-lead parameters of the chain."""

    hazards: np.ndarray  # [8 hazards, 2 regimes (before/after shift), 2 types, n leads]
    start: np.ndarray  # [n, OPEN_STATES]: distribution of the state on the creation day
    buyer_prior: np.ndarray  # [n]: P(type = buyer), from what the CRM shows
    #: [n]: daily probability of the first sales touch until it comes (None: no touches)
    touch_q: np.ndarray | None = None
    #: log change of the E -> V and V -> O hazards once the lead was touched
    touch_effect: float = 0.0

    def gather(
        self,
        idx: np.ndarray,
        regime: int,
        lead_type: np.ndarray | int,
        touched: np.ndarray | None = None,
    ) -> np.ndarray:
        """Hazards [8, len(idx)] of leads ``idx`` in ``regime`` for the given type(s);
        ``touched`` (per lead): the first sales touch came before the day transitioned into."""
        hz = self.hazards[:, regime, lead_type, idx]
        if touched is None or not self.touch_effect or not np.any(touched):
            return hz
        return touch_hazards(hz, self.touch_effect, touched)


def touch_hazards(hz: np.ndarray, effect: float, touched: np.ndarray | bool = True) -> np.ndarray:
    """``hz`` [8, ...] with E -> V and V -> O multiplied by e^``effect`` where ``touched``
    (clipped as every hazard is, so that a state's exits never exceed 1)."""
    out = hz.copy()
    for h in (EV, VO):
        out[h] = np.where(touched, np.clip(hz[h] * np.exp(effect), 0.0, MAX_HAZARD), hz[h])
    return out


def _chain(cfg: SyntheticCRMConfig, leads: pd.DataFrame, accounts: pd.DataFrame) -> _Chain:
    # Each lead's odds depend on its own and its account's values as shown at creation, and on
    # nothing shared and hidden. Keep it so: with a hidden account-level effect, the enrichment
    # of a won lead's account (synthetic_history.py) would tell its other leads something the
    # oracle does not condition on, and the oracle would no longer be exact.
    s = cfg.signal_strength
    acc = accounts.iloc[leads["_account_row"].to_numpy()].reset_index(drop=True)
    firm = acc[["industry", "region", "employee_count"]]

    def column(name: str) -> pd.Series:
        return firm[name] if name in firm else leads[name]

    size = pd.to_numeric(firm["employee_count"], errors="coerce").to_numpy(dtype=float)
    log_size = np.log10(np.where(np.isnan(size), 60.0, size))
    # Mid-sized companies buy best; very small and very large ones less (a hump).
    size_fit = 0.35 - 0.18 * (log_size - 2.5) ** 2
    fit = s * (size_fit + sum(_effect(column(c), t) for c, t in FIT_EFFECTS.items()))
    intent = s * sum(_effect(leads[c], t) for c, t in INTENT_EFFECTS.items())
    win = sum(_effect(column(c), t) for c, t in WIN_EFFECTS.items())
    win = s * (win + 0.15 * np.clip(log_size - 2.0, -1.5, 2.0))
    # A segment's change scales with the signal; a market-wide one (everyone) is no covariate.
    shift_effect = s * _effect(column(cfg.shift.column), cfg.shift.effects) + cfg.shift.everyone
    b = cfg.base_hazards
    n = len(leads)
    table = np.zeros((8, 2, 2, n))

    def hazard(base: float, log_mult) -> np.ndarray:
        return np.clip(base * np.exp(log_mult) * np.ones(n), 0.0, MAX_HAZARD)

    for regime in (0, 1):
        shift = shift_effect if regime else 0.0
        for lead_type in (BUYER, BROWSER):
            # Browsers look like buyers until late: they rarely open or win an opportunity.
            vo_type = 0.0 if lead_type == BUYER else np.log(b["browser_opportunity_factor"])
            win_type = 0.0 if lead_type == BUYER else b["browser_win_log_odds"]
            h = table[:, regime, lead_type]
            h[CD] = hazard(b["cold_to_dormant"], -0.5 * fit)
            h[CE] = hazard(b["cold_to_engaged"], fit + 0.5 * intent)
            h[EC] = hazard(b["engaged_to_cold"], -0.3 * fit)
            h[EV] = hazard(b["engaged_to_evaluating"], 0.5 * fit + intent)
            h[VE] = hazard(b["evaluating_to_engaged"], -0.3 * intent)
            h[VO] = hazard(
                b["evaluating_to_opportunity"], 0.6 * fit + 0.8 * intent + 0.5 * shift + vo_type
            )
            h[CLOSE] = hazard(b["opportunity_close"], 0.0)
            logit = b["win_log_odds"] + win + 0.3 * intent + shift + win_type
            h[WIN] = 1 / (1 + np.exp(-logit))
    start = np.zeros((n, OPEN_STATES))
    mix = np.array(
        [START_MIX.get(v, START_MIX["default"]) for v in ct.SOURCES] + [START_MIX["default"]]
    )
    src_idx = leads["source"].map({v: i for i, v in enumerate(ct.SOURCES)}).fillna(len(ct.SOURCES))
    start[:, COLD : EVALUATING + 1] = mix[src_idx.to_numpy(dtype=int)]
    buyer_prior = 1 / (1 + np.exp(-(b["buyer_log_odds"] + 0.5 * fit + 0.5 * intent)))
    touches = cfg.touches
    touch_q = np.clip(
        touches.daily_probability * np.exp(_effect(leads["source"], touches.source)), 0.0, 1.0
    )
    return _Chain(
        hazards=table,
        start=start,
        buyer_prior=buyer_prior,
        touch_q=touch_q if touches.daily_probability > 0 else None,
        touch_effect=touches.effect,
    )


def _transition(states: list[np.ndarray], hz) -> list[np.ndarray]:
    """One day of the chain: the mass in each state (D, C, E, V, O[, W, L]) after the day.

    ``states`` holds one array per state (5 open states, or all 7 to track closings too);
    ``hz`` the 8 hazards, broadcastable against them. Without W and L, the mass that closes is
    dropped: the lead is known to be still open.
    """
    cd, ce, ec, ev, ve, vo, close, win = hz
    d, c, e, v, o = states[:OPEN_STATES]
    out = [
        d + c * cd,
        c * (1 - cd - ce) + e * ec,
        e * (1 - ec - ev) + c * ce + v * ve,
        v * (1 - ve - vo) + e * ev,
        o * (1 - close) + v * vo,
    ]
    if len(states) > OPEN_STATES:
        out += [states[WON] + o * close * win, states[LOST] + o * close * (1 - win)]
    return out


def _predict_step(alpha: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """One day of the chain applied to state distributions ``alpha`` [n, 5 or 7], hazards [8, n]."""
    return np.stack(_transition(list(alpha.T), hz), axis=1)


def _day_loglik(
    counts: np.ndarray, in_opp: np.ndarray, lam: np.ndarray, day_factor: float
) -> np.ndarray:
    """log P(one day's observations | state) up to a constant, per lead [m, OPEN_STATES].

    ``counts`` [m, event types] are the day's events per type; each type is Poisson with rate
    ``lam[state, type] * day_factor``; ``in_opp`` says whether an opportunity is open (state O).
    """
    # A zero rate makes any count impossible: a huge finite penalty keeps 0 * log(0) at 0.
    log_lam = np.where(lam > 0, np.log(np.where(lam > 0, lam, 1.0)), -1e30)
    loglik = counts @ log_lam.T - lam.sum(axis=1) * day_factor
    loglik[:, DORMANT] = np.where(counts.sum(axis=1) > 0, -np.inf, 0.0)
    loglik[:, OPPORTUNITY] = np.where(in_opp, loglik[:, OPPORTUNITY], -np.inf)
    loglik[in_opp, :OPPORTUNITY] = -np.inf
    return loglik


def _filter_day(
    alpha: np.ndarray, hz: list[np.ndarray], loglik: np.ndarray, fresh: np.ndarray
) -> np.ndarray:
    """One day of the forward filter over (type, state): predict, weigh, normalise.

    ``alpha`` [m, 2 types, OPEN_STATES] is yesterday's filtered distribution (or the prior for
    ``fresh`` leads, created today, which skip the prediction); ``hz`` the hazards per type.
    Mass that would close (W, L) is dropped: the lead is observed to be still open.
    """
    a = alpha.copy()
    for t in (BUYER, BROWSER):
        stepped = _predict_step(alpha[:, t], hz[t])
        a[:, t] = np.where(fresh[:, None], alpha[:, t], stepped)
    loglik = loglik - loglik.max(axis=1, keepdims=True)
    post = a * np.exp(loglik)[:, None, :]
    return post / post.sum(axis=(1, 2), keepdims=True)


# ------------------------------------------------------------------------------------------------
# Simulation and filtering, one day at a time, vectorised over leads
# ------------------------------------------------------------------------------------------------
def _simulate(cfg, leads, chain: _Chain, days: pd.DatetimeIndex, shift_day: int, rng, progress):
    """Simulate the chain and run the forward filter (over type x state) on what it emits."""
    n, n_days = len(leads), len(days)
    rates = np.array([cfg.event_rates[t] for t in ct.EVENT_TYPES]).T  # [4 emitting, types]
    lam = np.zeros((OPEN_STATES, len(ct.EVENT_TYPES)))
    lam[COLD:] = rates
    total_rate = lam.sum(axis=1)
    type_cdf = np.cumsum(lam / np.where(total_rate > 0, total_rate, 1)[:, None], axis=1)
    weekday_factor = np.where(days.day_of_week >= 5, 0.35, 1.0)
    weekday_factor = weekday_factor / weekday_factor.mean()

    created_day = leads["_created_day"].to_numpy()
    created_sec = (
        (leads["created_at"].to_numpy() - days.to_numpy()[created_day]) // np.timedelta64(1, "s")
    ).astype("int64")
    lead_type = np.where(rng.random(n) < chain.buyer_prior, BUYER, BROWSER).astype(np.int8)
    touch_day, touch_sec = _touch_days(cfg, chain, created_day, created_sec)
    touch_order = np.argsort(touch_day, kind="stable")
    touches_on = np.split(
        touch_order, np.searchsorted(touch_day[touch_order], np.arange(1, n_days))
    )
    touch_type = ct.EVENT_TYPES.index(TOUCH_TYPE)
    state = np.full(n, -1, dtype=np.int8)  # -1 = not yet created
    opp_open_day = np.full(n, -1, dtype=np.int32)
    close_day = np.full(n, -1, dtype=np.int32)
    won = np.zeros(n, dtype=bool)
    offsets = np.asarray(sorted(set(cfg.snapshot_offsets_days)), dtype=np.int32)
    track_until = created_day + offsets.max()  # filter a lead until its last snapshot
    alpha = np.zeros((n, 2, OPEN_STATES))  # filtered P(type, state | observed so far)
    arrivals = np.split(np.arange(n), np.searchsorted(created_day, np.arange(1, n_days)))
    ev_lead, ev_day, ev_sec, ev_type = [], [], [], []
    snap_lead, snap_offset, snap_alpha = [], [], []
    active = np.empty(0, dtype=np.int64)  # created, not absorbed
    tracked = np.empty(0, dtype=np.int64)  # created, open, before its last snapshot
    for d in range(n_days):
        if progress is not None:
            progress(d, n_days)
        regime_today = int(d >= shift_day)
        new = arrivals[d]
        if len(new):
            u = rng.random(len(new))
            state[new] = (u[:, None] > np.cumsum(chain.start[new], axis=1)).sum(axis=1)
            prior = chain.buyer_prior[new]
            alpha[new, BUYER] = prior[:, None] * chain.start[new]
            alpha[new, BROWSER] = (1 - prior)[:, None] * chain.start[new]
            active = np.concatenate([active, new])
            tracked = np.concatenate([tracked, new])
        # --- emissions of active leads
        counts = rng.poisson(total_rate[state[active]] * weekday_factor[d])
        has = counts > 0
        e_lead = np.repeat(active[has], counts[has])
        e_type = (rng.random(len(e_lead))[:, None] > type_cdf[state[e_lead]]).sum(axis=1)
        e_type = np.minimum(e_type, len(ct.EVENT_TYPES) - 1).astype(np.int8)
        start_sec = np.where(created_day[e_lead] == d, created_sec[e_lead], 0)
        e_sec = start_sec + (rng.random(len(e_lead)) * (86_400 - start_sec)).astype("int64")
        ev_lead.append(e_lead.astype(np.int32))
        ev_day.append(np.full(len(e_lead), d, dtype=np.int32))
        ev_sec.append(e_sec.astype(np.int32))
        ev_type.append(e_type)
        # --- the first sales touch of leads still open (dormant ones too: sales cannot tell)
        touched_now = touches_on[d] if d < len(touches_on) else touches_on[-1][:0]
        touched_now = touched_now[(state[touched_now] >= 0) & (state[touched_now] < WON)]
        ev_lead.append(touched_now.astype(np.int32))
        ev_day.append(np.full(len(touched_now), d, dtype=np.int32))
        ev_sec.append(touch_sec[touched_now].astype(np.int32))
        ev_type.append(np.full(len(touched_now), touch_type, dtype=np.int8))
        # --- forward filter of tracked leads with today's observations
        if len(tracked):
            pos = np.full(n, -1, dtype=np.int64)
            pos[tracked] = np.arange(len(tracked))
            tpos = pos[e_lead]
            keep = tpos >= 0
            n_types = len(ct.EVENT_TYPES)
            counts_today = np.bincount(
                tpos[keep] * n_types + e_type[keep], minlength=len(tracked) * n_types
            ).reshape(len(tracked), n_types)
            in_opp = state[tracked] == OPPORTUNITY  # an open opportunity is observed
            loglik = _day_loglik(counts_today, in_opp, lam, weekday_factor[d])
            # Into today: touched before today (the touch is observed, the filter knows it).
            before = touch_day[tracked] < d
            hz = [chain.gather(tracked, regime_today, t, before) for t in (BUYER, BROWSER)]
            fresh = created_day[tracked] == d  # the creation day starts from the prior
            alpha[tracked] = _filter_day(alpha[tracked], hz, loglik, fresh)
            # Record the filtered state at each snapshot whose as_of is tomorrow 00:00.
            age = d + 1 - created_day[tracked]
            at_snap = np.isin(age, offsets)
            snap_lead.append(tracked[at_snap])
            snap_offset.append(age[at_snap].astype(np.int32))
            snap_alpha.append(alpha[tracked[at_snap]])
        # --- transitions to tomorrow
        if d + 1 < n_days and len(active):
            one_hot = np.zeros((len(active), 7))
            one_hot[np.arange(len(active)), state[active]] = 1.0
            hz = chain.gather(
                active, int(d + 1 >= shift_day), lead_type[active], touch_day[active] <= d
            )
            probs = _predict_step(one_hot, hz)
            u = rng.random(len(active))[:, None]
            nxt = (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 6).astype(np.int8)
            opened = (nxt == OPPORTUNITY) & (state[active] != OPPORTUNITY)
            opp_open_day[active[opened]] = d + 1
            closed = (nxt == WON) | (nxt == LOST)
            close_day[active[closed]] = d + 1
            won[active[nxt == WON]] = True
            state[active] = nxt
            active = active[(nxt != DORMANT) & ~closed]
        if len(tracked):
            open_ = (state[tracked] != WON) & (state[tracked] != LOST)
            tracked = tracked[(track_until[tracked] > d + 1) & open_]
    events = {
        "lead": np.concatenate(ev_lead),
        "day": np.concatenate(ev_day),
        "sec": np.concatenate(ev_sec),
        "type": np.concatenate(ev_type),
    }
    snaps = {
        "lead": np.concatenate(snap_lead) if snap_lead else np.empty(0, np.int64),
        "offset": np.concatenate(snap_offset) if snap_offset else np.empty(0, np.int32),
        "alpha": np.concatenate(snap_alpha) if snap_alpha else np.empty((0, 2, OPEN_STATES)),
    }
    return events, snaps, opp_open_day, close_day, won, touch_day


def _touch_days(
    cfg, chain: _Chain, created_day: np.ndarray, created_sec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each lead's first-touch day (geometric from its creation day with its daily probability;
    :data:`NEVER` without touches) and second of that day (after the lead's creation), from
    the touches' own random stream."""
    n = len(created_day)
    rng = np.random.default_rng([cfg.seed, TOUCH_STREAM])
    if chain.touch_q is None:
        return np.full(n, NEVER, dtype=np.int64), np.zeros(n, dtype=np.int64)
    q = chain.touch_q
    wait = np.full(n, NEVER, dtype=np.int64)
    some = q > 0
    wait[some] = rng.geometric(q[some]) - 1  # 0: the creation day itself
    day = np.where(some, created_day + np.minimum(wait, NEVER - created_day.max() - 1), NEVER)
    start = np.where(day == created_day, created_sec, 0)
    sec = start + (rng.random(n) * (86_400 - start)).astype(np.int64)
    return day.astype(np.int64), sec


def _step_by_state(v: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """One day of the chain for distributions laid out state-major: v [types, 7, m], hz [8, types, m]."""
    return np.stack(_transition(list(v.swapaxes(0, 1)), hz), axis=1)


def _oracle(
    cfg,
    snaps,
    chain: _Chain,
    created_day,
    shift_day: int,
    n_days: int,
    chunk: int = 250_000,
    touch_day: np.ndarray | None = None,
) -> pd.DataFrame:
    """P(won within the horizon | everything observable up to as_of), per recorded snapshot.

    With sales touches (``touch_day`` per lead): a lead touched before as_of moves on with the
    touched hazards; one not yet touched may be on each later day (its daily probability), so
    its state is propagated as two parts, untouched and touched, the one feeding the other."""
    lead, offset = snaps["lead"], snaps["offset"]
    as_of_day = created_day[lead] + offset
    keep = as_of_day + cfg.horizon_days <= n_days  # censored snapshots get no oracle
    lead, as_of_day, alpha = lead[keep], as_of_day[keep], snaps["alpha"][keep]
    p_true = np.empty(len(lead))
    for lo in range(0, len(lead), chunk):  # chunks bound the memory of the hazard copies
        part = slice(lo, lo + chunk)
        idx = lead[part]
        before, after = chain.hazards[:, 0][:, :, idx], chain.hazards[:, 1][:, :, idx]
        # Day as_of_day is the first day of the horizon: the transition into it is step 0,
        # taken in the regime of that day.
        steps_before_shift = shift_day - as_of_day[part]
        v = np.zeros((2, 7, len(idx)))
        v[:, :OPEN_STATES] = alpha[part].transpose(1, 2, 0)
        touching = touch_day is not None and chain.touch_q is not None
        if touching:
            touched = touch_day[idx] < as_of_day[part]  # observed before as_of
            q = chain.touch_q[idx]
            v_touched, v = np.where(touched, v, 0.0), np.where(touched, 0.0, v)
        for step in range(cfg.horizon_days):
            shifted = step >= steps_before_shift
            if shifted.all():
                hz = after
            elif not shifted.any():
                hz = before
            else:
                hz = np.where(shifted, after, before)
            if touching:
                if step:  # the touch on the day before this step's day, if it came then
                    moved = q * v
                    v, v_touched = v - moved, v_touched + moved
                v_touched = _step_by_state(v_touched, touch_hazards(hz, chain.touch_effect))
            v = _step_by_state(v, hz)
        p_true[part] = v[:, WON].sum(axis=0) + (v_touched[:, WON].sum(axis=0) if touching else 0.0)
    return pd.DataFrame({"lead": lead, "as_of_day": as_of_day, "p_true": p_true})


# ------------------------------------------------------------------------------------------------
# Defects
# ------------------------------------------------------------------------------------------------
def _respell(values: pd.Series, column: str, rate: float, rng) -> pd.Series:
    """Inconsistent spelling: upper/title case, padding, or a known synonym."""
    out = values.astype(object).copy()
    mask = (rng.random(len(out)) < rate) & out.notna().to_numpy()
    if not mask.any():
        return out
    chosen = pd.Series(out[mask].to_numpy(dtype=object), dtype="str")
    kind = rng.integers(0, 4, mask.sum())
    inverse: dict[str, list[str]] = {}
    for alias, canonical in ct.SYNONYMS.get(column, {}).items():
        inverse.setdefault(canonical, []).append(alias)
    synonym = chosen.map(lambda v: inverse.get(v, [v])[0])  # per distinct value via map
    variants = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            chosen.str.upper().to_numpy(dtype=object),
            ("  " + chosen.str.replace("_", " ").str.title() + " ").to_numpy(dtype=object),
            synonym.str.upper().to_numpy(dtype=object),
        ],
        default=chosen.str.replace("_", "-").to_numpy(dtype=object),
    )
    out[mask] = variants
    return out


def _inject_event_defects(
    lead: np.ndarray,
    ts: np.ndarray,
    kind: np.ndarray,
    created_at: np.ndarray,
    d: DefectRates,
    extracted_at: pd.Timestamp,
    rng,
):
    """Append defect rows (copies of random events) to the event arrays.

    Events for unknown leads get lead codes past the last real lead (their ids are returned);
    future events are moved past the extraction; early events before their lead's creation.
    """
    n, n_leads = len(ts), len(created_at)
    parts = [(lead, ts, kind)]
    k = rng.binomial(n, d.unknown_lead_event)
    unknown_ids = [f"X{i:08d}" for i in rng.choice(10**8, size=k, replace=False)] if k else []
    if k:
        pick = rng.integers(0, n, k)
        parts.append((n_leads + np.arange(k), ts[pick], kind[pick]))
    k = rng.binomial(n, d.future_event)
    if k:
        pick = rng.integers(0, n, k)
        later = np.datetime64(extracted_at) + rng.integers(1, 400, k).astype("timedelta64[D]")
        parts.append((lead[pick], later.astype(ts.dtype), kind[pick]))
    k = rng.binomial(n, d.event_before_lead)
    if k:
        pick = rng.integers(0, n, k)
        early = created_at[lead[pick]] - rng.integers(1, 30, k).astype("timedelta64[D]")
        parts.append((lead[pick], early.astype(ts.dtype), kind[pick]))
    # Defect rows go at the end: an export's row order means nothing.
    lead, ts, kind = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return lead, ts, kind, unknown_ids


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------
#: How ``crm_meta.json`` names the maker of a synthetic CRM.
GENERATOR = "leadscore synthetic CRM"


def _deal_amounts(
    amounts: DealAmounts,
    leads: pd.DataFrame,
    accounts: pd.DataFrame,
    rows: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The amount of each opportunity of the leads at ``rows`` (rounded to $100)."""
    account = leads["_account_row"].to_numpy()[rows]
    size = accounts["employee_count"].to_numpy(dtype=float)[account]
    log_median = (
        np.log(amounts.median_usd)
        + amounts.per_decade_of_employees * np.log10(np.nan_to_num(size, nan=60.0))
        + _effect(leads["budget"].iloc[rows], amounts.budget)
        + _effect(accounts["industry"].iloc[account], amounts.industry)
    )
    return np.round(rng.lognormal(log_median, amounts.sigma), -2)


def _days(start: str, months: int) -> pd.DatetimeIndex:
    """The simulated days: ``months`` calendar months from ``start``."""
    first = pd.Timestamp(start)
    end = first + pd.DateOffset(months=months)
    return pd.date_range(first, end, freq="D", inclusive="left", unit="s")


def shift_date(config: Mapping[str, Any]) -> pd.Timestamp | None:
    """The day the market shift starts, from a generator config as ``crm_meta.json`` records it
    (``config``); None when it has no shift."""
    shift = config.get("shift") or {}
    if not shift.get("effects") and not shift.get("everyone"):
        return None
    days = _days(config["start"], int(config["months"]))
    return days[int(round(float(shift.get("after_fraction", 0.5)) * len(days)))]


def generate_crm(
    cfg: SyntheticCRMConfig, progress: Callable[[int, int], None] | None = None
) -> SyntheticCRM:
    """Generate the four CRM tables (with defects, today's values), their field history, and the
    oracle for ``cfg``'s snapshot policy.

    ``progress(day, n_days)`` is called once per simulated day, if given.
    """
    if min(cfg.snapshot_offsets_days) < 1:
        raise ValueError("snapshot offsets must be >= 1 day after creation")
    rng = np.random.default_rng(cfg.seed)
    days = _days(cfg.start, cfg.months)
    extracted_at = (days[-1] + pd.Timedelta(days=1)).as_unit("s")
    shift_day = int(round(cfg.shift.after_fraction * len(days)))
    accounts = _make_accounts(cfg, rng)
    leads = _make_leads(cfg, accounts, days, rng)
    dr = cfg.defects
    # Missing values first, so the chain's odds depend on exactly what the data shows.
    true_accounts = accounts  # before the defects: what enrichment fills in later
    accounts = _blank_out(
        accounts, ["industry", "employee_count", "annual_revenue"], dr.missing_value, rng
    )
    leads = _blank_out(
        leads, ["source", "seniority", "department", "country", "job_title"], dr.missing_value, rng
    )
    chain = _chain(cfg, leads, accounts)
    events_raw, snaps, opp_open_day, close_day, won, touch_day = _simulate(
        cfg, leads, chain, days, shift_day, rng, progress
    )
    log.info(
        "simulated %d leads, %d events over %d days", len(leads), len(events_raw["lead"]), len(days)
    )

    day0 = days.to_numpy()
    lead_ids = leads["lead_id"].to_numpy()
    order = np.lexsort((events_raw["lead"], events_raw["sec"], events_raw["day"]))
    ev_lead = events_raw["lead"][order]
    ev_ts = day0[events_raw["day"][order]] + events_raw["sec"][order].astype("timedelta64[s]")
    ev_type = events_raw["type"][order]
    del events_raw, order

    has_opp = np.flatnonzero(opp_open_day >= 0)
    opp_created = day0[opp_open_day[has_opp]] + rng.integers(
        8 * 3600, 19 * 3600, len(has_opp)
    ).astype("timedelta64[s]")
    closed = close_day[has_opp] >= 0
    closed_at = np.where(
        closed,
        day0[np.clip(close_day[has_opp], 0, len(days) - 1)]
        + rng.integers(8 * 3600, 19 * 3600, len(has_opp)).astype("timedelta64[s]"),
        np.datetime64("NaT"),
    )
    amount = _deal_amounts(cfg.amounts, leads, accounts, has_opp, rng)
    opportunities = pd.DataFrame(
        {
            "opportunity_id": pd.Series([f"O{i:08d}" for i in range(len(has_opp))], dtype="str"),
            "lead_id": pd.Series(lead_ids[has_opp], dtype="str"),
            "created_at": opp_created,
            "closed_at": closed_at,
            "is_won": pd.array(np.where(closed, won[has_opp], False), dtype="boolean"),
            "amount": amount,
        }
    )
    opportunities.loc[~closed, "is_won"] = pd.NA
    # An account becomes a customer because a lead was won: the at_extraction leak.
    won_accounts = leads["account_id"].to_numpy()[won]
    accounts["is_customer"] = accounts["is_customer"] | accounts["account_id"].isin(won_accounts)

    oracle_raw = _oracle(
        cfg, snaps, chain, leads["_created_day"].to_numpy(), shift_day, len(days),
        touch_day=touch_day,
    )  # fmt: skip
    oracle = pd.DataFrame(
        {
            "lead_id": pd.Series(lead_ids[oracle_raw["lead"]], dtype="str"),
            "as_of": day0[oracle_raw["as_of_day"].to_numpy()],
            "horizon_days": np.int32(cfg.horizon_days),
            "p_true": oracle_raw["p_true"].to_numpy(),
        }
    ).sort_values(["as_of", "lead_id"], ignore_index=True)

    # Defects that validation must undo or quarantine.
    for col in ("source", "seniority", "department", "authority", "budget", "timeline", "need"):
        leads[col] = _respell(leads[col], col, dr.inconsistent_spelling, rng)
    accounts["industry"] = _respell(accounts["industry"], "industry", dr.inconsistent_spelling, rng)
    # Values set after creation (the world never sees them): field history, and today's values
    # in the tables. A generator of its own, so the rest of the CRM is drawn as before.
    outcome = pd.DataFrame(
        {"closed_at": pd.Series(np.datetime64("NaT"), index=range(len(leads)), dtype="M8[s]")}
    )
    outcome["won"] = won
    outcome["amount"] = np.nan
    outcome.loc[has_opp, "closed_at"] = closed_at
    outcome.loc[has_opp, "amount"] = amount
    field_history = synthetic_field_history(
        leads,
        accounts,
        true_accounts,
        outcome,
        extracted_at,
        cfg.field_changes,
        np.random.default_rng([cfg.seed, HISTORY_STREAM]),
    )
    leads = leads.drop(columns=["_account_row", "_created_day"])
    ev_lead, ev_ts, ev_type, unknown_ids = _inject_event_defects(
        ev_lead, ev_ts, ev_type, leads["created_at"].to_numpy(), dr, extracted_at, rng
    )
    # Ids and types as dictionaries (codes + a few distinct strings): 50M events stay cheap.
    events = pd.DataFrame(
        {
            "lead_id": pd.Categorical.from_codes(ev_lead, categories=[*lead_ids, *unknown_ids]),
            "timestamp": ev_ts,
            "event_type": pd.Categorical.from_codes(ev_type, categories=list(ct.EVENT_TYPES)),
        }
    )
    del ev_lead, ev_ts, ev_type
    n_dup = rng.binomial(len(leads), dr.duplicate_lead)
    if n_dup:
        dups = leads.sample(n=n_dup, random_state=int(rng.integers(2**31)))
        leads = pd.concat([leads, dups], ignore_index=True)
    for frame in (leads, accounts):
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].astype("str")
    return SyntheticCRM(
        tables={
            "leads": leads,
            "accounts": accounts,
            "events": events,
            "opportunities": opportunities,
            "field_history": field_history,
        },
        oracle=oracle,
        extracted_at=extracted_at,
    )
