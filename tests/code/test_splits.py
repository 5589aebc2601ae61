"""The out-of-time split: by lead or by snapshot, days or fractions, purge, one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.splits import SplitRule, split_snapshots


def daily(n: int, start: str = "2024-01-01") -> pd.DataFrame:
    """One snapshot a day, each of its own lead."""
    return pd.DataFrame(
        {
            "lead_id": [f"L{i:03d}" for i in range(n)],
            "as_of": pd.date_range(start, periods=n, freq="D"),
        }
    )


def counts(split) -> dict[str, int]:
    return split.labels.value_counts().to_dict()


def test_days_take_the_last_days_of_entries_as_test():
    snaps = daily(100)
    split = split_snapshots(snaps, SplitRule(validation_days=20, test_days=10))
    assert counts(split) == {"train": 70, "validation": 20, "test": 10}
    assert snaps["as_of"][split.labels == "test"].min() == pd.Timestamp("2024-03-31")
    assert snaps["as_of"][split.labels == "validation"].min() == pd.Timestamp("2024-03-11")


def test_fractions_take_shares_of_the_leads_newest_last():
    snaps = daily(100)
    split = split_snapshots(snaps, SplitRule(validation_fraction=0.15, test_fraction=0.2))
    assert counts(split) == {"train": 65, "validation": 15, "test": 20}
    order = split.labels.to_numpy()
    assert (order[:65] == "train").all() and (order[80:] == "test").all()


def test_without_a_test_split_validation_is_the_newest_and_the_purge_still_holds():
    # The backtest's split: the month after the cutoff is its test, so only train and validation.
    snaps = daily(100)
    rule = SplitRule(validation_fraction=0.2, with_test=False)
    split = split_snapshots(snaps, rule)
    assert counts(split) == {"train": 80, "validation": 20}
    assert (split.labels.to_numpy()[80:] == "validation").all() and split.report[
        "test_start"
    ] is None
    by_days = split_snapshots(snaps, SplitRule(validation_days=10, with_test=False, purge_days=5))
    # Validation: the last 10 days; train rows whose 5-day window reaches into it are purged.
    assert counts(by_days) == {"train": 86, "validation": 10, "purged": 4}
    with pytest.raises(ValueError, match="give exactly one of validation_days"):
        SplitRule(with_test=False)


def test_by_lead_keeps_every_snapshot_of_a_lead_in_the_split_it_entered():
    # L1 enters on day 0 and has snapshots until day 60; L2 enters on day 50; L3 on day 80.
    snaps = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L1", "L2", "L2", "L3", "L3"],
            "as_of": pd.to_datetime(
                [
                    "2024-01-01",
                    "2024-01-31",
                    "2024-03-01",
                    "2024-02-20",
                    "2024-03-15",
                    "2024-03-21",
                    "2024-03-30",
                ]
            ),  # fmt: skip
        }
    )
    split = split_snapshots(snaps, SplitRule(validation_days=25, test_days=10))
    assert split.labels.tolist() == ["train"] * 3 + ["validation"] * 2 + ["test"] * 2
    assert split.report["leads_in_more_than_one_split"] == 0
    by_snapshot = split_snapshots(snaps, SplitRule(by="snapshot", validation_days=25, test_days=10))
    assert by_snapshot.labels.tolist()[:3] == ["train", "train", "validation"]
    assert by_snapshot.report["leads_in_more_than_one_split"] == 2


def test_by_snapshot_warns_with_the_count_of_leads_in_two_splits(caplog):
    snaps = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L2", "L3"],
            "as_of": pd.to_datetime(["2024-01-01", "2024-03-30", "2024-03-10", "2024-03-01"]),
        }
    )
    split_snapshots(snaps, SplitRule(by="snapshot", validation_days=20, test_days=5))
    assert "1 lead(s) have snapshots in two splits" in caplog.text


def test_purge_drops_rows_whose_label_window_reaches_the_next_split():
    snaps = daily(100)
    split = split_snapshots(snaps, SplitRule(validation_days=30, test_days=10, purge_days=7))
    # test starts 04-01, validation 03-02; a window [as_of, as_of + 7 d) ending exactly at a
    # split start stays: 6 days before each boundary are purged
    assert counts(split) == {"train": 54, "validation": 24, "test": 10, "purged": 12}
    assert split.report["purged_rows"] == {"train": 6, "validation": 6}
    as_of, labels = snaps["as_of"], split.labels
    assert (
        as_of[labels == "train"].max() + pd.Timedelta(days=7) <= as_of[labels == "validation"].min()
    )
    assert (
        as_of[labels == "validation"].max() + pd.Timedelta(days=7) <= as_of[labels == "test"].min()
    )


def test_purge_by_lead_drops_a_train_leads_late_snapshots():
    snaps = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L2", "L3"],
            "as_of": pd.to_datetime(["2024-01-01", "2024-02-25", "2024-03-01", "2024-03-30"]),
        }
    )
    split = split_snapshots(snaps, SplitRule(validation_days=30, test_days=5, purge_days=7))
    assert split.labels.tolist() == ["train", "purged", "validation", "test"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (SplitRule(validation_days=20, test_days=10), "leaves train and validation empty"),
        (SplitRule(validation_days=3, test_days=2, purge_days=30), "purge .* leaves .* empty"),
    ],
)
def test_a_split_that_cannot_be_made_is_one_sentence_with_the_figures(rule, message):
    with pytest.raises(ValueError, match=message) as err:
        split_snapshots(daily(10), rule)
    assert "\n" not in str(err.value)
    assert "2024-01-01..2024-01-10 (10 days)" in str(err.value)


def test_no_labelled_snapshot_is_a_sentence_not_a_traceback():
    with pytest.raises(ValueError, match="no labelled snapshots"):
        split_snapshots(daily(0), SplitRule(validation_days=1, test_days=1))


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"validation_days": 5}, "exactly one of test_days and test_fraction"),
        ({"validation_days": 5, "test_days": 5, "test_fraction": 0.2}, "exactly one"),
        ({"validation_fraction": 0.6, "test_fraction": 0.4}, "nothing is left to train on"),
        ({"validation_days": 5, "test_fraction": 1.5}, "between 0 and 1"),
        ({"validation_days": 0, "test_days": 5}, "at least 1"),
        ({"by": "account", "validation_days": 5, "test_days": 5}, "split.by"),
        ({"validation_days": 5, "test_days": 5, "tests_days": 3}, "unknown setting"),
    ],
)
def test_settings_are_checked_in_one_sentence(settings_, message):
    with pytest.raises(ValueError, match=message):
        SplitRule.from_params(settings_, horizon_days=30)


def test_from_params_purges_by_the_horizon_unless_told_not_to():
    assert SplitRule.from_params({"validation_days": 5, "test_days": 5}, 45).purge_days == 45
    rule = SplitRule.from_params({"validation_days": 5, "test_days": 5, "purge": False}, 45)
    assert rule.purge_days == 0


@settings(max_examples=60, deadline=None)
@given(
    n_leads=st.integers(5, 60),
    max_snaps=st.integers(1, 4),
    purge=st.integers(0, 20),
    seed=st.integers(0, 10_000),
)
def test_no_lead_in_two_splits_and_no_label_window_reaches_the_next_split(
    n_leads, max_snaps, purge, seed
):
    """The two invariants, on random leads with several snapshots each."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 200, n_leads), "D")
    per_lead = rng.integers(1, max_snaps + 1, n_leads)
    lead = np.repeat(np.arange(n_leads), per_lead)
    offsets = pd.to_timedelta(rng.integers(0, 60, len(lead)), "D")
    snaps = pd.DataFrame({"lead_id": lead.astype(str), "as_of": created[lead] + offsets})
    try:
        split = split_snapshots(
            snaps, SplitRule(validation_fraction=0.3, test_fraction=0.3, purge_days=purge)
        )
    except ValueError as err:  # a split left empty is refused, in one sentence
        assert "empty" in str(err) and "\n" not in str(err)
        return
    labels = split.labels
    kept = labels != "purged"
    assert (labels[kept].groupby(snaps["lead_id"][kept]).nunique() == 1).all()
    if not purge:  # without a purge a train lead's late snapshots may follow validation's start
        return
    window = pd.Timedelta(days=purge)
    starts = {s: snaps["as_of"][labels == s].min() for s in ("validation", "test")}
    assert (snaps["as_of"][labels == "train"] + window <= starts["validation"]).all()
    assert (snaps["as_of"][labels == "validation"] + window <= starts["test"]).all()


def test_a_purge_that_takes_most_of_a_split_is_a_warning(caplog):
    snaps = daily(100)
    split_snapshots(snaps, SplitRule(validation_days=30, test_days=10, purge_days=7))
    assert "the purge leaves" not in caplog.text
    split_snapshots(snaps, SplitRule(validation_days=30, test_days=10, purge_days=20))
    assert "the purge leaves 11 of 30 validation rows" in caplog.text
