"""Scores into an SQL database (SQLAlchemy URL): SQLite as the embedded default, PostgreSQL in bulk.

Two tables (names from params.yaml ``score.tables``), created if missing:

- ``lead_scores``: the current score fields, one row per lead (primary key ``lead_id``);
- ``lead_score_history``: append-only, one row per (run_id, lead_id).

Each batch is one transaction: the rows go to a temporary staging table, then one statement
upserts the current scores (a row is only replaced by a score at least as recent, so a resumed
old run never overwrites a newer score) and one appends the history, skipping rows the same run
already wrote. On PostgreSQL the staging table is filled with ``COPY`` (psycopg 3) of the CSV
Arrow writes (:func:`csv_bytes`), the bulk path; on SQLite with one ``executemany``.

One bad row must not keep a whole batch out forever: when the database refuses a batch for its
*values* (a data exception such as a NUL byte in a text field, a constraint violation, a value
the driver cannot send), the batch is split in halves, recursively, each part its own
transaction, until only the rows at fault are left out; every other lead is written and the
:class:`BatchWriteError` names only those rows. A connection or server error is not about rows:
the batch fails whole, as before, and is not split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from features.urls import display_url as _mask
from pipelines.writeback.base import (
    DATETIME_COLUMNS,
    HISTORY_COLUMNS,
    SCORE_COLUMNS,
    BatchWriteError,
    ScoreSink,
    SinkConfigurationError,
    no_stages,
)
from pipelines.writeback.identity import lower_scheme, sink_identity
from pipelines.writeback.ledger import DEFAULT_TABLES, add_missing_columns, history_table

log = logging.getLogger(__name__)

#: Ids and names: unbounded text (the data contract sets no length; SQLite would not check one).
_STRING = sa.String()
#: Transactions at most spent isolating the bad rows of one batch. Each bad row costs about
#: 2 x log2(batch size) of them (~34 in a batch of 100,000): this finds ~30 bad rows there.
#: Past it, a part still refused is reported whole instead of being split further.
MAX_ISOLATION_WRITES = 1_000
#: Rows of a refused batch tried alone before isolating: if every one of them is refused too,
#: the fault is the table's (a NOT NULL column we do not fill, a too short VARCHAR), not some
#: rows', and the batch fails whole instead of being split down to single rows.
PROBE_ROWS = 3
#: Lead ids, and distinct errors, quoted in the message of a batch with isolated rows.
QUOTED_IDS = 5
QUOTED_REASONS = 3
#: Bytes handed to psycopg's COPY at a time.
COPY_CHUNK = 1 << 22
#: Python errors a value raises before it reaches the database (a lone surrogate cannot be
#: encoded; SQLite holds no integer beyond 64 bits): a row's fault too.
_CLIENT_VALUE_ERRORS = (UnicodeEncodeError, OverflowError)


def csv_bytes(rows: pd.DataFrame) -> bytes:
    """``rows`` as the CSV PostgreSQL's ``COPY ... (FORMAT csv)`` reads: no header, a missing
    value as an empty unquoted field (NULL), text quoted, instants to the microsecond.

    Written by Arrow's CSV writer (C++, on Arrow's threads): 13x faster than ``DataFrame.to_csv``
    on 1M scores (0.9 s against 11 s), which was most of the write. Floats are written in the
    shortest text that reads back to the same value; a value Arrow cannot encode (a lone
    surrogate) raises UnicodeEncodeError, which the sink treats as that row's fault.
    """
    table = pa.Table.from_pandas(rows, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            # PostgreSQL keeps microseconds; truncated as strftime's %f did.
            table = table.set_column(
                i, field.name, pc.cast(table.column(i), pa.timestamp("us"), safe=False)
            )
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue().to_pybytes()


def current_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The current-score table: one row per lead, the fields a CRM view shows."""
    return sa.Table(
        name,
        metadata,
        sa.Column("lead_id", _STRING, primary_key=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        # Missing for a model without a value model (models/value.py).
        sa.Column("expected_amount", sa.Float),
        sa.Column("expected_value", sa.Float),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("stage_reason", sa.Text),
        sa.Column("bant_score", sa.Integer),
        sa.Column("gate_budget", sa.String(16)),
        sa.Column("gate_authority", sa.String(16)),
        sa.Column("gate_need", sa.String(16)),
        sa.Column("gate_timeline", sa.String(16)),
        sa.Column("reasons_for", sa.Text),
        sa.Column("reasons_against", sa.Text),
        sa.Column("amount_reasons", sa.Text),
        # Follow-up (pipelines/follow_up.py): since when the lead is in its stage, its last sales
        # touch, and whether an SQL or MQL lead is past its SLA untouched (NULL: not known).
        sa.Column("stage_since", sa.DateTime),
        sa.Column("last_sales_touch_at", sa.DateTime),
        sa.Column("follow_up_due", sa.Boolean),
        sa.Column("model_name", _STRING, nullable=False),
        sa.Column("model_version", _STRING, nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.Column("run_id", _STRING, nullable=False),
    )


def display_url(url: str) -> str:
    """The URL with any password hidden (:func:`features.urls.display_url`)."""
    return _mask(url)


def _first_line(error: BaseException) -> str:
    """``Class: first line`` of a database error, the driver's own when SQLAlchemy wrapped it."""
    cause = getattr(error, "orig", None) or error
    return f"{cause.__class__.__name__}: {(str(cause).splitlines() or [''])[0]}"


def _printable(text: str) -> str:
    """``text`` fit for a log line and a ledger column: NUL bytes and lone surrogates escaped
    (PostgreSQL stores neither in text)."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class SqlSink(ScoreSink):
    """Upsert current scores and append history in an SQL database, one transaction per batch."""

    def __init__(
        self,
        url: str,
        tables: dict[str, str] | None = None,
        batch_size: int = 100_000,
        max_isolation_writes: int = MAX_ISOLATION_WRITES,
    ):
        self.url = url
        self.batch_size = int(batch_size)
        #: Transactions at most spent isolating the bad rows of one batch.
        self.max_isolation_writes = int(max_isolation_writes)
        names = {**DEFAULT_TABLES, **(tables or {})}
        backend = sa.make_url(lower_scheme(url)).get_backend_name()
        if backend not in ("postgresql", "sqlite"):
            raise SinkConfigurationError(
                f"scores can be written to PostgreSQL or SQLite, not {backend} ({display_url(url)}): "
                "the bulk upsert uses their ON CONFLICT clause"
            )
        self.engine = sa.create_engine(lower_scheme(url))
        self.metadata = sa.MetaData()
        self.current = current_table(self.metadata, names["current"])
        self.history = history_table(self.metadata, names["history"])
        self.dialect = backend

    def describe(self) -> str:
        """The database URL, password hidden."""
        return display_url(self.url)

    def identity(self) -> str:
        """``sqlite <file> <table>`` or ``postgresql <user>@<host>:<port>/<db> <table>``
        (see :func:`sink_identity`): no driver, no password."""
        return sink_identity(self.url, {"tables": {"current": self.current.name}})

    def prepare(self) -> None:
        """Create the current-score and history tables if missing; add to tables an earlier
        version created the columns added since (nullable: its rows keep NULL there)."""
        self.metadata.create_all(self.engine)
        add_missing_columns(self.engine, self.current)
        add_missing_columns(self.engine, self.history)

    def previous_stages(self) -> pd.DataFrame:
        """The current table's lead_id, stage and stage_since (empty before the first run)."""
        inspector = sa.inspect(self.engine)
        if not inspector.has_table(self.current.name):
            return no_stages()
        if "stage_since" not in {c["name"] for c in inspector.get_columns(self.current.name)}:
            return no_stages()  # written before follow-up existed
        c = self.current.c
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(c.lead_id, c.stage, c.stage_since), conn)

    def written_lead_ids(self, run_id: str) -> set[str]:
        """Leads with a history row for ``run_id``."""
        query = sa.select(self.history.c.lead_id).where(self.history.c.run_id == run_id)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def write_batch(self, batch: pd.DataFrame) -> None:
        """Stage the batch, upsert current scores, append history: one transaction.

        If the database refuses the batch for some rows' values, the rows at fault are isolated
        (module doc): the others are written, and :class:`BatchWriteError` names only those.
        """
        rows = batch[SCORE_COLUMNS]
        # Empty text is NULL in every database (COPY reads an empty CSV field as NULL).
        text = [
            c
            for c in SCORE_COLUMNS
            if rows[c].dtype == object or pd.api.types.is_string_dtype(rows[c].dtype)
        ]
        rows = rows.assign(**{c: rows[c].mask(rows[c] == "") for c in text})
        try:
            self._write_rows(rows)
        except self._errors() as error:
            if not self._row_level(error):
                raise BatchWriteError(
                    _printable(
                        f"{self.describe()}: batch of {len(rows)} leads rolled back: {_first_line(error)}"
                    ),
                    rows["lead_id"],
                ) from error
            if self._refused_alike(rows):
                raise BatchWriteError(
                    _printable(
                        f"{self.describe()}: batch of {len(rows)} leads refused, and so was each "
                        f"of the rows tried alone ({_first_line(error)}): the table, not some rows, "
                        "is at fault (check its columns and constraints); nothing of it was written"
                    ),
                    rows["lead_id"],
                ) from error
            self._isolate(rows, error)

    def _refused_alike(self, rows: pd.DataFrame) -> bool:
        """True if the first, middle and last rows (:data:`PROBE_ROWS`), written alone, are all
        refused for their values too: a systematic fault, not worth a bisection. The probes are
        rolled back: they write nothing."""
        if len(rows) <= PROBE_ROWS:
            return False  # isolating costs no more than probing
        for position in sorted({0, len(rows) // 2, len(rows) - 1})[:PROBE_ROWS]:
            try:
                self._write_rows(rows.iloc[[position]], commit=False)
                return False
            except self._errors() as error:
                if not self._row_level(error):
                    return False  # the connection went: let the isolation say so
        return True

    def _errors(self) -> tuple[type[BaseException], ...]:
        """What a failed write raises: SQLAlchemy's errors, the driver's own (COPY and
        executemany go to the raw driver, unwrapped), and a value the driver cannot send."""
        return (
            sa.exc.SQLAlchemyError,
            self.engine.dialect.loaded_dbapi.Error,
            *_CLIENT_VALUE_ERRORS,
        )

    def _row_level(self, error: BaseException) -> bool:
        """True if ``error`` is about the values of some rows, not the connection or our SQL."""
        dbapi = self.engine.dialect.loaded_dbapi
        cause = getattr(error, "orig", None) or error
        # DataError: SQLSTATE class 22 (psycopg's CharacterNotInRepertoire, UntranslatableCharacter,
        # NumericValueOutOfRange... subclass it; so does its client-side NUL check). IntegrityError:
        # class 23 (NOT NULL, unique, check).
        return isinstance(cause, (dbapi.DataError, dbapi.IntegrityError, *_CLIENT_VALUE_ERRORS))

    def _write_rows(self, rows: pd.DataFrame, commit: bool = True) -> None:
        """Write ``rows`` (prepared by :meth:`write_batch`) in one transaction; with ``commit``
        False the transaction is rolled back (a probe: would the database take them?)."""
        with self.engine.connect() as conn, conn.begin() as transaction:
            self._stage(conn, rows)
            conn.exec_driver_sql(self._upsert_sql())
            conn.exec_driver_sql(self._history_sql())
            conn.exec_driver_sql(f"DROP TABLE {self._staging}")
            if not commit:
                transaction.rollback()

    def _isolate(self, rows: pd.DataFrame, error: BaseException) -> None:
        """Write ``rows``, refused whole for ``error``, in halves (recursively, each its own
        transaction) until only the rows at fault are left; raise :class:`BatchWriteError` naming
        them, plus any part left unwritten by the isolation limit or a connection error."""
        total, first = len(rows), error
        log.warning(
            "%s",
            _printable(
                f"{self.describe()}: batch of {total} leads refused ({_first_line(error)}): isolating the rows at fault"
            ),
        )
        bad: list[int] = []  # positions of rows refused alone
        reasons: list[str] = []
        given_up: list[tuple[int, int]] = []  # parts still refused when the limit was reached
        # Depth first, left part first: positions [start, stop) of rows, each part contiguous.
        pending = [(0, total)]
        refused: tuple[int, int] | None = (0, total)  # the part known to fail, not written again
        writes = 0
        stopped_by: BaseException | None = None
        while pending:
            start, stop = pending.pop()
            if (start, stop) != refused:
                writes += 1
                try:
                    self._write_rows(rows.iloc[start:stop])
                    continue
                except self._errors() as part_error:
                    if not self._row_level(part_error):
                        # The connection (or the server) went: nothing more is tried.
                        stopped_by = part_error
                        given_up.extend([(start, stop), *pending])
                        break
                    error = part_error
            refused = None
            if stop - start == 1:
                bad.append(start)
                reasons.append(_first_line(error))
            elif writes >= self.max_isolation_writes:
                given_up.append((start, stop))
            else:
                middle = (start + stop) // 2
                pending.extend([(middle, stop), (start, middle)])
        raise self._isolated_error(rows, bad, reasons, given_up, writes, stopped_by) from (
            stopped_by or first
        )

    def _isolated_error(
        self,
        rows: pd.DataFrame,
        bad: Sequence[int],
        reasons: Sequence[str],
        given_up: Sequence[tuple[int, int]],
        writes: int,
        stopped_by: BaseException | None,
    ) -> BatchWriteError:
        """The :class:`BatchWriteError` of an isolation: the rows not written, in batch order."""
        left = sorted({*bad, *(i for start, stop in given_up for i in range(start, stop))})
        ids = rows["lead_id"].iloc[left]
        quoted = ", ".join(repr(str(i)) for i in rows["lead_id"].iloc[list(bad[:QUOTED_IDS])])
        more = ", ..." if len(bad) > QUOTED_IDS else ""
        parts = [
            f"{self.describe()}: {len(bad)} of {len(rows)} leads refused by the database and isolated"
        ]
        if bad:
            distinct = list(dict.fromkeys(reasons))
            others = (
                f" (and {len(distinct) - QUOTED_REASONS} other errors)"
                if len(distinct) > QUOTED_REASONS
                else ""
            )
            parts[0] += f" ({quoted}{more}): {' | '.join(distinct[:QUOTED_REASONS])}{others}"
        unisolated = len(left) - len(bad)
        if stopped_by is not None:
            parts.append(f"then {_first_line(stopped_by)}: {unisolated} leads not attempted")
        elif unisolated:
            parts.append(
                f"{unisolated} leads in parts still refused after {writes} writes were not isolated"
            )
        parts.append(f"the other {len(rows) - len(left)} leads were written")
        return BatchWriteError(_printable("; ".join(parts)), ids)

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
            data = memoryview(csv_bytes(rows))
            raw = conn.connection.driver_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    f"COPY {self._staging} ({columns}) FROM STDIN WITH (FORMAT csv)"
                ) as copy,
            ):
                for start in range(0, len(data), COPY_CHUNK):  # slices of the one buffer
                    copy.write(data[start : start + COPY_CHUNK])
            return
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {self._staging} AS SELECT * FROM {current} WHERE 0"
        )
        values = rows.astype(object).where(rows.notna(), None)
        for column in DATETIME_COLUMNS:  # text SQLite reads back as it writes its own
            stamps = pd.to_datetime(rows[column])
            values[column] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f").where(stamps.notna(), None)
        marks = (
            ", ".join("?" for _ in SCORE_COLUMNS)
            if self.dialect == "sqlite"
            else ", ".join(f"%({c})s" for c in SCORE_COLUMNS)
        )
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
        updates = ", ".join(
            f"{self._q(c)} = excluded.{self._q(c)}" for c in SCORE_COLUMNS if c != "lead_id"
        )
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
