"""One bad row does not keep a whole SQL batch out: the rows the database refuses for their values
are isolated by splitting the batch, every other lead is written; a connection error is not split.

PostgreSQL is real (the ``postgres_url`` fixture); its tables get names of their own here.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.writeback.base import SCORE_COLUMNS, BatchWriteError
from pipelines.writeback.ledger import Ledger
from pipelines.writeback.sql import SqlSink

#: Table names of this module's sinks and ledger, apart from every other test's.
TABLES = {"current": "bisect_scores", "history": "bisect_history"}
LEDGER_TABLES = {
    "runs": "bisect_runs",
    "failures": "bisect_failures",
    "history": "bisect_ledger_history",
    "leases": "bisect_leases",
}
BATCH = 1_000
STAGES = ["SQL", "MQL", "nurture", "disqualified"]


def scores(n: int = BATCH, run_id: str = "run-1") -> pd.DataFrame:
    """``n`` scored leads L00000.. with every SCORE_COLUMNS field set; ``score`` nullable."""
    i = np.arange(n)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{k:05d}" for k in i],
            "score": pd.array((i * 7) % 101, dtype="Int64"),
            "probability": ((i * 7) % 101) / 100,
            "expected_amount": 9_000.0,
            "expected_value": ((i * 7) % 101) / 100 * 9_000.0,
            "stage": [STAGES[k % 4] for k in i],
            "stage_reason": [f"reason {k}" for k in i],
            "bant_score": (i % 5).astype("int64"),
            "gate_budget": "pass",
            "gate_authority": "fail",
            "gate_need": "pass",
            "gate_timeline": "unknown",
            "reasons_for": "pricing page views; senior title",
            "reasons_against": "free email domain",
            "amount_reasons": "Larger deal: Company has 2,400 employees",
            "stage_since": pd.Timestamp("2024-04-30 02:00:00"),
            "last_sales_touch_at": pd.Timestamp("2024-04-29 15:30:00"),
            "follow_up_due": pd.array([k % 2 == 0 for k in i], dtype="boolean"),
            "model_name": "lead-conversion",
            "model_version": "3",
            "scored_at": pd.Timestamp("2024-05-01 02:00:00"),
            "run_id": run_id,
        }
    )
    frame["scored_at"] = frame["scored_at"].astype("datetime64[us]")
    return frame[SCORE_COLUMNS]


def read(sink: SqlSink, table: sa.Table) -> pd.DataFrame:
    """A table's rows, by lead id."""
    with sink.engine.connect() as conn:
        return pd.read_sql(sa.select(table).order_by(table.c.lead_id), conn)


def transactions(sink: SqlSink) -> list[int]:
    """A list that grows by one at each transaction the sink begins."""
    begun: list[int] = []
    sa.event.listen(sink.engine, "begin", lambda conn: begun.append(1))
    return begun


def drop_tables(url: str, names) -> None:
    """Drop this module's tables, if an earlier test left them."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def sink(request, tmp_path):
    """An SqlSink on a fresh SQLite file, or on the real PostgreSQL with this module's tables."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        drop_tables(url, TABLES.values())
    sink = SqlSink(url, TABLES)
    sink.prepare()
    yield sink
    sink.close()


@pytest.fixture
def pg_sink(postgres_url):
    """An SqlSink on the real PostgreSQL, this module's tables."""
    drop_tables(postgres_url, TABLES.values())
    sink = SqlSink(postgres_url, TABLES)
    sink.prepare()
    yield sink
    sink.close()


def written_and_refused(
    sink: SqlSink, batch: pd.DataFrame, bad: list[int]
) -> tuple[BatchWriteError, int]:
    """Write ``batch``; check that exactly the rows at ``bad`` are refused and all others written.

    Returns the error and the number of transactions the write took.
    """
    begun = transactions(sink)
    with pytest.raises(BatchWriteError) as caught:
        sink.write_batch(batch)
    error, writes = caught.value, len(begun)
    bad_ids = batch["lead_id"].iloc[bad].tolist()
    assert error.lead_ids == bad_ids
    good = batch.drop(batch.index[bad])
    assert read(sink, sink.current)["lead_id"].tolist() == sorted(good["lead_id"])
    history = read(sink, sink.history)
    assert (
        history["lead_id"].tolist() == sorted(good["lead_id"])
        and (history["run_id"] == "run-1").all()
    )
    assert f"{len(bad)} of {len(batch)} leads refused by the database and isolated" in str(error)
    assert f"the other {len(good)} leads were written" in str(error)
    assert "\x00" not in str(error)
    return error, writes


# --- PostgreSQL ---------------------------------------------------------------------------------


def test_postgres_isolates_nul_bytes_and_null_scores_and_writes_every_other_lead(pg_sink):
    batch = scores()
    batch.loc[137, "lead_id"] = "L00\x00137"
    batch.loc[600, "reasons_for"] = "senior\x00title"
    batch.loc[999, "score"] = pd.NA  # NOT NULL

    error, writes = written_and_refused(pg_sink, batch, [137, 600, 999])

    message = str(error)
    assert 'CharacterNotInRepertoire: invalid byte sequence for encoding "UTF8": 0x00' in message
    assert "NotNullViolation" in message and "'L00\\x00137'" in message
    # About 2 x log2(1000) transactions per bad row, not one per row.
    assert writes <= 3 * 2 * np.ceil(np.log2(BATCH))
    # The good rows of the batch are written; a second try refuses the same three and adds nothing.
    with pytest.raises(BatchWriteError) as again:
        pg_sink.write_batch(batch)
    assert again.value.lead_ids == error.lead_ids
    assert len(read(pg_sink, pg_sink.history)) == BATCH - 3


def test_a_failure_with_nul_lead_ids_is_recorded_in_a_postgres_ledger(pg_sink, postgres_url):
    batch = scores(10)
    batch.loc[3, "lead_id"] = "L\x00three"
    with pytest.raises(BatchWriteError) as caught:
        pg_sink.write_batch(batch)
    drop_tables(postgres_url, LEDGER_TABLES.values())
    ledger = Ledger(postgres_url, LEDGER_TABLES)
    try:
        ledger.create()
        error = caught.value
        ledger.record_failure("run-1", 0, error.lead_ids, str(error), error.attempts)
        stored = ledger.failures_frame("run-1").iloc[0]
    finally:
        ledger.close()
    assert json.loads(stored["lead_ids"]) == ["L\x00three"]
    assert stored["error"] == str(error)[:2000] and stored["n_leads"] == 1


def test_postgres_connection_lost_fails_the_batch_whole_without_splitting(pg_sink, postgres_url):
    admin = sa.create_engine(postgres_url)

    def kill_own_backend(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO"):  # the upsert, after the COPY
            pid = conn.connection.driver_connection.info.backend_pid
            with admin.begin() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    batch = scores()
    begun = transactions(pg_sink)
    sa.event.listen(pg_sink.engine, "before_cursor_execute", kill_own_backend)
    try:
        with pytest.raises(BatchWriteError) as caught:
            pg_sink.write_batch(batch)
    finally:
        sa.event.remove(pg_sink.engine, "before_cursor_execute", kill_own_backend)
        admin.dispose()
    assert len(begun) == 1
    assert caught.value.lead_ids == batch["lead_id"].tolist()
    assert "rolled back" in str(caught.value) and "isolated" not in str(caught.value)
    assert read(pg_sink, pg_sink.current).empty
    pg_sink.write_batch(batch)  # the pool replaced the dead connection
    assert len(read(pg_sink, pg_sink.current)) == BATCH


def test_postgres_connection_lost_while_isolating_reports_every_lead_not_written(
    pg_sink, postgres_url
):
    admin = sa.create_engine(postgres_url)
    upserts = []

    def kill_at_second_upsert(conn, cursor, statement, *args):
        if statement.startswith(
            f"INSERT INTO {TABLES['current']} "
        ):  # an upsert: its part's COPY passed
            upserts.append(1)
            # The first upsert is the probe of row 0 (rolled back); the second a written part.
            if len(upserts) == 3:
                pid = conn.connection.driver_connection.info.backend_pid
                with admin.begin() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    batch = scores()
    batch.loc[10, "lead_id"] = "L\x00ten"
    sa.event.listen(pg_sink.engine, "before_cursor_execute", kill_at_second_upsert)
    try:
        with pytest.raises(BatchWriteError) as caught:
            pg_sink.write_batch(batch)
    finally:
        sa.event.remove(pg_sink.engine, "before_cursor_execute", kill_at_second_upsert)
        admin.dispose()
    written = set(read(pg_sink, pg_sink.current)["lead_id"])
    assert written and "L\x00ten" not in written
    # Every lead is either written or named by the error, never both.
    assert set(caught.value.lead_ids) == set(batch["lead_id"]) - written
    assert "leads not attempted" in str(caught.value)


# --- both databases -----------------------------------------------------------------------------


def test_a_missing_table_is_not_split(sink):
    with sink.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {sink.history.name}")
    begun = transactions(sink)
    with pytest.raises(BatchWriteError) as caught:
        sink.write_batch(scores())
    assert len(begun) == 1
    assert len(caught.value.lead_ids) == BATCH and "rolled back" in str(caught.value)


def test_a_single_bad_row_batch_names_it(sink):
    batch = scores(1)
    batch.loc[0, "score"] = pd.NA
    _, writes = written_and_refused(sink, batch, [0])
    assert writes == 1  # the one row is known bad: not written again


def test_rows_isolated_in_either_database(sink):
    batch = scores()
    batch.loc[0, "score"] = pd.NA
    # A lone surrogate (text decoded with errors="surrogateescape"): no encoding can send it.
    # Arrow-backed strings cannot hold one; an object column can.
    batch["lead_id"] = batch["lead_id"].astype(object)
    batch.loc[500, "lead_id"] = "L\udc80"
    batch.loc[501, "score"] = pd.NA
    error, _ = written_and_refused(sink, batch, [0, 500, 501])
    assert "UnicodeEncodeError" in str(error) and "\\udc80" in str(error)
    assert ("NotNullViolation" if sink.dialect == "postgresql" else "IntegrityError") in str(error)


def test_the_isolation_limit_reports_the_parts_not_isolated(sink):
    sink.max_isolation_writes = 4
    batch = scores()
    bad = list(range(50, BATCH, 100))  # ten bad rows, one per hundred
    batch.loc[bad, "score"] = pd.NA
    begun = transactions(sink)
    with pytest.raises(BatchWriteError) as caught:
        sink.write_batch(batch)
    writes = len(begun)
    written = set(read(sink, sink.current)["lead_id"])
    refused = caught.value.lead_ids
    assert set(batch["lead_id"].iloc[bad]) <= set(refused)
    assert set(refused) == set(batch["lead_id"]) - written
    assert "were not isolated" in str(caught.value)
    assert writes <= 1 + 4 + np.ceil(np.log2(BATCH))  # the limit, plus the parts pending


def test_a_batch_refused_for_the_tables_fault_fails_whole_without_bisecting(sink):
    """A NOT NULL column the job does not fill: every row is refused alike. Three rows tried
    alone say so; the batch is not split down to single rows (1000s of transactions)."""
    with sink.engine.begin() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE {sink.current.name} ADD COLUMN crm_owner TEXT NOT NULL DEFAULT 'x'"
        )
        conn.exec_driver_sql(
            f"ALTER TABLE {sink.current.name} ALTER COLUMN crm_owner DROP DEFAULT"
        ) if sink.dialect == "postgresql" else None
    if sink.dialect == "sqlite":  # SQLite cannot drop a default: a CHECK refuses every row instead
        with sink.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {sink.current.name}")
            conn.exec_driver_sql(
                f"CREATE TABLE {sink.current.name} (lead_id TEXT PRIMARY KEY, score INTEGER CHECK (score < 0), probability FLOAT, expected_amount FLOAT, expected_value FLOAT, stage TEXT, stage_reason TEXT, bant_score INTEGER, gate_budget TEXT, gate_authority TEXT, gate_need TEXT, gate_timeline TEXT, reasons_for TEXT, reasons_against TEXT, amount_reasons TEXT, stage_since TIMESTAMP, last_sales_touch_at TIMESTAMP, follow_up_due BOOLEAN, model_name TEXT, model_version TEXT, scored_at TIMESTAMP, run_id TEXT)"
            )
    begun = transactions(sink)
    with pytest.raises(BatchWriteError) as caught:
        sink.write_batch(scores())
    assert len(begun) == 1 + 3  # the batch, then three rows alone
    assert len(caught.value.lead_ids) == BATCH and "the table, not some rows, is at fault" in str(
        caught.value
    )
    assert read(sink, sink.current).empty
