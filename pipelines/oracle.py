"""The synthetic CRM's oracle: the ceiling any model can reach on that data.

The generator writes, for each snapshot of its policy, the exact probability that the lead is
won within the horizon given everything observable up to as_of (docs/synthetic-crm.md). It is
joined here to labelled snapshots *for evaluation only*; nothing in features/ reads it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from pipelines.training_set import SPLITS


def attach_oracle(snapshots: pd.DataFrame, oracle: pd.DataFrame) -> pd.Series:
    """p_true for each (lead_id, as_of) of ``snapshots`` (same index); missing where unknown."""
    left = snapshots[["lead_id", "as_of"]].assign(
        as_of=lambda f: f["as_of"].astype("datetime64[us]")
    )
    right = oracle[["lead_id", "as_of", "p_true"]].assign(
        as_of=lambda f: f["as_of"].astype("datetime64[us]")
    )
    joined = left.merge(right, on=["lead_id", "as_of"], how="left", validate="one_to_one")
    return pd.Series(joined["p_true"].to_numpy(), index=snapshots.index, name="p_true")


def oracle_auc_by_split(sets_dir: str | Path, oracle_path: str | Path) -> dict[str, float | None]:
    """ROC AUC of the oracle on each split written by `leadscore training-set`."""
    oracle = pd.read_parquet(oracle_path)
    result: dict[str, float | None] = {}
    for name in SPLITS:
        part = pd.read_parquet(
            Path(sets_dir) / f"{name}.parquet", columns=["lead_id", "as_of", "label"]
        )
        p_true = attach_oracle(part, oracle)
        known = p_true.notna()
        labels = part.loc[known, "label"]
        result[name] = (
            float(roc_auc_score(labels, p_true[known])) if labels.nunique() == 2 else None
        )
    return result
