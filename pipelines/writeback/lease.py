"""A lease on a sink: at most one scoring job writes into a sink at a time.

Two scoring jobs started together into one sink would both write every lead's history, and a
job started while another is mid-write would resume (take over) that job's run id. So a job
holds a lease on its sink while it writes: a row of the ledger's ``scoring_leases`` table
(params.yaml ``score.tables``, key ``leases``), keyed by the sink's identity
(``ScoreSink.describe()``), with the owner (``host:pid:uuid``), the run id, when it was
acquired and its last heartbeat.

- :meth:`Lease.acquire` inserts the row with ``INSERT ... ON CONFLICT DO NOTHING``, so of two
  jobs racing only one gets it. If a row is there and its heartbeat is older than ``ttl_s``, its
  owner is taken to be dead and the row is taken over by a compare-and-swap ``UPDATE`` (on the
  owner and heartbeat that were read), so of two jobs taking over only one succeeds; else
  :class:`LeaseHeld` says who holds the sink and what to do.
- While held, a daemon thread renews the heartbeat every ``heartbeat_s``, only while the row is
  still ours. If it is not (taken over after this process stalled longer than the ttl, or
  deleted by hand), or cannot be renewed for ``ttl_s``, the lease is *lost*: :attr:`Lease.lost`
  turns true and :meth:`Lease.ensure_held` raises :class:`LeaseLost`, so the job can stop.
- :meth:`Lease.release` deletes the row if it is still ours; a killed job's row expires
  ``ttl_s`` after its last heartbeat.

On PostgreSQL the lease additionally holds ``pg_try_advisory_lock`` on a 64-bit hash of the
sink's identity, on a dedicated connection kept for the lease's life: the server releases it when
the lease is released or that session ends (the process died, the connection was lost). Two
jobs can then never both hold a sink, even if their clocks disagree.

Clock assumption: times (``acquired_at``, ``heartbeat_at``, and "now" when judging whether a
heartbeat is older than the ttl) come from each job's own Python UTC clock, not the database's.
The jobs sharing a SQLite ledger run on one machine, so they share a clock. Jobs on several
machines sharing a PostgreSQL ledger rely on their clocks agreeing to well within the ttl for
the *takeover* of a dead job's row to happen on time; mutual exclusion itself does not depend on
it there (the advisory lock). Times are naive UTC, like the rest of the ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa

from pipelines.writeback.ledger import Ledger, insert_ignoring_duplicates

log = logging.getLogger(__name__)

#: Attempts of the insert / read / take-over cycle when the row changes under us.
_ATTEMPTS = 5
#: Namespace of the advisory lock keys, so that a sink's key does not collide with the keys other
#: applications lock on in the same database.
_ADVISORY_NAMESPACE = "leadscore.scoring_lease:"


class LeaseHeld(RuntimeError):
    """Another scoring job holds the lease on the sink (the message says who, and what to do)."""


class LeaseLost(RuntimeError):
    """The lease was held, and is no longer: another job may be writing into the sink now."""


def _utcnow() -> dt.datetime:
    """Now, naive UTC (a module function so that tests can pin the clock)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def advisory_key(sink: str) -> int:
    """The PostgreSQL advisory lock key of a sink: a signed 64-bit hash of its identity."""
    digest = hashlib.blake2b((_ADVISORY_NAMESPACE + sink).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _when(value: dt.datetime | None) -> str:
    return "?" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


class Lease:
    """The lease on one sink, held by this process while it writes (a context manager).

    ``ttl_s``: a lease whose heartbeat is older than this is taken to be a dead job's and may be
    taken over; ``heartbeat_s`` (default ``ttl_s / 3``): how often the holder renews it.
    """

    def __init__(self, ledger: Ledger, sink: str, ttl_s: float, heartbeat_s: float | None = None):
        ttl_s = float(ttl_s)
        heartbeat_s = ttl_s / 3 if heartbeat_s is None else float(heartbeat_s)
        if ttl_s <= 0 or not 0 < heartbeat_s < ttl_s:
            raise ValueError(
                f"a lease needs 0 < heartbeat_s < ttl_s, not heartbeat_s={heartbeat_s}, ttl_s={ttl_s}"
            )
        self.ledger = ledger
        self.sink = sink
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.run_id: str | None = None
        self.table = ledger.leases
        self._held = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # PostgreSQL only: the session holding the advisory lock, and its engine (one connection,
        # never pooled, so that closing it ends the session and so releases the lock for sure).
        self._lock_engine: sa.Engine | None = None
        self._lock_conn: sa.Connection | None = None
        # The heartbeat thread and release() both use the lock connection.
        self._lock_mutex = threading.Lock()

    # -- public API -------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """True from a successful :meth:`acquire` until :meth:`release` (even if lost since)."""
        return self._held

    @property
    def lost(self) -> bool:
        """True once the lease was found not to be ours any more: the job should stop writing."""
        return self._lost.is_set()

    def acquire(self) -> Lease:
        """Take the lease (creating the ledger tables if needed), or raise :class:`LeaseHeld`.

        Returns the lease; a no-op if it is already held.
        """
        if self._held:
            return self
        self._create_tables()
        if self._is_postgresql():
            self._lock_advisory()
        try:
            self._acquire_row()
        except LeaseHeld:
            self._unlock_advisory()
            raise
        except BaseException:
            # E.g. the database failed after our insert: do not leave a row that blocks the sink
            # for a ttl (if this fails too, the row expires after the ttl as a dead job's would).
            self._delete_row()
            self._unlock_advisory()
            raise
        self._held = True
        self._lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._heartbeat_loop, name=f"lease-heartbeat {self.sink}", daemon=True
        )
        self._thread.start()
        log.info(
            "lease on %s acquired by %s (ttl %g s, heartbeat every %g s)",
            self.sink,
            self.owner,
            self.ttl_s,
            self.heartbeat_s,
        )
        return self

    def set_run(self, run_id: str) -> None:
        """Record the run id being written on the lease row (raises :class:`LeaseLost` if it is
        not ours any more)."""
        self.ensure_held()
        with self.ledger.engine.begin() as conn:
            updated = conn.execute(
                self.table.update().where(*self._ours()).values(run_id=run_id)
            ).rowcount
        if updated != 1:
            self._mark_lost("its row was taken over or deleted")
            self.ensure_held()
        self.run_id = run_id

    def ensure_held(self) -> None:
        """Raise :class:`LeaseLost` (or RuntimeError if never acquired) unless the lease is ours."""
        if not self._held:
            raise RuntimeError(f"the lease on {self.sink} is not held")
        if self.lost:
            raise LeaseLost(
                f"the lease on {self.sink} was lost (see the log): another scoring job may be "
                "writing to it now; this job stops, and a later run resumes what it left"
            )

    def release(self) -> None:
        """Stop the heartbeat, delete the row if it is still ours, drop the advisory lock.

        Idempotent. Database errors are logged, not raised: the row then expires after the ttl.
        """
        if not self._held:
            return
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        try:
            if self._delete_row():
                log.info("lease on %s released by %s", self.sink, self.owner)
        finally:
            # Row first, then the lock: a job that gets the lock right after finds the row gone.
            self._unlock_advisory()
            self._held = False

    def _delete_row(self) -> bool:
        """Delete the lease row if it is ours; whether it was. Errors are logged, not raised."""
        try:
            with self.ledger.engine.begin() as conn:
                deleted = conn.execute(self.table.delete().where(*self._ours())).rowcount
        except sa.exc.SQLAlchemyError as error:
            log.warning(
                "lease on %s not deleted (%s); it expires %g s after its last heartbeat",
                self.sink,
                error,
                self.ttl_s,
            )
            return False
        if not deleted and self._held:
            log.warning(
                "lease on %s: the row was no longer %s's, left as it is", self.sink, self.owner
            )
        return bool(deleted)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- acquiring --------------------------------------------------------------------------

    def _is_postgresql(self) -> bool:
        return self.ledger.engine.dialect.name == "postgresql"

    def _ours(self) -> tuple[sa.ColumnElement[bool], ...]:
        return (self.table.c.sink == self.sink, self.table.c.owner == self.owner)

    def _create_tables(self) -> None:
        """``ledger.create()``, tolerating a job creating the same tables at the same moment
        (``create_all`` checks, then creates: of two racing, the second's CREATE fails)."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self.ledger.create()
                return
            except sa.exc.DBAPIError:
                if attempt == _ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)

    def _holder(self) -> dict[str, Any] | None:
        """The lease row of the sink, if any."""
        with self.ledger.engine.connect() as conn:
            row = (
                conn.execute(sa.select(self.table).where(self.table.c.sink == self.sink))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def _expired(self, row: dict[str, Any], now: dt.datetime) -> bool:
        """Whether the row's heartbeat is older than the ttl (its owner is taken to be dead)."""
        return row["heartbeat_at"] < now - dt.timedelta(seconds=self.ttl_s)

    def _acquire_row(self) -> None:
        """Insert the lease row, or take over an expired one, or raise LeaseHeld."""
        row = None
        for _ in range(_ATTEMPTS):
            now = _utcnow()
            fresh = {
                "sink": self.sink,
                "owner": self.owner,
                "run_id": None,
                "acquired_at": now,
                "heartbeat_at": now,
            }
            with self.ledger.engine.begin() as conn:
                insert_ignoring_duplicates(conn, self.table, [fresh])
            # Read back rather than trust the rowcount of an ignored insert (drivers differ).
            row = self._holder()
            if row is None:  # released between our insert and our read: try again
                continue
            if row["owner"] == self.owner:
                return
            if not self._expired(row, _utcnow()):
                break
            if self._take_over(row):
                return
            # Someone else took it over, renewed it or released it meanwhile: look again.
        raise LeaseHeld(self._held_message(row))

    def _take_over(self, row: dict[str, Any]) -> bool:
        """Compare-and-swap an expired row to us; False if it changed since it was read."""
        now = _utcnow()
        with self.ledger.engine.begin() as conn:
            swapped = conn.execute(
                self.table.update()
                .where(
                    self.table.c.sink == self.sink,
                    self.table.c.owner == row["owner"],
                    self.table.c.heartbeat_at == row["heartbeat_at"],
                )
                .values(owner=self.owner, run_id=None, acquired_at=now, heartbeat_at=now)
            ).rowcount
        if swapped != 1:
            return False
        log.warning(
            "lease on %s taken over from %s (run %s), whose last heartbeat was %s, %.1f s ago "
            "(ttl %g s): that job is taken to be dead",
            self.sink, row["owner"], row["run_id"], _when(row["heartbeat_at"]),
            (now - row["heartbeat_at"]).total_seconds(), self.ttl_s,
        )  # fmt: skip
        return True

    def _held_message(self, row: dict[str, Any] | None) -> str:
        """The one-line LeaseHeld message: who holds the sink, since when, what to do."""
        if row is None:  # PostgreSQL: the holder has the advisory lock, its row not yet written
            return (
                f"another scoring job is writing to {self.sink} (owner not recorded yet: it is "
                "starting or stopping); wait for it to finish, or if that process is dead, the lease "
                f"expires {self.ttl_s:g} s after its last heartbeat"
            )
        owner = row["owner"]
        run = f", run {row['run_id']}" if row.get("run_id") else ""
        return (
            f"another scoring job is writing to {self.sink} (owner {owner} since "
            f"{_when(row['acquired_at'])}, last heartbeat {_when(row['heartbeat_at'])}{run}); wait for "
            "it to finish, or if that process is dead, the lease expires "
            f"{self.ttl_s:g} s after its last heartbeat"
        )

    # -- PostgreSQL advisory lock -----------------------------------------------------------

    def _lock_advisory(self) -> None:
        """Take the sink's advisory lock on a dedicated session, or raise LeaseHeld."""
        engine = sa.create_engine(
            self.ledger.engine.url,
            poolclass=sa.pool.NullPool,
            connect_args={"application_name": f"leadscore lease {self.owner}"[:63]},
        )
        # Autocommit: a session-level lock needs no transaction, and a transaction left open for
        # the whole job would hold back vacuum (or be killed by idle_in_transaction timeouts).
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(self.sink)}
            ).scalar_one()
        except BaseException:
            conn.close()
            engine.dispose()
            raise
        if not got:
            conn.close()
            engine.dispose()
            raise LeaseHeld(self._held_message(self._holder()))
        self._lock_engine, self._lock_conn = engine, conn

    def _advisory_lost(self) -> str | None:
        """Why our session no longer holds the advisory lock, or None if it does (or no lock)."""
        with self._lock_mutex:
            if self._lock_conn is None:
                return None  # not PostgreSQL, or released
            try:
                held = self._lock_conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND pid = pg_backend_pid()"
                    )
                ).scalar_one()
            except sa.exc.SQLAlchemyError as error:
                # No reconnecting: the lock went with the session, another job may hold it now.
                first = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
                return f"the session holding its PostgreSQL advisory lock is gone ({first})"
            return None if held else "its PostgreSQL advisory lock is no longer held"

    def _unlock_advisory(self) -> None:
        """Release the advisory lock and close its session (closing alone would release it)."""
        with self._lock_mutex:
            conn, engine = self._lock_conn, self._lock_engine
            self._lock_conn = self._lock_engine = None
            if conn is None:
                return
            try:
                conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.sink)}
                )
            except sa.exc.SQLAlchemyError as error:  # the session is gone: so is the lock
                log.debug("advisory unlock of %s: %s", self.sink, error)
            finally:
                conn.close()
                if engine is not None:
                    engine.dispose()

    # -- heartbeat --------------------------------------------------------------------------

    def _mark_lost(self, why: str) -> None:
        if not self._lost.is_set():
            self._lost.set()
            log.error(
                "lease on %s lost by %s: %s; another scoring job may be writing to it: stop writing",
                self.sink, self.owner, why,
            )  # fmt: skip

    def _renew(self) -> bool:
        """Move our heartbeat to now; False if the row is not ours any more."""
        with self.ledger.engine.begin() as conn:
            return (
                conn.execute(
                    self.table.update().where(*self._ours()).values(heartbeat_at=_utcnow())
                ).rowcount
                == 1
            )

    def _heartbeat_loop(self) -> None:
        """Renew every heartbeat_s until released or lost (runs in the daemon thread)."""
        renewed = time.monotonic()
        while not self._stop.wait(self.heartbeat_s):
            why = self._advisory_lost()
            if why:
                self._mark_lost(why)
                return
            try:
                if not self._renew():
                    self._mark_lost("its row was taken over by another job or deleted")
                    return
                renewed = time.monotonic()
            except sa.exc.SQLAlchemyError as error:
                # E.g. SQLite busy with another writer: retried next beat. Past the ttl another job
                # may take the lease over, so from then on it cannot be counted on.
                stale = time.monotonic() - renewed
                if stale >= self.ttl_s:
                    self._mark_lost(
                        f"not renewed for {stale:.0f} s (ttl {self.ttl_s:g} s): {error}"
                    )
                    return
                log.warning(
                    "lease on %s: heartbeat failed, retried in %g s: %s",
                    self.sink,
                    self.heartbeat_s,
                    error,
                )
