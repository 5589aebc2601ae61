"""Field history of the synthetic CRM: BANT answers and firmographics that change after creation.

A real CRM export holds each field's *current* value. Reps fill in a budget after the discovery
call, correct a timeline, and update a won deal's record after it closed; enrichment tools fill
in a company's size once it became a customer. This module writes those changes as the
``field_history`` table (one row per value set: entity, entity_id, field, value, changed_at) and
overwrites the leads and accounts tables with each field's last value, so the synthetic export
has the same trap as a real one: reading today's value leaks what happened later.

The world does not see any of it. The chain's odds depend on the values at creation only, and
every later change is either independent of everything the chain does, or dated after the
lead's outcome. So the oracle, which conditions on the values at creation, stays exact:

- **Fill-ins** (``fill_in``): an answer missing at creation is set within ``fill_in_days``,
  to the answer of another lead drawn at random. Independent noise: it tells nothing.
- **Corrections** (``correction``): an answer given at creation is changed the same way.
- **After a win** (``won_update``): within ``update_days`` of the close, the rep records the
  authority as decision maker, the timeline as under three months and the budget as the band of
  the deal's amount. **After a loss** (``lost_update``): no timeline, no need. These are the
  leak: dated after the outcome, they are only ever read by a snapshot through today's value.
- **Enrichment of won accounts** (``enrich_won_accounts``): an account's industry, size or
  revenue missing at creation is filled in with its true value after one of its leads was won
  ("firmographics filled in only for won deals").

Each lead's creation values are in the history at its ``created_at``; each account's at its
first lead's creation. Changes dated at or after the extraction are not written (the export
cannot hold them). Drawn with generators of its own (one for leads, one for accounts), so the
rest of the CRM is unchanged, and every draw made before an outcome is the same whatever the
outcome: fill-ins and corrections are drawn before any update that depends on one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract as ct

#: Lead fields the synthetic CRM keeps a history of (the BANT answers).
LEAD_FIELDS = ("budget", "authority", "need", "timeline")
#: Account fields the synthetic CRM keeps a history of (firmographics).
ACCOUNT_FIELDS = ("industry", "employee_count", "annual_revenue")
#: What the rep writes into a won lead's record after the win (budget: the deal's band).
WON_VALUES = {"authority": "decision_maker", "timeline": "under_3_months"}
#: ... and into a lost lead's record after the loss.
LOST_VALUES = {"timeline": "no_timeline", "need": "none"}
#: Upper edges (USD) of the budget bands but the last, for the band of a won deal's amount.
BUDGET_EDGES = (10_000, 50_000, 250_000)
_DAY_S = 86_400


@dataclass(frozen=True)
class FieldChanges:
    """How BANT answers and firmographics change after creation (module docstring)."""

    fill_in: float = 0.3
    correction: float = 0.03
    fill_in_days: int = 60
    won_update: float = 0.6
    lost_update: float = 0.3
    enrich_won_accounts: float = 0.7
    update_days: int = 14


@dataclass(frozen=True)
class _Changes:
    """Rows of one table's history: entity row index, field, value, time."""

    row: np.ndarray
    field: np.ndarray
    value: np.ndarray
    at: np.ndarray
    initial: np.ndarray  # the value at creation (already in the table), not a later change


def _rows(row, name: str, value, at, initial: bool = False) -> _Changes:
    row = np.asarray(row)
    return _Changes(
        row=row,
        field=np.full(len(row), name, dtype=object),
        value=np.asarray(value, dtype=object),
        at=np.asarray(at, dtype="datetime64[s]"),
        initial=np.full(len(row), initial),
    )


def _as_text(values: pd.Series) -> np.ndarray:
    """A column's values as the text history holds (whole numbers without ``.0``)."""
    if pd.api.types.is_numeric_dtype(values):
        number = pd.to_numeric(values, errors="coerce").astype("float64")
        whole = number.notna() & (number == number.round())
        text = number.astype(str).where(~whole, number.round().astype("Int64").astype(str))
        return text.where(number.notna(), None).to_numpy(dtype=object)
    return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)


def _later(rng, start: np.ndarray, days: int) -> np.ndarray:
    """A time within ``days`` after each ``start`` (at least one second after it)."""
    seconds = rng.integers(1, max(days, 1) * _DAY_S, len(start))
    return start.astype("datetime64[s]") + seconds.astype("timedelta64[s]")


def _from_others(rng, values: np.ndarray, n: int) -> np.ndarray:
    """``n`` answers drawn from the answers other leads gave (the field's own distribution)."""
    given = values[pd.notna(values)]
    if not len(given):
        return np.full(n, None, dtype=object)
    return given[rng.integers(0, len(given), n)]


def _budget_band(amount: np.ndarray) -> np.ndarray:
    return np.asarray(ct.BUDGET_BANDS, dtype=object)[np.searchsorted(BUDGET_EDGES, amount, "right")]


def _lead_changes(
    leads: pd.DataFrame,
    outcome: pd.DataFrame,
    changes: FieldChanges,
    rng: np.random.Generator,
) -> list[_Changes]:
    """Creation values, fill-ins, corrections and the updates after each lead's outcome."""
    created = leads["created_at"].to_numpy().astype("datetime64[s]")
    n = len(leads)
    parts = []
    for name in LEAD_FIELDS:
        values = leads[name].to_numpy(dtype=object)
        given = pd.notna(values)
        parts.append(_rows(np.flatnonzero(given), name, values[given], created[given], True))
        filled = ~given & (rng.random(n) < changes.fill_in)
        corrected = given & (rng.random(n) < changes.correction)
        later = np.flatnonzero(filled | corrected)
        parts.append(
            _rows(
                later,
                name,
                _from_others(rng, values, len(later)),
                _later(rng, created[later], changes.fill_in_days),
            )
        )
    closed = outcome["closed_at"].notna().to_numpy()
    won = closed & outcome["won"].to_numpy(dtype=bool)
    lost = closed & ~won
    closed_at = outcome["closed_at"].to_numpy().astype("datetime64[s]")
    for is_won, who, rate, values in (
        (True, won, changes.won_update, WON_VALUES),
        (False, lost, changes.lost_update, LOST_VALUES),
    ):
        hit = np.flatnonzero(who & (rng.random(n) < rate))
        at = _later(rng, closed_at[hit], changes.update_days)
        for name, value in values.items():
            parts.append(_rows(hit, name, np.full(len(hit), value, dtype=object), at))
        if is_won:  # the budget the deal proved
            band = _budget_band(outcome["amount"].to_numpy(dtype=float)[hit])
            parts.append(_rows(hit, "budget", band, at))
    return parts


def _account_changes(
    accounts: pd.DataFrame,
    true_accounts: pd.DataFrame,
    first_lead: np.ndarray,
    first_win: np.ndarray,
    changes: FieldChanges,
    rng: np.random.Generator,
) -> list[_Changes]:
    """Creation values (at the account's first lead) and the enrichment after a win."""
    parts = []
    n = len(accounts)
    has_lead = ~np.isnat(first_lead)
    enrich = ~np.isnat(first_win) & (rng.random(n) < changes.enrich_won_accounts)
    enriched_at = _later(rng, np.where(enrich, first_win, first_lead), changes.update_days)
    for name in ACCOUNT_FIELDS:
        values = _as_text(accounts[name])
        given = pd.notna(values)
        known = has_lead & given
        parts.append(_rows(np.flatnonzero(known), name, values[known], first_lead[known], True))
        filled = np.flatnonzero(enrich & ~given)
        true = _as_text(true_accounts[name])[filled]
        parts.append(_rows(filled, name, true, enriched_at[filled]))
    return parts


def _frame(entity: str, ids: np.ndarray, parts: list[_Changes], before) -> pd.DataFrame:
    row = np.concatenate([p.row for p in parts]).astype(np.int64)
    at = np.concatenate([p.at for p in parts])
    keep = at < np.datetime64(before)
    frame = pd.DataFrame(
        {
            "entity": entity,
            "entity_id": ids[row[keep]],
            "field": np.concatenate([p.field for p in parts])[keep],
            "value": np.concatenate([p.value for p in parts])[keep],
            "changed_at": at[keep],
            "_row": row[keep],
            "_initial": np.concatenate([p.initial for p in parts])[keep],
        }
    )
    return frame.sort_values(["changed_at", "entity_id"], kind="stable", ignore_index=True)


def _current(table: pd.DataFrame, history: pd.DataFrame, fields: tuple[str, ...]) -> None:
    """Overwrite ``table``'s ``fields`` (in place) with the last value set in ``history``.

    Only later changes replace the table's values: the table already holds the creation values
    (respelled by the defects as a real form would spell them). ``history`` is sorted by time."""
    last = history[~history["_initial"]].drop_duplicates(["_row", "field"], keep="last")
    for name in fields:
        part = last[last["field"] == name]
        column = table[name]
        if pd.api.types.is_numeric_dtype(column):
            values = pd.to_numeric(pd.Series(part["value"].to_numpy()), errors="coerce")
            if pd.api.types.is_integer_dtype(column):  # counts stay whole (nullable)
                column, values = column.astype("Int64"), values.round().astype("Int64")
        else:
            values = part["value"].to_numpy(dtype=object)
            column = column.astype(object)
        column.iloc[part["_row"].to_numpy()] = np.asarray(values)
        table[name] = column


def synthetic_field_history(
    leads: pd.DataFrame,
    accounts: pd.DataFrame,
    true_accounts: pd.DataFrame,
    outcome: pd.DataFrame,
    extracted_at: pd.Timestamp,
    changes: FieldChanges,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The ``field_history`` table of the synthetic CRM; overwrites (in place) ``leads``' and
    ``accounts``' tracked fields with their current values.

    ``leads``: one row per lead with its creation values and ``_account_row``; ``accounts``: the
    values the world used (missing-value defects applied); ``true_accounts``: before the defects;
    ``outcome``: per lead, ``closed_at`` (NaT while open), ``won`` and ``amount`` of its deal.
    """
    # One stream for leads, one for accounts: the accounts' draws do not shift with the number
    # of leads won or lost (whose updates draw times), so nothing before an outcome depends on it.
    lead_rng, account_rng = rng.spawn(2)
    lead_parts = _lead_changes(leads, outcome, changes, lead_rng)
    lead_history = _frame(
        "leads", leads["lead_id"].to_numpy(dtype=object), lead_parts, extracted_at
    )
    account_row = leads["_account_row"].to_numpy()
    created = pd.Series(leads["created_at"].to_numpy().astype("datetime64[s]"))
    first_lead = created.groupby(account_row).min().reindex(range(len(accounts)))
    won = outcome["won"].to_numpy(dtype=bool) & outcome["closed_at"].notna().to_numpy()
    closed = pd.Series(outcome["closed_at"].to_numpy().astype("datetime64[s]"))
    first_win = closed[won].groupby(account_row[won]).min().reindex(range(len(accounts)))
    account_parts = _account_changes(
        accounts,
        true_accounts,
        first_lead.to_numpy().astype("datetime64[s]"),
        first_win.to_numpy().astype("datetime64[s]"),
        changes,
        account_rng,
    )
    account_history = _frame(
        "accounts", accounts["account_id"].to_numpy(dtype=object), account_parts, extracted_at
    )
    _current(leads, lead_history, LEAD_FIELDS)
    _current(accounts, account_history, ACCOUNT_FIELDS)
    history = pd.concat([lead_history, account_history], ignore_index=True)
    history = history.drop(columns=["_row", "_initial"])
    history["value"] = history["value"].astype("str")
    history["entity_id"] = history["entity_id"].astype("str")
    history["changed_at"] = history["changed_at"].astype("datetime64[s]")
    return history.sort_values("changed_at", kind="stable", ignore_index=True)
