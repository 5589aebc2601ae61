"""The nightly job's scoring on a partitioned CRM (features/partitioned.py), partition by
partition, on the pandas engine (out of core) or a Dask cluster (pipelines/engines.py).

Each partition runs exactly what the job runs on a whole CRM (validation of its rows, the open
leads, their features, scores, reasons, stages, last sales touch): :func:`score_partition`
calls the same functions. What needs every lead is a small explicit reduction here:

- the shared tables (accounts, their field history) are validated once, before the partitions,
  and handed to each of them;
- the checks validation makes on a whole table (a column mostly of the wrong type, the share
  quarantined, ...) are made on the partitions' merged counts
  (:func:`features.validation.check_partitions`) before anything is written;
- drift is the PSI of the partitions' summed bin counts (:func:`models.drift.bin_counts`);
- the counts of the run are sums.

Scores are staged as one Parquet file per partition in a folder the job creates and removes
(``score.staging_dir``, default the system's temporary folder), so that memory holds one
partition's scores at a time, and are written into the sink by the job itself, in batches
keyed as for a whole CRM: the exactly-once rules of the job do not change with the engine.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.mapping.contract import EffectiveContract, with_export_history
from features.partitioned import SHARED, history_pairs, partition_of, read_meta, read_partition
from features.validation import (
    ValidationResult,
    check_partitions,
    empty_table,
    in_export_rows,
    merge_results,
    validate_crm,
)
from models.drift import add_counts
from pipelines.engines import EngineSettings, open_engine
from pipelines.params import section
from pipelines.steps import crm_contract, naive_utc, validation_settings

log = logging.getLogger(__name__)


class ScoredParts:
    """The scores of a run, one frame per partition (a whole CRM: one part): held in memory, or
    staged as Parquet files in ``folder`` (out of core)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._parts: list[tuple[Any, pd.DataFrame | Path, int]] = []
        self.stages: Counter = Counter()

    def add(self, key: Any, frame: pd.DataFrame) -> None:
        """One part's scores."""
        self.stages.update(frame["stage"].astype(str).value_counts().to_dict())
        if self.folder is None:
            self._parts.append((key, frame, len(frame)))
            return
        path = self.folder / f"part-{len(self._parts):05d}.parquet"
        frame.to_parquet(path, index=False)
        self._parts.append((key, path, len(frame)))

    def __len__(self) -> int:
        return sum(n for _, _, n in self._parts)

    def frames(self) -> Iterator[tuple[Any, pd.DataFrame]]:
        """``(key, scores)`` per part, in the order they were added (staged ones read back)."""
        for key, part, _ in self._parts:
            yield key, part if isinstance(part, pd.DataFrame) else pd.read_parquet(part)


@dataclass
class ScoredRun:
    """What scoring a CRM gave, whole or partitioned: the scores, the counts, the validation
    (merged over partitions), the drift bin counts, and the partitioning (None: whole)."""

    parts: ScoredParts
    counts: dict[str, Any]
    validation: ValidationResult | None
    drift: dict | None
    partitions: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionTask:
    """What every partition's work reads (sent once to each worker)."""

    root: str
    params: dict[str, Any]
    contract: EffectiveContract
    shared: dict[str, pd.DataFrame]
    extracted_at: pd.Timestamp
    as_of: pd.Timestamp
    model: Any
    lead_ids: tuple[str, ...] | None
    partitions: int  # as crm_meta.json says, read once with the rest of the task


@dataclass
class PartitionResult:
    """One partition's scores and the counts the reduction sums."""

    scores: pd.DataFrame
    counts: dict[str, Any]
    validation: ValidationResult
    drift: dict | None
    seconds: float


@contextmanager
def _quiet(name: str, level: int) -> Iterator[None]:
    """Logger ``name`` at ``level`` at least, for a while: lines said once per partition would
    drown the job's log; the run's totals are logged once instead."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(before, level))
    try:
        yield
    finally:
        logger.setLevel(before)


def validated_partition(
    part: int, task: PartitionTask
) -> tuple[dict[str, pd.DataFrame], ValidationResult]:
    """One partition read and validated as the whole CRM is (the whole-table checks deferred),
    with the shared tables beside its own: its clean tables, and its validation result in the
    export's row numbers."""
    raw = read_partition(task.root, part)
    with _quiet("features.validation", logging.WARNING):
        validation = validate_crm(
            raw.tables,
            extracted_at=task.extracted_at,
            contract=task.contract,
            part_of_many=True,
            validated={"accounts": task.shared["accounts"]},
            source_rows=raw.source_rows,
            **validation_settings(task.params, task.contract),
        )
    tables = dict(validation.tables)
    history = task.shared.get("field_history")
    if history is not None and len(history):  # the accounts' history, beside the leads'
        tables["field_history"] = pd.concat(
            [tables.get("field_history", history.iloc[:0]), history], ignore_index=True
        )
    return tables, in_export_rows(validation, raw.source_rows)


def score_partition(item: tuple[int, frozenset], task: PartitionTask) -> PartitionResult:
    """Validate, select and score one partition's leads: the whole-CRM job's own functions on
    the partition's rows (and the shared tables)."""
    from pipelines.score_job import drift_counts, score_tables

    part, skip = item
    clock = time.perf_counter()
    tables, validation = validated_partition(part, task)
    lead_ids, limit = None, None
    if task.lead_ids is not None:  # the selection's leads that live in this partition
        ids = pd.Series(task.lead_ids, dtype="str")
        lead_ids = ids[partition_of(ids, task.partitions) == part].tolist()
        limit = None if lead_ids else 0  # none here: this partition's counts, no scores
    # Unseen categories and older leads are said once for the run (score_partitioned).
    with _quiet("pipelines.score_job", logging.ERROR), _quiet("pipelines.scoring", logging.ERROR):
        scored, features, counts = score_tables(
            task.params, tables, task.model, task.as_of, task.contract, lead_ids or None, limit,
            set(skip) if skip else None,
        )  # fmt: skip
    return PartitionResult(
        scores=scored,
        counts=counts,
        validation=validation,
        drift=drift_counts(task.model, features, scored),
        seconds=time.perf_counter() - clock,
    )


def partition_features(item: tuple[int, frozenset], task: PartitionTask) -> pd.DataFrame:
    """The features one partition's open leads are scored from (what the engines must agree
    on, exactly)."""
    from pipelines.score_job import score_tables

    tables, _ = validated_partition(item[0], task)
    return score_tables(task.params, tables, task.model, task.as_of, task.contract)[1]


def _add(total: dict[str, Any], counts: Mapping[str, Any]) -> None:
    """Sum a partition's counts into the run's (numbers add; lists and labels are the same)."""
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | float | dict):
            total.setdefault(key, value)
        elif isinstance(value, dict):
            inner = total.setdefault(key, {})
            for k, v in value.items():
                inner[k] = inner.get(k, 0) + v
        else:
            total[key] = total.get(key, 0) + value


def shared_validation(
    params: dict[str, Any], root: str | Path, contract: EffectiveContract, extracted_at
) -> tuple[dict[str, pd.DataFrame], ValidationResult]:
    """The shared tables (accounts, their field history), validated once for every partition."""
    raw = read_partition(root, SHARED)
    empty = {t: empty_table(t, contract) for t in ("leads", "opportunities", "events")}
    result = validate_crm(
        raw.tables,
        extracted_at=extracted_at,
        contract=contract,
        part_of_many=True,
        validated=empty,
        source_rows=raw.source_rows,
        **validation_settings(params, contract),
    )
    tables = {t: result.tables[t] for t in ("accounts", "field_history") if t in result.tables}
    tables.setdefault("accounts", empty_table("accounts", contract))
    return tables, in_export_rows(result, raw.source_rows)


def partitioned_contract(params: dict[str, Any], root: str | Path) -> EffectiveContract:
    """The CRM's contract (its mapping), with what the whole field history tracks."""
    contract = crm_contract(params)
    pairs = history_pairs(root)
    return with_export_history(contract, pairs) if pairs is not None else contract


def partition_task(
    params: dict[str, Any],
    root: str | Path,
    model,
    as_of: pd.Timestamp,
    lead_ids: Sequence[str] | None = None,
) -> tuple[PartitionTask, ValidationResult]:
    """What every partition's work reads, with the shared tables validated (and their result)."""
    meta = read_meta(root)
    configured = section(params, "crm").get("extracted_at")
    extracted_at = max(naive_utc(configured or meta.get("extracted_at") or as_of), as_of)
    contract = partitioned_contract(params, root)
    shared, shared_result = shared_validation(params, root, contract, extracted_at)
    task = PartitionTask(
        str(root), params, contract, shared, extracted_at, as_of, model,
        tuple(str(i) for i in lead_ids) if lead_ids else None, int(meta["partitions"]),
    )  # fmt: skip
    return task, shared_result


def score_partitioned(
    params: dict[str, Any],
    root: str | Path,
    model,
    as_of: pd.Timestamp,
    engine: EngineSettings,
    lead_ids: Sequence[str] | None = None,
    skip: set[str] | None = None,
    progress=None,
    staging: Path | None = None,
) -> ScoredRun:
    """Score every partition of the CRM at ``root`` on ``engine``; the checks that need every
    row are made on the merged counts before this returns (a ContractError stops the job with
    nothing written). Scores are staged in ``staging`` (None: kept in memory)."""
    clock = time.perf_counter()
    runner = open_engine(engine)  # first: a cluster starts while the driver prepares the task
    try:
        task, shared_result = partition_task(params, root, model, as_of, lead_ids)
    except BaseException:
        runner.close()
        raise
    n, contract = task.partitions, task.contract
    skip_by_part: dict[int, frozenset] = {}
    if skip:
        ids = pd.Series(sorted(skip), dtype="str")
        for part, group in ids.groupby(partition_of(ids, n)):
            skip_by_part[int(part)] = frozenset(group)
    parts = ScoredParts(staging)
    counts: dict[str, Any] = {}
    drift: dict | None = None
    results = [shared_result]
    seconds = []
    log.info("scoring %d partition(s) of %s on the %s", n, root, runner.describe())
    try:
        task_ref = runner.share(task)
        items = [(i, skip_by_part.get(i, frozenset())) for i in range(n)]
        for done, (item, result) in enumerate(
            runner.map_unordered(score_partition, items, task_ref), 1
        ):
            parts.add(item[0], result.scores)
            _add(counts, result.counts)
            results.append(result.validation)
            if result.drift is not None:
                drift = result.drift if drift is None else add_counts(drift, result.drift)
            seconds.append(result.seconds)
            log.info(
                "partition %d (%d/%d): %d lead(s) scored in %.1f s",
                item[0], done, n, len(result.scores), result.seconds,
            )  # fmt: skip
            if progress is not None:
                progress("partitions", done, n)
    finally:
        runner.close()
    merged = merge_results(results)
    check_partitions(
        merged,
        contract=contract,
        **validation_settings(params, contract),
    )
    for line in merged.summary().splitlines():
        log.info("validation: %s", line)
    counts["quarantined_rows"] = {
        t: int(r) for t, r in merged.counts.set_index("table")["rows_rejected"].items()
    }
    counts["partitions"] = n
    _say_once(counts, model, as_of)
    return ScoredRun(
        parts,
        counts,
        merged,
        drift,
        partitions=n,
        seconds={
            "wall": round(time.perf_counter() - clock, 2),
            "partition_median": round(float(np.median(seconds)), 3) if seconds else 0.0,
            "partition_sum": round(float(np.sum(seconds)), 2),
        },
    )


def _say_once(counts: Mapping[str, Any], model, as_of: pd.Timestamp) -> None:
    """The warnings each partition kept to itself, for the whole run."""
    from pipelines.score_job import warn_older_leads_scored

    warn_older_leads_scored(
        counts.get("older_than_max_age_scored", 0), model.population.max_age_days, as_of
    )
    for feature, rows in (counts.get("unseen_categories") or {}).items():
        log.warning(
            "%s: %d lead(s) with values not seen in training, scored as other", feature, rows
        )


def staging_folder(base: str | None = None, prefix: str = "leadscore-scores-") -> Path:
    """A new folder for a run's staged files, in ``base`` (``engine.staging_dir``; None: the
    system's temporary folder), its name starting with ``prefix``; removed by
    :func:`remove_staging`."""
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def remove_staging(folder: Path | None) -> None:
    """Remove a staging folder this job created (nothing else)."""
    if folder is not None and folder.name.startswith("leadscore-"):
        shutil.rmtree(folder, ignore_errors=True)
