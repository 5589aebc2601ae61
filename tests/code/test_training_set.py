"""Labels, censoring, exclusions and the temporal split, on tiny frames."""

from __future__ import annotations

import pandas as pd
import pytest

from features.validation import validate_crm
from pipelines.scoring import open_leads
from pipelines.training_set import (
    fingerprint,
    label_snapshots,
    manifest,
    won_or_lost_before,
)

END = pd.Timestamp("2024-12-31")


def label(tiny_tables, as_of: list[str], horizon: int = 30, end: pd.Timestamp = END):
    snaps = pd.DataFrame(
        {"lead_id": ["L1"] * len(as_of), "as_of": pd.to_datetime(as_of, format="ISO8601")}
    )
    return label_snapshots(
        snaps, tiny_tables["leads"], tiny_tables["opportunities"], horizon, end, population="all"
    )


def test_label_is_closed_won_within_the_horizon(tiny_tables):
    # won at 2024-04-20 16:00
    out = label(
        tiny_tables,
        ["2024-03-02", "2024-03-21", "2024-03-22", "2024-03-21 16:00:01", "2024-04-20 16:00"],
        horizon=30,
    )
    got = dict(zip(out.frame["as_of"].astype(str), out.frame["label"], strict=True))
    assert got == {
        "2024-03-02 00:00:00": 0,  # horizon ends 04-01
        "2024-03-21 00:00:00": 0,  # horizon ends 04-20 00:00, before the 16:00 close
        "2024-03-22 00:00:00": 1,
        "2024-03-21 16:00:01": 1,  # window [as_of, as_of + 30 days) still holds 04-20 16:00
        "2024-04-20 16:00:00": 1,  # closing exactly at as_of counts: not closed *before* as_of
    }


def test_horizon_end_is_exclusive(tiny_tables):
    out = label(tiny_tables, ["2024-03-21 16:00"], horizon=30)
    assert out.frame["label"].tolist() == [0]


def test_closed_leads_censored_and_unborn_snapshots_are_left_out_and_counted(tiny_tables):
    snaps = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L1", "L2"],
            "as_of": pd.to_datetime(["2024-02-01", "2024-05-01", "2024-03-10", "2024-12-15"]),
        }
    )
    out = label_snapshots(
        snaps, tiny_tables["leads"], tiny_tables["opportunities"], 30, END, population="all"
    )
    assert out.frame["as_of"].dt.strftime("%m-%d").tolist() == ["03-10"]
    assert out.excluded == {
        "before_lead_created": 1,
        "already_won_or_lost": 1,
        "in_sales_opportunity_open": 0,
        "censored_horizon_after_data_end": 1,
    }


def test_manifest_counts_and_fingerprint(tiny_tables):
    training = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L1", "L2"],
            "as_of": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-02-01", "2024-03-01"]),
            "label": [0, 1, 1, 0],
            "split": ["train", "train", "validation", "test"],
        }
    )
    fp = fingerprint(tiny_tables)
    m = manifest(training, {"censored_horizon_after_data_end": 2}, fp, ["x"], {"k": 1})
    assert m["splits"]["train"] == {
        "rows": 2,
        "leads": 2,
        "positives": 1,
        "won_leads": 1,
        "positive_rate": 0.5,
        "won_with_amount": 0,  # no won_amount column: a training set built before amounts
        "won_leads_with_amount": 0,
        "as_of_from": "2024-01-01",
        "as_of_to": "2024-01-02",
    }
    assert m["leads_in_more_than_one_split"] == 2
    assert len(fp) == 64 and fp == fingerprint(tiny_tables)
    changed = dict(tiny_tables, events=tiny_tables["events"].iloc[:-1])
    assert fingerprint(changed) != fp


def opportunities(*rows):
    return pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(len(rows))],
            "lead_id": ["L1"] * len(rows),
            "created_at": pd.to_datetime([r[0] for r in rows]),
            "closed_at": pd.to_datetime([r[1] for r in rows]),
            "is_won": pd.array([r[2] for r in rows], dtype="boolean"),
            "amount": [1.0] * len(rows),
        }
    )


def test_a_lost_opportunity_does_not_hide_a_later_win(tiny_tables):
    opps = opportunities(("2024-03-05", "2024-03-20", False), ("2024-04-01", "2024-04-10", True))
    snaps = pd.DataFrame(
        {"lead_id": ["L1"] * 3, "as_of": pd.to_datetime(["2024-03-10", "2024-03-25", "2024-04-05"])}
    )
    out = label_snapshots(snaps, tiny_tables["leads"], opps, 30, END, population="all")
    # 03-25: the first opportunity is lost, none open -> lost, left out; 04-05: a new one is open.
    assert out.frame["as_of"].dt.strftime("%m-%d").tolist() == ["03-10", "04-05"]
    assert out.frame["label"].tolist() == [0, 1]
    assert out.excluded["already_won_or_lost"] == 1


def test_labelling_works_without_any_closed_opportunity(tiny_tables):
    open_only = opportunities(("2024-03-05", None, None))
    snaps = pd.DataFrame(
        {"lead_id": ["L1", "L2"], "as_of": pd.to_datetime(["2024-03-10", "2024-03-10"])}
    )
    out = label_snapshots(snaps, tiny_tables["leads"], open_only, 30, END, population="all")
    assert out.frame["label"].tolist() == [0, 0]
    none = label_snapshots(
        snaps, tiny_tables["leads"], open_only.iloc[:0], 30, END, population="all"
    )
    assert len(none.frame) == 2


# ------------------------------------------------------------------------------------------------
# An opportunity opened before its lead record (a CRM merge) counts like any other
# ------------------------------------------------------------------------------------------------
def snapshots_of_l1(*as_of: str) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": ["L1"] * len(as_of), "as_of": pd.to_datetime(list(as_of))})


def test_a_won_opportunity_opened_before_its_lead_labels_the_lead(tiny_tables):
    # L1 was created 2024-03-01 09:30; its opportunity was opened a month before the record
    opps = opportunities(("2024-02-01", "2024-03-20", True))
    snaps = snapshots_of_l1("2024-02-15", "2024-03-10", "2024-03-25")
    out = label_snapshots(snaps, tiny_tables["leads"], opps, 30, END, population="all")
    assert out.frame["as_of"].dt.strftime("%m-%d").tolist() == ["03-10"]
    assert out.frame["label"].tolist() == [1]  # closes after as_of, within the horizon
    assert out.excluded == {
        "before_lead_created": 1,  # 02-15: the lead did not exist yet
        "already_won_or_lost": 1,  # 03-25: closed won before as_of
        "in_sales_opportunity_open": 0,
        "censored_horizon_after_data_end": 0,
    }


@pytest.mark.parametrize(("is_won", "expected"), [(True, (True, False)), (False, (False, True))])
def test_already_won_or_lost_counts_an_opportunity_opened_before_its_lead(is_won, expected):
    opps = opportunities(("2024-02-01", "2024-03-20", is_won))
    won, lost = won_or_lost_before(snapshots_of_l1("2024-03-10", "2024-03-25"), opps)
    assert won.tolist() == [False, expected[0]]
    assert lost.tolist() == [False, expected[1]]


def test_open_leads_leaves_out_a_lead_won_through_an_opportunity_older_than_it(tiny_tables):
    tables = dict(tiny_tables, opportunities=opportunities(("2024-02-01", "2024-03-20", True)))
    snapshots, counts = open_leads(tables, pd.Timestamp("2024-03-25"))
    assert snapshots["lead_id"].tolist() == ["L2"]
    assert (counts["already_won"], counts["already_lost"]) == (1, 0)


def test_an_opportunity_without_created_at_closed_before_as_of_was_opened_before_it():
    lost = opportunities((None, "2024-03-20", False))
    still_open = opportunities((None, None, None))
    snaps = snapshots_of_l1("2024-03-10", "2024-03-25")
    assert won_or_lost_before(snaps, lost)[1].tolist() == [False, True]
    assert won_or_lost_before(snaps, still_open)[1].tolist() == [False, False]


def test_validation_keeps_an_opportunity_opened_before_its_lead_for_the_label():
    """Fails if validation quarantines it again: the won deal would silently become label 0."""
    raw = {
        "leads": pd.DataFrame(
            {"lead_id": ["L1"], "created_at": ["2024-03-01T09:30:00"]}, dtype="str"
        ),
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["O1"],
                "lead_id": ["L1"],
                "created_at": ["2024-02-01T00:00:00"],
                "closed_at": ["2024-03-20T00:00:00"],
                "is_won": ["true"],
            },
            dtype="str",
        ),
    }
    tables = validate_crm(raw, pd.Timestamp("2024-12-31")).tables
    out = label_snapshots(
        snapshots_of_l1("2024-03-10"),
        tables["leads"],
        tables["opportunities"],
        30,
        END,
        population="all",
    )
    assert out.frame["label"].tolist() == [1]


def test_the_lead_scoring_population_ends_a_leads_snapshots_when_an_opportunity_opens(tiny_tables):
    """L1's opportunity opens 2024-03-10 10:00 and is won 2024-04-20: a snapshot before the
    opening is labelled; one after it (sales works the lead) is left out and counted, unless
    population all."""
    snaps = pd.DataFrame(
        {"lead_id": ["L1", "L1"], "as_of": pd.to_datetime(["2024-03-10", "2024-03-11"])}
    )
    leads, opps = tiny_tables["leads"], tiny_tables["opportunities"]
    scoring = label_snapshots(snaps, leads, opps, 60, END)
    assert scoring.frame["as_of"].tolist() == [pd.Timestamp("2024-03-10")]
    assert scoring.excluded["in_sales_opportunity_open"] == 1
    everyone = label_snapshots(snaps, leads, opps, 60, END, population="all")
    assert everyone.frame["label"].tolist() == [1, 1]
    assert everyone.excluded["in_sales_opportunity_open"] == 0
    with pytest.raises(ValueError, match="label.population"):
        label_snapshots(snaps, leads, opps, 60, END, population="sales")
