"""Behavioral features: what a lead did before ``as_of``, from the events table.

For each snapshot: counts per activity type over trailing windows, days since the last activity
of each type, distinct active days, total events per window, a time-decayed engagement score (the
score decay of marketing tools, configurable half-life and per-type weights), a trend (recent
window against the baseline before it), and sums and means of numbers the events carry (call
duration, pages viewed) per window.

The activity types are declared (:class:`ActivityType`): the 12 built-in ones by default, or the
CRM's own from the mapping file, each with its phrases for reasons, its engagement weight and
whose action it is. A ``company`` action (an outbound call, a sales email) is history, not
engagement: it has its own counts and recency, but does not count in the totals, active days,
engagement score or trend. Events of undeclared types are ignored here (validation counts them).

Point in time: an event counts for a snapshot iff ``timestamp < as_of``; a window of ``w`` days
is ``[as_of - w days, as_of)``. The implementation sorts the events once and answers every
snapshot with vectorised binary searches inside each lead's (or lead and type's) sorted run of
timestamps: no per-lead Python loop, exact at microsecond precision, and each snapshot's features
depend only on its own lead's events, so any partition of leads gives the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.catalog import FeatureSpec
from features.contract import COMPANY_EVENT_TYPES, EVENT_TYPES
from features.snapshots import to_microseconds

BUILDER = "behavioral"
DAY_US = 86_400 * 1_000_000
_SOURCES = ("events.lead_id", "events.timestamp", "events.event_type")

#: (how a count reads, how "days since the last one" reads), per event type
#: Per event type: how to say a count, the days since the last one, and that there was none.
EVENT_PHRASES: dict[str, tuple[str, str, str]] = {
    "page_view": (
        "Visited {value} web [page|pages]",
        "Last visited the website {value} [day|days] ago",
        "Never visited the website",
    ),
    "pricing_page_view": (
        "Viewed the pricing page {value} [time|times]",
        "Last viewed the pricing page {value} [day|days] ago",
        "Never viewed the pricing page",
    ),
    "email_open": (
        "Opened {value} marketing [email|emails]",
        "Last opened an email {value} [day|days] ago",
        "Never opened a marketing email",
    ),
    "email_click": (
        "Clicked {value} marketing [email|emails]",
        "Last clicked an email {value} [day|days] ago",
        "Never clicked a marketing email",
    ),
    "content_download": (
        "Downloaded {value} [piece|pieces] of content",
        "Last downloaded content {value} [day|days] ago",
        "Never downloaded content",
    ),
    "webinar_registration": (
        "Registered for {value} [webinar|webinars]",
        "Last registered for a webinar {value} [day|days] ago",
        "Never registered for a webinar",
    ),
    "webinar_attendance": (
        "Attended {value} [webinar|webinars]",
        "Last attended a webinar {value} [day|days] ago",
        "Never attended a webinar",
    ),
    "demo_request": (
        "Requested a demo {value} [time|times]",
        "Requested a demo {value} [day|days] ago",
        "Never requested a demo",
    ),
    "trial_signup": (
        "Signed up for a trial {value} [time|times]",
        "Signed up for a trial {value} [day|days] ago",
        "Never signed up for a trial",
    ),
    "product_inquiry": (
        "Sent {value} product [inquiry|inquiries]",
        "Last sent a product inquiry {value} [day|days] ago",
        "Never sent a product inquiry",
    ),
    "form_submit": (
        "Submitted {value} [form|forms]",
        "Last submitted a form {value} [day|days] ago",
        "Never submitted a form",
    ),
    "social_interaction": (
        "Interacted on social media {value} [time|times]",
        "Last interacted on social media {value} [day|days] ago",
        "Never interacted on social media",
    ),
    "sales_email": (
        "Sales reached out {value} [time|times]",
        "Sales last reached out {value} [day|days] ago",
        "Sales has not reached out yet",
    ),
}

#: What a group's reason adds with the days since the last activity, when another member (a
#: count) is the strongest: "Requested a demo 2 times in the last 7 days, last 3 days ago".
RECENCY_CLAUSE = "last {value} [day|days] ago"

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
    "sales_email": 0.0,  # ours, not the lead's: no engagement
}


ACTORS = ("lead", "company")


@dataclass(frozen=True)
class ActivityType:
    """One activity type: its phrases for reasons, engagement weight, whose action it is, and
    the event values (numbers on its rows) it carries."""

    name: str
    count: str  # "Had {value} calls with sales"
    last: str  # "Last call {value} [day|days] ago"
    never: str  # "No call with sales yet"
    weight: float = 1.0
    actor: str = "lead"  # lead: the lead's own action (engagement); company: ours (history)
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.actor not in ACTORS:
            raise ValueError(f"activity type {self.name}: actor must be one of {ACTORS}")


@dataclass(frozen=True)
class EventValue:
    """A number carried by events (a call's duration, a visit's pages): summed per window."""

    name: str
    label: str  # how the sum reads: "{value} minutes on calls with sales"


#: The built-in activity types: the default when the mapping declares none.
BUILT_IN_TYPES: tuple[ActivityType, ...] = tuple(
    ActivityType(
        t,
        *EVENT_PHRASES[t],
        weight=DEFAULT_EVENT_WEIGHTS[t],
        actor="company" if t in COMPANY_EVENT_TYPES else "lead",
    )
    for t in EVENT_TYPES
)


@dataclass(frozen=True)
class BehavioralParams:
    """Knobs of the behavioral builder (params.yaml ``features.behavioral``), and the activity
    types and event values it builds from (the mapping's; default: the built-in types)."""

    windows_days: tuple[int, ...] = (7, 30, 90)
    half_life_days: float = 14.0
    trend_recent_days: int = 7
    trend_baseline_days: int = 30
    #: Weights by type name, over the types' own (params.yaml overrides the mapping).
    event_weights: Mapping[str, float] | None = None
    activity_types: tuple[ActivityType, ...] | None = None
    event_values: tuple[EventValue, ...] = ()

    def types(self) -> tuple[ActivityType, ...]:
        """The activity types features are built for, in column order."""
        return BUILT_IN_TYPES if self.activity_types is None else self.activity_types

    def type_names(self) -> list[str]:
        """The activity types' names, in column order."""
        return [t.name for t in self.types()]

    def weights(self) -> np.ndarray:
        """Engagement weight per activity type, in :meth:`types` order."""
        types = self.types()
        overrides = dict(self.event_weights or {})
        unknown = set(overrides) - {t.name for t in types}
        if unknown:
            raise ValueError(
                f"event_weights names unknown event types: {sorted(unknown)}; the declared "
                f"types are {[t.name for t in types]}"
            )
        return np.array([overrides.get(t.name, t.weight) for t in types], dtype=float)

    def engaging(self) -> np.ndarray:
        """Per type, in :meth:`types` order: True for the lead's own actions."""
        return np.array([t.actor == "lead" for t in self.types()], dtype=bool)

    def value_types(self) -> dict[str, list[int]]:
        """Event value name -> positions of the types that carry it."""
        types = self.types()
        return {
            v.name: [i for i, t in enumerate(types) if v.name in t.values]
            for v in self.event_values
        }


def behavioral_specs(params: BehavioralParams = BehavioralParams()) -> list[FeatureSpec]:
    """The features :func:`build_behavioral` returns, in column order."""
    specs: list[FeatureSpec] = []

    def add(
        name: str,
        label: str,
        group: tuple[str, str],
        missing: str | None = None,
        extra: tuple[str, ...] = (),
        clause: str | None = None,
    ) -> None:
        specs.append(
            FeatureSpec(
                name,
                label,
                _SOURCES + extra,
                BUILDER,
                missing_label=missing,
                group=group[0],
                group_title=group[1],
                clause=clause,
            )  # fmt: skip
        )

    def titled(kind: str, name: str) -> tuple[str, str]:
        return f"{kind}:{name}", f"{name.replace('_', ' ').capitalize()} (every window)"

    # One group per activity type (its counts in every window and its recency), per event value
    # (sums and means), and one for activity as a whole: a reason says each behaviour once.
    types = params.types()
    for w in params.windows_days:
        for t in types:
            add(f"n_{t.name}_{w}d", f"{t.count} in the last {w} days", titled("activity", t.name))
    for t in types:
        add(
            f"days_since_last_{t.name}", t.last, titled("activity", t.name), t.never,
            clause=RECENCY_CLAUSE,
        )  # fmt: skip
    for v in params.event_values:
        for w in params.windows_days:
            add(
                f"sum_{v.name}_{w}d",
                f"{v.label} in the last {w} days",
                titled("value", v.name),
                extra=(f"events.{v.name}",),
            )
            add(
                f"mean_{v.name}_{w}d",
                f"{v.label} per activity on average, in the last {w} days",
                titled("value", v.name),
                missing=f"No {v.name.replace('_', ' ')} recorded in the last {w} days",
                extra=(f"events.{v.name}",),
            )
    overall = ("activity", "Activity overall (every window)")
    add(
        "days_since_last_event", "Last activity {value} [day|days] ago", overall,
        "No activity yet", clause=RECENCY_CLAUSE,
    )  # fmt: skip
    for w in params.windows_days:
        add(f"events_{w}d", f"{{value}} [interaction|interactions] in the last {w} days", overall)
        add(f"active_days_{w}d", f"Active on {{value}} of the last {w} days", overall)
    add(
        "engagement_score",
        f"Engagement score {{value}} (decays by half every {params.half_life_days:g} days)",
        overall,
    )
    add(
        "engagement_trend",
        f"Activity trend {{value}} (log2 of the last {params.trend_recent_days} days "
        f"against the {params.trend_baseline_days} days before)",
        overall,
    )
    return specs


class _SortedRuns:
    """Events sorted by lead, then time: each lead's history is one contiguous run."""

    def __init__(self, keys: np.ndarray, ts: np.ndarray) -> None:
        order = _lead_time_order(keys, ts)
        self.keys = keys[order]
        self.ts = ts[order]
        self.order = order
        # Run boundaries in O(n): positions where the key changes.
        change = np.flatnonzero(self.keys[1:] != self.keys[:-1]) + 1
        self.run_starts = np.concatenate([[0], change]) if len(keys) else np.empty(0, np.int64)
        self.run_ends = (
            np.concatenate([change, [len(keys)]]) if len(keys) else np.empty(0, np.int64)
        )

    def bounds(self, query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) of each query key's run (empty when the key has no events)."""
        if len(self.run_starts) == 0:
            empty = np.zeros(len(query_keys), dtype=np.int64)
            return empty, empty
        run = np.searchsorted(self.keys[self.run_starts], query_keys)
        run = np.minimum(run, max(len(self.run_starts) - 1, 0))
        found = self.keys[self.run_starts[run]] == query_keys
        start = np.where(found, self.run_starts[run], 0)
        return start, np.where(found, self.run_ends[run], 0)

    def before(self, start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Position of the first timestamp >= t inside each run: everything before it is < t.

        A vectorised binary search over all queries at once; it takes log2(longest run) rounds,
        and each round works only on the queries still open.
        """
        lo, hi = start.copy(), end.copy()
        open_ = np.flatnonzero(lo < hi)
        while len(open_):
            mid = (lo[open_] + hi[open_]) // 2
            right = self.ts[mid] < t[open_]
            lo[open_[right]] = mid[right] + 1
            hi[open_[~right]] = mid[~right]
            open_ = open_[lo[open_] < hi[open_]]
        return lo


def _as_large_string(values) -> pa.Array:
    """Values as an Arrow large_string array (zero-copy for pandas' Arrow-backed strings)."""
    arr = pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if pa.types.is_large_string(arr.type) else arr.cast(pa.large_string())


def _lead_time_order(keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The permutation that sorts events by (key, timestamp).

    One argsort of a combined 64-bit key when key and time fit in it together (faster than a
    two-key lexsort), else a lexsort.
    """
    if len(ts) == 0:
        return np.empty(0, dtype=np.int64)
    t0, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
    if (int(keys.max()) + 1) * span < 2**62:
        return np.argsort(keys * span + (ts - t0))
    return np.lexsort((ts, keys))


def _codes(values: pd.Series, universe: Sequence[str] | pd.Index) -> np.ndarray:
    """Position of each value in ``universe`` (-1 if absent), hashed by Arrow, no Python objects."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        per_category = _codes(pd.Series(values.cat.categories.astype("str")), universe)
        codes = values.cat.codes.to_numpy()
        return (
            np.where(codes >= 0, per_category[np.maximum(codes, 0)], -1)
            if len(per_category)
            else np.full(len(codes), -1)
        )
    arr = _as_large_string(values)
    value_set = _as_large_string(
        pd.Series(universe) if not isinstance(universe, pd.Series) else universe
    )
    found = pc.index_in(arr, value_set=value_set).fill_null(-1)
    return found.to_numpy(zero_copy_only=False).astype(np.int64)


def _event_codes(
    events: pd.DataFrame, lead_ids: pd.Index, last_as_of: np.ndarray, params: BehavioralParams
):
    """Lead codes, type codes, timestamps and value columns of the events some snapshot can see.

    An event at or after the latest as_of of its lead is invisible to every snapshot, and so is
    an event of an undeclared type: both are dropped here, before any sorting.
    """
    lead_code = _codes(events["lead_id"], lead_ids)
    type_code = _codes(events["event_type"], params.type_names())
    ts = to_microseconds(events["timestamp"])
    visible = (lead_code >= 0) & (type_code >= 0) & (ts < last_as_of[np.maximum(lead_code, 0)])
    values = {
        v.name: pd.to_numeric(events[v.name], errors="coerce").to_numpy(dtype=float)[visible]
        for v in params.event_values
    }
    return lead_code[visible], type_code[visible], ts[visible], values


def _boundaries(runs: _SortedRuns, snap_code, as_of, params: BehavioralParams) -> dict:
    """Days back -> position of the first event at or after ``as_of - days`` in each run."""
    start, end = runs.bounds(snap_code)
    out = {"start": start, 0: runs.before(start, end, as_of)}
    windows = {
        *params.windows_days,
        params.trend_recent_days,
        params.trend_recent_days + params.trend_baseline_days,
    }
    for days in sorted(windows):
        out[days] = runs.before(start, end, as_of - days * DAY_US)
    return out


def _per_type(runs, types, bounds, params: BehavioralParams, as_of, cols) -> None:
    """Counts per type and window, and days since the last event of each type."""
    names = params.type_names()
    start, hi = bounds["start"], bounds[0]
    seen = hi > start
    # The positions of each type's events, grouped by type (a stable sort of the small type
    # codes); counts in [lo, hi) and the last one before hi are binary searches there.
    by_type = np.argsort(types.astype(np.int16), kind="stable")
    type_starts = np.searchsorted(types[by_type], np.arange(len(names) + 1))
    last_seen = {}
    for t_idx, t in enumerate(names):
        where_t = by_type[type_starts[t_idx] : type_starts[t_idx + 1]]  # ascending positions
        below_hi = np.searchsorted(where_t, hi)
        for w in params.windows_days:
            cols[f"n_{t}_{w}d"] = (below_hi - np.searchsorted(where_t, bounds[w])).astype(np.int32)
        last_pos = where_t[np.maximum(below_hi - 1, 0)] if len(where_t) else np.full(len(hi), -1)
        has = (below_hi > 0) & (last_pos >= start) & seen
        last_seen[t] = np.where(has, (as_of - runs.ts[np.maximum(last_pos, 0)]) / DAY_US, np.nan)
    for t in names:
        cols[f"days_since_last_{t}"] = last_seen[t]


def _values(runs, types, values, bounds, params: BehavioralParams, cols) -> None:
    """Sum and mean per window of each event value, over the types that carry it."""
    hi = bounds[0]
    for v in params.event_values:
        carried = np.isin(types, params.value_types()[v.name])
        x = values[v.name][runs.order]
        present = carried & ~np.isnan(x)
        # Prefix sums over the sorted events: a window's sum is a difference of two of them.
        total = np.concatenate([[0.0], np.cumsum(np.where(present, x, 0.0))])
        count = np.concatenate([[0], np.cumsum(present)])
        for w in params.windows_days:
            lo = bounds[w]
            n = count[hi] - count[lo]
            sums = total[hi] - total[lo]
            cols[f"sum_{v.name}_{w}d"] = np.where(n > 0, sums, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"mean_{v.name}_{w}d"] = np.where(n > 0, sums / np.maximum(n, 1), np.nan)


def _engagement(runs, types, bounds, params: BehavioralParams, as_of, weights, cols) -> None:
    """Recency, totals, active days, decayed score and trend over the lead's own actions."""
    start, hi = bounds["start"], bounds[0]
    seen = hi > start
    prev = np.maximum(hi - 1, 0)
    cols["days_since_last_event"] = (
        np.where(seen, (as_of - runs.ts[prev]) / DAY_US, np.nan)
        if len(runs.ts)
        else np.full(len(hi), np.nan)
    )
    day = runs.ts // DAY_US
    new_day = np.ones(len(day), dtype=bool)
    new_day[1:] = (runs.keys[1:] != runs.keys[:-1]) | (day[1:] != day[:-1])
    new_day_cum = np.cumsum(new_day)
    for w in params.windows_days:
        lo = bounds[w]
        cols[f"events_{w}d"] = (hi - lo).astype(np.int32)
        if len(day):
            distinct = 1 + new_day_cum[prev] - new_day_cum[np.minimum(lo, len(day) - 1)]
            cols[f"active_days_{w}d"] = np.where(hi > lo, distinct, 0).astype(np.int32)
        else:
            cols[f"active_days_{w}d"] = np.zeros(len(hi), dtype=np.int32)
    cols["engagement_score"] = _decayed_score(runs, weights[types], params, as_of, hi, seen)
    recent_lo = bounds[params.trend_recent_days]
    base_lo = bounds[params.trend_recent_days + params.trend_baseline_days]
    recent, baseline = hi - recent_lo, recent_lo - base_lo
    expected = baseline * params.trend_recent_days / params.trend_baseline_days
    cols["engagement_trend"] = np.log2((recent + 1.0) / (expected + 1.0))


def build_behavioral(
    events: pd.DataFrame,
    snapshots: pd.DataFrame,
    params: BehavioralParams = BehavioralParams(),
) -> pd.DataFrame:
    """Behavioral features, one row per snapshot (same order), columns as :func:`behavioral_specs`.

    ``events`` needs lead_id, timestamp, event_type (and a column per declared event value);
    ``snapshots`` needs lead_id, as_of.
    """
    if params.half_life_days <= 0:
        raise ValueError("half_life_days must be > 0")
    names = [s.name for s in behavioral_specs(params)]
    weights = params.weights()
    if len(snapshots) == 0:
        return _no_activity(names, snapshots.index)
    lead_ids = pd.Index(pd.unique(snapshots["lead_id"]))
    snap_code = lead_ids.get_indexer(snapshots["lead_id"]).astype(np.int64)
    as_of = to_microseconds(snapshots["as_of"])
    last_as_of = np.full(len(lead_ids), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_as_of, snap_code, as_of)
    lead_code, type_code, ts, values = _event_codes(events, lead_ids, last_as_of, params)
    if len(ts) == 0:
        return _no_activity(names, snapshots.index)

    cols: dict[str, np.ndarray] = {}
    runs = _SortedRuns(lead_code, ts)
    types = type_code[runs.order]
    bounds = _boundaries(runs, snap_code, as_of, params)
    _per_type(runs, types, bounds, params, as_of, cols)
    _values(runs, types, values, bounds, params, cols)
    engaging = params.engaging()
    if not engaging.all():
        # A company action is history, not engagement: the totals see the lead's own actions.
        own = engaging[type_code]
        runs = _SortedRuns(lead_code[own], ts[own])
        types = type_code[own][runs.order]
        bounds = _boundaries(runs, snap_code, as_of, params)
    _engagement(runs, types, bounds, params, as_of, weights, cols)
    return pd.DataFrame({n: cols[n] for n in names}, index=snapshots.index)


def _no_activity(names: list[str], index: pd.Index) -> pd.DataFrame:
    """The features of snapshots whose leads have no events at all."""
    n = len(index)
    cols = {
        name: np.full(n, np.nan)
        if name.startswith(("days_since", "mean_"))
        else np.zeros(n, dtype=np.int32)
        if name.startswith(("n_", "events_", "active_days_"))
        else np.zeros(n)
        for name in names
    }
    return pd.DataFrame(cols, index=index)


def _decayed_score(runs: _SortedRuns, weights, params, as_of, hi, seen):
    """sum over events before as_of of weight * 0.5 ** (age_days / half_life), exactly.

    Rewritten as 2**(-(as_of - origin)/h) * cumsum(weight * 2**((ts - origin)/h)) within each
    lead, with the origin at the lead's first event: later events never move it, so a
    snapshot's score does not depend on anything after its as_of (exact up to rounding).
    """
    if not seen.any():
        return np.zeros(len(as_of))
    h_us = params.half_life_days * DAY_US
    run_length = runs.run_ends - runs.run_starts
    origin = np.repeat(runs.ts[runs.run_starts], run_length)
    exponent = (runs.ts - origin) / h_us
    if exponent.max() > 1000:  # 2**1000 is near the float64 limit
        raise ValueError(
            f"a lead's event history spans more than 1000 half-lives ({params.half_life_days} "
            "days each): use a longer features.behavioral.half_life_days"
        )
    run_id = np.repeat(np.arange(len(run_length)), run_length)
    scaled = pd.Series(weights * np.exp2(exponent)).groupby(run_id, sort=False).cumsum().to_numpy()
    prev = np.maximum(hi - 1, 0)
    with np.errstate(divide="ignore"):
        log_score = np.log2(scaled[prev]) - (as_of - origin[prev]) / h_us
    return np.where(seen, np.exp2(log_score), 0.0)
