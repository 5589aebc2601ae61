"""The foreign-shaped export: the synthetic CRM re-exported as HubSpot would, read back through
mappings/hubspot-example.yaml, gives the native CRM's features exactly, and more.

The first tests check the exporter and the mapping file on their own (fast). The end-to-end ones
generate a small CRM, export it, and take both through validate, label and features (and the
export through training), then compare. The synthetic CRM keeps a field history (BANT answers and
firmographics change after creation); the export carries it as HubSpot's property history, and
both paths read those fields from it as of each snapshot.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.behavioral import BUILT_IN_TYPES
from features.contract import SYNONYMS, TABLES, Knowledge
from features.mapping.apply import apply_mapping
from features.mapping.contract import effective_contract, normalise_key
from features.mapping.file import load_mapping
from features.outputs import OutputError
from features.readers import read_crm, write_crm
from features.validation import normalise_category
from pipelines.foreign_export import (
    CALL,
    COMPANY_ACTION_TYPES,
    COMPANY_IDS,
    EXPORT_TABLES,
    MEETING,
    NOTE,
    NUMBER_COLUMNS,
    OBJECT_TYPES,
    VALUE_LABELS,
    export_like_hubspot,
    hubspot_contact_id,
    native_lead_id,
    run_export_foreign,
)
from pipelines.params import synthetic_config
from pipelines.steps import META_FILE
from pipelines.synthetic_crm import generate_crm
from pipelines.synthetic_history import ACCOUNT_FIELDS, LEAD_FIELDS

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "mappings" / "hubspot-example.yaml"
#: The custom properties of the export that must become features.
CUSTOM_FEATURES = ("lead_company_size_band", "lead_origin")
#: The fields the synthetic CRM keeps a history of, as (table, column).
TRACKED = {("leads", f) for f in LEAD_FIELDS} | {("accounts", f) for f in ACCOUNT_FIELDS}
HISTORY = EXPORT_TABLES["field_history"]


def _export_column(table: str, column: str) -> str:
    """The export's column (HubSpot property) of native ``table.column``."""
    if (table, column) in VALUE_LABELS:
        return VALUE_LABELS[(table, column)][0]
    return NUMBER_COLUMNS[(table, column)]


@pytest.fixture(scope="module")
def native(small_params_template):
    """The small synthetic CRM (raw tables, defects included) and its extraction time."""
    crm = generate_crm(synthetic_config(copy.deepcopy(small_params_template)))
    return crm.tables, crm.extracted_at


@pytest.fixture(scope="module")
def export(native):
    """``native`` re-exported as HubSpot would."""
    tables, extracted_at = native
    return export_like_hubspot(tables, seed=0, extracted_at=extracted_at)


# ------------------------------------------------------------------------------------------------
# The exporter and the mapping file on their own
# ------------------------------------------------------------------------------------------------
def test_contact_ids_are_a_bijection_that_keeps_the_order():
    lead_ids = pd.Series(["L00000123", "L00000000", None, "X00000007", "L99999999"])
    numbers = hubspot_contact_id(lead_ids)
    assert numbers.tolist()[:2] == [100_000_123, 100_000_000]
    assert pd.isna(numbers[2])
    assert native_lead_id(numbers).tolist()[:2] == ["L00000123", "L00000000"]
    assert native_lead_id(numbers.astype("str")).iloc[4] == "L99999999"
    assert native_lead_id(numbers)[[0, 1, 3, 4]].tolist() == lead_ids[[0, 1, 3, 4]].tolist()
    known = lead_ids[[0, 1, 4]]
    text = numbers[[0, 1, 4]].astype("str")
    assert known.argsort().tolist() == text.argsort().tolist()  # same order as text
    with pytest.raises(ValueError, match="not a synthetic CRM id"):
        hubspot_contact_id(pd.Series(["lead-1"]))


def test_the_mapping_file_is_valid_and_undoes_every_bijection():
    mapping = load_mapping(MAPPING)
    contract = effective_contract(mapping)
    assert contract.export_tables == EXPORT_TABLES
    for (table, column), (export_column, labels) in VALUE_LABELS.items():
        tmap = mapping.leads if table == "leads" else getattr(mapping, table)
        cmap = tmap.column_map(column)
        assert cmap.from_ == export_column, (table, column)
        assert set(labels) == set(TABLES[table].by_name[column].vocabulary), column
        undo = {normalise_key(k): v for k, v in cmap.values.items()}
        if column == "event_type":  # and the company actions, which the native CRM lacks
            labels = labels | COMPANY_ACTION_TYPES
        assert undo == {normalise_key(label): value for value, label in labels.items()}, column
    # The 12 built-in activity types with their own phrases and weights, then HubSpot's own.
    types = {t.name: t for t in contract.activity_types}
    for built_in in BUILT_IN_TYPES:
        assert types[built_in.name] == built_in
    for name in ("call", "meeting"):
        assert types[name].actor == "company" and types[name].weight == 0
        assert types[name].values == ("call_duration_s",)
    assert [v.name for v in contract.event_values] == ["call_duration_s"]
    assert mapping.opportunities.expected_close_date
    knowledge = {(f.table, f.name): f.knowledge for f in contract.custom}
    assert knowledge[("leads", "company_size_band")] == Knowledge.AT_CREATION
    assert knowledge[("leads", "lifecyclestage")] == Knowledge.AT_EXTRACTION
    for column in ("first_name", "last_name", "email", "phone"):
        assert contract.knowledge("leads", column) == Knowledge.PERSONAL
    # Property history: the tracked fields are read from it (as_of), none rests on a declaration.
    history = mapping.field_history
    assert history.entities == {label: table for table, label in OBJECT_TYPES.items()}
    assert history.fields == {_export_column(t, c): c for t, c in TRACKED}
    assert contract.history == TRACKED
    for table, column in TRACKED:
        assert contract.knowledge(table, column) == Knowledge.AS_OF_SNAPSHOT, column
        assert (table, column) not in contract.declared, column
        tmap = mapping.leads if table == "leads" else mapping.accounts
        assert tmap.column_map(column).knowledge is None, f"{column}: history decides"
    # Fields without history stay declared.
    assert contract.knowledge("leads", "seniority") == Knowledge.AT_CREATION
    assert ("leads", "country") in contract.declared


def test_every_row_is_kept_and_every_value_maps_back(native, export):
    tables, _ = native
    assert len(export["contacts"]) == len(tables["leads"])  # duplicate leads included
    assert len(export["companies"]) == len(tables["accounts"])
    assert len(export["deals"]) == len(tables["opportunities"])
    added = export["engagements"]["type"].isin([CALL, MEETING, NOTE])
    assert (~added).sum() == len(tables["events"])  # unknown leads, future events included
    assert added.sum() > 0
    mapping = load_mapping(MAPPING)
    names = {contract: name for contract, name in EXPORT_TABLES.items()}
    for (table, column), (export_column, _) in VALUE_LABELS.items():
        tmap = mapping.leads if table == "leads" else getattr(mapping, table)
        undo = {normalise_key(k): v for k, v in tmap.column_map(column).values.items()}
        exported = export[names[table]][export_column].iloc[: len(tables[table])]
        read_back = exported.map(lambda v, u=undo: u.get(normalise_key(v)), na_action="ignore")
        raw = tables[table][column].reset_index(drop=True)
        canonical = normalise_category(
            raw, TABLES[table].by_name[column].vocabulary, SYNONYMS.get(column, {})
        )
        assert read_back.isna().equals(canonical.isna()), column
        assert (read_back.dropna() == canonical.dropna().astype(object)).all(), column


def test_the_property_history_keeps_every_change_and_maps_back(native, export):
    tables, _ = native
    history, properties = tables["field_history"], export[HISTORY]
    assert len(properties) == len(history) > 0  # every row, in its order
    entity = history["entity"].astype(object).to_numpy()
    assert (properties["objectType"].to_numpy() == pd.Series(entity).map(OBJECT_TYPES)).all()
    leads = entity == "leads"
    assert (
        native_lead_id(properties["objectId"][leads]).to_numpy()
        == history["entity_id"][leads].to_numpy()
    ).all()
    assert (
        COMPANY_IDS.to_native(properties["objectId"][~leads]).to_numpy()
        == history["entity_id"][~leads].to_numpy()
    ).all()
    stamps = pd.to_datetime(properties["timestamp"], format="%Y-%m-%dT%H:%M:%S.%fZ")
    assert (stamps.to_numpy() == history["changed_at"].to_numpy()).all()
    mapping = load_mapping(MAPPING)
    for (table, column), part in history.groupby(["entity", "field"]):
        rows = part.index
        name = _export_column(table, column)
        assert (properties.loc[rows, "property"] == name).all(), column
        exported = properties.loc[rows, "value"]
        if (table, column) in NUMBER_COLUMNS:  # numbers as text, whole ones without ".0"
            assert not exported.str.endswith(".0").any(), column
            assert np.allclose(pd.to_numeric(exported), pd.to_numeric(part["value"])), column
            continue
        tmap = mapping.leads if table == "leads" else mapping.accounts
        undo = {normalise_key(k): v for k, v in tmap.column_map(column).values.items()}
        read_back = exported.map(lambda v, u=undo: u.get(normalise_key(v)), na_action="ignore")
        canonical = normalise_category(
            part["value"], TABLES[table].by_name[column].vocabulary, SYNONYMS.get(column, {})
        )
        known = canonical.isin(TABLES[table].by_name[column].vocabulary)
        assert (read_back[known] == canonical[known].astype(object)).all(), column
        assert (exported[~known] == part["value"][~known]).all(), column  # as found


def test_the_company_size_band_is_the_one_at_creation_not_today(native, export):
    """Today's employee counts (enriched after won deals) must not reach a property that the
    mapping declares known at creation: with a history, the band comes from it."""
    tables, extracted_at = native
    erased = dict(tables)
    erased["accounts"] = tables["accounts"].assign(employee_count=np.nan)
    again = export_like_hubspot(erased, seed=0, extracted_at=extracted_at)
    pd.testing.assert_series_equal(
        again["contacts"]["company_size_band"], export["contacts"]["company_size_band"]
    )
    assert export["contacts"]["company_size_band"].notna().mean() > 0.9


def test_a_native_crm_without_field_history_still_exports(native, caplog):
    tables, extracted_at = native
    older = {name: frame for name, frame in tables.items() if name != "field_history"}
    with caplog.at_level(logging.WARNING, logger="pipelines.foreign_export"):
        export = export_like_hubspot(older, seed=0, extracted_at=extracted_at)
    assert set(export) == set(EXPORT_TABLES.values()) - {HISTORY}
    assert f"no {HISTORY} written" in caplog.text


def test_company_actions_follow_an_opportunity_and_come_before_the_extraction(native, export):
    tables, extracted_at = native
    engagements = export["engagements"]
    actions = engagements[engagements["type"].isin([CALL, MEETING])]
    with_deal = set(hubspot_contact_id(tables["opportunities"]["lead_id"]))
    assert set(actions["contact_id"]) <= with_deal
    assert actions["hs_call_duration"].notna().all()
    assert (
        engagements.loc[~engagements["type"].isin([CALL, MEETING]), "hs_call_duration"].isna().all()
    )
    stamps = pd.to_datetime(engagements["hs_timestamp"], unit="ms")
    assert (stamps[engagements["type"].isin([CALL, MEETING, NOTE])] < extracted_at).all()
    # Open deals carry an expected close date after the extraction.
    deals = export["deals"]
    open_deals = ~deals["dealstage"].isin(["closedwon", "closedlost"])
    closes = pd.to_datetime(deals["closedate"], format="%Y-%m-%dT%H:%M:%SZ")
    assert open_deals.any() and (closes[open_deals] > extracted_at).all()
    assert (open_deals == tables["opportunities"]["is_won"].isna().to_numpy()).all()


def test_the_same_export_from_memory_or_from_the_native_csv_files(tmp_path, native, export):
    tables, extracted_at = native
    write_crm(tables, tmp_path / "native", fmt="csv")
    again = export_like_hubspot(read_crm(tmp_path / "native"), seed=0, extracted_at=extracted_at)
    write_crm(export, tmp_path / "a", fmt="csv")
    write_crm(again, tmp_path / "b", fmt="csv")
    for name in export:
        first = (tmp_path / "a" / f"{name}.csv").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.csv").read_bytes(), name


def test_the_mapping_renames_the_export_and_leaves_out_what_it_does_not_name(export):
    contract_names = {name: contract for contract, name in EXPORT_TABLES.items()}
    mapped = apply_mapping(
        {contract_names[name]: frame for name, frame in export.items()}, load_mapping(MAPPING)
    )
    # Every column of the contract but updated_at, which the synthetic CRM does not have.
    expected = set(TABLES["leads"].column_names) - {"updated_at"}
    assert expected <= set(mapped.tables["leads"].columns)
    assert {"company_size_band", "origin", "lifecyclestage"} <= set(mapped.tables["leads"])
    assert "call_duration_s" in mapped.tables["events"]
    assert set(mapped.left_out["leads"]) == {"hs_analytics_num_visits", "notes_last_contacted"}


def test_run_export_foreign_copies_the_extraction_time_and_protects_its_input(
    tmp_path, native, small_params_template
):
    tables, extracted_at = native
    write_crm(tables, tmp_path / "crm")
    (tmp_path / "crm" / META_FILE).write_text(
        json.dumps({"extracted_at": extracted_at.isoformat()})
    )
    params = copy.deepcopy(small_params_template)
    meta = run_export_foreign(params, tmp_path / "crm", tmp_path / "export")
    written = json.loads((tmp_path / "export" / META_FILE).read_text(encoding="utf-8"))
    assert (
        pd.Timestamp(written["extracted_at"]) == extracted_at == pd.Timestamp(meta["extracted_at"])
    )
    assert sorted(p.name for p in (tmp_path / "export").glob("*.csv")) == sorted(
        f"{name}.csv" for name in EXPORT_TABLES.values()
    )
    again = run_export_foreign(params, tmp_path / "crm", tmp_path / "export")  # ours: replaced
    assert again["rows"] == meta["rows"]
    with pytest.raises(OutputError):
        run_export_foreign(params, tmp_path / "crm", tmp_path / "crm" / "export")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "contacts.csv").write_text("not ours\n")
    with pytest.raises(OutputError):
        run_export_foreign(params, tmp_path / "crm", tmp_path / "theirs")
    assert (tmp_path / "theirs" / "contacts.csv").read_text() == "not ours\n"
    (tmp_path / "theirs" / "contacts.csv").unlink()
    (tmp_path / "theirs" / f"{HISTORY}.csv").write_text("not ours either\n")
    with pytest.raises(OutputError):  # the mapping would read it: never written beside
        run_export_foreign(params, tmp_path / "crm", tmp_path / "theirs")
    # An older native CRM without field history: no property history, and ours from an earlier
    # run is removed (the folder holds one export).
    (tmp_path / "crm" / "field_history.parquet").unlink()
    older = run_export_foreign(params, tmp_path / "crm", tmp_path / "export")
    assert HISTORY not in older["rows"] and HISTORY in meta["rows"]
    assert not (tmp_path / "export" / f"{HISTORY}.csv").exists()


# ------------------------------------------------------------------------------------------------
# End to end: native and export through validate, label, features
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def both_paths(tmp_path_factory, small_params_template):
    """The native CRM and its HubSpot-shaped export, each validated, labelled and featured."""
    from pipelines.steps import run_features, run_generate, run_label, run_validate

    tmp = tmp_path_factory.mktemp("foreign")
    params = copy.deepcopy(small_params_template)
    assert "custom" in params["features"]["builders"]  # the default: custom fields are features
    run_generate(params, tmp / "crm", tmp / "oracle.parquet")
    meta = run_export_foreign(params, tmp / "crm", tmp / "export")
    mapped = copy.deepcopy(params)
    mapped["crm"]["mapping"] = str(MAPPING)
    runs = {}
    for name, source, settings, mapping in (
        ("native", tmp / "crm", params, None),
        ("export", tmp / "export", mapped, MAPPING),
    ):
        where = tmp / f"{name}-run"
        report = run_validate(
            settings, source, where / "validated", where / "rejects", mapping=mapping
        )
        run_label(settings, where / "validated", where / "labels.parquet")
        features = run_features(
            settings,
            where / "validated",
            where / "labels.parquet",
            where / "f" / "features.parquet",
        )
        runs[name] = {"report": report, "features": features, "where": where, "params": settings}
    return runs, meta


@pytest.mark.slow
def test_the_export_has_the_native_features_exactly(both_paths):
    runs, _ = both_paths
    native, export = runs["native"]["features"], runs["export"]["features"]
    back = export.assign(lead_id=native_lead_id(export["lead_id"]))
    pd.testing.assert_frame_equal(back[list(native.columns)], native)  # same rows, exact


@pytest.mark.slow
def test_the_export_has_the_native_field_history_exactly(both_paths):
    """The validated field history through the mapping is the native one, row for row, once the
    ids are translated back: the same fields tracked, the same values, the same times."""
    runs, _ = both_paths
    native = pd.read_parquet(runs["native"]["where"] / "validated" / "field_history.parquet")
    export = pd.read_parquet(runs["export"]["where"] / "validated" / "field_history.parquet")
    assert len(native) > 0
    leads = (export["entity"] == "leads").to_numpy()
    ids = np.where(
        leads,
        native_lead_id(export["entity_id"].where(leads)).to_numpy(dtype=object),
        COMPANY_IDS.to_native(export["entity_id"].where(~leads)).to_numpy(dtype=object),
    )
    back = export.assign(entity_id=pd.Series(ids, dtype=native["entity_id"].dtype))
    tracked = set(native[["entity", "field"]].drop_duplicates().itertuples(index=False, name=None))
    assert tracked == TRACKED
    pd.testing.assert_frame_equal(back, native)


@pytest.mark.slow
def test_the_export_has_the_native_labels_exactly(both_paths):
    runs, _ = both_paths
    native = pd.read_parquet(runs["native"]["where"] / "labels.parquet")
    export = pd.read_parquet(runs["export"]["where"] / "labels.parquet")
    back = export.assign(lead_id=native_lead_id(export["lead_id"]))
    pd.testing.assert_frame_equal(back, native)


@pytest.mark.slow
def test_custom_properties_and_company_actions_become_features(both_paths):
    runs, _ = both_paths
    native, export = runs["native"]["features"], runs["export"]["features"]
    extra = set(export.columns) - set(native.columns)
    assert set(CUSTOM_FEATURES) <= extra
    assert {
        "n_call_30d",
        "n_meeting_30d",
        "days_since_last_call",
        "sum_call_duration_s_30d",
    } <= extra
    assert export["n_call_90d"].gt(0).any()
    assert export["lead_company_size_band"].notna().mean() > 0.9


@pytest.mark.slow
def test_lifecyclestage_is_never_a_feature(both_paths):
    runs, _ = both_paths
    assert "lead_lifecyclestage" not in runs["export"]["features"].columns
    catalog = json.loads(
        (runs["export"]["where"] / "f" / "feature_catalog.json").read_text(encoding="utf-8")
    )
    entry = {f["name"]: f for f in catalog["features"]}.get("lead_lifecyclestage")
    assert entry is not None and entry["left_out"], "listed, and left out"


@pytest.mark.slow
def test_validation_quarantines_the_same_rows_on_both_paths(both_paths):
    runs, meta = both_paths
    counts = {
        name: pd.DataFrame(run["report"]["counts"]).set_index("table") for name, run in runs.items()
    }
    for table in ("leads", "accounts", "opportunities", "field_history"):
        assert counts["native"].loc[table].to_dict() == counts["export"].loc[table].to_dict()
    added = sum(meta["added_engagements"].values())
    assert (
        counts["export"].loc["events", "rows_in"]
        == counts["native"].loc["events", "rows_in"] + added
    )


def _mentions(found, value: str, rows: int) -> bool:
    """Whether a JSON report names ``value`` with ``rows`` beside it (any key names)."""
    if isinstance(found, dict):
        if found.get(value) == rows:
            return True
        if value in found.values() and rows in found.values():
            return True
        return any(_mentions(v, value, rows) for v in found.values())
    if isinstance(found, list):
        return any(_mentions(v, value, rows) for v in found)
    return False


@pytest.mark.slow
def test_undeclared_note_engagements_are_counted(both_paths):
    runs, meta = both_paths
    report = runs["export"]["report"]
    # NOTE rows are kept (history) and counted under their normalised name, never a feature.
    assert report["undeclared_activity_types"] == {"note": meta["added_engagements"][NOTE]}
    assert not any(c.startswith("n_note_") for c in runs["export"]["features"].columns)


@pytest.mark.slow
def test_the_custom_properties_reach_the_model(both_paths):
    from pipelines.modeling import run_train
    from pipelines.steps import run_training_set

    runs, _ = both_paths
    run = runs["export"]
    where, params = run["where"], run["params"]
    manifest = run_training_set(
        params,
        where / "f" / "features.parquet",
        where / "labels.parquet",
        where / "validated",
        where / "sets",
    )
    assert set(CUSTOM_FEATURES) <= set(manifest["features"])
    assert "lead_lifecyclestage" not in manifest["features"]
    meta = run_train(params, where / "sets", where / "model")
    assert set(CUSTOM_FEATURES) <= set(meta["features"])
    assert set(CUSTOM_FEATURES) <= set(meta["categorical_features"])
    assert np.isfinite(meta["best_iteration"])
