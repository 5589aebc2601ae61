"""Snapshots: the ``(lead_id, as_of)`` pairs that are the unit of features, labels and scores.

``as_of`` is an instant (naive UTC). A row is known at a snapshot iff its timestamp is strictly
before ``as_of``. The policies here put ``as_of`` at 00:00 UTC, ``k`` days after the lead's
creation date, so the snapshot sees exactly the lead's first ``k`` calendar days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SNAPSHOT_COLUMNS = ["lead_id", "as_of"]


def snapshots_after_creation(leads: pd.DataFrame, offsets_days: list[int]) -> pd.DataFrame:
    """One snapshot per lead and offset: as_of = creation date (00:00 UTC) + offset days."""
    offsets = sorted({int(k) for k in offsets_days})
    if not offsets or offsets[0] < 1:
        raise ValueError(f"snapshot offsets must be whole days >= 1, got {offsets_days!r}")
    created = np.repeat(leads["created_at"].dt.normalize().to_numpy(), len(offsets))
    as_of = created + pd.to_timedelta(np.tile(offsets, len(leads)), unit="D").to_numpy()
    frame = pd.DataFrame(
        {"lead_id": np.repeat(leads["lead_id"].to_numpy(), len(offsets)), "as_of": as_of}
    )
    frame["lead_id"] = frame["lead_id"].astype("str")
    return frame.sort_values(["as_of", "lead_id"], ignore_index=True)


def periodic_offsets(every_days: int, max_days: int) -> list[int]:
    """Offsets of a snapshot every ``every_days`` days after creation, up to ``max_days``."""
    if every_days < 1 or max_days < every_days:
        raise ValueError(f"need 1 <= every_days <= max_days, got {every_days}, {max_days}")
    return list(range(every_days, max_days + 1, every_days))


def to_microseconds(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Naive datetimes (any unit) as int64 microseconds since the epoch; NaT becomes INT64_MIN."""
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        arr = pd.to_datetime(arr).to_numpy()
    return arr.astype("datetime64[us]", copy=False).view(np.int64)
