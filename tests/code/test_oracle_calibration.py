"""The oracle is calibrated against the training labels: for the snapshots the pipeline labels
(snapshots_after_creation with the generator's offsets, label_snapshots with its horizon, on the
validated tables), ``p_true`` matches the share of wins, offset by offset and decile by decile,
within binomial sampling error.

Why a fast world with a 3-day horizon: what a timing slip in the oracle changes is the chance of
a win on one day (the as_of day, or the day after the horizon). With the default funnel (an
opportunity closes after ~140 days on average, a 90-day horizon) that is ~1% of ``p_true``,
far inside the sampling error of any quick test. Here leads reach and close opportunities within
days, and one day is a third of the horizon: the oracle seeing the as_of day (its filter run
over that day's events and state before it is recorded), or its horizon shifted or lengthened
by a day, moves the expected wins by ~3 tolerances. The labels and the oracle must agree in
any world, this one included.

Tolerance: given everything observable up to as_of, an exact oracle makes each label a
Bernoulli(``p_true``) draw, independent across leads (each lead's chain depends on its own
observable values only). With one snapshot per lead per offset, the number of wins in a set of
snapshots chosen by ``p_true`` is a sum of independent Bernoulli draws; Bernstein's inequality
bounds its distance from the sum of ``p_true`` at false-alarm rate delta by
``t = L/3 + sqrt(L**2/9 + 2 * L * sum(p * (1 - p)))``, ``L = ln(2 / delta)``, valid for the
small expected counts of the low deciles too, where a normal approximation is not. The
false-alarm rate of the whole test is FALSE_ALARM, split evenly over its comparisons.

A calibration test cannot see every leak: an oracle that conditioned on the as_of day *and*
kept its target right would still be calibrated on the snapshots it covers. It would lose the
snapshots of leads that close on the as_of day (the filter stops at a close): the first test
checks that the oracle covers exactly the labelled snapshots.
"""

from __future__ import annotations

from math import log, sqrt

import numpy as np
import pandas as pd
import pytest

from features.snapshots import snapshots_after_creation
from features.validation import validate_crm
from pipelines.synthetic_crm import SyntheticCRMConfig, generate_crm
from pipelines.training_set import label_snapshots

FAST_WORLD = SyntheticCRMConfig(
    n_leads=20_000,
    months=4,
    seed=1,
    snapshot_offsets_days=(1, 3, 7),
    horizon_days=3,
    base_hazards={
        **SyntheticCRMConfig().base_hazards,
        "cold_to_engaged": 0.2,
        "engaged_to_evaluating": 0.25,
        "evaluating_to_opportunity": 0.3,
        "opportunity_close": 0.4,
        "win_log_odds": 0.5,
    },
)
FALSE_ALARM = 1e-3  # of the whole calibration test, were the oracle exact
DECILES = 10


@pytest.fixture(scope="module")
def labelled_with_oracle() -> pd.DataFrame:
    """The labelled snapshots of the fast world, outer-joined to its oracle (``_merge`` says
    which side each row is on), with each snapshot's offset."""
    world = generate_crm(FAST_WORLD)
    tables = validate_crm(world.tables, extracted_at=world.extracted_at).tables
    snapshots = snapshots_after_creation(tables["leads"], list(FAST_WORLD.snapshot_offsets_days))
    labels = label_snapshots(
        snapshots,
        tables["leads"],
        tables["opportunities"],
        horizon_days=FAST_WORLD.horizon_days,
        data_end=world.extracted_at,
        population="all",  # the oracle covers every open lead, in sales or not
    ).frame
    oracle = world.oracle[["lead_id", "as_of", "p_true"]]
    joined = labels.astype({"as_of": "datetime64[us]"}).merge(
        oracle.astype({"as_of": "datetime64[us]"}),
        on=["lead_id", "as_of"],
        how="outer",
        validate="one_to_one",
        indicator=True,
    )
    created = tables["leads"].set_index("lead_id")["created_at"].dt.normalize()
    joined["offset"] = (joined["as_of"] - joined["lead_id"].map(created)).dt.days
    return joined


def test_the_oracle_covers_exactly_the_labelled_snapshots(labelled_with_oracle):
    """One oracle row per labelled snapshot and none other: every offset, no lead closed before
    as_of, none whose horizon runs past the data, none lost because it closed on the as_of day."""
    joined = labelled_with_oracle
    sides = joined["_merge"].value_counts().to_dict()
    assert sides.get("left_only", 0) == 0 and sides.get("right_only", 0) == 0, (
        f"labelled snapshots without an oracle row: {sides.get('left_only', 0)} "
        f"(by offset: {joined[joined['_merge'] == 'left_only']['offset'].value_counts().to_dict()}); "
        f"oracle rows for no labelled snapshot: {sides.get('right_only', 0)}"
    )
    assert sorted(joined["offset"].unique()) == sorted(FAST_WORLD.snapshot_offsets_days)


def bernstein_tolerance(p: np.ndarray, delta: float) -> float:
    """t with P(|wins - sum(p)| >= t) <= delta for independent Bernoulli(p) draws (Bernstein)."""
    big_l = log(2 / delta)
    return big_l / 3 + sqrt(big_l**2 / 9 + 2 * big_l * float((p * (1 - p)).sum()))


def test_p_true_is_calibrated_per_offset_and_decile(labelled_with_oracle):
    """Per offset (one snapshot per lead: independent labels), in each decile of ``p_true`` and
    overall: wins - sum(p_true) within the Bernstein bound of binomial sampling error."""
    joined = labelled_with_oracle[labelled_with_oracle["_merge"] == "both"]
    offsets = sorted(joined["offset"].unique())
    delta = FALSE_ALARM / (len(offsets) * (DECILES + 1))
    rows, failures = [], []
    for offset in offsets:
        part = joined[joined["offset"] == offset].sort_values("p_true", kind="stable")
        assert part["lead_id"].is_unique
        p = part["p_true"].to_numpy()
        wins = part["label"].to_numpy(dtype=float)
        groups = [*enumerate(np.array_split(np.arange(len(part)), DECILES)), ("all", slice(None))]
        for decile, rows_of in groups:
            expected, observed = float(p[rows_of].sum()), float(wins[rows_of].sum())
            tolerance = bernstein_tolerance(p[rows_of], delta)
            line = (
                f"offset {offset:>2} decile {decile!s:>3}: {len(p[rows_of]):>6} snapshots, "
                f"p_true {p[rows_of].mean():.4f}, wins {observed:>5.0f}, expected "
                f"{expected:8.1f} +- {tolerance:5.1f}"
            )
            rows.append(line)
            if abs(observed - expected) > tolerance:
                failures.append(line)
    assert not failures, "p_true is not calibrated against the labels:\n" + "\n".join(
        failures + ["all comparisons:"] + rows
    )
