"""Scores into files: Parquet (default) or CSV, in a folder.

- ``history/run_id=<run>/part-<key>.<fmt>``: append-only, one file per batch, named by the
  batch's first and last lead ids, written to a temporary name and renamed (a killed job leaves
  no half file, and a re-written batch replaces itself instead of duplicating);
- ``lead_scores.<fmt>``: the current score per lead, rebuilt when a run finishes from the
  previous file and the run's history (the latest ``scored_at`` wins), also by atomic rename.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features.outputs import check_writable, write_csv, write_parquet
from pipelines.writeback.base import (
    DATETIME_COLUMNS,
    SCORE_COLUMNS,
    BatchWriteError,
    ScoreSink,
    no_stages,
)
from pipelines.writeback.identity import sink_identity

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")


def _read(path: Path, fmt: str, columns: list[str] | None = None) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(path, columns=columns)
    frame = pd.read_csv(
        path, usecols=columns, dtype={"lead_id": str, "run_id": str, "model_version": str}
    )
    for column in DATETIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def _write_atomically(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Written under a temporary name and renamed, over a file of ours only (features/outputs.py)."""
    (write_parquet if fmt == "parquet" else write_csv)(path, frame)


class FileSink(ScoreSink):
    """Current scores and history as Parquet or CSV files in ``folder``."""

    def __init__(self, folder: str | Path, fmt: str = "parquet", batch_size: int = 250_000):
        if fmt not in FORMATS:
            raise ValueError(f"file format must be one of {FORMATS}, not {fmt!r}")
        self.folder = Path(folder)
        self.fmt = fmt
        self.batch_size = int(batch_size)
        # A current-scores file someone else put there is never merged into nor replaced:
        # said now, before the job does any work.
        check_writable(self.current_path)

    @property
    def current_path(self) -> Path:
        """The current-scores file."""
        return self.folder / f"lead_scores.{self.fmt}"

    def run_folder(self, run_id: str) -> Path:
        """Where a run's history files go."""
        return self.folder / "history" / f"run_id={run_id}"

    def describe(self) -> str:
        """The folder (absolute: one folder, one identity in the run records) and format."""
        return f"{self.folder.resolve()} ({self.fmt})"

    def identity(self) -> str:
        """``files <absolute resolved folder> <format>`` (see :func:`sink_identity`)."""
        return sink_identity(str(self.folder), {"file_format": self.fmt})

    def prepare(self) -> None:
        """Create the folder."""
        self.folder.mkdir(parents=True, exist_ok=True)

    def _parts(self, run_id: str) -> list[Path]:
        return sorted(self.run_folder(run_id).glob(f"part-*.{self.fmt}"))

    def previous_stages(self) -> pd.DataFrame:
        """lead_id, stage and stage_since of the current-scores file (none before a first
        run, or in a file written before follow-up existed)."""
        if not self.current_path.exists():
            return no_stages()
        columns = ["lead_id", "stage", "stage_since"]
        if self.fmt == "parquet":
            present = set(pq.read_schema(self.current_path).names)
        else:
            present = set(pd.read_csv(self.current_path, nrows=0).columns)
        if "stage_since" not in present:
            return no_stages()
        return _read(self.current_path, self.fmt, columns)  # three columns, not the reasons

    def written_lead_ids(self, run_id: str) -> set[str]:
        """Leads in the run's history files."""
        ids: set[str] = set()
        for part in self._parts(run_id):
            ids.update(_read(part, self.fmt, ["lead_id"])["lead_id"].astype(str))
        return ids

    def write_batch(self, batch: pd.DataFrame) -> None:
        """Write the batch's history file (atomically); current scores follow at :meth:`finish`."""
        rows = batch[SCORE_COLUMNS]
        run_ids = rows["run_id"].unique()
        if len(run_ids) != 1:
            raise ValueError(f"a batch belongs to one run, got {list(run_ids)[:3]}")
        key = hashlib.sha1(
            f"{rows['lead_id'].iloc[0]}|{rows['lead_id'].iloc[-1]}|{len(rows)}".encode()
        ).hexdigest()[:16]
        path = self.run_folder(str(run_ids[0])) / f"part-{key}.{self.fmt}"
        try:
            _write_atomically(rows.reset_index(drop=True), path, self.fmt)
        except OSError as error:
            raise BatchWriteError(f"{path}: {error}", rows["lead_id"]) from error

    def finish(self, run_id: str) -> None:
        """Rebuild the current-scores file: the previous one updated by this run's scores."""
        parts = [_read(p, self.fmt) for p in self._parts(run_id)]
        if not parts:
            return
        frames = parts
        if self.current_path.exists():
            frames = [_read(self.current_path, self.fmt), *parts]
        merged = pd.concat(frames, ignore_index=True)
        # The latest score per lead wins; among equal times, the later (this run's) row.
        merged = merged.iloc[::-1].sort_values("scored_at", kind="stable", ascending=False)
        current = merged.drop_duplicates("lead_id").sort_values("lead_id", ignore_index=True)
        _write_atomically(current[SCORE_COLUMNS], self.current_path, self.fmt)
        log.info("wrote %d current scores to %s", len(current), self.current_path)
