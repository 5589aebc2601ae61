"""Look up a snapshot's lead (and its account) without ever seeing a lead before it existed."""

from __future__ import annotations

import pandas as pd

from features.history import FieldHistory


def lead_rows(
    leads: pd.DataFrame,
    snapshots: pd.DataFrame,
    columns: list[str],
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """``columns`` of each snapshot's lead, one row per snapshot (same index).

    A snapshot taken before its lead was created (as_of <= created_at), or of an unknown lead,
    gets missing values: the lead did not exist yet. A column that ``history`` tracks is read
    as of the snapshot from its history, never from the lead's current value.
    """
    wanted = list(dict.fromkeys(["lead_id", "created_at", *columns]))
    rows = snapshots[["lead_id", "as_of"]].merge(
        leads[wanted], on="lead_id", how="left", validate="many_to_one"
    )
    rows.index = snapshots.index
    not_yet = ~(rows["created_at"] < rows["as_of"])
    out = rows[columns].copy()
    for column in columns:
        if history is not None and history.tracks("leads", column):
            out[column] = history.as_of("leads", column, snapshots["lead_id"], snapshots["as_of"])
    out.loc[not_yet.to_numpy(), :] = None
    return out


def account_rows(
    leads: pd.DataFrame,
    accounts: pd.DataFrame,
    snapshots: pd.DataFrame,
    columns: list[str],
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """``columns`` of each snapshot's account (through its lead), one row per snapshot; the
    lead's account and the account's fields as of the snapshot where ``history`` tracks them."""
    via = lead_rows(leads, snapshots, ["account_id"], history)
    rows = via.merge(
        accounts[["account_id", *columns]], on="account_id", how="left", validate="many_to_one"
    )
    rows.index = snapshots.index
    out = rows[columns].copy()
    for column in columns:
        if history is not None and history.tracks("accounts", column):
            out[column] = history.as_of("accounts", column, via["account_id"], snapshots["as_of"])
    return out


def as_category(values: pd.Series) -> pd.Series:
    """A category feature as text (missing stays missing): the CRM's own values, whatever they
    are. Its levels for a model are fitted on the training split (``models.categories``), not
    fixed here, so a value is never lost on the way to the model."""
    text = values.astype(object)
    return pd.Series(text.where(text.notna()), index=values.index, dtype="str")
