"""Firmographic features: the lead's company (industry, size, revenue, region)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from features.catalog import FeatureSpec
from features.history import FieldHistory
from features.lookup import account_rows, as_category

BUILDER = "firmographic"
_CATEGORICAL = {"industry": "Industry: {value}", "region": "Region: {value}"}
_NUMERIC = {
    "employee_count": "Company of {value} [employee|employees]",
    "annual_revenue": "Company revenue of {value} USD",
}
#: Plot titles of the numeric ones (their labels do not read well without a value).
_SHORT = {"employee_count": "Company size (employees)", "annual_revenue": "Company revenue (USD)"}


def firmographic_specs() -> list[FeatureSpec]:
    """The features :func:`build_firmographic` returns, in column order."""
    specs = [
        FeatureSpec(
            f"account_{c}",
            label,
            ("leads.account_id", "leads.created_at", f"accounts.{c}"),
            BUILDER,
            categorical=True,
        )
        for c, label in _CATEGORICAL.items()
    ]
    specs += [
        FeatureSpec(
            f"account_{c}",
            label,
            ("leads.account_id", "leads.created_at", f"accounts.{c}"),
            BUILDER,
            short=_SHORT[c],
        )
        for c, label in _NUMERIC.items()
    ]
    return specs


def build_firmographic(
    tables: Mapping[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """Firmographic features of each snapshot's account, one row per snapshot (same order).

    ``accounts.is_customer`` is deliberately absent: it is today's value, and an account often
    became a customer *because* the lead converted (a leak).
    """
    rows = account_rows(
        tables["leads"], tables["accounts"], snapshots, [*_CATEGORICAL, *_NUMERIC], history
    )
    out = {f"account_{c}": as_category(rows[c]) for c in _CATEGORICAL}
    out |= {f"account_{c}": pd.to_numeric(rows[c]).astype("float64") for c in _NUMERIC}
    return pd.DataFrame(out, index=snapshots.index)
