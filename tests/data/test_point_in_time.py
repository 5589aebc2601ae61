"""Point-in-time correctness, checked on random data (hypothesis):

1. Nothing dated at or after as_of can change a snapshot's features: adding, moving or retyping
   events after as_of, opening opportunities after as_of, or changing any outcome field.
2. The fast vectorised behavioral builder equals a slow, obvious loop-based reference builder.
3. A snapshot's features depend only on its own lead: building any subset gives the same rows.
4. Both 1 and 2 again with several snapshots per lead, and events exactly at as_of, within the
   day after it and at the windows' edges (see the section at the end).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from features.behavioral import (
    ActivityType,
    BehavioralParams,
    EventValue,
    behavioral_specs,
    build_behavioral,
)
from features.build import BUILDERS, build_features
from features.contract import EVENT_TYPES

START = pd.Timestamp("2024-01-01")
SPAN_S = 120 * 86_400
PARAMS = BehavioralParams(
    windows_days=(3, 30), half_life_days=5.0, trend_recent_days=3, trend_baseline_days=10
)
LEADS = ["L0", "L1", "L2"]

event_st = st.tuples(st.sampled_from(LEADS), st.integers(0, SPAN_S), st.sampled_from(EVENT_TYPES))
ts_us = st.integers(0, SPAN_S * 1_000_000)


def events_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": pd.Series([r[0] for r in rows], dtype="str"),
            "timestamp": START + pd.to_timedelta([r[1] for r in rows], unit="s"),
            "event_type": pd.Series([r[2] for r in rows], dtype="str"),
        }
    )


def tables_with(tiny_tables, events, opportunities) -> dict[str, pd.DataFrame]:
    leads = pd.concat([tiny_tables["leads"]] * 2, ignore_index=True).iloc[:3].copy()
    leads["lead_id"] = LEADS
    leads["account_id"] = ["A1", "A2", "A1"]
    leads["created_at"] = START - pd.Timedelta(days=1)
    return {
        "leads": leads,
        "accounts": tiny_tables["accounts"],
        "events": events,
        "opportunities": opportunities,
    }


def opportunities_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(len(rows))],
            "lead_id": pd.Series([r[0] for r in rows], dtype="str"),
            "created_at": START + pd.to_timedelta([r[1] for r in rows], unit="s"),
            "closed_at": START + pd.to_timedelta([r[1] + r[2] for r in rows], unit="s"),
            "is_won": pd.array([r[3] for r in rows], dtype="boolean"),
            "amount": [r[4] for r in rows],
        }
    )


opp_st = st.tuples(
    st.sampled_from(LEADS),
    st.integers(0, SPAN_S),
    st.integers(0, 30 * 86_400),
    st.booleans(),
    st.floats(0, 1e6),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    past=st.lists(event_st, max_size=25),
    future=st.lists(
        st.tuples(
            st.sampled_from(LEADS), st.integers(0, SPAN_S // 4), st.sampled_from(EVENT_TYPES)
        ),
        max_size=10,
    ),
    opps=st.lists(opp_st, max_size=3),
    future_opps=st.lists(
        st.tuples(
            st.sampled_from(LEADS),
            st.integers(0, 86_400),
            st.integers(0, 30 * 86_400),
            st.booleans(),
            st.floats(0, 1e6),
        ),
        max_size=2,
    ),
    as_of_s=st.integers(1, SPAN_S),
    lead=st.sampled_from(LEADS),
    flip_outcomes=st.booleans(),
)
def test_nothing_at_or_after_as_of_changes_features(
    tiny_tables, past, future, opps, future_opps, as_of_s, lead, flip_outcomes
):
    as_of = START + pd.Timedelta(seconds=as_of_s)
    snapshot = pd.DataFrame({"lead_id": [lead], "as_of": [as_of]})
    before = build_features(
        tables_with(tiny_tables, events_frame(past), opportunities_frame(opps)),
        snapshot,
        list(BUILDERS),
        PARAMS,
    )

    # The future: events at or after as_of (new ones, and every existing one moved or retyped),
    # opportunities opened at or after as_of, and any outcome field changed.
    moved = [
        (le, max(t, as_of_s) + 17, EVENT_TYPES[-1 - EVENT_TYPES.index(ty)])
        if t >= as_of_s
        else (le, t, ty)
        for le, t, ty in past
    ]
    later = [(le, as_of_s + t, ty) for le, t, ty in future]  # t = 0: exactly at as_of
    new_opps = opps + [(le, as_of_s + t, d, w, a) for le, t, d, w, a in future_opps]
    if flip_outcomes:
        new_opps = [(le, t, d // 2, not w, a * 3) for le, t, d, w, a in new_opps]
    after = build_features(
        tables_with(tiny_tables, events_frame(moved + later), opportunities_frame(new_opps)),
        snapshot,
        list(BUILDERS),
        PARAMS,
    )
    pd.testing.assert_frame_equal(before, after)


def reference_behavioral(
    events: pd.DataFrame, snapshots: pd.DataFrame, p: BehavioralParams
) -> pd.DataFrame:
    """Slow and obvious: loop over snapshots, filter the lead's events, count."""
    day = pd.Timedelta(days=1)
    types = p.types()
    weights = dict(zip(p.type_names(), p.weights(), strict=True))
    own_types = [t.name for t in types if t.actor == "lead"]
    rows = []
    for s in snapshots.itertuples():
        seen = events[(events["lead_id"] == s.lead_id) & (events["timestamp"] < s.as_of)]
        seen = seen[seen["event_type"].isin(p.type_names())]
        row = {}
        for w in p.windows_days:
            in_w = seen[seen["timestamp"] >= s.as_of - w * day]
            for t in types:
                row[f"n_{t.name}_{w}d"] = int((in_w["event_type"] == t.name).sum())
        for t in types:
            of_t = seen[seen["event_type"] == t.name]
            row[f"days_since_last_{t.name}"] = (
                (s.as_of - of_t["timestamp"].max()) / day if len(of_t) else np.nan
            )
        for v in p.event_values:
            carriers = [t.name for t in types if v.name in t.values]
            for w in p.windows_days:
                in_w = seen[(seen["timestamp"] >= s.as_of - w * day)]
                x = in_w.loc[in_w["event_type"].isin(carriers), v.name].dropna()
                row[f"sum_{v.name}_{w}d"] = float(x.sum())
                row[f"mean_{v.name}_{w}d"] = float(x.mean()) if len(x) else np.nan
        seen = seen[seen["event_type"].isin(own_types)]  # engagement: the lead's own actions
        row["days_since_last_event"] = (
            (s.as_of - seen["timestamp"].max()) / day if len(seen) else np.nan
        )
        for w in p.windows_days:
            in_w = seen[seen["timestamp"] >= s.as_of - w * day]
            row[f"events_{w}d"] = len(in_w)
            row[f"active_days_{w}d"] = in_w["timestamp"].dt.normalize().nunique()
        row["engagement_score"] = sum(
            weights[e.event_type] * 0.5 ** (((s.as_of - e.timestamp) / day) / p.half_life_days)
            for e in seen.itertuples()
        )
        recent = (seen["timestamp"] >= s.as_of - p.trend_recent_days * day).sum()
        base = (
            (seen["timestamp"] >= s.as_of - (p.trend_recent_days + p.trend_baseline_days) * day)
            & (seen["timestamp"] < s.as_of - p.trend_recent_days * day)
        ).sum()
        row["engagement_trend"] = np.log2(
            (recent + 1) / (base * p.trend_recent_days / p.trend_baseline_days + 1)
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=[spec.name for spec in behavioral_specs(p)])


def _frames(events, snaps) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events (lead, microseconds after START, type, ...) and snapshots (lead, microseconds)."""
    frame = pd.DataFrame(
        {
            "lead_id": pd.Series([e[0] for e in events], dtype="str"),
            "timestamp": START + pd.to_timedelta([e[1] for e in events], unit="us"),
            "event_type": pd.Series([e[2] for e in events], dtype="str"),
        }
    )
    snapshots = pd.DataFrame(
        {
            "lead_id": [s[0] for s in snaps],
            "as_of": START + pd.to_timedelta([s[1] for s in snaps], unit="us"),
        }
    )
    return frame, snapshots


#: The CRM's own activity types: a company action, a value carried by two types, an event type
#: nobody declared ("fax", ignored).
OWN_TYPES = BehavioralParams(
    windows_days=(3, 30),
    half_life_days=5.0,
    trend_recent_days=3,
    trend_baseline_days=10,
    activity_types=(
        ActivityType("email", "Opened {value} emails", "Last email {value} days ago", "No email", 0.5),
        ActivityType(
            "call", "{value} calls", "Last call {value} days ago", "No call", 0.0, "company",
            ("duration_s",),
        ),
        ActivityType(
            "meeting", "{value} meetings", "Last met {value} days ago", "Never met", 5.0,
            values=("duration_s",),
        ),
    ),
    event_values=(EventValue("duration_s", "{value} seconds talking"),),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(LEADS),
            ts_us,
            st.sampled_from(["email", "call", "meeting", "fax"]),
            st.one_of(st.none(), st.integers(0, 3600)),
        ),
        max_size=40,
    ),
    snaps=st.lists(st.tuples(st.sampled_from([*LEADS, "L9"]), ts_us), min_size=1, max_size=8),
)
def test_own_activity_types_match_the_reference(events, snaps):
    frame, snapshots = _frames(events, snaps)
    frame["duration_s"] = pd.Series([e[3] for e in events], dtype="float64")
    fast = build_behavioral(frame, snapshots, OWN_TYPES)
    slow = reference_behavioral(frame, snapshots, OWN_TYPES)
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(LEADS), ts_us, st.sampled_from(EVENT_TYPES)), max_size=40
    ),
    snaps=st.lists(st.tuples(st.sampled_from([*LEADS, "L9"]), ts_us), min_size=1, max_size=8),
)
def test_fast_builder_matches_the_reference(events, snaps):
    frame, snapshots = _frames(events, snaps)
    fast = build_behavioral(frame, snapshots, PARAMS)
    slow = reference_behavioral(frame, snapshots, PARAMS)
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False, rtol=1e-9, atol=1e-12)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(event_st, max_size=40),
    snaps=st.lists(
        st.tuples(st.sampled_from(LEADS), st.integers(1, SPAN_S)), min_size=2, max_size=8
    ),
    data=st.data(),
)
def test_any_partition_of_leads_gives_the_same_rows(tiny_tables, events, snaps, data):
    tables = tables_with(tiny_tables, events_frame(events), opportunities_frame([]))
    snapshots = pd.DataFrame(
        {
            "lead_id": [s[0] for s in snaps],
            "as_of": START + pd.to_timedelta([s[1] for s in snaps], unit="s"),
        }
    )
    whole = build_features(tables, snapshots, list(BUILDERS), PARAMS)
    subset = data.draw(st.lists(st.sampled_from(LEADS), min_size=1, unique=True))
    mask = snapshots["lead_id"].isin(subset).to_numpy()
    part = build_features(tables, snapshots[mask], list(BUILDERS), PARAMS)
    pd.testing.assert_frame_equal(part, whole[mask].reset_index(drop=True))


# ------------------------------------------------------------------------------------------------
# Several snapshots per lead, events exactly at as_of and at the windows' edges.
#
# With one snapshot per lead, build_behavioral drops every event at or after the lead's (only)
# as_of before the window logic runs, so a window that wrongly reaches as_of (or a day past it)
# has nothing there to count. A later snapshot of the same lead keeps those events in play, and
# events drawn at exactly as_of, a microsecond either side, and at each window's lower edge
# make an off-by-one at any boundary change a count.
# ------------------------------------------------------------------------------------------------
DAY_S = 86_400
DAY_US = DAY_S * 1_000_000
#: Days back from as_of where a window of PARAMS starts: its windows and the trend's two windows.
EDGE_DAYS = sorted(
    {
        *PARAMS.windows_days,
        PARAMS.trend_recent_days,
        PARAMS.trend_recent_days + PARAMS.trend_baseline_days,
    }
)
#: An event's offset from a snapshot's as_of (microseconds): at as_of, just before and after it,
#: within and at the end of the day after it ...
NEAR_AS_OF_US = [0, -1, 1, DAY_US - 1, DAY_US]
#: ... or at, just inside and just outside each window's lower edge, and a day before it.
WINDOW_EDGES_US = sorted(
    {-days * DAY_US + e for days in EDGE_DAYS for e in (-1, 0, 1)}
    | {-(days + 1) * DAY_US + e for days in EDGE_DAYS for e in (0, 1)}
)
edge_offset_st = st.one_of(st.sampled_from(NEAR_AS_OF_US), st.sampled_from(WINDOW_EDGES_US))
#: A snapshot instant: any microsecond, or midnight (as the snapshot policies put it).
as_of_us = st.one_of(ts_us, st.integers(1, SPAN_S // DAY_S).map(lambda d: d * DAY_US))


def _with_later(snaps) -> list[tuple[str, int]]:
    """Each drawn (lead, as_of, gap) as two snapshots of the lead: at as_of and gap later."""
    return [(lead, a) for lead, a, _ in snaps] + [(lead, a + gap) for lead, a, gap in snaps]


@settings(max_examples=80, deadline=None)
@given(
    snaps=st.lists(
        st.tuples(st.sampled_from([*LEADS, "L9"]), as_of_us, st.integers(1, 40 * DAY_US)),
        min_size=1,
        max_size=4,
    ),
    anchored=st.lists(
        st.tuples(st.integers(0, 7), edge_offset_st, st.sampled_from(EVENT_TYPES)),
        min_size=1,
        max_size=25,
    ),
    loose=st.lists(
        st.tuples(st.sampled_from(LEADS), ts_us, st.sampled_from(EVENT_TYPES)), max_size=10
    ),
)
def test_several_snapshots_per_lead_match_the_reference_at_the_edges(snaps, anchored, loose):
    """The fast builder equals the loop-based reference when every lead has several as_of and
    its events sit exactly at a snapshot's as_of, within the day after it, or at a window's
    lower edge (a microsecond either side)."""
    snaps = _with_later(snaps)
    edge_events = [
        (snaps[i % len(snaps)][0], snaps[i % len(snaps)][1] + offset, event_type)
        for i, offset, event_type in anchored
    ]
    frame, snapshots = _frames(edge_events + loose, snaps)
    fast = build_behavioral(frame, snapshots, PARAMS)
    slow = reference_behavioral(frame, snapshots, PARAMS)
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False, rtol=1e-9, atol=1e-12)


#: A future event's offset from the cutoff (seconds): exactly at it, a second after, at the end
#: of its day, a day after; or anywhere in the next month.
future_offset_st = st.one_of(st.sampled_from([0, 1, DAY_S - 1, DAY_S]), st.integers(0, SPAN_S // 4))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # Each example builds every feature twice (~70 ms): shrinking a failure could take the
    # shrinker's 5-minute limit. The failing example is still printed in full.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    past=st.lists(event_st, max_size=20),
    earlier=st.lists(
        st.tuples(st.sampled_from(LEADS), st.integers(1, SPAN_S)), min_size=1, max_size=4
    ),
    later_s=st.lists(st.integers(1, 45 * DAY_S), min_size=len(LEADS), max_size=len(LEADS)),
    future=st.lists(
        st.tuples(st.sampled_from(LEADS), future_offset_st, st.sampled_from(EVENT_TYPES)),
        min_size=1,
        max_size=8,
    ),
    opps=st.lists(opp_st, max_size=3),
    future_opps=st.lists(
        st.tuples(
            st.sampled_from(LEADS),
            future_offset_st,
            st.integers(0, 30 * DAY_S),
            st.booleans(),
            st.floats(0, 1e6),
        ),
        max_size=2,
    ),
    flip_outcomes=st.booleans(),
    data=st.data(),
)
def test_several_snapshots_per_lead_see_nothing_at_or_after_their_as_of(
    tiny_tables, past, earlier, later_s, future, opps, future_opps, flip_outcomes, data
):
    """Every builder: changing what happens at or after a cutoff (events exactly at it, within
    its day, later; opportunities opened then; outcomes) leaves every snapshot with as_of <= the
    cutoff as it was, while each lead also has a snapshot after the cutoff (so that events after
    the cutoff reach the window logic instead of being dropped up front)."""
    cutoff = data.draw(st.sampled_from(earlier), label="cutoff snapshot")[1]
    snaps = earlier + [(lead, cutoff + gap) for lead, gap in zip(LEADS, later_s, strict=True)]
    snapshots = pd.DataFrame(
        {
            "lead_id": [s[0] for s in snaps],
            "as_of": START + pd.to_timedelta([s[1] for s in snaps], unit="s"),
        }
    )
    before = build_features(
        tables_with(tiny_tables, events_frame(past), opportunities_frame(opps)),
        snapshots,
        list(BUILDERS),
        PARAMS,
    )
    moved = [
        (le, max(t, cutoff) + 17, EVENT_TYPES[-1 - EVENT_TYPES.index(ty)])
        if t >= cutoff
        else (le, t, ty)
        for le, t, ty in past
    ]
    later = [(le, cutoff + t, ty) for le, t, ty in future]  # t = 0: exactly at the cutoff
    new_opps = opps + [(le, cutoff + t, d, w, a) for le, t, d, w, a in future_opps]
    if flip_outcomes:
        new_opps = [(le, t, d // 2, not w, a * 3) for le, t, d, w, a in new_opps]
    after = build_features(
        tables_with(tiny_tables, events_frame(moved + later), opportunities_frame(new_opps)),
        snapshots,
        list(BUILDERS),
        PARAMS,
    )
    known = (snapshots["as_of"] <= START + pd.Timedelta(seconds=cutoff)).to_numpy()
    assert known.any()
    pd.testing.assert_frame_equal(before[known], after[known])
