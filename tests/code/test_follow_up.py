"""Follow-up: the last sales touch, since when a lead is in its stage, and the SLA, on tiny frames."""

from __future__ import annotations

import pandas as pd
import pytest

from features.behavioral import BUILT_IN_TYPES, ActivityType, BehavioralParams
from features.mapping.contract import NATIVE
from pipelines.follow_up import (
    company_types,
    conversion_by_first_touch,
    due_at,
    follow_up,
    last_touch,
    sla_settings,
)

AS_OF = pd.Timestamp("2024-06-05 06:00")  # a Wednesday
SLA = {"SQL": {"days": 1.0, "business": True}, "MQL": {"days": 3.0, "business": False}}


def events(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": pd.Categorical([r[0] for r in rows]),
            "timestamp": pd.to_datetime([r[1] for r in rows]),
            "event_type": pd.Categorical([r[2] for r in rows]),
        }
    )


def test_the_last_touch_is_the_latest_company_activity_before_the_instant():
    ev = events(
        ("A", "2024-06-01 10:00", "call"),
        ("A", "2024-06-03 10:00", "meeting"),
        ("A", "2024-06-04 10:00", "page_view"),  # the lead's own: not a touch
        ("B", "2024-06-05 06:00", "call"),  # at the instant: not before it
        ("B", "2024-06-02 09:00", "call"),
        ("C", "2024-06-06 09:00", "call"),  # after: not seen
    )
    got = last_touch(ev, ["A", "B", "C", "D"], ["call", "meeting"], AS_OF)
    assert got["A"] == pd.Timestamp("2024-06-03 10:00")
    assert got["B"] == pd.Timestamp("2024-06-02 09:00")
    assert got[["C", "D"]].isna().all()
    assert last_touch(ev, ["A"], [], AS_OF).isna().all()


def test_company_types_are_the_ones_declared_as_ours():
    call = ActivityType(
        "call", "Had {value} calls", "Last call {value} days ago", "No call", 0, "company"
    )
    params = BehavioralParams(activity_types=(*BUILT_IN_TYPES[:2], call))
    assert company_types(NATIVE, params) == ["call"]
    assert company_types(NATIVE, BehavioralParams(activity_types=BUILT_IN_TYPES[:2])) == []


def test_business_days_skip_the_weekend_and_calendar_days_do_not():
    since = pd.Series(
        pd.to_datetime(["2024-06-07 16:00", "2024-06-08 10:00", "2024-06-05 09:30", None])
    )  # Friday, Saturday, Wednesday, missing
    got = due_at(since, 1, business=True)
    assert got.tolist()[:3] == [
        pd.Timestamp("2024-06-10 16:00"),  # Friday + 1 business day: Monday, same time
        pd.Timestamp("2024-06-11 00:00"),  # Saturday counts from Monday's start
        pd.Timestamp("2024-06-06 09:30"),
    ]
    assert pd.isna(got.iloc[3])
    assert due_at(since[:1], 3, business=False).iloc[0] == pd.Timestamp("2024-06-10 16:00")


def scored(stages: list[str], touches: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(len(stages))],
            "stage": stages,
            "last_sales_touch_at": pd.to_datetime(touches),
        }
    )


def previous(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "stage_since": pd.to_datetime([r[2] for r in rows]),
        }
    )


def test_a_stage_is_carried_over_while_it_stays_and_restarts_when_it_changes():
    now = scored(["SQL", "SQL", "MQL", "nurture"], [None] * 4)
    before = previous(
        [("L0", "SQL", "2024-06-01"), ("L1", "MQL", "2024-06-01"), ("L2", "MQL", "2024-06-04")]
    )
    out = follow_up(now, before, AS_OF, SLA, touches_known=True)
    assert out["stage_since"].tolist() == [
        pd.Timestamp("2024-06-01"),  # still SQL: since the first night it was
        AS_OF,  # MQL -> SQL: since now
        pd.Timestamp("2024-06-04"),
        AS_OF,  # first scored
    ]
    # L0: SQL since Saturday-ish 06-01, untouched, 1 business day passed; L2: MQL 1 day < 3
    assert out["follow_up_due"].tolist() == [True, False, False, False]


def test_a_touch_since_the_stage_began_clears_it_and_one_before_does_not():
    now = scored(["SQL", "SQL", "SQL"], ["2024-06-03 12:00", "2024-05-30 12:00", None])
    before = previous([(f"L{i}", "SQL", "2024-06-03 09:00") for i in range(3)])  # Monday 09:00
    out = follow_up(now, before, AS_OF, SLA, touches_known=True)
    assert out["follow_up_due"].tolist() == [False, True, True]


def test_the_deadline_itself_is_not_late_and_a_moment_after_is():
    # SQL since Tuesday 06:00: due Wednesday 06:00 = AS_OF exactly.
    before = previous([("L0", "SQL", "2024-06-04 06:00")])
    on_time = follow_up(scored(["SQL"], [None]), before, AS_OF, SLA, touches_known=True)
    late = follow_up(
        scored(["SQL"], [None]), before, AS_OF + pd.Timedelta("1us"), SLA, touches_known=True
    )
    assert on_time["follow_up_due"].tolist() == [False]
    assert late["follow_up_due"].tolist() == [True]


def test_without_company_activities_follow_up_is_not_known():
    before = previous([("L0", "SQL", "2024-05-01")])
    out = follow_up(scored(["SQL"], [None]), before, AS_OF, SLA, touches_known=False)
    assert out["follow_up_due"].isna().all()
    assert out["stage_since"].iloc[0] == pd.Timestamp("2024-05-01")  # still carried over


@pytest.mark.parametrize(
    "sla, message",
    [
        ({"nurture": {"days": 1}}, "unknown stage"),
        ({"SQL": {"days": -1}}, "days must be"),
        ({"SQL": {"days": "one"}}, "days must be"),
    ],
)
def test_bad_slas_are_named(sla, message):
    with pytest.raises(ValueError, match=message):
        sla_settings({"follow_up": {"sla": sla}})
    assert sla_settings({}) == {}


def test_conversion_by_time_to_first_touch_on_literal_leads():
    ids = pd.Index(["A", "B", "C", "D", "E"])
    created = pd.Series(pd.to_datetime(["2024-01-01"] * 5), index=ids)
    first = pd.Series(
        pd.to_datetime(
            ["2024-01-01 12:00", "2024-01-02 00:00", "2024-01-05 00:00", "2024-03-01 00:00"]
        ),
        index=["A", "B", "C", "D"],
    )  # E: never touched; B: exactly 1 day is the next band
    converted = pd.Series([True, True, False, False, True], index=ids)
    table = conversion_by_first_touch(created, first, converted, [1, 7])
    assert table["first_touch"].tolist() == ["under 1 day", "1-7 days", "after 7 days or never"]
    assert table["leads"].tolist() == [1, 2, 2]
    assert table["conversions"].tolist() == [1, 1, 1]
    assert (table["low"] <= table["conversion_rate"]).all()
    assert (table["conversion_rate"] <= table["high"]).all()
    with pytest.raises(ValueError, match="report_bins_days"):
        conversion_by_first_touch(created, first, converted, [7, 1])


def test_an_earlier_night_is_days_before_the_instant_otherwise_used():
    from pipelines.score_job import resolve_as_of

    params = {"score": {"as_of": None}, "crm": {"extracted_at": "2024-06-05T00:00:00"}}
    assert resolve_as_of(params, "unused", "-3d") == (pd.Timestamp("2024-06-02"), True)
    assert resolve_as_of(params, "unused", None) == (pd.Timestamp("2024-06-05"), True)
