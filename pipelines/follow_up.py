"""Timely follow-up: the qualified leads nobody from sales has touched in time.

The most common mistake in qualification is not calling a qualified lead soon enough. Per
scored lead, from the company's own activities (the activity types a mapping declares
``actor: company``: calls, meetings, sales emails; the native contract's ``sales_*`` types):

- ``last_sales_touch_at``: the latest such activity before the scoring instant (missing: none);
- ``stage_since``: when the lead entered the stage it has now: carried over from the sink's
  previous score while the stage stays the same, else the scoring instant (a lead scored for
  the first time has been in its stage since then: the first night, nothing is overdue);
- ``follow_up_due``: an SQL or MQL lead with no sales touch since ``stage_since``, past its
  stage's SLA (params.yaml ``follow_up.sla``: ``days``, counted in business days Monday to
  Friday when ``business``); missing when the CRM declares no company activity (nobody can
  tell a touched lead from an untouched one).

``leadscore follow-ups`` lists the overdue leads, oldest first: the sales manager's morning list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.behavioral import BehavioralParams
from features.frames import keep_rows
from features.mapping.contract import EffectiveContract

log = logging.getLogger(__name__)

#: The stages a follow-up SLA can apply to (the stages a rep should act on).
FOLLOW_UP_STAGES = ("SQL", "MQL")
#: The columns this module adds to a scored frame, in order.
FOLLOW_UP_COLUMNS = ["stage_since", "last_sales_touch_at", "follow_up_due"]


def company_types(contract: EffectiveContract, behavioral: BehavioralParams) -> list[str]:
    """The activity types that are the company's own actions (``actor: company``)."""
    return [t.name for t in contract.behavioral(behavioral).types() if t.actor == "company"]


def last_touch(
    events: pd.DataFrame, lead_ids: Sequence[str], types: Sequence[str], as_of: pd.Timestamp
) -> pd.Series:
    """Per lead of ``lead_ids`` (in order), the latest event of one of ``types`` before
    ``as_of`` (NaT: none)."""
    ids = pd.Index(pd.Series(lead_ids, dtype="str"))
    if not len(types) or events.empty:
        return pd.Series(pd.NaT, index=ids, dtype="datetime64[us]")
    kind = events["event_type"]
    # Only the company's types are read further: a CRM's events are mostly the leads' own.
    hit = kind.isin(list(types)).to_numpy() & (events["timestamp"] < as_of).to_numpy()
    touched = keep_rows(events[["lead_id", "timestamp"]], hit)  # Arrow's filter: 64M rows
    latest = touched.groupby(touched["lead_id"].astype(str), observed=True)["timestamp"].max()
    return latest.reindex(ids).astype("datetime64[us]")


def sla_settings(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``follow_up.sla`` checked: per stage of :data:`FOLLOW_UP_STAGES`, ``days`` >= 0 and
    ``business`` (bool). A stage left out has no SLA."""
    raw = dict((params.get("follow_up") or {}).get("sla") or {})
    unknown = sorted(set(raw) - set(FOLLOW_UP_STAGES))
    if unknown:
        raise ValueError(
            f"follow_up.sla: unknown stage(s) {unknown}; an SLA applies to {', '.join(FOLLOW_UP_STAGES)}"
        )
    out = {}
    for stage, spec in raw.items():
        days = (spec or {}).get("days")
        if not isinstance(days, int | float) or isinstance(days, bool) or days < 0:
            raise ValueError(
                f"follow_up.sla.{stage}.days must be a number of days >= 0, got {days!r}"
            )
        out[stage] = {"days": float(days), "business": bool(spec.get("business", False))}
    return out


def due_at(since: pd.Series, days: float, business: bool) -> pd.Series:
    """When a lead in its stage since ``since`` must have been touched: ``days`` later, in
    business days (Monday to Friday; a start on a weekend counts from the next Monday)."""
    since = pd.to_datetime(since)
    if not business:
        return since + pd.Timedelta(days=days)
    whole = int(np.floor(days))
    day = since.dt.floor("D")
    valid = since.notna().to_numpy()
    shifted = np.full(len(since), np.datetime64("NaT"), dtype="datetime64[D]")
    shifted[valid] = np.busday_offset(
        day[valid].to_numpy(dtype="datetime64[D]"), whole, roll="forward"
    )
    # A start on a weekend day is as if at the next business day's start.
    weekend = valid & (since.dt.day_of_week >= 5).to_numpy()
    time_of_day = (since - day).where(~weekend, pd.Timedelta(0))
    return (
        pd.Series(shifted, index=since.index).astype("datetime64[us]")
        + time_of_day
        + pd.Timedelta(days=days - whole)
    )


def follow_up(
    scored: pd.DataFrame,
    previous: pd.DataFrame,
    as_of: pd.Timestamp,
    sla: Mapping[str, Mapping[str, Any]],
    touches_known: bool,
) -> pd.DataFrame:
    """``scored`` (lead_id, stage, last_sales_touch_at) with ``stage_since`` and
    ``follow_up_due`` set.

    ``previous``: the sink's current scores before this run (lead_id, stage, stage_since);
    ``touches_known``: whether the CRM declares company activities at all (else
    ``follow_up_due`` is missing: an untouched lead cannot be told from a touched one).
    """
    out = scored.copy()
    ids = out["lead_id"].astype(str)
    prev = (
        previous.assign(lead_id=previous["lead_id"].astype(str))
        .drop_duplicates("lead_id", keep="last")
        .set_index("lead_id")
        .reindex(ids)
    )
    prev_since = pd.to_datetime(prev["stage_since"]).to_numpy(dtype="datetime64[us]")
    stayed = (prev["stage"].to_numpy() == out["stage"].to_numpy()) & ~np.isnat(prev_since)
    now = pd.Timestamp(as_of).as_unit("us").to_datetime64()
    since = np.where(stayed, prev_since, now)
    touched = pd.to_datetime(out["last_sales_touch_at"]).to_numpy(dtype="datetime64[us]")
    out["stage_since"] = pd.Series(since, index=out.index, dtype="datetime64[us]")
    due = np.zeros(len(out), dtype=bool)
    for stage, spec in sla.items():
        in_stage = (out["stage"] == stage).to_numpy()
        if not in_stage.any():
            continue
        deadline = due_at(out["stage_since"][in_stage], spec["days"], spec["business"])
        untouched = np.isnat(touched[in_stage]) | (touched[in_stage] < since[in_stage])
        due[in_stage] = untouched & (now > deadline.to_numpy(dtype="datetime64[us]"))
    out["follow_up_due"] = pd.array(due, dtype="boolean")
    if not touches_known:
        out["follow_up_due"] = pd.array([pd.NA] * len(out), dtype="boolean")
    return out


def _wilson(won: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a rate (one row per lead: leads are independent here)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = won / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def conversion_by_first_touch(
    created: pd.Series,
    first_touch: pd.Series,
    converted: pd.Series,
    bins_days: Sequence[float],
) -> pd.DataFrame:
    """Per band of time from a lead's creation to its first sales touch (``bins_days`` edges;
    the last band holds later touches and leads never touched): leads, conversions, rate and a
    95% Wilson interval. One row per lead (all indexed by lead id). Not causal: who is touched
    first is the team's choice, and the bands differ in more than speed."""
    edges = [float(b) for b in bins_days]
    if not edges or edges != sorted(edges) or edges[0] <= 0:
        raise ValueError(f"follow_up.report_bins_days must rise from above 0, got {bins_days!r}")
    waited = (first_touch.reindex(created.index) - created).dt.total_seconds() / 86_400
    band = np.searchsorted(np.asarray(edges), waited.to_numpy(dtype=float), side="right")
    band = np.where(waited.isna().to_numpy(), len(edges), band)
    labels = [f"under {edges[0]:g} day" + ("s" if edges[0] != 1 else "")]
    labels += [f"{a:g}-{b:g} days" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels += [f"after {edges[-1]:g} days or never"]
    won = converted.reindex(created.index).fillna(False).to_numpy(dtype=bool)
    leads = np.bincount(band, minlength=len(labels))
    wins = np.bincount(band, weights=won, minlength=len(labels))
    low, high = _wilson(wins, leads)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = wins / leads
    return pd.DataFrame(
        {
            "first_touch": labels,
            "leads": leads,
            "conversions": wins.astype(int),
            "conversion_rate": rate,
            "low": low,
            "high": high,
        }
    )


def first_touch_report(
    params: Mapping[str, Any], test: pd.DataFrame, validated: str | Path
) -> dict[str, Any]:
    """Conversion of the test split's leads by time to their first sales touch (the validated
    CRM's company activities), JSON-ready; a lead converted if any of its test snapshots did."""
    from pipelines.params import behavioral_params
    from pipelines.steps import crm_contract

    folder = Path(validated)
    types = company_types(crm_contract(dict(params)), behavioral_params(dict(params)))
    if not types:
        return {"touch_types": [], "note": "the CRM declares no company activity"}
    leads = pd.read_parquet(folder / "leads.parquet", columns=["lead_id", "created_at"])
    events = pd.read_parquet(
        folder / "events.parquet",
        columns=["lead_id", "timestamp", "event_type"],
        filters=[("event_type", "in", list(types))],
    )
    ids = pd.Index(pd.unique(test["lead_id"].astype(str)))
    created = leads.assign(lead_id=leads["lead_id"].astype(str)).drop_duplicates("lead_id")
    created = created.set_index("lead_id")["created_at"].reindex(ids)
    first = events.groupby(events["lead_id"].astype(str), observed=True)["timestamp"].min()
    converted = test.groupby(test["lead_id"].astype(str))["label"].max().astype(bool)
    bins = (params.get("follow_up") or {}).get("report_bins_days", [1, 3, 7, 30])
    table = conversion_by_first_touch(created, first, converted, bins)
    log.info(
        "conversion by time to the first sales touch (test leads): %s",
        "; ".join(
            f"{r.first_touch} {100 * r.conversion_rate:.1f}% of {r.leads:,}"
            for r in table.itertuples()
        ),
    )
    return {
        "touch_types": list(types),
        "leads": int(len(ids)),
        "by_time_to_first_touch": [
            {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in table.astype(object).to_dict("records")
        ],
    }
