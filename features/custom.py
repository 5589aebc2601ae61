"""Custom-field features: the CRM's own fields, as the mapping declares them.

Every CRM carries dozens of fields beyond the contract (lifecycle stage, lead origin, landing
page, "how did you hear about us"), and they often carry much of the signal. A custom field is a
feature when the mapping gives it a kind that a model can read (number, category, boolean) and a
knowledge time that a snapshot may see (``at_creation``, or ``as_of`` through field history);
text and personal data never are. Lead fields are named ``lead_<name>``, account fields
``account_<name>``; the label comes from the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from features.catalog import FeatureSpec
from features.history import FieldHistory
from features.lookup import account_rows, as_category, lead_rows
from features.mapping.contract import CustomFeature

BUILDER = "custom"
#: Feature-name prefix per table of a custom field.
PREFIX = {"leads": "lead_", "accounts": "account_"}


def feature_name(field: CustomFeature) -> str:
    """The feature column of a custom field: ``lead_<name>`` or ``account_<name>``."""
    return PREFIX[field.table] + field.name


def _sources(field: CustomFeature) -> tuple[str, ...]:
    if field.table == "accounts":
        return ("leads.account_id", "leads.created_at", f"accounts.{field.name}")
    return (f"leads.{field.name}", "leads.created_at")


def custom_specs(fields: Sequence[CustomFeature]) -> list[FeatureSpec]:
    """The features :func:`build_custom` returns for the custom fields that can be features."""
    return [
        FeatureSpec(
            feature_name(f),
            f.label,
            _sources(f),
            BUILDER,
            categorical=f.kind == "category",
        )
        for f in fields
        if f.kind in ("number", "category", "boolean")
    ]


def _as_feature(values: pd.Series, kind: str) -> pd.Series:
    if kind == "category":
        return as_category(values)
    return pd.to_numeric(values.astype("Float64"), errors="coerce").astype("float64")


def build_custom(
    tables: Mapping[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    fields: Sequence[CustomFeature],
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """Custom-field features of each snapshot's lead (and its account), one row per snapshot."""
    wanted = [f for f in fields if f.kind in ("number", "category", "boolean")]
    out: dict[str, pd.Series] = {}
    lead_fields = [f for f in wanted if f.table == "leads"]
    account_fields = [f for f in wanted if f.table == "accounts"]
    if lead_fields:
        rows = lead_rows(tables["leads"], snapshots, [f.name for f in lead_fields], history)
        out |= {feature_name(f): _as_feature(rows[f.name], f.kind) for f in lead_fields}
    if account_fields:
        rows = account_rows(
            tables["leads"],
            tables["accounts"],
            snapshots,
            [f.name for f in account_fields],
            history,
        )
        out |= {feature_name(f): _as_feature(rows[f.name], f.kind) for f in account_fields}
    return pd.DataFrame(
        {feature_name(f): out[feature_name(f)] for f in wanted}, index=snapshots.index
    )
