"""The out-of-time split of labelled snapshots into train, validation and test.

- **By lead** (default): each lead belongs to one split, chosen by when it entered the labelled
  data (its first labelled ``as_of``): the newest leads are the test set, those before them the
  validation set, all earlier ones the training set. A lead's snapshots never sit in two splits,
  so a model is never scored on a lead it has seen. **By snapshot**: each row by its own
  ``as_of`` (a lead's early snapshots can be in train and its late ones in test: counted and
  warned about).
- **Sizes** as days (``validation_days``, ``test_days``: the last days of entry dates) or as
  fractions (``validation_fraction``, ``test_fraction``: shares of the leads, newest last), so
  that a one-year export and a ten-year one both get a sensible split.
- **Purge**: a row whose label window (``as_of + horizon``) reaches the start of the next split
  is left out, so that every label a split learns from was known on the day the next split
  begins, as for a model trained on that day.

Every way a split can fail (no rows, a split left empty, a purge that removes a whole split) is
one ``ValueError`` sentence with the figures and what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.params import check_known

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
PURGED = "purged"
BY = ("lead", "snapshot")
#: A purge taking more than this share of a split's rows is worth a warning.
MOST = 0.5


class PurgeError(ValueError):
    """The purge left a split empty (the history is short for the horizon); the split without
    it would not be."""


@dataclass(frozen=True)
class SplitRule:
    """How labelled snapshots are split: by lead or by snapshot, sizes in days or fractions,
    and the purge gap (the label horizon, or 0)."""

    by: str = "lead"
    validation_days: int | None = None
    test_days: int | None = None
    validation_fraction: float | None = None
    test_fraction: float | None = None
    purge_days: int = 0
    #: False: train and validation only (a backtest scores the next month instead of a test split).
    with_test: bool = True

    @property
    def parts(self) -> tuple[str, ...]:
        """The splits this rule makes, oldest first."""
        return SPLITS if self.with_test else SPLITS[:2]

    def __post_init__(self) -> None:
        if self.by not in BY:
            raise ValueError(f"split.by must be one of {', '.join(BY)}, got {self.by!r}")
        for part in self.parts[1:]:
            days, fraction = getattr(self, f"{part}_days"), getattr(self, f"{part}_fraction")
            if (days is None) == (fraction is None):
                raise ValueError(
                    f"split: give exactly one of {part}_days and {part}_fraction "
                    f"(got {part}_days={days}, {part}_fraction={fraction})"
                )
            if days is not None and days < 1:
                raise ValueError(f"split.{part}_days must be at least 1, got {days}")
            if fraction is not None and not 0 < fraction < 1:
                raise ValueError(f"split.{part}_fraction must be between 0 and 1, got {fraction}")
        shares = (self.validation_fraction or 0) + (self.test_fraction or 0)
        if shares >= 1:
            raise ValueError(
                f"split: validation_fraction + test_fraction is {shares:g}: nothing is left to "
                "train on; keep their sum below 1"
            )
        if self.purge_days < 0:
            raise ValueError(f"the purge gap must be >= 0 days, got {self.purge_days}")

    @classmethod
    def from_params(cls, split: Mapping[str, Any], horizon_days: int) -> SplitRule:
        """The rule from params.yaml's ``split`` section; ``purge: true`` purges by the horizon."""
        known = {
            "by", "validation_days", "test_days", "validation_fraction", "test_fraction", "purge",
        }  # fmt: skip
        check_known("split", split, known)

        def number(key: str, kind: type) -> Any:
            value = split.get(key)
            return None if value is None else kind(value)

        return cls(
            by=str(split.get("by", "lead")),
            validation_days=number("validation_days", int),
            test_days=number("test_days", int),
            validation_fraction=number("validation_fraction", float),
            test_fraction=number("test_fraction", float),
            purge_days=int(horizon_days) if split.get("purge", True) else 0,
        )

    def describe(self, part: str) -> str:
        """``test_days 90`` or ``test_fraction 0.2``: the setting that sized ``part``."""
        days = getattr(self, f"{part}_days")
        return (
            f"{part}_days {days}"
            if days is not None
            else f"{part}_fraction {getattr(self, f'{part}_fraction'):g}"
        )


@dataclass(frozen=True)
class Split:
    """Per row of the snapshots: ``train``, ``validation``, ``test`` or ``purged``; and a report
    (boundaries, rows and leads per split, rows purged, leads in more than one split)."""

    labels: pd.Series
    report: dict[str, Any]


def split_snapshots(snapshots: pd.DataFrame, rule: SplitRule) -> Split:
    """Split labelled snapshots (``lead_id``, ``as_of``) by ``rule`` (see the module doc)."""
    refuse_no_snapshots(len(snapshots))
    entry, units = unit_entries(snapshots, rule)
    bounds = split_bounds(units, rule)
    labels, counts = assign_splits(snapshots, entry, bounds, rule)
    return Split(labels, check_split(counts, bounds, rule))


def refuse_no_snapshots(rows: int) -> None:
    """One sentence if every snapshot was left out before the split."""
    if rows == 0:
        raise ValueError(
            "no labelled snapshots to split: every snapshot was left out (see the label step's "
            "counts: a horizon longer than the data leaves every label unknown)"
        )


@dataclass(frozen=True)
class SplitBounds:
    """Where validation and test begin (entry times; no test split: the end of time)."""

    validation_start: np.datetime64
    test_start: np.datetime64


@dataclass(frozen=True)
class SplitCounts:
    """What the split's checks and report read, summable over parts of the snapshots whose
    leads are in no other part (a partitioned CRM): rows per split before the purge, rows
    purged per split, leads in more than one split, and the span of ``as_of``."""

    rows: dict[str, int]
    purged: dict[str, int]
    in_two: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None

    def __add__(self, other: SplitCounts) -> SplitCounts:
        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}

        return SplitCounts(
            add(self.rows, other.rows),
            add(self.purged, other.purged),
            self.in_two + other.in_two,
            earliest(self.first, other.first),
            latest(self.last, other.last),
        )


def earliest(*times: pd.Timestamp | None) -> pd.Timestamp | None:
    """The earliest of ``times`` that are known (None if none is): parts' dates summed."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def latest(*times: pd.Timestamp | None) -> pd.Timestamp | None:
    """The latest of ``times`` that are known (None if none is)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def unit_entries(snapshots: pd.DataFrame, rule: SplitRule) -> tuple[pd.Series, np.ndarray]:
    """When each row's unit entered the data (the lead's first labelled ``as_of``, or the
    row's own, by ``rule.by``), per row; and per unit (what :func:`split_bounds` orders)."""
    as_of = snapshots["as_of"].reset_index(drop=True)
    lead = snapshots["lead_id"].reset_index(drop=True)
    if rule.by != "lead":
        return as_of, as_of.to_numpy()
    entry = as_of.groupby(lead, sort=False).transform("min")
    return entry, entry.groupby(lead, sort=False).first().to_numpy()


def split_bounds(units: np.ndarray, rule: SplitRule) -> SplitBounds:
    """Where validation and test begin, from every unit's entry time (any order)."""
    ordered = np.sort(units, kind="stable")
    # Without a test split, validation is counted from the end and nothing is after it.
    test_start = _start(ordered, rule, "test", later=None) if rule.with_test else None
    validation_start = _start(ordered, rule, "validation", later=test_start)
    if test_start is None:
        test_start = np.datetime64("9999-12-31")
    return SplitBounds(validation_start, test_start)


def assign_splits(
    snapshots: pd.DataFrame, entry: pd.Series, bounds: SplitBounds, rule: SplitRule
) -> tuple[pd.Series, SplitCounts]:
    """Each row's split (``purged`` when its label window reaches the next split), and the
    counts :func:`check_split` reads."""
    as_of = snapshots["as_of"].reset_index(drop=True)
    lead = snapshots["lead_id"].reset_index(drop=True)
    entry_values = entry.to_numpy()
    split = np.where(
        entry_values >= bounds.test_start,
        "test",
        np.where(entry_values >= bounds.validation_start, "validation", "train"),
    )
    rows = {s: int((split == s).sum()) for s in rule.parts}
    purged_by: dict[str, int] = {}
    if rule.purge_days:
        label_end = (as_of + pd.Timedelta(days=rule.purge_days)).to_numpy()
        crosses = ((split == "train") & (label_end > bounds.validation_start)) | (
            (split == "validation") & (label_end > bounds.test_start)
        )
        purged_by = {s: int((crosses & (split == s)).sum()) for s in ("train", "validation")}
        split = np.where(crosses, PURGED, split)
    kept = split != PURGED
    in_two = int((pd.Series(split[kept]).groupby(lead[kept].to_numpy()).nunique() > 1).sum())
    counts = SplitCounts(
        rows,
        purged_by,
        in_two,
        as_of.min() if len(as_of) else None,
        as_of.max() if len(as_of) else None,
    )
    return pd.Series(split, index=snapshots.index, dtype="str"), counts


def check_split(counts: SplitCounts, bounds: SplitBounds, rule: SplitRule) -> dict[str, Any]:
    """The split's checks on its counts (a split left empty, before or after the purge, is one
    sentence; a purge taking most of a split and leads in two splits are warnings), its log
    line, and its report."""
    _refuse_empty(counts.rows, counts, rule, "before purge")
    purged_by = counts.purged
    if rule.purge_days:
        for part, n in purged_by.items():
            total = counts.rows[part]
            if n > total * MOST:
                log.warning(
                    "the purge leaves %d of %d %s rows (label windows of %d days reach the next "
                    "split): give %s more time (split.%s) or shorten label.horizon_days",
                    total - n, total, part, rule.purge_days,
                    "validation" if part == "validation" else "the splits",
                    rule.describe("validation"),
                )  # fmt: skip
    kept = {s: counts.rows[s] - purged_by.get(s, 0) for s in rule.parts}
    if rule.purge_days:
        _refuse_empty(kept, counts, rule, "after purge")
    if counts.in_two:
        log.warning(
            "split by snapshot: %d lead(s) have snapshots in two splits (a model is tested on "
            "leads it trained on); split.by: lead keeps each lead in one split",
            counts.in_two,
        )
    report = {
        "by": rule.by,
        "sizes": {part: rule.describe(part) for part in rule.parts[1:]},
        "purge_days": rule.purge_days,
        "validation_start": f"{pd.Timestamp(bounds.validation_start):%Y-%m-%d %H:%M}",
        "test_start": (
            f"{pd.Timestamp(bounds.test_start):%Y-%m-%d %H:%M}" if rule.with_test else None
        ),
        "purged_rows": purged_by,
        "leads_in_more_than_one_split": counts.in_two,
    }
    log.info(
        "split by %s: validation from %s, test from %s; rows %s%s",
        rule.by,
        report["validation_start"],
        report["test_start"],
        kept,
        f"; purged (label window reaches the next split): {purged_by}" if purged_by else "",
    )
    return report


def _start(ordered: np.ndarray, rule: SplitRule, part: str, later: Any) -> Any:
    """The first entry time of ``part`` (test: counted from the end; validation: before ``later``)."""
    days = getattr(rule, f"{part}_days")
    if days is not None:
        # The last `days` calendar days of entries: a whole first day, whatever its hour.
        end = pd.Timestamp(ordered[-1] if later is None else later)
        if later is None:
            return np.datetime64(end.normalize() - pd.Timedelta(days=days - 1))
        return np.datetime64(end - pd.Timedelta(days=days))
    fraction = getattr(rule, f"{part}_fraction")
    n = len(ordered)
    take = max(1, round(fraction * n))
    # Units entering at the same instant stay together: the boundary is a time, not a count.
    before = n if later is None else int(np.searchsorted(ordered, later, side="left"))
    return ordered[max(before - take, 0)]


def _refuse_empty(rows: dict[str, int], counts: SplitCounts, rule: SplitRule, when: str) -> None:
    """One sentence with the figures and the settings to change, if a split is empty."""
    empty = [s for s in rule.parts if not rows.get(s)]
    if not empty:
        return
    span = f"{counts.first:%Y-%m-%d}..{counts.last:%Y-%m-%d}"
    days = (counts.last - counts.first).days + 1
    sizes = ", ".join(f"split.{rule.describe(part)}" for part in rule.parts[1:])
    if when == "after purge":
        raise PurgeError(
            f"the purge (label windows of {rule.purge_days} days may not reach the next split) "
            f"leaves {' and '.join(empty)} empty: the labelled snapshots span {span} "
            f"({days} days), too short for this horizon; shorten label.horizon_days, give "
            f"the splits more time ({sizes}), or set split.purge: false (with split.by: lead "
            "a lead still stays in one split)"
        )
    raise ValueError(
        f"the split leaves {' and '.join(empty)} empty: the labelled snapshots span {span} "
        f"({days} days) and {sizes} take {'all of it' if 'train' in empty else 'too little'}; "
        "change the sizes (fractions such as test_fraction 0.2 fit any history) or bring "
        "more months of data"
    )
