"""BANT features: the Budget, Authority, Need and Timeline answers captured on forms and calls.

A missing answer stays missing (its own case for the model, never read as a "no").
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from features.catalog import FeatureSpec
from features.history import FieldHistory
from features.lookup import as_category, lead_rows

BUILDER = "bant"
_ANSWERS = {
    "budget": "Budget: {value}",
    "authority": "Role in the purchase: {value}",
    "need": "Stated need: {value}",
    "timeline": "Purchase timeline: {value}",
}


def bant_specs() -> list[FeatureSpec]:
    """The features :func:`build_bant` returns, in column order."""
    specs = [
        FeatureSpec(
            f"bant_{c}", label, (f"leads.{c}", "leads.created_at"), BUILDER, categorical=True
        )
        for c, label in _ANSWERS.items()
    ]
    specs.append(
        FeatureSpec(
            "bant_answered",
            "Answered {value} of the 4 BANT questions",
            tuple(f"leads.{c}" for c in _ANSWERS) + ("leads.created_at",),
            BUILDER,
            short="BANT questions answered",
        )
    )
    return specs


def build_bant(
    tables: Mapping[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """BANT answers of each snapshot's lead and how many were answered, one row per snapshot."""
    rows = lead_rows(tables["leads"], snapshots, [*_ANSWERS, "created_at"], history)
    out = {f"bant_{c}": as_category(rows[c]) for c in _ANSWERS}
    answered = rows[list(_ANSWERS)].notna().sum(axis=1).astype("float64")
    # "unknown" authority is an answer that says nothing: it does not count as answered.
    answered -= (rows["authority"].astype(object) == "unknown").astype("float64")
    # A snapshot before the lead existed (created_at blanked by lead_rows) knows nothing.
    out["bant_answered"] = answered.mask(rows["created_at"].isna())
    return pd.DataFrame(out, index=snapshots.index)
