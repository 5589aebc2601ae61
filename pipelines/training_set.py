"""Training sets: labelled snapshots, censoring, a temporal split and a manifest.

- label: 1 iff the lead has a closed-won opportunity with ``as_of <= closed_at < as_of + horizon``
  (whenever the opportunity was opened: one opened before its lead record still counts).
- won_amount: the amount of those won opportunities (summed; missing when no amount is known, and
  for label 0): the value model's label (models/value.py). An outcome, never a feature.
- left out, each counted by reason: snapshots whose lead was already won or lost before as_of,
  snapshots whose horizon runs past the end of the data (censored: the label is not known yet),
  snapshots taken before the lead existed.
- the split into train, validation and test is :mod:`pipelines.splits`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.splits import SPLITS, earliest, latest

#: Which snapshots are labelled: the leads lead scoring routes (no open opportunity) or all.
POPULATIONS = ("lead_scoring", "all")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledSnapshots:
    """Snapshots that can be labelled (lead_id, as_of, label) and the count left out per reason."""

    frame: pd.DataFrame
    excluded: dict[str, int]


def label_snapshots(
    snapshots: pd.DataFrame,
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    horizon_days: int,
    data_end: pd.Timestamp,
    population: str = "lead_scoring",
) -> LabelledSnapshots:
    """Label each snapshot with closed-won within ``horizon_days``; leave out what can't be used.

    Left out: snapshots taken before the lead existed; leads already won before as_of (a won
    opportunity closed before it); leads already lost (every opportunity opened before as_of
    closed lost before it, none still open); snapshots whose horizon ends after ``data_end``.
    A lead may have several opportunities: a lost one does not hide a later win.
    ``population`` ``lead_scoring`` (default) also leaves out leads already in sales (an
    opportunity opened before as_of and still open): lead scoring routes the leads sales has not
    picked up, and a model judged on leads sales already works is flattered by them. ``all``
    keeps them.
    """
    if horizon_days < 1:
        raise ValueError("horizon_days must be >= 1")
    if population not in POPULATIONS:
        raise ValueError(
            f"label.population must be one of {', '.join(POPULATIONS)}, got {population!r}"
        )
    horizon = pd.Timedelta(days=horizon_days)
    snaps = snapshots[["lead_id", "as_of"]].reset_index(drop=True)
    created = snaps[["lead_id"]].merge(
        leads[["lead_id", "created_at"]], on="lead_id", how="left", validate="many_to_one"
    )["created_at"]
    before_lead = ~(created < snaps["as_of"]).to_numpy()

    pairs = _opportunity_pairs(snaps, opportunities)
    won_before, lost_before, in_sales = _won_lost(pairs, len(snaps))
    is_won = pairs["is_won"].fillna(False).astype(bool).to_numpy()
    already_closed = (won_before | lost_before) & ~before_lead
    in_sales &= ~before_lead & ~already_closed & (population == "lead_scoring")
    censored = (
        (snaps["as_of"] + horizon > data_end).to_numpy()
        & ~before_lead
        & ~already_closed
        & ~in_sales
    )
    keep = ~(before_lead | already_closed | in_sales | censored)

    # Won within the horizon: any won opportunity closing in [as_of, as_of + horizon).
    in_window = (pairs["closed_at"] >= pairs["as_of"]) & (
        pairs["closed_at"] < pairs["as_of"] + horizon
    )
    won_in_window = in_window.to_numpy() & is_won
    label = _any_per_row(pairs, won_in_window, len(snaps)).astype(np.int8)
    kept = snaps[keep].assign(
        label=label[keep], won_amount=_won_amount(pairs, won_in_window, len(snaps))[keep]
    )
    kept = kept.reset_index(drop=True)
    excluded = {
        "before_lead_created": int(before_lead.sum()),
        "already_won_or_lost": int(already_closed.sum()),
        "in_sales_opportunity_open": int(in_sales.sum()),
        "censored_horizon_after_data_end": int(censored.sum()),
    }
    log.info(
        "labelled %d of %d snapshots (%.2f%% positive); left out: %s",
        len(kept),
        len(snaps),
        100 * kept["label"].mean() if len(kept) else 0.0,
        excluded,
    )
    return LabelledSnapshots(kept.sort_values(["as_of", "lead_id"], ignore_index=True), excluded)


def _won_amount(pairs: pd.DataFrame, won_in_window: np.ndarray, n: int) -> np.ndarray:
    """Per snapshot: the summed amount of the opportunities won in its window; NaN when none was
    won or none of them has an amount (an export without amounts: all NaN)."""
    if "amount" not in pairs:
        return np.full(n, np.nan)
    amount = pd.to_numeric(pairs["amount"], errors="coerce").to_numpy(dtype=float)
    known = won_in_window & ~np.isnan(amount)
    rows = pairs["_row"].to_numpy()
    total = np.bincount(rows[known], weights=amount[known], minlength=n)
    return np.where(np.bincount(rows[known], minlength=n) > 0, total, np.nan)


def _count_per_row(pairs: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(pairs["_row"].to_numpy()[mask], minlength=n)


def _any_per_row(pairs: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    return _count_per_row(pairs, mask, n) > 0


def fingerprint(tables: Mapping[str, pd.DataFrame]) -> str:
    """A content hash of the input tables (order of rows matters), for the manifest."""
    digest = hashlib.sha256()
    for name in sorted(tables):
        frame = tables[name]
        digest.update(name.encode())
        digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def manifest(
    training: pd.DataFrame,
    excluded: Mapping[str, int],
    input_fingerprint: str,
    feature_names: list[str],
    settings: Mapping[str, object],
) -> dict:
    """What a training set holds: rows, positive rate and date range per split, and its inputs."""
    return manifest_from_counts(
        split_counts(training), excluded, input_fingerprint, feature_names, settings
    )


def split_counts(training: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per split (``training["split"]``): rows, leads, positives, won leads, won rows and leads
    with an amount, and the first and last ``as_of``; summable over parts whose leads are in
    no other part (:func:`add_split_counts`), as the partitions of a partitioned CRM are."""
    counts = {}
    for name in SPLITS:
        part = training[training["split"] == name]
        counts[name] = {
            "rows": int(len(part)),
            "leads": int(part["lead_id"].nunique()),
            "positives": int(part["label"].sum()),
            # Rows of one lead are not independent: the wins behind the positives.
            "won_leads": int(part.loc[part["label"] == 1, "lead_id"].nunique()),
            # The value model's label: won snapshots with an amount, and the won leads behind them.
            **_amounts(part),
            "first": part["as_of"].min() if len(part) else None,
            "last": part["as_of"].max() if len(part) else None,
            "leads_in_more_than_one_split": 0,
        }
    in_two = int((training.groupby("lead_id")["split"].nunique() > 1).sum())
    counts[SPLITS[0]]["leads_in_more_than_one_split"] = in_two
    return counts


def add_split_counts(
    a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Two parts' :func:`split_counts` as one (dates: the earliest first, the latest last)."""
    total: dict[str, dict[str, Any]] = {}
    for name in SPLITS:
        x, y = a[name], b[name]
        merged = {k: x[k] + y[k] for k in x if k not in ("first", "last")}
        merged["first"] = earliest(x["first"], y["first"])
        merged["last"] = latest(x["last"], y["last"])
        total[name] = merged
    return total


def manifest_from_counts(
    counts: Mapping[str, Mapping[str, Any]],
    excluded: Mapping[str, int],
    input_fingerprint: str,
    feature_names: list[str],
    settings: Mapping[str, object],
) -> dict:
    """The manifest (:func:`manifest`) from a training set's :func:`split_counts`."""
    splits = {}
    for name in SPLITS:
        c = counts[name]
        splits[name] = {
            "rows": c["rows"],
            "leads": c["leads"],
            "positives": c["positives"],
            "won_leads": c["won_leads"],
            "positive_rate": round(c["positives"] / c["rows"], 5) if c["rows"] else None,
            "won_with_amount": c["won_with_amount"],
            "won_leads_with_amount": c["won_leads_with_amount"],
            "as_of_from": f"{c['first']:%Y-%m-%d}" if c["rows"] else None,
            "as_of_to": f"{c['last']:%Y-%m-%d}" if c["rows"] else None,
        }
    rows = sum(c["rows"] for c in counts.values())
    positives = sum(c["positives"] for c in counts.values())
    return {
        "rows": rows,
        "positive_rate": round(positives / rows, 5) if rows else float("nan"),
        "splits": splits,
        "excluded_snapshots": dict(excluded),
        "leads_in_more_than_one_split": sum(
            c["leads_in_more_than_one_split"] for c in counts.values()
        ),
        "n_features": len(feature_names),
        "features": feature_names,
        "input_fingerprint": input_fingerprint,
        "settings": dict(settings),
    }


def _amounts(part: pd.DataFrame) -> dict[str, int]:
    if "won_amount" not in part:
        return {"won_with_amount": 0, "won_leads_with_amount": 0}
    known = part["won_amount"].notna() & (part["label"] == 1)
    return {
        "won_with_amount": int(known.sum()),
        "won_leads_with_amount": int(part.loc[known, "lead_id"].nunique()),
    }


def _opportunity_pairs(snaps: pd.DataFrame, opportunities: pd.DataFrame) -> pd.DataFrame:
    """Every (snapshot, opportunity of its lead) pair, once, with the snapshot's row number."""
    columns = ["lead_id", "created_at", "closed_at", "is_won"]
    opps = opportunities[columns + (["amount"] if "amount" in opportunities else [])]
    return snaps.assign(_row=np.arange(len(snaps))).merge(opps, on="lead_id", suffixes=("", "_opp"))


def _won_lost(pairs: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot: already won (a won opportunity closed before as_of); already lost (every
    opportunity opened before as_of closed lost before it, none still open, none won); in sales
    (an opportunity opened before as_of is still open, none won).

    Neither reads the lead's creation time: an opportunity opened before its lead record (a
    CRM merge) counts like any other. One closed before as_of was opened before it, even when
    its ``created_at`` is missing; one with a missing ``created_at`` still open is not seen.
    """
    closed_before = pairs["closed_at"].notna() & (pairs["closed_at"] < pairs["as_of"])
    opened = (pairs["created_at"] < pairs["as_of"]) | closed_before
    is_won = pairs["is_won"].fillna(False).astype(bool).to_numpy()
    won_before = _any_per_row(pairs, closed_before.to_numpy() & is_won, n)
    n_opened = _count_per_row(pairs, opened.to_numpy(), n)
    n_still_open = _count_per_row(pairs, (opened & ~closed_before).to_numpy(), n)
    lost_before = (n_opened > 0) & (n_still_open == 0) & ~won_before
    return won_before, lost_before, (n_still_open > 0) & ~won_before


def won_or_lost_before(
    snapshots: pd.DataFrame, opportunities: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Per snapshot (``lead_id``, ``as_of``): already won, already lost, by the rule labels use
    (a lost opportunity does not close a lead that has another one open or won)."""
    snaps = snapshots[["lead_id", "as_of"]].reset_index(drop=True)
    return _won_lost(_opportunity_pairs(snaps, opportunities), len(snaps))[:2]


def in_sales_before(snapshots: pd.DataFrame, opportunities: pd.DataFrame) -> np.ndarray:
    """Per snapshot (``lead_id``, ``as_of``): an opportunity opened before as_of is still open
    (and none won): sales works the lead, the ``in_sales`` stage."""
    snaps = snapshots[["lead_id", "as_of"]].reset_index(drop=True)
    return _won_lost(_opportunity_pairs(snaps, opportunities), len(snaps))[2]
