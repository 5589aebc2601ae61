"""Behavioral features: what a lead did before ``as_of``, from the events table.

For each snapshot: counts per event type over trailing windows, days since the last event of each
type, distinct active days, total events per window, a time-decayed engagement score (the score
decay of marketing tools, configurable half-life and per-type weights) and a trend (recent window
against the baseline before it).

Point in time: an event counts for a snapshot iff ``timestamp < as_of``; a window of ``w`` days
is ``[as_of - w days, as_of)``. The implementation sorts the events once and answers every
snapshot with vectorised binary searches inside each lead's (or lead and type's) sorted run of
timestamps: no per-lead Python loop, exact at microsecond precision, and each snapshot's features
depend only on its own lead's events, so any partition of leads gives the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalog import FeatureSpec
from features.contract import EVENT_TYPES
from features.snapshots import to_microseconds

BUILDER = "behavioral"
DAY_US = 86_400 * 1_000_000
_SOURCES = ("events.lead_id", "events.timestamp", "events.event_type")

#: (how a count reads, how "days since the last one" reads), per event type
EVENT_PHRASES: dict[str, tuple[str, str]] = {
    "page_view": ("Visited {value} web pages", "Last visited the website {value} days ago"),
    "pricing_page_view": ("Viewed the pricing page {value} times", "Last viewed the pricing page {value} days ago"),
    "email_open": ("Opened {value} marketing emails", "Last opened an email {value} days ago"),
    "email_click": ("Clicked {value} marketing emails", "Last clicked an email {value} days ago"),
    "content_download": ("Downloaded {value} pieces of content", "Last downloaded content {value} days ago"),
    "webinar_registration": ("Registered for {value} webinars", "Last registered for a webinar {value} days ago"),
    "webinar_attendance": ("Attended {value} webinars", "Last attended a webinar {value} days ago"),
    "demo_request": ("Requested a demo {value} times", "Requested a demo {value} days ago"),
    "trial_signup": ("Signed up for a trial {value} times", "Signed up for a trial {value} days ago"),
    "product_inquiry": ("Sent {value} product inquiries", "Last sent a product inquiry {value} days ago"),
    "form_submit": ("Submitted {value} forms", "Last submitted a form {value} days ago"),
    "social_interaction": ("Interacted on social media {value} times", "Last interacted on social media {value} days ago"),
}

#: Default weights of the engagement score (points per event before decay).
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "page_view": 1.0,
    "pricing_page_view": 3.0,
    "email_open": 0.5,
    "email_click": 1.5,
    "content_download": 2.0,
    "webinar_registration": 2.0,
    "webinar_attendance": 4.0,
    "demo_request": 10.0,
    "trial_signup": 8.0,
    "product_inquiry": 6.0,
    "form_submit": 3.0,
    "social_interaction": 0.5,
}


@dataclass(frozen=True)
class BehavioralParams:
    """Knobs of the behavioral builder (params.yaml ``features.behavioral``)."""

    windows_days: tuple[int, ...] = (7, 30, 90)
    half_life_days: float = 14.0
    trend_recent_days: int = 7
    trend_baseline_days: int = 30
    event_weights: Mapping[str, float] | None = None

    def weights(self) -> np.ndarray:
        """Engagement weight per event type, in contract order."""
        w = {**DEFAULT_EVENT_WEIGHTS, **(self.event_weights or {})}
        unknown = set(w) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"event_weights names unknown event types: {sorted(unknown)}")
        return np.array([w[t] for t in EVENT_TYPES], dtype=float)


def behavioral_specs(params: BehavioralParams = BehavioralParams()) -> list[FeatureSpec]:
    """The features :func:`build_behavioral` returns, in column order."""
    specs: list[FeatureSpec] = []

    def add(name: str, label: str) -> None:
        specs.append(FeatureSpec(name, label, _SOURCES, BUILDER))

    for w in params.windows_days:
        for t in EVENT_TYPES:
            add(f"n_{t}_{w}d", f"{EVENT_PHRASES[t][0]} in the last {w} days")
    for t in EVENT_TYPES:
        add(f"days_since_last_{t}", EVENT_PHRASES[t][1])
    add("days_since_last_event", "Last activity {value} days ago")
    for w in params.windows_days:
        add(f"events_{w}d", f"{{value}} interactions in the last {w} days")
        add(f"active_days_{w}d", f"Active on {{value}} of the last {w} days")
    add(
        "engagement_score",
        f"Engagement score {{value}} (decays by half every {params.half_life_days:g} days)",
    )
    add(
        "engagement_trend",
        f"Activity trend {{value}} (log2 of the last {params.trend_recent_days} days "
        f"against the {params.trend_baseline_days} days before)",
    )
    return specs


class _SortedRuns:
    """Timestamps sorted within runs of equal keys (a lead, or a lead and event type)."""

    def __init__(self, keys: np.ndarray, ts: np.ndarray) -> None:
        order = np.lexsort((ts, keys))
        self.keys = keys[order]
        self.ts = ts[order]
        self.order = order

    def bounds(self, query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) of each query key's run (empty when the key has no events)."""
        return (
            np.searchsorted(self.keys, query_keys, side="left"),
            np.searchsorted(self.keys, query_keys, side="right"),
        )

    def before(self, start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Position of the first timestamp >= t inside each run: everything before it is < t.

        A vectorised binary search over all queries at once; it takes log2(longest run) rounds.
        """
        lo, hi = start.copy(), end.copy()
        last = len(self.ts) - 1
        while True:
            open_ = lo < hi
            if not open_.any():
                return lo
            mid = (lo + hi) // 2
            right = self.ts[np.minimum(mid, last)] < t
            lo = np.where(open_ & right, mid + 1, lo)
            hi = np.where(open_ & ~right, mid, hi)


def _event_codes(events: pd.DataFrame, lead_ids: pd.Index) -> tuple[np.ndarray, ...]:
    """Integer lead codes, type codes and timestamps of the events of ``lead_ids``."""
    lead_code = lead_ids.get_indexer(events["lead_id"])
    type_code = pd.Categorical(events["event_type"], categories=list(EVENT_TYPES)).codes
    keep = (lead_code >= 0) & (type_code >= 0)
    ts = to_microseconds(events["timestamp"])
    return lead_code[keep].astype(np.int64), type_code[keep].astype(np.int64), ts[keep]


def build_behavioral(
    events: pd.DataFrame,
    snapshots: pd.DataFrame,
    params: BehavioralParams = BehavioralParams(),
) -> pd.DataFrame:
    """Behavioral features, one row per snapshot (same order), columns as :func:`behavioral_specs`.

    ``events`` needs lead_id, timestamp, event_type; ``snapshots`` needs lead_id, as_of.
    """
    if params.half_life_days <= 0:
        raise ValueError("half_life_days must be > 0")
    lead_ids = pd.Index(pd.unique(snapshots["lead_id"]))
    snap_code = lead_ids.get_indexer(snapshots["lead_id"]).astype(np.int64)
    as_of = to_microseconds(snapshots["as_of"])
    lead_code, type_code, ts = _event_codes(events, lead_ids)
    names = [s.name for s in behavioral_specs(params)]
    if len(ts) == 0:
        return _no_activity(names, snapshots.index)
    n_types = len(EVENT_TYPES)
    cols: dict[str, np.ndarray] = {}

    # --- per lead and type: counts per window and days since the last one
    by_type = _SortedRuns(lead_code * n_types + type_code, ts)
    window_counts = {w: np.zeros(len(snapshots), dtype=np.int64) for w in params.windows_days}
    last_of_type = {}
    for t_idx, t in enumerate(EVENT_TYPES):
        start, end = by_type.bounds(snap_code * n_types + t_idx)
        hi = by_type.before(start, end, as_of)
        for w in params.windows_days:
            lo = by_type.before(start, end, as_of - w * DAY_US)
            cols[f"n_{t}_{w}d"] = (hi - lo).astype(np.int32)
            window_counts[w] += hi - lo
        last_ts = by_type.ts[np.maximum(hi - 1, 0)]
        last_of_type[t] = np.where(hi > start, (as_of - last_ts) / DAY_US, np.nan)
    cols = {f"n_{t}_{w}d": cols[f"n_{t}_{w}d"] for w in params.windows_days for t in EVENT_TYPES}
    for t in EVENT_TYPES:
        cols[f"days_since_last_{t}"] = last_of_type[t]

    # --- per lead: recency, windows, active days, decayed score, trend
    by_lead = _SortedRuns(lead_code, ts)
    start, end = by_lead.bounds(snap_code)
    hi = by_lead.before(start, end, as_of)
    seen = hi > start
    prev = np.maximum(hi - 1, 0)
    cols["days_since_last_event"] = np.where(seen, (as_of - by_lead.ts[prev]) / DAY_US, np.nan)
    day = by_lead.ts // DAY_US
    new_day = np.ones(len(day), dtype=bool)
    new_day[1:] = (by_lead.keys[1:] != by_lead.keys[:-1]) | (day[1:] != day[:-1])
    new_day_cum = np.cumsum(new_day)
    for w in params.windows_days:
        lo = by_lead.before(start, end, as_of - w * DAY_US)
        cols[f"events_{w}d"] = window_counts[w].astype(np.int32)
        distinct = 1 + new_day_cum[np.maximum(hi - 1, 0)] - new_day_cum[np.minimum(lo, len(day) - 1)]
        cols[f"active_days_{w}d"] = np.where(hi > lo, distinct, 0).astype(np.int32)
    cols["engagement_score"] = _decayed_score(by_lead, type_code, params, snap_code, as_of, hi, seen)
    recent_lo = by_lead.before(start, end, as_of - params.trend_recent_days * DAY_US)
    base_lo = by_lead.before(
        start, end, as_of - (params.trend_recent_days + params.trend_baseline_days) * DAY_US
    )
    recent, baseline = hi - recent_lo, recent_lo - base_lo
    expected = baseline * params.trend_recent_days / params.trend_baseline_days
    cols["engagement_trend"] = np.log2((recent + 1.0) / (expected + 1.0))
    return pd.DataFrame({n: cols[n] for n in names}, index=snapshots.index)


def _no_activity(names: list[str], index: pd.Index) -> pd.DataFrame:
    """The features of snapshots whose leads have no events at all."""
    n = len(index)
    cols = {
        name: np.full(n, np.nan) if name.startswith("days_since")
        else np.zeros(n, dtype=np.int32) if name.startswith(("n_", "events_", "active_days_"))
        else np.zeros(n)
        for name in names
    }
    return pd.DataFrame(cols, index=index)


def _decayed_score(by_lead: _SortedRuns, type_code, params, snap_code, as_of, hi, seen):
    """sum over events before as_of of weight * 0.5 ** (age_days / half_life), exactly.

    Rewritten as 2**(-(as_of - origin)/h) * cumsum(weight * 2**((ts - origin)/h)) within each
    lead, with the origin at the middle of the lead's history so the exponents stay small.
    """
    if not seen.any():
        return np.zeros(len(as_of))
    weights = params.weights()[type_code[by_lead.order]]
    h_us = params.half_life_days * DAY_US
    keys = by_lead.keys
    first = np.searchsorted(keys, keys, side="left")
    last = np.searchsorted(keys, keys, side="right") - 1
    origin = (by_lead.ts[first] + by_lead.ts[last]) // 2
    exponent = (by_lead.ts - origin) / h_us
    if np.abs(exponent).max() > 1000:
        raise ValueError(
            "half_life_days is too short for the span of some leads' histories "
            f"({params.half_life_days} days): use a longer half-life"
        )
    scaled = pd.Series(weights * np.exp2(exponent)).groupby(keys, sort=False).cumsum().to_numpy()
    prev = np.maximum(hi - 1, 0)
    with np.errstate(divide="ignore"):
        log_score = np.log2(scaled[prev]) - (as_of - origin[prev]) / h_us
    return np.where(seen, np.exp2(log_score), 0.0)
