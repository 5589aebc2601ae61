"""Source and lifecycle features: where the lead came from, how old it is, its opportunities."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.catalog import FeatureSpec
from features.history import FieldHistory
from features.lookup import as_category, lead_rows
from features.snapshots import to_microseconds

BUILDER = "lifecycle"
DAY_US = 86_400 * 1_000_000
OPPORTUNITY_TITLE = "Sales opportunities (count and recency)"


def lifecycle_specs() -> list[FeatureSpec]:
    """The features :func:`build_lifecycle` returns, in column order."""
    opp = ("opportunities.lead_id", "opportunities.created_at")
    return [
        FeatureSpec(
            "source",
            "Came in through {value}",
            ("leads.source", "leads.created_at"),
            BUILDER,
            categorical=True,
            short="Lead source",
        ),
        FeatureSpec(
            "lead_age_days",
            "Lead created {value} [day|days] ago",
            ("leads.created_at",),
            BUILDER,
            short="Lead age (days)",
        ),
        FeatureSpec(
            "opportunities_opened",
            "Sales opportunities opened: {value}",
            opp,
            BUILDER,
            group="opportunity",
            group_title=OPPORTUNITY_TITLE,
        ),
        FeatureSpec(
            "days_since_opportunity_opened",
            "Sales opportunity opened {value} [day|days] ago",
            opp,
            BUILDER,
            missing_label="No sales opportunity opened",
            group="opportunity",
            group_title=OPPORTUNITY_TITLE,
            clause="the last {value} [day|days] ago",
        ),
    ]


def build_lifecycle(
    tables: Mapping[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    history: FieldHistory | None = None,
) -> pd.DataFrame:
    """Lifecycle features, one row per snapshot (same order).

    Only the *opening* of an opportunity is read (dated, known as of the snapshot); its outcome,
    close date and amount are known only afterwards and never feed a feature.
    """
    rows = lead_rows(tables["leads"], snapshots, ["source", "created_at"], history)
    as_of_us = to_microseconds(snapshots["as_of"])
    created = rows["created_at"]
    age = np.where(
        created.notna(),
        (as_of_us - to_microseconds(created.fillna(pd.Timestamp(0)))) / DAY_US,
        np.nan,
    )
    opps = tables["opportunities"][["lead_id", "created_at"]]
    positions = snapshots[["lead_id", "as_of"]].assign(_row=np.arange(len(snapshots)))
    pairs = positions.merge(opps, on="lead_id")
    pairs = pairs[pairs["created_at"] < pairs["as_of"]]
    grouped = pairs.groupby("_row")["created_at"]
    opened = grouped.size().reindex(range(len(snapshots)), fill_value=0).to_numpy()
    latest = grouped.max().reindex(range(len(snapshots)))
    since = np.where(
        latest.notna(),
        (as_of_us - to_microseconds(latest.fillna(pd.Timestamp(0)))) / DAY_US,
        np.nan,
    )
    return pd.DataFrame(
        {
            "source": as_category(rows["source"]),
            "lead_age_days": age,
            "opportunities_opened": opened.astype("float64"),
            "days_since_opportunity_opened": since,
        },
        index=snapshots.index,
    )
