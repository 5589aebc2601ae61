"""Behavioral features on tiny hand-made frames, with exact expected values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.behavioral import BehavioralParams, behavioral_specs, build_behavioral
from features.contract import EVENT_TYPES

PARAMS = BehavioralParams(windows_days=(7, 30), half_life_days=7.0)


def snaps(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [p[0] for p in pairs],
            "as_of": pd.to_datetime([p[1] for p in pairs], format="ISO8601"),
        }
    )


def test_counts_recency_and_windows_are_exact(tiny_tables):
    out = build_behavioral(
        tiny_tables["events"], snaps(("L1", "2024-03-10"), ("L1", "2024-03-03 09:00")), PARAMS
    )
    first, second = out.iloc[0], out.iloc[1]
    assert first["n_pricing_page_view_7d"] == 2
    assert first["n_page_view_7d"] == 0  # 2024-03-01 10:00 is 8.58 days before as_of
    assert first["n_page_view_30d"] == 1
    assert first["n_demo_request_7d"] == 1
    assert first["events_7d"] == 3 and first["events_30d"] == 4
    assert first["active_days_7d"] == 2 and first["active_days_30d"] == 3
    assert first["days_since_last_demo_request"] == pytest.approx(0.5)
    assert first["days_since_last_event"] == pytest.approx(0.5)
    assert first["days_since_last_page_view"] == pytest.approx(8 + 14 / 24)
    assert np.isnan(first["days_since_last_email_open"])
    # as_of exactly at an event's timestamp: that event is not yet known (strictly before).
    assert second["n_pricing_page_view_7d"] == 1
    assert second["days_since_last_pricing_page_view"] == pytest.approx(1 / 24)
    assert second["n_demo_request_30d"] == 0


def test_engagement_score_decays_by_half_per_half_life():
    events = pd.DataFrame(
        {
            "lead_id": ["L1", "L1"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-08"]),
            "event_type": ["demo_request", "page_view"],
        }
    )
    params = BehavioralParams(
        half_life_days=7.0, event_weights={"demo_request": 8.0, "page_view": 2.0}
    )
    out = build_behavioral(events, snaps(("L1", "2024-01-15")), params)
    # demo: 8 * 0.5**2 = 2; page view: 2 * 0.5**1 = 1
    assert out.loc[0, "engagement_score"] == pytest.approx(3.0)


def test_trend_compares_recent_window_with_the_baseline_before_it():
    days = pd.to_datetime(["2024-02-01", "2024-02-10", "2024-02-20", "2024-02-27", "2024-02-28"])
    events = pd.DataFrame(
        {"lead_id": ["L1"] * 5, "timestamp": days, "event_type": ["page_view"] * 5}
    )
    params = BehavioralParams(trend_recent_days=7, trend_baseline_days=30)
    out = build_behavioral(events, snaps(("L1", "2024-03-01")), params)
    # recent [02-23, 03-01): 2 events; baseline [01-24, 02-23): 3 events -> expected 3 * 7/30
    assert out.loc[0, "engagement_trend"] == pytest.approx(np.log2(3 / (3 * 7 / 30 + 1)))


def test_lead_without_events_and_unknown_lead_get_empty_history(tiny_tables):
    out = build_behavioral(
        tiny_tables["events"], snaps(("L2", "2024-03-06"), ("ZZ", "2024-03-06")), PARAMS
    )
    assert (out[[f"n_{t}_30d" for t in EVENT_TYPES]].to_numpy() == 0).all()
    assert out["days_since_last_event"].isna().all()
    assert (out["engagement_score"] == 0).all()
    assert (out["engagement_trend"] == 0).all()


def test_no_events_at_all_returns_the_same_columns(tiny_tables):
    empty = tiny_tables["events"].iloc[:0]
    out = build_behavioral(empty, snaps(("L1", "2024-03-10")), PARAMS)
    assert list(out.columns) == [s.name for s in behavioral_specs(PARAMS)]
    assert out.loc[0, "events_30d"] == 0


def test_rows_follow_snapshot_order_and_index(tiny_tables):
    s = snaps(("L2", "2024-03-07"), ("L1", "2024-03-10"), ("L1", "2024-03-02")).set_index(
        pd.Index([10, 5, 7])
    )
    out = build_behavioral(tiny_tables["events"], s, PARAMS)
    assert list(out.index) == [10, 5, 7]
    assert out["events_30d"].tolist() == [1, 4, 1]


def test_every_feature_has_a_label_and_reads_only_events():
    for spec in behavioral_specs(PARAMS):
        assert "{value}" in spec.label
        assert all(src.startswith("events.") for src in spec.sources)
        assert spec.is_point_in_time_safe


def test_unknown_event_weight_is_refused():
    with pytest.raises(ValueError, match="unknown event types"):
        BehavioralParams(event_weights={"telepathy": 1.0}).weights()


def test_no_snapshots_gives_an_empty_frame_with_every_column(tiny_tables):
    out = build_behavioral(tiny_tables["events"], snaps(("L1", "2024-03-10")).iloc[:0], PARAMS)
    assert len(out) == 0 and list(out.columns) == [s.name for s in behavioral_specs(PARAMS)]
