"""Demographic features: who the lead is (seniority, department, country, email domain kind)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from features.catalog import FeatureSpec
from features.history import FieldHistory
from features.lookup import as_category, lead_rows

BUILDER = "demographic"
_FEATURES = {
    "seniority": "Seniority: {value}",
    "department": "Works in {value}",
    "country": "Based in {value}",
    "email_domain_kind": "Signed up with a {value} email address",
}


#: Plot titles where the label does not read well without its value.
_SHORT = {"department": "Department", "country": "Country", "email_domain_kind": "Email domain"}


def demographic_specs() -> list[FeatureSpec]:
    """The features :func:`build_demographic` returns, in column order."""
    return [
        FeatureSpec(
            name,
            label,
            (f"leads.{name}", "leads.created_at"),
            BUILDER,
            categorical=True,
            short=_SHORT.get(name),
        )  # fmt: skip
        for name, label in _FEATURES.items()
    ]


def build_demographic(
    tables: Mapping[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """Demographic features of each snapshot's lead, one row per snapshot (same order)."""
    rows = lead_rows(tables["leads"], snapshots, list(_FEATURES), history)
    return pd.DataFrame(
        {c: as_category(rows[c]) for c in _FEATURES},
        index=snapshots.index,
    )
