"""Training sets: labelled snapshots, censoring, a temporal split and a manifest.

- label: 1 iff the lead has a closed-won opportunity with ``as_of <= closed_at < as_of + horizon``.
- left out, each counted by reason: snapshots whose lead was already won or lost before as_of,
  snapshots whose horizon runs past the end of the data (censored: the label is not known yet),
  snapshots taken before the lead existed.
- split by as_of: the last ``test_days`` of labelled as_of dates are the test set, the
  ``validation_days`` before them the validation set, everything earlier the training set.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


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
) -> LabelledSnapshots:
    """Label each snapshot with closed-won within ``horizon_days``; leave out what can't be used."""
    if horizon_days < 1:
        raise ValueError("horizon_days must be >= 1")
    horizon = pd.Timedelta(days=horizon_days)
    snaps = snapshots[["lead_id", "as_of"]].reset_index(drop=True)
    created = snaps["lead_id"].map(leads.set_index("lead_id")["created_at"])
    closed = opportunities.dropna(subset=["closed_at"])
    first_close = closed.groupby("lead_id")["closed_at"].min()
    won = closed[closed["is_won"].fillna(False).astype(bool)]
    closed_at = snaps["lead_id"].map(first_close)
    before_lead = ~(created < snaps["as_of"])
    already_closed = (closed_at < snaps["as_of"]) & ~before_lead
    censored = (snaps["as_of"] + horizon > data_end) & ~before_lead & ~already_closed
    keep = ~(before_lead | already_closed | censored)
    kept = snaps[keep.to_numpy()].reset_index(drop=True)
    # Won within the horizon: any won opportunity closing in [as_of, as_of + horizon).
    pairs = kept.reset_index(names="_row").merge(won[["lead_id", "closed_at"]], on="lead_id")
    hit = (pairs["closed_at"] >= pairs["as_of"]) & (pairs["closed_at"] < pairs["as_of"] + horizon)
    label = np.zeros(len(kept), dtype=np.int8)
    label[pairs.loc[hit, "_row"].to_numpy()] = 1
    kept["label"] = label
    excluded = {
        "before_lead_created": int(before_lead.sum()),
        "already_won_or_lost": int(already_closed.sum()),
        "censored_horizon_after_data_end": int(censored.sum()),
    }
    log.info(
        "labelled %d of %d snapshots (%.2f%% positive); left out: %s",
        len(kept), len(snaps), 100 * label.mean() if len(kept) else 0.0, excluded,
    )
    return LabelledSnapshots(kept.sort_values(["as_of", "lead_id"], ignore_index=True), excluded)


def temporal_split(as_of: pd.Series, validation_days: int, test_days: int) -> pd.Series:
    """'train' / 'validation' / 'test' by as_of: the test set is the last ``test_days``."""
    if len(as_of) == 0:
        raise ValueError("no labelled snapshots to split")
    last = as_of.max()
    test_start = last.normalize() - pd.Timedelta(days=test_days - 1)
    validation_start = test_start - pd.Timedelta(days=validation_days)
    split = np.where(as_of >= test_start, "test", np.where(as_of >= validation_start, "validation", "train"))
    out = pd.Series(split, index=as_of.index, dtype="str")
    missing = [s for s in SPLITS if not (out == s).any()]
    if missing:
        raise ValueError(
            f"the temporal split leaves {missing} empty: the labelled as_of dates span "
            f"{as_of.min():%Y-%m-%d}..{last:%Y-%m-%d}; shorten split.validation_days/test_days "
            "or generate more months"
        )
    return out


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
    splits = {}
    for name in SPLITS:
        part = training[training["split"] == name]
        splits[name] = {
            "rows": int(len(part)),
            "leads": int(part["lead_id"].nunique()),
            "positives": int(part["label"].sum()),
            "positive_rate": round(float(part["label"].mean()), 5) if len(part) else None,
            "as_of_from": f"{part['as_of'].min():%Y-%m-%d}" if len(part) else None,
            "as_of_to": f"{part['as_of'].max():%Y-%m-%d}" if len(part) else None,
        }
    by_split = training.groupby("lead_id")["split"].nunique()
    return {
        "rows": int(len(training)),
        "positive_rate": round(float(training["label"].mean()), 5),
        "splits": splits,
        "excluded_snapshots": dict(excluded),
        "leads_in_more_than_one_split": int((by_split > 1).sum()),
        "n_features": len(feature_names),
        "features": feature_names,
        "input_fingerprint": input_fingerprint,
        "settings": dict(settings),
    }
