"""The synthetic CRM's field history: values set after creation, which the world never sees.

The generator writes BANT answers and firmographics that reps fill in, correct, or overwrite
after a deal closed (pipelines/synthetic_history.py), and leaves today's values in the tables,
as a real export does. These tests check that the world (events, deals, oracle) is untouched by
those changes, that the history holds exactly what the world used at creation, and that
reading today's values instead of the history leaks the outcome into a model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from features.build import build_features
from features.snapshots import snapshots_after_creation
from features.validation import validate_crm
from pipelines.synthetic_crm import SyntheticCRMConfig, generate_crm
from pipelines.synthetic_history import ACCOUNT_FIELDS, LEAD_FIELDS, FieldChanges
from pipelines.training_set import label_snapshots

CONFIG = SyntheticCRMConfig(
    n_leads=4000, months=12, seed=11, snapshot_offsets_days=(7, 30), horizon_days=90
)
NO_CHANGES = FieldChanges(
    fill_in=0, correction=0, won_update=0, lost_update=0, enrich_won_accounts=0
)


@pytest.fixture(scope="module")
def worlds():
    """The same CRM with its field changes, and without any."""
    return generate_crm(CONFIG), generate_crm(replace(CONFIG, field_changes=NO_CHANGES))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:2]), ignore_index=True)


def test_the_world_never_sees_a_change_made_after_creation(worlds):
    changed, static = worlds
    history = changed.tables["field_history"]
    assert (history["changed_at"] > history["changed_at"].min()).any()
    pd.testing.assert_frame_equal(changed.oracle, static.oracle)
    for name in ("events", "opportunities"):
        pd.testing.assert_frame_equal(changed.tables[name], static.tables[name])
    # Only tracked fields differ, and only through later changes.
    for name, fields in (("leads", LEAD_FIELDS), ("accounts", ACCOUNT_FIELDS)):
        other = [c for c in static.tables[name].columns if c not in fields]
        pd.testing.assert_frame_equal(changed.tables[name][other], static.tables[name][other])
        assert not changed.tables[name][list(fields)].equals(static.tables[name][list(fields)])


def test_history_at_creation_holds_the_values_the_world_used(worlds):
    changed, static = worlds
    history = changed.tables["field_history"]
    leads = static.tables["leads"].drop_duplicates("lead_id")
    at_creation = history.merge(
        leads[["lead_id", "created_at"]].rename(columns={"lead_id": "entity_id"}),
        on="entity_id",
    )
    at_creation = at_creation[at_creation["changed_at"] == at_creation["created_at"]]
    for field in LEAD_FIELDS:
        used = leads.set_index("lead_id")[field].dropna().astype(str)
        rows = at_creation[at_creation["field"] == field].set_index("entity_id")["value"]
        pd.testing.assert_series_equal(
            rows.sort_index(), used.sort_index(), check_names=False, check_index_type=False
        )
    # Each account's first values are the ones the world used (missing ones are not written).
    accounts = static.tables["accounts"].set_index("account_id")
    first = history[history["entity"] == "accounts"].drop_duplicates(["entity_id", "field"])
    for field in ACCOUNT_FIELDS:
        rows = first[first["field"] == field].set_index("entity_id")["value"]
        used = accounts.loc[rows.index, field]
        rows, used = rows[used.notna().to_numpy()], used[used.notna().to_numpy()]
        assert len(rows), field
        if field == "industry":
            assert (rows == used.astype(str)).all()
        else:
            assert np.allclose(pd.to_numeric(rows).to_numpy(float), used.to_numpy(float))


def test_the_tables_hold_the_last_value_history_set(worlds):
    changed, _ = worlds
    history = changed.tables["field_history"]
    last = history.drop_duplicates(["entity", "entity_id", "field"], keep="last")
    leads = changed.tables["leads"].drop_duplicates("lead_id").set_index("lead_id")
    for field in LEAD_FIELDS:
        rows = last[(last["entity"] == "leads") & (last["field"] == field)]
        today = leads.loc[rows["entity_id"], field].astype(str).to_numpy()
        assert (today == rows["value"].to_numpy()).all(), field
        never = leads.index.difference(rows["entity_id"])
        assert leads.loc[never, field].isna().all(), field


def test_no_change_is_dated_at_or_after_the_extraction(worlds):
    changed, _ = worlds
    assert (changed.tables["field_history"]["changed_at"] < changed.extracted_at).all()


def _bant_auc(tables: dict, labelled: pd.DataFrame) -> float:
    """Out-of-time AUC of a logistic regression on the BANT answers alone."""
    frame = build_features(tables, labelled[["lead_id", "as_of"]], ["bant"])
    answers = ["bant_budget", "bant_authority", "bant_need", "bant_timeline"]
    x = pd.get_dummies(frame[answers].astype(object).fillna("missing")).to_numpy(float)
    y = labelled["label"].to_numpy()
    half = len(x) // 2  # snapshots are sorted by as_of: train on the first half in time
    model = LogisticRegression(max_iter=1000).fit(x[:half], y[:half])
    return roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1])


def test_reading_todays_values_instead_of_history_leaks_the_outcome():
    crm = generate_crm(replace(CONFIG, n_leads=8000, seed=5))
    tables = validate_crm(crm.tables, extracted_at=crm.extracted_at).tables
    snapshots = snapshots_after_creation(tables["leads"], [7, 30])
    labelled = label_snapshots(
        snapshots,
        tables["leads"],
        tables["opportunities"],
        horizon_days=90,
        data_end=crm.extracted_at,
    ).frame
    as_of = _bant_auc(tables, labelled)
    today = _bant_auc({k: v for k, v in tables.items() if k != "field_history"}, labelled)
    # Measured: 0.70 read from history, 0.87 from today's values (the oracle, which sees every
    # event too, is about 0.86): the BANT answers alone would look as good as everything.
    assert today > as_of + 0.08, (as_of, today)
