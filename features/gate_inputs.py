"""What the hard disqualifiers read beside the features: the lead's ``unsubscribed`` flag.

It is not a feature (an opt-out says nothing the model should learn), but the gates disqualify
on it, and evaluation must apply the rule the nightly job applies, or the tier table describes a
different funnel from the one sales gets. One function gives it to both, as of each snapshot:

- from the field history when the CRM keeps one for ``leads.unsubscribed`` (the last value set
  strictly before as_of; a lead with no change before it had not unsubscribed);
- else the current value: exact for tonight's job (its as_of is now); for an older snapshot it is
  a later fact (a lead that unsubscribed after the snapshot is disqualified in evaluation as it
  would be by tonight's job), said so in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from features.contract import Kind
from features.history import field_history

FIELD = ("leads", "unsubscribed")
FROM_HISTORY = "as of each snapshot, from the field history"
CURRENT = (
    "the current value (the CRM keeps no history of it): a lead that unsubscribed after a "
    "snapshot is disqualified there, as tonight's job would disqualify it"
)
ABSENT = "not in the export: nobody is disqualified for it"


def unsubscribed_as_of(
    tables: Mapping[str, pd.DataFrame], snapshots: pd.DataFrame
) -> tuple[pd.Series | None, str]:
    """Per snapshot (``lead_id``, ``as_of``): whether the lead had unsubscribed (boolean, aligned
    with ``snapshots``), and where that came from (one of this module's sentences). None when
    the export has no such field."""
    leads = tables["leads"]
    history = tables.get("field_history")
    ids = snapshots["lead_id"].astype("str")
    if history is not None and len(history):
        tracked = (history["entity"].astype(str) == FIELD[0]) & (
            history["field"].astype(str) == FIELD[1]
        )
        if tracked.any():
            changes = field_history(tables, [FIELD], {FIELD: Kind.BOOL})
            values = changes.as_of(*FIELD, ids, snapshots["as_of"].to_numpy())
            return values.fillna(False).astype(bool).set_axis(snapshots.index), FROM_HISTORY
    if "unsubscribed" not in leads:
        return None, ABSENT
    flags = pd.Series(leads["unsubscribed"].to_numpy(), index=leads["lead_id"].astype("str"))
    current = flags[~flags.index.duplicated()].reindex(ids.to_numpy()).to_numpy()
    values = pd.Series(current, index=snapshots.index).astype("boolean").fillna(False)
    return values.astype(bool), CURRENT
