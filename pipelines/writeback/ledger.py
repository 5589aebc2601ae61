"""The ledger: where scoring runs are recorded, failed batches kept, and history appended.

It is an SQL database (SQLAlchemy URL): the CRM database itself when scores go to SQL, else a
local SQLite file. Tables (names from params.yaml ``score.tables``):

- ``scoring_runs``: one row per job (started, finished, model version, as_of, leads read,
  scored, written, failed, status), updated as the job goes;
- ``scoring_failures``: each batch that could not be written, with its lead ids;
- ``lead_score_history``: append-only, one row per (run, lead). SQL sinks write it in the same
  transaction as the current scores; HTTP sinks append here once the CRM accepted a batch.
- ``scoring_leases``: one row per sink a job is writing to right now (owner, run id, heartbeat),
  so that two jobs never write into one sink at once (see :mod:`pipelines.writeback.lease`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from features.urls import sqlite_path
from pipelines.writeback.base import HISTORY_COLUMNS

log = logging.getLogger(__name__)

DEFAULT_TABLES = {
    "current": "lead_scores",
    "history": "lead_score_history",
    "runs": "scoring_runs",
    "failures": "scoring_failures",
    "leases": "scoring_leases",
}
#: What a run record's status can be (see docs/scoring.md).
RUN_STATUSES = ("running", "succeeded", "partial", "failed", "superseded")


def history_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The append-only score history: one row per (run_id, lead_id)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("run_id", sa.String(), primary_key=True),
        sa.Column("lead_id", sa.String(), primary_key=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.Column("stage_since", sa.DateTime),
    )


def add_missing_columns(engine: sa.Engine, table: sa.Table) -> list[str]:
    """Add to ``table`` as it exists in the database the columns of its definition it lacks
    (a table an earlier version created; the new columns are nullable, its rows keep NULL).
    Returns the names added."""
    existing = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    added = [c for c in table.columns if c.name not in existing]
    if not added:
        return []
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        for column in added:
            kind = column.type.compile(dialect=engine.dialect)
            conn.execute(
                sa.text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}")
            )
    names = [c.name for c in added]
    log.info(
        "added column(s) %s to %s (rows written before them keep NULL there)",
        ", ".join(names), table.name,
    )  # fmt: skip
    return names


def lease_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The scoring leases: one row per sink being written to, held by one job (see lease.py)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("sink", sa.String(), primary_key=True),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("run_id", sa.String()),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )


def insert_ignoring_duplicates(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]
) -> None:
    """INSERT rows, skipping any whose primary key exists (SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - other databases: plain insert guarded by the primary key
        stmt = sa.insert(table)
    conn.execute(stmt, rows)


class Ledger:
    """Run records, failed batches and (for HTTP sinks) score history in one SQL database."""

    def __init__(self, url: str, tables: Mapping[str, str] | None = None):
        self.url = url
        self.engine = sa.create_engine(url)
        names = {**DEFAULT_TABLES, **(tables or {})}
        self.metadata = sa.MetaData()
        self.runs = sa.Table(
            names["runs"],
            self.metadata,
            sa.Column("run_id", sa.String(), primary_key=True),
            sa.Column("model_name", sa.String(), nullable=False),
            sa.Column("model_version", sa.String(), nullable=False),
            sa.Column("model_uri", sa.String(), nullable=False),
            sa.Column("as_of", sa.DateTime, nullable=False),
            sa.Column("sink", sa.String(), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("finished_at", sa.DateTime),
            sa.Column("leads_read", sa.Integer),
            sa.Column("leads_scored", sa.Integer),
            sa.Column("leads_written", sa.Integer),
            sa.Column("leads_failed", sa.Integer),
            sa.Column("leads_already_written", sa.Integer),
            sa.Column("message", sa.Text),
        )
        self.failures = sa.Table(
            names["failures"],
            self.metadata,
            sa.Column("run_id", sa.String(), primary_key=True),
            sa.Column("batch_no", sa.Integer, primary_key=True),
            sa.Column("n_leads", sa.Integer, nullable=False),
            sa.Column("lead_ids", sa.Text, nullable=False),
            sa.Column("error", sa.Text, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("failed_at", sa.DateTime, nullable=False),
        )
        self.history = history_table(self.metadata, names["history"])
        self.leases = lease_table(self.metadata, names["leases"])

    def create(self) -> None:
        """Create the ledger tables (and the SQLite file's folder) if they do not exist."""
        file = self._sqlite_file()
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        self.metadata.create_all(self.engine)
        add_missing_columns(self.engine, self.history)

    def _sqlite_file(self) -> Path | None:
        """The SQLite database file, if the ledger is one (None: another database or in memory)."""
        return sqlite_path(self.engine.url)

    def exists(self) -> bool:
        """True once the ledger's tables were created (by an earlier run). Creates nothing:
        connecting to a SQLite file that does not exist would create it."""
        file = self._sqlite_file()
        if file is not None and not file.exists():
            return False
        return sa.inspect(self.engine).has_table(self.runs.name)

    def start_run(self, record: Mapping[str, Any]) -> None:
        """Insert a run record (status ``running``), or mark an unfinished one as resumed."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(self.runs.c.run_id).where(self.runs.c.run_id == record["run_id"])
            ).first()
            if exists:
                conn.execute(
                    self.runs.update()
                    .where(self.runs.c.run_id == record["run_id"])
                    .values(status="running", finished_at=None)
                )
            else:
                conn.execute(self.runs.insert().values(**record))

    def update_run(self, run_id: str, **values: Any) -> None:
        """Update fields of a run record."""
        with self.engine.begin() as conn:
            conn.execute(self.runs.update().where(self.runs.c.run_id == run_id).values(**values))

    def unfinished_run(
        self, model_name: str, model_version: str, sink: str
    ) -> dict[str, Any] | None:
        """The latest run of this model version into this sink that did not finish, if any."""
        query = (
            sa.select(self.runs)
            .where(
                self.runs.c.model_name == model_name,
                self.runs.c.model_version == model_version,
                self.runs.c.sink == sink,
                self.runs.c.status.in_(["running", "partial", "failed"]),
            )
            .order_by(self.runs.c.started_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def runs_frame(self) -> pd.DataFrame:
        """Every run record, newest first."""
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(self.runs).order_by(self.runs.c.started_at.desc()), conn)

    def record_failure(
        self, run_id: str, batch_no: int, lead_ids: list[str], error: str, attempts: int
    ) -> None:
        """Keep a batch that could not be written, with its lead ids (replacing an earlier try)."""
        with self.engine.begin() as conn:
            conn.execute(
                self.failures.delete().where(
                    self.failures.c.run_id == run_id, self.failures.c.batch_no == batch_no
                )
            )
            conn.execute(
                self.failures.insert().values(
                    run_id=run_id,
                    batch_no=batch_no,
                    n_leads=len(lead_ids),
                    lead_ids=json.dumps(lead_ids),
                    error=error[:2000],
                    attempts=attempts,
                    failed_at=pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime(),
                )
            )

    def clear_failures(self, run_id: str) -> None:
        """Forget the failed batches of a run about to be resumed (they are retried)."""
        with self.engine.begin() as conn:
            conn.execute(self.failures.delete().where(self.failures.c.run_id == run_id))

    def failures_frame(self, run_id: str | None = None) -> pd.DataFrame:
        """Failed batches (of one run, or all)."""
        query = sa.select(self.failures)
        if run_id is not None:
            query = query.where(self.failures.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def append_history(self, batch: pd.DataFrame) -> None:
        """Append a batch's history rows; rows already there for the same run are skipped."""
        rows = (
            batch[HISTORY_COLUMNS]
            .assign(
                scored_at=lambda f: pd.to_datetime(f["scored_at"]).dt.to_pydatetime(),
                model_version=lambda f: f["model_version"].astype(str),
            )
            .to_dict(orient="records")
        )
        with self.engine.begin() as conn:
            insert_ignoring_duplicates(conn, self.history, rows)

    def written_lead_ids(self, run_id: str) -> set[str]:
        """Leads with a history row for ``run_id``."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(self.history.c.lead_id).where(self.history.c.run_id == run_id)
                ).scalars()
            )

    def latest_stages(self) -> pd.DataFrame:
        """Each lead's stage and stage_since in its newest history row (lead_id, stage,
        stage_since): what an HTTP sink's CRM holds now, as far as the ledger knows."""
        if not self.exists():
            return pd.DataFrame(columns=["lead_id", "stage", "stage_since"])
        h = self.history.c
        newest = (
            sa.select(h.lead_id, sa.func.max(h.scored_at).label("scored_at"))
            .group_by(h.lead_id)
            .subquery()
        )
        query = sa.select(h.lead_id, h.stage, h.stage_since).join(
            newest, (h.lead_id == newest.c.lead_id) & (h.scored_at == newest.c.scored_at)
        )
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def latest_scored_at(self, lead_ids: pd.Series) -> pd.Series:
        """The newest ``scored_at`` in the history of each of these leads (those with one)."""
        ids = list(pd.unique(lead_ids))
        if not ids or not self.exists():
            return pd.Series(dtype="datetime64[us]")
        query = (
            sa.select(
                self.history.c.lead_id, sa.func.max(self.history.c.scored_at).label("scored_at")
            )
            .where(self.history.c.lead_id.in_(ids))
            .group_by(self.history.c.lead_id)
        )
        with self.engine.connect() as conn:
            rows = pd.read_sql(query, conn)
        return pd.Series(
            pd.to_datetime(rows["scored_at"]).to_numpy(dtype="datetime64[us]"),
            index=rows["lead_id"].astype(str),
        )

    def close(self) -> None:
        """Dispose of the engine's connections."""
        self.engine.dispose()
