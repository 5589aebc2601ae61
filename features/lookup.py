"""Look up a snapshot's lead (and its account) without ever seeing a lead before it existed."""

from __future__ import annotations

import pandas as pd


def lead_rows(leads: pd.DataFrame, snapshots: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of each snapshot's lead, one row per snapshot (same index).

    A snapshot taken before its lead was created (as_of <= created_at), or of an unknown lead,
    gets missing values: the lead did not exist yet.
    """
    wanted = list(dict.fromkeys(["lead_id", "created_at", *columns]))
    rows = snapshots[["lead_id", "as_of"]].merge(
        leads[wanted], on="lead_id", how="left", validate="many_to_one"
    )
    rows.index = snapshots.index
    not_yet = ~(rows["created_at"] < rows["as_of"])
    out = rows[columns].copy()
    out.loc[not_yet.to_numpy(), :] = None
    return out


def account_rows(
    leads: pd.DataFrame, accounts: pd.DataFrame, snapshots: pd.DataFrame, columns: list[str]
) -> pd.DataFrame:
    """``columns`` of each snapshot's account (through its lead), one row per snapshot."""
    via = lead_rows(leads, snapshots, ["account_id"])
    rows = via.merge(
        accounts[["account_id", *columns]], on="account_id", how="left", validate="many_to_one"
    )
    rows.index = snapshots.index
    return rows[columns]


def as_category(values: pd.Series) -> pd.Series:
    """A category feature as text (missing stays missing): the CRM's own values, whatever they
    are. Its levels for a model are fitted on the training split (``models.categories``), not
    fixed here, so a value is never lost on the way to the model."""
    text = values.astype(object)
    return pd.Series(text.where(text.notna()), index=values.index, dtype="str")
