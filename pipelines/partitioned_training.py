"""The training set of a partitioned CRM (features/partitioned.py), partition by partition, on
the pandas engine or a Dask cluster (pipelines/engines.py).

Each partition runs what `validate`, `label`, `features` and `training-set` run on a whole CRM
(the same functions, on the partition's leads and the shared accounts). What needs every lead
is an explicit reduction here, made on small summaries the partitions hand back:

- the checks validation makes on a whole table, on the merged counts (as for scoring);
- the split's boundaries, from every unit's entry time (8 bytes per lead): the split of a
  partitioned CRM is the whole CRM's, row for row (:func:`pipelines.splits.split_bounds`);
- the split's checks and the manifest, from summed counts (leads live in one partition, so
  distinct leads add up).

The training set it writes is the whole CRM's, except that the train split is a folder of one
Parquet file per partition (``train/part-00007.parquet``): validation and test, which the
calibration, the cutoffs and the evaluation read whole, are gathered into one file each.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.outputs import check_writable, owned_files, refuse_overlap, remove_file, write_file
from features.snapshots import snapshots_after_creation
from features.validation import ValidationResult, check_partitions, merge_results, write_rejects
from models.boosting import fixed_booster, fixed_params
from pipelines.engines import EngineSettings, open_engine
from pipelines.params import behavioral_params, section, snapshot_offsets
from pipelines.partitioned_scoring import (
    PartitionTask,
    _quiet,
    partition_task,
    remove_staging,
    staging_folder,
    validated_partition,
)
from pipelines.splits import (
    SPLITS,
    SplitBounds,
    SplitCounts,
    SplitRule,
    assign_splits,
    check_split,
    refuse_no_snapshots,
    split_bounds,
    unit_entries,
)
from pipelines.training_set import add_split_counts, fingerprint, label_snapshots, split_counts

log = logging.getLogger(__name__)

#: The train split of a partitioned training set: a folder of one file per partition.
TRAIN_PARTS = "train"


@dataclass
class LabelledPart:
    """One partition's labelled snapshots with their features (staged at ``path``), and what
    the reductions read: its units' entry times, its counts and its validation."""

    part: int
    path: str
    rows: int
    units: np.ndarray
    excluded: dict[str, int]
    snapshots: int
    gate_source: str
    fingerprint: str
    validation: ValidationResult
    seconds: float


@dataclass(frozen=True)
class SplitTask:
    """What the second pass reads: the split rule and its boundaries, and the staging folder."""

    rule: SplitRule
    bounds: SplitBounds
    staging: str


@dataclass
class SplitPart:
    """One partition's rows per split (staged files) and the counts the checks and the
    manifest sum."""

    part: int
    files: dict[str, str]
    split: SplitCounts
    manifest: dict[str, dict[str, Any]]


def labelled_partition(part: int, task: PartitionTask, staging: str) -> LabelledPart:
    """One partition validated, its snapshots labelled, their features built and joined to
    the labels (:func:`pipelines.steps.join_labels`), staged in ``staging``: the whole CRM's
    `validate`, `label`, `features` and the join of `training-set`, on the partition's leads."""
    from pipelines.steps import join_labels, label_population, labels_known_on, split_rule

    clock = time.perf_counter()
    params = task.params
    tables, validation = validated_partition(part, task)
    snapshots = snapshots_after_creation(tables["leads"], snapshot_offsets(params))
    labelled = label_snapshots(
        snapshots,
        tables["leads"],
        tables["opportunities"],
        horizon_days=int(section(params, "label")["horizon_days"]),
        data_end=labels_known_on(params, task.extracted_at),
        population=label_population(params),
    )
    with _quiet("features", logging.WARNING):
        features = build_features(
            tables,
            labelled.frame[["lead_id", "as_of"]],
            section(params, "features")["builders"],
            task.contract.behavioral(behavioral_params(params)),
            contract=task.contract,
        )
    leads = tables["leads"]
    gate = {"leads": leads[[c for c in ("lead_id", "unsubscribed") if c in leads]]}
    if "field_history" in tables:
        gate["field_history"] = tables["field_history"]
    joined, gate_source = join_labels(features, labelled.frame, gate)
    _, units = unit_entries(joined[["lead_id", "as_of"]], split_rule(params))
    path = Path(staging) / f"labelled-{part:05d}.parquet"
    joined.to_parquet(path, index=False)
    return LabelledPart(
        part=part,
        path=str(path),
        rows=len(joined),
        units=units,
        excluded=dict(labelled.excluded),
        snapshots=len(snapshots),
        gate_source=gate_source,
        fingerprint=fingerprint({k: v for k, v in tables.items() if k != "accounts"}),
        validation=validation,
        seconds=time.perf_counter() - clock,
    )


def split_partition(item: tuple[int, str], task: SplitTask) -> SplitPart:
    """One partition's staged rows split by the boundaries of the whole CRM, staged per split."""
    from pipelines.steps import kept_rows

    part, path = item
    joined = pd.read_parquet(path)
    entry, _ = unit_entries(joined[["lead_id", "as_of"]], task.rule)
    labels, counts = assign_splits(joined[["lead_id", "as_of"]], entry, task.bounds, task.rule)
    training = kept_rows(joined, labels)
    files = {}
    for name, rows in training.groupby("split", sort=False):
        files[str(name)] = str(Path(task.staging) / f"{name}-{part:05d}.parquet")
        rows.drop(columns="split").to_parquet(files[str(name)], index=False)
    Path(path).unlink()  # the split copies hold every kept row
    return SplitPart(part, files, counts, split_counts(training))


def _excluded_total(parts: list[LabelledPart]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in sorted(parts, key=lambda p: p.part):
        for reason, n in p.excluded.items():
            total[reason] = total.get(reason, 0) + int(n)
    return total


def run_training_set_partitioned(
    params: dict[str, Any],
    root: str | Path,
    out: str | Path,
    engine: EngineSettings,
    progress=None,
) -> dict[str, Any]:
    """The training set of the partitioned CRM at ``root`` (see the module doc), written to
    ``out`` with its manifest, validation report, feature catalog and quarantined rows
    (``out/rejects``). Nothing is written to ``out`` until every check has passed."""
    from pipelines.steps import (
        VALIDATION_REPORT,
        _write_json,
        feature_catalog,
        split_rule,
        training_manifest,
        validation_report,
        validation_settings,
    )

    refuse_overlap({"--crm": root}, {"--out": out})
    out = Path(out)
    check_writable(out / "manifest.json", out / "validation.parquet", out / "test.parquet")
    clock = time.perf_counter()
    runner = open_engine(engine)
    staging = None
    try:
        staging = staging_folder(engine.staging_dir, prefix="leadscore-training-")
        extracted_at = _extracted_at(params, root)
        task, shared_result = partition_task(params, root, None, extracted_at)
        n = task.partitions
        # Every output checked before the first is written: a file not ours stops the run now.
        check_writable(*(out / TRAIN_PARTS / f"part-{i:05d}.parquet" for i in range(n)))
        rule = split_rule(params)
        log.info("training set of %d partition(s) of %s on the %s", n, root, runner.describe())
        task_ref = runner.share(task)
        labelled: list[LabelledPart] = []
        for done, (_, result) in enumerate(
            runner.map_unordered(labelled_partition, list(range(n)), task_ref, str(staging)), 1
        ):
            labelled.append(result)
            log.info(
                "partition %d (%d/%d): %d labelled snapshot(s) with features in %.1f s",
                result.part, done, n, result.rows, result.seconds,
            )  # fmt: skip
            if progress is not None:
                progress("partitions (features)", done, n)
        merged = merge_results([shared_result] + [p.validation for p in labelled])
        contract = task.contract
        check_partitions(merged, contract=contract, **validation_settings(params, contract))
        refuse_no_snapshots(sum(p.rows for p in labelled))
        bounds = split_bounds(np.concatenate([p.units for p in labelled]), rule)
        split_task = runner.share(SplitTask(rule, bounds, str(staging)))
        items = [(p.part, p.path) for p in labelled if p.rows]
        split_parts: list[SplitPart] = []
        for done, (_, result) in enumerate(
            runner.map_unordered(split_partition, items, split_task), 1
        ):
            split_parts.append(result)
            if progress is not None:
                progress("partitions (split)", done, len(items))
        split_parts.sort(key=lambda p: p.part)
        counts = split_parts[0].split
        manifest_counts = split_parts[0].manifest
        for p in split_parts[1:]:
            counts = counts + p.split
            manifest_counts = add_split_counts(manifest_counts, p.manifest)
        split_report = check_split(counts, bounds, rule)  # a split left empty stops here
        _write_training_set(out, split_parts)
        write_rejects(merged, out / "rejects")
        fingerprints = "".join(p.fingerprint for p in sorted(labelled, key=lambda p: p.part))
        report = validation_report(
            params, merged, task.extracted_at, root, contract,
            input_fingerprint=hashlib.sha256(fingerprints.encode()).hexdigest(),
        )  # fmt: skip
        _write_json(out / VALIDATION_REPORT, report)
        features = section(params, "features")
        catalog = feature_catalog(
            features["builders"], contract.behavioral(behavioral_params(params)), contract
        )
        _write_json(out / "feature_catalog.json", {"features": catalog})
        names = _feature_names(out)
        gate_sources = {p.gate_source for p in labelled if p.rows}
        result = training_manifest(
            params,
            manifest_counts,
            _excluded_total(labelled),
            split_report,
            report,
            sorted(gate_sources)[0] if gate_sources else "none",
            names,
            out / "feature_catalog.json",
        )
        result["partitions"] = n
        _write_json(out / "manifest.json", result)
    finally:
        runner.close()
        remove_staging(staging)
    for line in merged.summary().splitlines():
        log.info("validation: %s", line)
    log.info(
        "training set of %d partition(s) written to %s in %.1f s",
        n, out, time.perf_counter() - clock,
    )  # fmt: skip
    return result


def _extracted_at(params: dict[str, Any], root: str | Path) -> pd.Timestamp:
    """When the partitioned CRM was exported (``crm.extracted_at``, else its crm_meta.json)."""
    from features.partitioned import read_meta
    from pipelines.steps import naive_utc

    configured = section(params, "crm").get("extracted_at") or read_meta(root).get("extracted_at")
    if not configured:
        raise ValueError(
            f"{root} does not say when it was exported: set crm.extracted_at in params.yaml"
        )
    return naive_utc(configured)


def _feature_names(out: Path) -> list[str]:
    """The feature columns of the training set just written (the validation file's)."""
    import pyarrow.parquet as pq

    from models.frame import NOT_FEATURES

    names = pq.read_schema(out / "validation.parquet").names
    return [c for c in names if c not in NOT_FEATURES]


def _write_training_set(out: Path, parts: list[SplitPart]) -> None:
    """The staged split files into ``out``: train as one file per partition (stale parts of an
    earlier run removed, a whole training set's train.parquet too), validation and test
    gathered into one file each, in partition order."""
    folder = out / TRAIN_PARTS
    written = set()
    for p in parts:
        staged = p.files.get("train")
        if staged is None:
            continue
        name = f"part-{p.part:05d}.parquet"
        write_file(folder / name, lambda tmp, src=staged: shutil.move(src, tmp))
        written.add(name)
    for stale in owned_files(folder) - written if folder.is_dir() else ():
        remove_file(folder / stale)
    remove_file(out / "train.parquet")
    for name in SPLITS[1:]:
        files = [p.files[name] for p in parts if name in p.files]
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        write_file(out / f"{name}.parquet", lambda tmp, f=frame: f.to_parquet(tmp, index=False))


def is_partitioned_training(folder: str | Path) -> bool:
    """Whether ``folder`` holds a partitioned training set (a ``train/`` folder of parts)."""
    folder = Path(folder)
    return not (folder / "train.parquet").exists() and (folder / TRAIN_PARTS).is_dir()


def train_part_files(folder: str | Path) -> list[Path]:
    """The files of a partitioned training set's train split, in partition order."""
    return sorted((Path(folder) / TRAIN_PARTS).glob("part-*.parquet"))


class TrainParts:
    """The train split of a partitioned training set, read one part at a time: a sample of
    whole leads for what needs rows but not all of them (the leakage scan, the search, the
    baseline, the value model), a few columns of every row, and the category counts."""

    def __init__(self, folder: str | Path) -> None:
        import pyarrow.parquet as pq

        self.files = train_part_files(folder)
        if not self.files:
            raise FileNotFoundError(f"{Path(folder) / TRAIN_PARTS} holds no train parts")
        self.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    def sample(self, max_rows: int) -> pd.DataFrame:
        """About ``max_rows`` rows of whole leads (every part's leads whose id hashes below the
        share; all rows when they are fewer), in part order."""
        from features.partitioned import partition_of

        share = min(1.0, max_rows / self.rows) if self.rows else 1.0
        buckets = 10_000
        frames = []
        for f in self.files:
            frame = pd.read_parquet(f)
            if share < 1.0:
                # A salt other than the partitioning's: within a partition, lead hashes are not
                # uniform modulo the number of partitions.
                ids = "sample:" + frame["lead_id"].astype(str)
                frame = frame[partition_of(ids, buckets) < share * buckets]
            frames.append(frame)
        sample = pd.concat(frames, ignore_index=True)
        log.info(
            "train split: %d rows in %d part(s); %d rows (%.0f%% of its leads) read for the "
            "leakage scan, the search, the baseline and the value model",
            self.rows, len(self.files), len(sample), 100 * share,
        )  # fmt: skip
        return sample

    def columns(self, names: list[str]) -> pd.DataFrame:
        """Columns ``names`` of every train row."""
        return pd.concat([pd.read_parquet(f, columns=names) for f in self.files], ignore_index=True)

    def level_counts(self, categorical: list[str]) -> dict[str, pd.Series]:
        """Rows per value of each categorical feature over every train row (what the category
        grouping is fitted on), summed part by part."""
        from models.categories import add_level_counts, level_counts
        from models.frame import feature_matrix

        total: dict[str, pd.Series] = {}
        for f in self.files:
            counts = level_counts(
                feature_matrix(pd.read_parquet(f, columns=categorical), categorical)
            )
            total = add_level_counts(total, counts)
        return total


def _grouped_part(path: str, names: list[str], grouper) -> pd.DataFrame:
    """On a worker: one train part's features as the booster reads them, with its label."""
    from models.frame import feature_matrix

    frame = pd.read_parquet(path, columns=[*names, "label"])
    return feature_matrix(frame, names, grouper).assign(label=frame["label"].to_numpy("int64"))


class PartitionedLearner:
    """Fits the booster on every train row and some more (the refits of `leadscore train`):
    LightGBM on the Dask cluster (``lightgbm.dask``, the parts read by the workers), or with
    the pandas engine the parts gathered into this process."""

    def __init__(self, parts: TrainParts, names: list[str], grouper, engine: EngineSettings):
        self.parts, self.names, self.grouper, self.engine = parts, names, grouper, engine
        self._runner = None
        self._gathered: pd.DataFrame | None = None  # the pandas engine's train rows, read once

    def fit(
        self,
        params: dict[str, Any],
        trees: int,
        monotone_increasing: list[str],
        extra_x: pd.DataFrame | None = None,
        extra_y: np.ndarray | None = None,
    ):
        """A booster of ``trees`` trees with ``params`` on the train rows and ``extra_x``."""
        extra = None
        if extra_x is not None and len(extra_x):
            extra = extra_x.assign(label=np.asarray(extra_y, dtype="int64"))
        if self.engine.name != "dask":
            if self._gathered is None:  # the refits all learn from them: read the parts once
                self._gathered = pd.concat(
                    [_grouped_part(str(f), self.names, self.grouper) for f in self.parts.files],
                    ignore_index=True,
                )
            rows = self._gathered
            if extra is not None:
                rows = pd.concat([rows, extra[[*self.names, "label"]]], ignore_index=True)
            return fixed_booster(
                rows[self.names], rows["label"].to_numpy(), params, trees, monotone_increasing
            )
        return self._dask_fit(params, trees, monotone_increasing, extra)

    def _dask_fit(self, params, trees, monotone_increasing, extra):
        import dask.dataframe as dd
        from dask import delayed
        from lightgbm.dask import DaskLGBMClassifier

        if self._runner is None:
            self._runner = open_engine(self.engine)
        client = self._runner.client
        meta = _grouped_part(str(self.parts.files[0]), self.names, self.grouper).iloc[:0]
        pieces = [
            delayed(_grouped_part)(str(f), self.names, self.grouper) for f in self.parts.files
        ]
        if extra is not None:  # validation rows: sent once, as one more part
            pieces.append(client.scatter(extra[[*self.names, "label"]]))
        rows = dd.from_delayed(pieces, meta=meta, verify_meta=False)
        settings = fixed_params(params, self.names, monotone_increasing)
        # lightgbm.dask gives each worker's LightGBM the worker's threads (beside the others on
        # one machine); a thread count of the search's would be ignored with a warning.
        settings.pop("num_threads", None)
        clock = time.perf_counter()
        model = DaskLGBMClassifier(client=client, n_estimators=trees, **settings)
        # The engine's client is not the process's default (a job may hold more than one);
        # lightgbm.dask waits on its data with the current one.
        with client.as_current(), warnings.catch_warnings():
            # lightgbm.dask passes the estimator's own n_jobs on and then warns that it drops it
            # (the workers' threads are used): nothing of ours to change.
            warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored", UserWarning)
            model.fit(rows[self.names], rows["label"])
        log.info(
            "LightGBM on the %s: %d trees on %d+%d rows in %.1f s",
            self._runner.describe(), trees, self.parts.rows, 0 if extra is None else len(extra),
            time.perf_counter() - clock,
        )  # fmt: skip
        return model.booster_

    def close(self) -> None:
        """Release the cluster (if one was started) and the gathered train rows."""
        self._gathered = None
        if self._runner is not None:
            self._runner.close()
            self._runner = None
