"""The pipeline steps: read inputs, call the library, write outputs. One function per DVC stage.

Paths come in as arguments (dvc.yaml names them once); settings come in as params.yaml sections.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from features.build import build_features, feature_plan
from features.contract import EXTRA_TABLES, TABLES, Kind
from features.gate_inputs import unsubscribed_as_of
from features.mapping.apply import apply_flat, map_table
from features.mapping.contract import (
    NATIVE,
    EffectiveContract,
    effective_contract,
    with_export_history,
)
from features.mapping.file import load_mapping
from features.outputs import check_writable, refuse_overlap, write_file, write_json, write_parquet
from features.readers import (
    check_crm_folder_writable,
    iter_crm,
    read_crm,
    read_flat,
    table_ids_as_text,
    write_crm,
)
from features.snapshots import snapshots_after_creation
from features.urls import display_url
from features.validation import ContractError, ValidationResult, validate_crm, write_rejects
from models.frame import NOT_FEATURES
from pipelines.params import behavioral_params, section, snapshot_offsets, synthetic_config
from pipelines.splits import PURGED, SplitRule, split_snapshots
from pipelines.synthetic_crm import GENERATOR, generate_crm
from pipelines.training_set import fingerprint, label_snapshots, manifest_from_counts, split_counts

log = logging.getLogger(__name__)

META_FILE = "crm_meta.json"
VALIDATION_REPORT = "validation_report.json"


def _write_json(path: Path, payload: dict) -> None:
    write_json(path, payload)


def _read_meta(folder: Path) -> dict[str, Any]:
    """``crm_meta.json`` beside the tables (empty when there is none); a clear error if unreadable."""
    meta = folder / META_FILE
    if not meta.is_file():
        return {}
    try:
        found = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ContractError(
            f"{meta} is not readable JSON ({str(error).splitlines()[0]}): fix it, remove it, or set "
            "crm.extracted_at in params.yaml",
            table="",
        ) from None
    if not isinstance(found, dict):
        raise ContractError(
            f'{meta} must hold a JSON object such as {{"extracted_at": "2024-06-01T00:00:00Z"}}',
            table="",
        )
    return found


def run_generate(
    params: dict[str, Any],
    out: str | Path,
    oracle_path: str | Path,
    fmt: str = "parquet",
    progress: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Generate the synthetic CRM into ``out`` (folder or SQLAlchemy URL) and its oracle file."""
    refuse_overlap({}, {"--out": out, "--oracle": oracle_path})
    if "://" not in str(out):  # every file checked before a day is simulated
        check_crm_folder_writable(out, {name: None for name in (*TABLES, *EXTRA_TABLES)}, fmt)
        check_writable(Path(out) / META_FILE, oracle_path)
    cfg = synthetic_config(params, **overrides)
    crm = generate_crm(cfg, progress=progress)
    write_crm(crm.tables, out, fmt=fmt)
    meta = {
        "extracted_at": crm.extracted_at.isoformat(),
        "generator": GENERATOR,
        "config": asdict(cfg),
        "rows": {name: len(t) for name, t in crm.tables.items()},
    }
    if "://" not in str(out):
        _write_json(Path(out) / META_FILE, meta)
    oracle_path = Path(oracle_path)
    write_parquet(oracle_path, crm.oracle)
    log.info(
        "wrote the synthetic CRM to %s and its oracle (%d snapshots) to %s",
        display_url(out),
        len(crm.oracle),
        oracle_path,
    )
    return meta


def run_generate_partitioned(
    params: dict[str, Any],
    out: str | Path,
    oracle_path: str | Path,
    partitions: int,
    chunk_leads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Generate the synthetic CRM straight into a partitioned CRM at ``out``, ``chunk_leads``
    leads at a time (``partition.generate_chunk_leads``), so the CRM may be larger than memory.

    Each chunk is a world of its own (the config's, its own seed) whose ids carry the chunk's
    prefix (``c0003-L00000012``); its rows are split by partition and appended. The oracle is
    written row group by row group into one Parquet file. ``progress(chunk, n_chunks)``."""
    import pyarrow as pa

    from features.partitioned import PartitionWriter

    refuse_overlap({}, {"--out": out, "--oracle": oracle_path})
    check_writable(oracle_path)
    cfg = synthetic_config(params, **overrides)
    per = int(chunk_leads or section(params, "partition")["generate_chunk_leads"])
    if per < 1:
        raise ValueError(f"partition.generate_chunk_leads must be >= 1, got {per}")
    sizes = [min(per, cfg.n_leads - start) for start in range(0, cfg.n_leads, per)]
    writer = PartitionWriter(Path(out), partitions)
    oracle_path = Path(oracle_path)
    oracle_path.parent.mkdir(parents=True, exist_ok=True)
    oracle_writer, extracted_at = None, None
    tmp = oracle_path.with_name(f".{oracle_path.name}.tmp")
    try:
        for k, n in enumerate(sizes):
            crm = generate_crm(replace(cfg, n_leads=n, seed=cfg.seed * 100_003 + k))
            prefix = f"c{k:04d}-"
            writer.write(_prefixed_ids(crm.tables, prefix))
            oracle = crm.oracle.assign(lead_id=prefix + crm.oracle["lead_id"].astype(str))
            table = pa.Table.from_pandas(oracle, preserve_index=False)
            if oracle_writer is None:
                oracle_writer = pq.ParquetWriter(tmp, table.schema)
            oracle_writer.write_table(table.cast(oracle_writer.schema))
            extracted_at = crm.extracted_at
            log.info("generated chunk %d/%d: %d leads", k + 1, len(sizes), n)
            if progress is not None:
                progress(k, len(sizes))
        if oracle_writer is not None:
            oracle_writer.close()
            oracle_writer = None
            write_file(oracle_path, lambda path: os.replace(tmp, path))
    finally:
        if oracle_writer is not None:
            oracle_writer.close()
        if tmp.exists():
            tmp.unlink()
    return writer.close(
        {
            "extracted_at": extracted_at.isoformat(),
            "generator": GENERATOR,
            "config": asdict(cfg),
            "chunks": len(sizes),
        }
    )


def _prefixed_ids(tables: dict[str, pd.DataFrame], prefix: str) -> dict[str, pd.DataFrame]:
    """Every id column of the contract's tables with ``prefix`` before its values (a chunk's
    world apart from the others'); missing ids stay missing."""
    out = {}
    for name, frame in tables.items():
        table = {**TABLES, **EXTRA_TABLES}.get(name)
        ids = [c.name for c in table.columns if c.kind == Kind.ID] if table else []
        out[name] = frame.assign(
            **{c: prefix + frame[c].astype("str") for c in ids if c in frame.columns}
        )
    return out


def naive_utc(value: str | pd.Timestamp) -> pd.Timestamp:
    """A timestamp as naive UTC (the contract's convention); aware values are converted."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def resolve_extracted_at(source: str | Path, configured: str | None) -> pd.Timestamp:
    """When the CRM was exported (naive UTC): params, else the source's crm_meta.json, else now."""
    if configured:
        return naive_utc(configured)
    if "://" not in str(source):
        meta = _read_meta(Path(source))
        if "extracted_at" in meta:
            return naive_utc(meta["extracted_at"])
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    log.info("no extraction time configured or recorded: using now (%s)", now)
    return now


def validation_settings(
    params: dict[str, Any], contract: EffectiveContract = NATIVE
) -> dict[str, Any]:
    """Keyword arguments of :func:`~features.validation.validate_crm` from params.yaml ``validate``.

    A flat export has no accounts or events table: ``nonempty_tables`` cannot ask for them.
    """
    settings = section(params, "validate")
    limit = settings.get("max_quarantined_fraction", 0.05)
    nonempty = tuple(settings.get("nonempty_tables", ("leads",)))
    if contract.flat:
        nonempty = tuple(t for t in nonempty if t in ("leads", "opportunities"))
    return {
        "max_unparseable_fraction": float(settings["max_unparseable_fraction"]),
        "max_quarantined_fraction": None if limit is None else float(limit),
        "nonempty_tables": nonempty,
    }


def crm_contract(params: dict[str, Any], mapping: str | Path | None = None) -> EffectiveContract:
    """The contract as the CRM's mapping file fills it: ``mapping`` if given, else
    ``crm.mapping`` in params.yaml; without one, the native contract."""
    path = mapping or section(params, "crm").get("mapping")
    if not path:
        return NATIVE
    contract = effective_contract(load_mapping(path))
    log.info("mapping %s: %d custom field(s)", path, len(contract.custom))
    return contract


def read_source(
    params: dict[str, Any],
    source: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    contract: EffectiveContract = NATIVE,
) -> dict[str, pd.DataFrame]:
    """The raw CRM tables at ``source``, read with the export's encoding (``crm.encoding``) and
    renamed to the contract's tables and columns by the mapping, if there is one."""
    return dict(iter_source(params, source, progress, contract))


def iter_source(
    params: dict[str, Any],
    source: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    contract: EffectiveContract = NATIVE,
    chunk_rows: int | None = None,
    only: str | None = None,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """:func:`read_source`'s tables as ``(table, frame)`` pairs, each whole or in chunks of at
    most ``chunk_rows`` rows (:func:`features.readers.iter_crm`), for copying an export larger
    than memory; ``only``: that contract table alone. A flat export (one table the mapping
    splits into several) is read whole."""
    encoding = section(params, "crm").get("encoding") or "utf-8"
    if contract.mapping is None:
        names = None if only is None else {only: only}
        with contextlib.closing(
            iter_crm(source, encoding, progress, names, chunk_rows=chunk_rows)
        ) as chunks:
            yield from chunks
        return
    options = contract.mapping.csv
    encoding = options.encoding or encoding
    if contract.flat:
        name = contract.mapping.from_
        frame = read_flat(source, name, encoding=encoding, separator=options.separator)
        for table, mapped in apply_flat(frame, contract.mapping, name).tables.items():
            if only in (None, table):
                yield table, table_ids_as_text(mapped, table)
        return
    names = contract.export_tables
    chunks = iter_crm(
        source,
        encoding,
        progress,
        tables=names if only is None else {only: names[only]},
        separator=options.separator,
        chunk_rows=chunk_rows,
    )
    logged = set()
    # Closed here, whatever stops the loop: the reader may hold a file or a connection.
    with contextlib.closing(chunks):
        for table, frame in chunks:
            mapped, _ = map_table(table, frame, contract.mapping, log_left_out=table not in logged)
            logged.add(table)
            # Ids are text whatever the export stored; the mapping's names are known only now.
            yield table, table_ids_as_text(mapped, table)


def run_validate(
    params: dict[str, Any],
    source: str | Path,
    out: str | Path,
    rejects: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    mapping: str | Path | None = None,
) -> dict[str, Any]:
    """Validate the CRM at ``source``; write clean typed tables to ``out`` and rejects to ``rejects``.

    ``mapping`` (else ``crm.mapping``) names the mapping file that turns the export into the
    contract.

    Nothing is written when the input breaks the contract (``ContractError``) or when an output
    would overlap the input or the other output (``OutputError``).
    """
    refuse_overlap({"source": source}, {"--out": out, "--rejects": rejects})
    extracted_at = resolve_extracted_at(source, section(params, "crm").get("extracted_at"))
    contract = crm_contract(params, mapping)
    result = validate_crm(
        read_source(params, source, progress, contract),
        extracted_at=extracted_at,
        progress=progress,
        contract=contract,
        **validation_settings(params, contract),
    )
    out = Path(out)
    check_writable(
        *(out / f"{name}.parquet" for name in result.tables),
        *(Path(rejects) / f"{name}.parquet" for name in result.rejects),
        out / META_FILE, out / VALIDATION_REPORT, Path(rejects) / "summary.json",
    )  # fmt: skip
    write_crm(result.tables, out, fmt="parquet")
    write_rejects(result, rejects)
    report = validation_report(params, result, extracted_at, source, contract, mapping)
    # What a synthetic export says about its making (its generator's config: e.g. the day of its
    # market shift, which `leadscore backtest` marks) travels with the validated tables.
    made_by = _read_meta(Path(source)) if "://" not in str(source) else {}
    provenance = {k: made_by[k] for k in ("generator", "config") if k in made_by}
    _write_json(out / META_FILE, {"extracted_at": extracted_at.isoformat(), **provenance})
    _write_json(out / VALIDATION_REPORT, report)
    log.info("validation:\n%s", result.summary())
    return report


def validation_report(
    params: dict[str, Any],
    result: ValidationResult,
    extracted_at: pd.Timestamp,
    source: str | Path,
    contract: EffectiveContract,
    mapping: str | Path | None = None,
    input_fingerprint: str | None = None,
) -> dict[str, Any]:
    """``validation_report.json``: the export, its counts, what was kept, repaired or missing,
    and a fingerprint of the clean tables (``input_fingerprint``: given when the tables were
    never in one frame, as for a partitioned CRM)."""
    return {
        "extracted_at": extracted_at.isoformat(),
        "source": display_url(source),
        "counts": result.counts.to_dict(orient="records"),
        "input_fingerprint": input_fingerprint or fingerprint(result.tables),
        "mapping": str(mapping or section(params, "crm").get("mapping") or "") or None,
        "time": (
            "pseudo-time (row order), not dates"
            if contract.flat and contract.mapping.pseudo_time is not None
            else "dates"
        ),
        "kept_with_notes": result.notes.to_dict(orient="records"),
        "categories": result.categories.to_dict(orient="records"),
        "undeclared_activity_types": dict(
            zip(
                result.undeclared_types["event_type"],
                result.undeclared_types["rows"].astype(int).tolist(),
                strict=True,
            )
        ),
        "columns_not_in_export": result.absent_columns.to_dict(orient="records"),
    }


def validated_meta(folder: str | Path) -> dict[str, Any]:
    """``crm_meta.json`` of a validated folder (its extraction time, and a synthetic CRM's
    generator config); a clear error if `leadscore validate` has not written it."""
    folder = Path(folder)
    meta = _read_meta(folder)
    if "extracted_at" not in meta:
        raise FileNotFoundError(f"{folder / META_FILE} is missing: run `leadscore validate` first")
    return meta


def _read_validated(folder: str | Path) -> tuple[dict[str, pd.DataFrame], pd.Timestamp]:
    meta = validated_meta(folder)
    return read_crm(Path(folder)), naive_utc(meta["extracted_at"])


def label_population(params: dict[str, Any]) -> str:
    """``label.population``: ``lead_scoring`` (default: leads without an open opportunity) or ``all``."""
    return str(section(params, "label").get("population", "lead_scoring"))


def labels_known_on(params: dict[str, Any], extracted_at: pd.Timestamp) -> pd.Timestamp:
    """The day labels are read as of: ``label.as_of`` (a cutoff, to build the training set a
    team would have had then: ``leadscore retrain --as-of``) if set, else the extraction time."""
    cutoff = section(params, "label").get("as_of")
    if cutoff is None:
        return extracted_at
    cutoff = naive_utc(str(cutoff))
    if cutoff > extracted_at:
        raise ValueError(
            f"label.as_of {cutoff:%Y-%m-%d} is after the export was taken "
            f"({extracted_at:%Y-%m-%d}): outcomes after it are not known; leave it null"
        )
    return cutoff


def run_label(params: dict[str, Any], validated: str | Path, out: str | Path) -> dict[str, Any]:
    """Snapshots by the policy in params, labelled, censored; written to ``out`` (Parquet).

    With ``label.as_of``, labels are read as on that day: a snapshot is kept only if its label
    window had closed by then (the rows a training set built that day would hold; features
    are point in time whatever the export's date)."""
    refuse_overlap({"--validated": validated}, {"--out": out})
    tables, extracted_at = _read_validated(validated)
    known_on = labels_known_on(params, extracted_at)
    snapshots = snapshots_after_creation(tables["leads"], snapshot_offsets(params))
    labelled = label_snapshots(
        snapshots,
        tables["leads"],
        tables["opportunities"],
        horizon_days=int(section(params, "label")["horizon_days"]),
        data_end=known_on,
        population=label_population(params),
    )
    out = Path(out)
    write_parquet(out, labelled.frame)
    summary = {
        "labels_known_on": known_on.isoformat(),
        "population": label_population(params),
        "snapshots": len(snapshots),
        "labelled": len(labelled.frame),
        "excluded": labelled.excluded,
    }
    _write_json(out.with_suffix(".json"), summary)
    return summary


def run_features(
    params: dict[str, Any],
    validated: str | Path,
    snapshots_path: str | Path,
    out: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Features of every labelled snapshot (one row each, same order), written to ``out``."""
    refuse_overlap({"--validated": validated, "--snapshots": snapshots_path}, {"--out": out})
    tables, _ = _read_validated(validated)
    snapshots = pd.read_parquet(snapshots_path, columns=["lead_id", "as_of"])
    builders = section(params, "features")["builders"]
    # A native export's field history decides which fields are read as of each snapshot.
    contract = with_export_history(crm_contract(params), tables.get("field_history"))
    behavioral = contract.behavioral(behavioral_params(params))
    frame = build_features(
        tables, snapshots, builders, behavioral, progress=progress, contract=contract
    )
    out = Path(out)
    write_parquet(out, frame)
    catalog = feature_catalog(builders, behavioral, contract)
    _write_json(out.parent / "feature_catalog.json", {"features": catalog})
    log.info("wrote %d features x %d snapshots to %s", frame.shape[1] - 2, len(frame), out)
    return frame


def feature_catalog(builders, behavioral, contract: EffectiveContract) -> list[dict[str, Any]]:
    """``feature_catalog.json``'s features: each feature's label, builder, sources, what it
    knows when, the declarations it rests on, and why it was left out (if it was)."""
    plan = feature_plan(builders, behavioral, contract)
    return [
        {
            "name": s.name,
            "label": s.label,
            "builder": s.builder,
            "categorical": s.categorical,
            "sources": list(s.sources),
            "knowledge": [k.value for k in s.knowledge_in(contract)],
            "rests_on_declaration": [
                src for src in s.sources if tuple(src.split(".", 1)) in contract.declared
            ],
            "left_out": plan.left_out.get(s.name),
        }
        for s in plan.specs
    ]


def _gate_tables(validated: str | Path) -> dict[str, pd.DataFrame]:
    """The validated leads' ids and ``unsubscribed`` flags, and the field history if any: all
    the gate inputs read (not the events, which a large CRM holds by the million)."""
    folder = Path(validated)
    columns = pq.read_schema(folder / "leads.parquet").names
    tables = {
        "leads": pd.read_parquet(
            folder / "leads.parquet",
            columns=[c for c in ("lead_id", "unsubscribed") if c in columns],
        )
    }
    if (folder / "field_history.parquet").is_file():
        tables["field_history"] = pd.read_parquet(folder / "field_history.parquet")
    return tables


def labelled_features(
    features_path: str | Path, snapshots_path: str | Path, validated: str | Path
) -> tuple[pd.DataFrame, str]:
    """Every labelled snapshot with its features, its ``label`` and the disqualifier's input
    (``unsubscribed`` as of the snapshot, when the CRM has it): what a split or a backtest cuts;
    and where that input came from (:func:`~features.gate_inputs.unsubscribed_as_of`)."""
    return join_labels(
        pd.read_parquet(features_path),
        pd.read_parquet(snapshots_path),
        _gate_tables(validated),
        f"{features_path} and {snapshots_path}",
    )


def join_labels(
    features: pd.DataFrame,
    labelled: pd.DataFrame,
    gate_tables: dict[str, pd.DataFrame],
    what: str = "the features and the labelled snapshots",
) -> tuple[pd.DataFrame, str]:
    """The labelled snapshots' features with their ``label`` (and ``won_amount``) and the
    disqualifier's input (see :func:`labelled_features`); ``what`` names the inputs in the
    error if they are not the same snapshots in the same order."""
    same_rows = len(features) == len(labelled) and (
        features[["lead_id", "as_of"]]
        .reset_index(drop=True)
        .equals(labelled[["lead_id", "as_of"]].reset_index(drop=True))
    )
    if not same_rows:
        raise ValueError(
            f"{what} do not hold the same snapshots in the same order: rebuild the features stage"
        )
    frame = features.reset_index(drop=True).assign(label=labelled["label"].to_numpy())
    if "won_amount" in labelled:  # the value model's label (labels written before it: none)
        frame["won_amount"] = labelled["won_amount"].to_numpy()
    # The disqualifier's input, by the rule the nightly job applies (not a feature).
    unsubscribed, source = unsubscribed_as_of(gate_tables, frame[["lead_id", "as_of"]])
    if unsubscribed is not None:
        frame["unsubscribed"] = unsubscribed.to_numpy()
    return frame, source


def split_rule(params: dict[str, Any]) -> SplitRule:
    """The out-of-time split params.yaml's ``split`` (and the label horizon, to purge) set."""
    horizon = int(section(params, "label")["horizon_days"])
    return SplitRule.from_params(section(params, "split"), horizon)


def kept_rows(joined: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """The labelled rows a split keeps (not purged), with their ``split``."""
    purged = (labels == PURGED).to_numpy()
    return joined[~purged].assign(split=labels[~purged].to_numpy()).reset_index(drop=True)


def run_training_set(
    params: dict[str, Any],
    features_path: str | Path,
    snapshots_path: str | Path,
    validated: str | Path,
    out: str | Path,
) -> dict[str, Any]:
    """Join labels to features, split by time, write one Parquet file per split and a manifest."""
    refuse_overlap(
        {"--features": features_path, "--snapshots": snapshots_path, "--validated": validated},
        {"--out": out},
    )
    joined, gate_source = labelled_features(features_path, snapshots_path, validated)
    divided = split_snapshots(joined[["lead_id", "as_of"]], split_rule(params))
    training = kept_rows(joined, divided.labels)
    out = Path(out)
    for name, part in training.groupby("split", sort=False):
        write_parquet(out / f"{name}.parquet", part.drop(columns="split"))
    report = json.loads((Path(validated) / VALIDATION_REPORT).read_text())
    label_summary = json.loads(Path(snapshots_path).with_suffix(".json").read_text())
    result = training_manifest(
        params,
        split_counts(training),
        label_summary["excluded"],
        divided.report,
        report,
        gate_source,
        [c for c in joined.columns if c not in NOT_FEATURES],
        Path(features_path).parent / "feature_catalog.json",
    )
    _write_json(out / "manifest.json", result)
    return result


def training_manifest(
    params: dict[str, Any],
    counts: dict[str, dict[str, Any]],
    excluded: dict[str, int],
    split_report: dict[str, Any],
    validation_report: dict[str, Any],
    gate_source: str,
    feature_names: list[str],
    catalog_path: Path | None,
) -> dict[str, Any]:
    """A training set's manifest.json: its splits' counts
    (:func:`~pipelines.training_set.split_counts`), what was left out, the split, the settings
    and inputs it was built with, and the claims about the CRM it rests on."""
    settings = {
        "snapshots": section(params, "snapshots"),
        "label": section(params, "label"),
        "split": section(params, "split"),
        "features": {"builders": section(params, "features")["builders"]},
        "extracted_at": validation_report["extracted_at"],
    }
    excluded = {
        **excluded,
        "purged_label_window_crosses_next_split": sum(split_report["purged_rows"].values()),
    }
    result = manifest_from_counts(
        counts, excluded, validation_report["input_fingerprint"], feature_names, settings
    )
    result["split"] = split_report
    result["gate_inputs"] = {"unsubscribed": gate_source}
    # Which leads the model is for, and how old: scoring reads both from the model, not params.
    result["population"] = {
        "policy": label_population(params),
        "max_age_days": max(snapshot_offsets(params)),
    }
    # What the training set rests on: the time axis, and the features whose fields a mapping
    # declared known (rather than reading them from history): claims about the CRM to check.
    result["time"] = validation_report.get("time", "dates")
    if catalog_path is not None and catalog_path.is_file():
        catalog = json.loads(catalog_path.read_text())["features"]
        result["features_resting_on_a_declaration"] = {
            f["name"]: f["rests_on_declaration"]
            for f in catalog
            if f.get("rests_on_declaration") and f["name"] in feature_names
        }
    return result
