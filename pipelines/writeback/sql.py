"""Scores into an SQL database (SQLAlchemy URL): SQLite as the embedded default, PostgreSQL in bulk.

Two tables (names from params.yaml ``score.tables``), created if missing:

- ``lead_scores``: the current score fields, one row per lead (primary key ``lead_id``);
- ``lead_score_history``: append-only, one row per (run_id, lead_id).

Each batch is one transaction: the rows go to a temporary staging table, then one statement
upserts the current scores (a row is only replaced by a score at least as recent, so a resumed
old run never overwrites a newer score) and one appends the history, skipping rows the same run
already wrote. On PostgreSQL the staging table is filled with ``COPY`` (psycopg 3), the bulk path;
on SQLite with one ``executemany``.
"""

from __future__ import annotations

import io
import logging

import pandas as pd
import sqlalchemy as sa

from pipelines.writeback.base import (
    HISTORY_COLUMNS,
    SCORE_COLUMNS,
    BatchWriteError,
    ScoreSink,
    SinkConfigurationError,
)
from pipelines.writeback.ledger import DEFAULT_TABLES, history_table

log = logging.getLogger(__name__)

#: Ids and names: unbounded text (the data contract sets no length; SQLite would not check one).
_STRING = sa.String()


def current_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The current-score table: one row per lead, the fields a CRM view shows."""
    return sa.Table(
        name,
        metadata,
        sa.Column("lead_id", _STRING, primary_key=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("stage_reason", sa.Text),
        sa.Column("bant_score", sa.Integer),
        sa.Column("gate_budget", sa.String(16)),
        sa.Column("gate_authority", sa.String(16)),
        sa.Column("gate_need", sa.String(16)),
        sa.Column("gate_timeline", sa.String(16)),
        sa.Column("reasons_for", sa.Text),
        sa.Column("reasons_against", sa.Text),
        sa.Column("model_name", _STRING, nullable=False),
        sa.Column("model_version", _STRING, nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.Column("run_id", _STRING, nullable=False),
    )


def display_url(url: str) -> str:
    """The URL with any password hidden."""
    return sa.make_url(url).render_as_string(hide_password=True)


class SqlSink(ScoreSink):
    """Upsert current scores and append history in an SQL database, one transaction per batch."""

    def __init__(self, url: str, tables: dict[str, str] | None = None, batch_size: int = 100_000):
        self.url = url
        self.batch_size = int(batch_size)
        names = {**DEFAULT_TABLES, **(tables or {})}
        backend = sa.make_url(url).get_backend_name()
        if backend not in ("postgresql", "sqlite"):
            raise SinkConfigurationError(
                f"scores can be written to PostgreSQL or SQLite, not {backend} ({display_url(url)}): "
                "the bulk upsert uses their ON CONFLICT clause"
            )
        self.engine = sa.create_engine(url)
        self.metadata = sa.MetaData()
        self.current = current_table(self.metadata, names["current"])
        self.history = history_table(self.metadata, names["history"])
        self.dialect = backend

    def describe(self) -> str:
        """The database URL, password hidden."""
        return display_url(self.url)

    def prepare(self) -> None:
        """Create the current-score and history tables if missing."""
        self.metadata.create_all(self.engine)

    def written_lead_ids(self, run_id: str) -> set[str]:
        """Leads with a history row for ``run_id``."""
        query = sa.select(self.history.c.lead_id).where(self.history.c.run_id == run_id)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def write_batch(self, batch: pd.DataFrame) -> None:
        """Stage the batch, upsert current scores, append history: one transaction."""
        rows = batch[SCORE_COLUMNS]
        # Empty text is NULL in every database (COPY reads an empty CSV field as NULL).
        text = [c for c in SCORE_COLUMNS if rows[c].dtype == object or pd.api.types.is_string_dtype(rows[c].dtype)]
        rows = rows.assign(**{c: rows[c].mask(rows[c] == "") for c in text})
        try:
            with self.engine.begin() as conn:
                self._stage(conn, rows)
                conn.exec_driver_sql(self._upsert_sql())
                conn.exec_driver_sql(self._history_sql())
                conn.exec_driver_sql(f"DROP TABLE {self._staging}")
        except (sa.exc.SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as error:
            # Raw-driver errors (COPY, executemany) are not wrapped by SQLAlchemy: both count.
            raise BatchWriteError(
                f"{self.describe()}: batch of {len(rows)} leads rolled back: {error.__class__.__name__}: "
                f"{str(error.orig if hasattr(error, 'orig') else error).splitlines()[0]}",
                rows["lead_id"],
            ) from error

    # -- SQL text ---------------------------------------------------------------------------
    _staging = "leadscore_staging"

    def _q(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def _stage(self, conn: sa.Connection, rows: pd.DataFrame) -> None:
        columns = ", ".join(self._q(c) for c in SCORE_COLUMNS)
        current = self._q(self.current.name)
        # SQLite does not roll back DDL (pysqlite autocommits it): a batch that failed may have
        # left the staging table behind on this pooled connection.
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._staging}")
        if self.dialect == "postgresql":
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {self._staging} (LIKE {current} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            text = rows.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f")
            raw = conn.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(f"COPY {self._staging} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                # Written in slices so that a big batch is not held twice as bytes.
                buffer = io.StringIO(text)
                while chunk := buffer.read(1 << 22):
                    copy.write(chunk)
            return
        conn.exec_driver_sql(f"CREATE TEMP TABLE {self._staging} AS SELECT * FROM {current} WHERE 0")
        values = rows.astype(object).where(rows.notna(), None)
        values["scored_at"] = pd.to_datetime(rows["scored_at"]).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        marks = ", ".join("?" for _ in SCORE_COLUMNS) if self.dialect == "sqlite" else ", ".join(f"%({c})s" for c in SCORE_COLUMNS)
        raw = conn.connection.driver_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO {self._staging} ({columns}) VALUES ({marks})",
                values.itertuples(index=False, name=None),
            )
        finally:
            cursor.close()

    def _upsert_sql(self) -> str:
        current = self._q(self.current.name)
        columns = ", ".join(self._q(c) for c in SCORE_COLUMNS)
        updates = ", ".join(f"{self._q(c)} = excluded.{self._q(c)}" for c in SCORE_COLUMNS if c != "lead_id")
        # Never replace a newer score by an older one (a resumed run of an earlier day).
        return (
            f"INSERT INTO {current} ({columns}) SELECT {columns} FROM {self._staging} WHERE true "
            f"ON CONFLICT (lead_id) DO UPDATE SET {updates} "
            f"WHERE excluded.scored_at >= {current}.scored_at"
        )

    def _history_sql(self) -> str:
        columns = ", ".join(self._q(c) for c in HISTORY_COLUMNS)
        return (
            f"INSERT INTO {self._q(self.history.name)} ({columns}) SELECT {columns} FROM {self._staging} "
            "WHERE true ON CONFLICT (run_id, lead_id) DO NOTHING"
        )

    def close(self) -> None:
        """Dispose of the engine's connections."""
        self.engine.dispose()
