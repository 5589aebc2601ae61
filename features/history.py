"""Fields read as of each snapshot from their history, not from today's value.

A CRM export holds each field's *current* value: a budget filled in after the discovery call,
a stage overwritten after the deal closed. Where the mapping gives a field's history (HubSpot
property history, Salesforce field history), its value at a snapshot is the last value set
**strictly before** ``as_of``; before the first change it is missing (the field was not set
yet). The current value of a tracked field is never read, so a value recorded after a snapshot,
or after the outcome, cannot leak into it.

The validated ``field_history`` table holds the values as text, typed by validation as the
column they change; :meth:`FieldHistory.as_of` turns them back into the column's type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.contract import Kind


@dataclass(frozen=True)
class FieldHistory:
    """The changes of each tracked field, sorted by time, and how to read each back."""

    #: (table, column) -> its changes: entity_id (str), changed_at (us), value; by changed_at
    changes: Mapping[tuple[str, str], pd.DataFrame]
    #: (table, column) -> the column's kind, for every field read from history
    kinds: Mapping[tuple[str, str], Kind] = field(default_factory=dict)

    def tracks(self, table: str, column: str) -> bool:
        """Whether ``table.column`` is read from history (never from its current value)."""
        return (table, column) in self.kinds

    def as_of(
        self, table: str, column: str, ids: pd.Series, as_of: pd.Series | np.ndarray
    ) -> pd.Series:
        """The value of ``table.column`` for each (id, as_of): the last change strictly before
        as_of (missing before the first one, and for unknown ids), typed as the column.
        Returns a Series aligned with ``ids``. Vectorised (one ``merge_asof`` per field)."""
        left = pd.DataFrame(
            {
                "entity_id": pd.Series(ids, dtype=object).astype("str").to_numpy(),
                "as_of": pd.to_datetime(np.asarray(as_of)).astype("datetime64[us]"),
                "_row": np.arange(len(ids)),
            }
        )
        # One key type on both sides (pandas infers str for text, object for an empty column).
        left["entity_id"] = left["entity_id"].astype("str")
        known = left["as_of"].notna() & left["entity_id"].notna()
        found = pd.merge_asof(
            left[known.to_numpy()].sort_values("as_of", kind="stable"),
            self.changes.get((table, column), _NO_CHANGES),
            left_on="as_of",
            right_on="changed_at",
            by="entity_id",
            allow_exact_matches=False,  # a change at as_of is not yet known
            direction="backward",
        )
        values = np.full(len(left), None, dtype=object)
        values[found["_row"].to_numpy()] = found["value"].to_numpy(dtype=object)
        return _typed(pd.Series(values, index=ids.index), self.kinds[(table, column)])


#: The changes of a tracked field that has none.
_NO_CHANGES = pd.DataFrame(
    {
        "entity_id": pd.Series(dtype="str"),
        "changed_at": pd.Series(dtype="datetime64[us]"),
        "value": pd.Series(dtype=object),
    }
)


def _typed(text: pd.Series, kind: Kind) -> pd.Series:
    """History text back to the column's type (validation wrote it from that type)."""
    if kind in (Kind.FLOAT, Kind.INT):
        return pd.to_numeric(text, errors="coerce").astype("float64")
    if kind == Kind.BOOL:
        return text.map({"True": True, "False": False}).astype("boolean")
    return text.astype("str").where(text.notna())


def field_history(
    tables: Mapping[str, pd.DataFrame], tracked: Iterable[tuple[str, str]], kinds: Mapping
) -> FieldHistory | None:
    """The history of the ``tracked`` fields (None when nothing is tracked), split by field and
    sorted once for every lookup. ``kinds``: (table, column) -> Kind. Tracked fields without a
    history table are missing at every snapshot."""
    tracked = set(tracked)
    if not tracked:
        return None
    history = tables.get("field_history")
    changes: dict[tuple[str, str], pd.DataFrame] = {}
    if history is not None and len(history):
        frame = pd.DataFrame(
            {
                "table": history["entity"].astype(object).to_numpy(),
                "column": history["field"].astype(object).to_numpy(),
                "entity_id": history["entity_id"].astype("str").to_numpy(),
                "changed_at": history["changed_at"].to_numpy().astype("datetime64[us]"),
                "value": history["value"].astype(object).to_numpy(),
            }
        ).sort_values("changed_at", kind="stable")
        frame["entity_id"] = frame["entity_id"].astype("str")
        for key, part in frame.groupby(["table", "column"], sort=False):
            if key in tracked:
                changes[key] = part[["entity_id", "changed_at", "value"]].reset_index(drop=True)
    return FieldHistory(changes, {key: kinds[key] for key in tracked})
