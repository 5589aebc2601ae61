"""The scoring lease: one job at a time writes into a sink, checked with real processes.

Each test runs on a SQLite file and on a real PostgreSQL server. "Job A" is a separate Python
process (a helper script written to tmp_path) holding or trying the lease; the test itself is
"job B", or starts two more processes to race. The helper speaks one word per line on stdout
("ready", "held <owner>", "busy <message>", "lost", "released"), so the tests wait for what a
process says instead of sleeping for fixed times; every wait polls with a generous deadline.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.writeback import lease as lease_module
from pipelines.writeback.lease import Lease, LeaseHeld, LeaseLost, advisory_key
from pipelines.writeback.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
#: The longest any wait may take before the test gives up: far beyond what a busy machine needs.
WAIT_S = 120.0

HELPER = r"""
# Job A: for each round, take the lease on a sink (at once, or when the round's go-file
# appears), say what happened, and hold it until told to release (a line on stdin) or lost.
import logging
import os
import queue
import sys
import threading
import time

from pipelines.writeback.lease import Lease, LeaseHeld
from pipelines.writeback.ledger import Ledger

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
url, sink, ttl_s, heartbeat_s, go, rounds = sys.argv[1:7]


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


told = queue.Queue()  # lines from stdin; None at EOF (the test is gone: release and stop)
threading.Thread(target=lambda: [told.put(line) for line in sys.stdin] + [told.put(None)], daemon=True).start()
ledger = Ledger(url)
for n in range(int(rounds)):
    lease = Lease(ledger, sink, float(ttl_s), float(heartbeat_s))  # a new owner each round
    say("ready")
    if go != "-":  # a race: start when the test creates the file, as close together as can be
        while not os.path.exists(f"{go}-{n}"):
            time.sleep(0.001)
    try:
        lease.acquire()
    except LeaseHeld as error:
        say(f"busy {error}")
        continue
    say(f"held {lease.owner}")
    while True:
        try:
            line = told.get(timeout=0.02)
            break
        except queue.Empty:
            if lease.lost:
                say("lost")
                line = ""
                break
    lease.release()
    say("released")
    if line is None:
        break
"""


class Job:
    """A helper process; its stdout lines are read by a thread into a queue, stderr kept."""

    def __init__(
        self,
        script: Path,
        url: str,
        sink: str,
        ttl_s: float,
        heartbeat_s: float,
        go: Path | None = None,
        rounds: int = 1,
    ):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, sink, str(ttl_s), str(heartbeat_s), str(go) if go else "-", str(rounds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True
        ).start()
        self._stderr_pump = threading.Thread(
            target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True
        )
        self._stderr_pump.start()
        self.owner: str | None = None

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        put(None)  # EOF

    def expect(self, *words: str) -> str:
        """The next line starting with one of ``words`` (earlier other lines are skipped)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"job said none of {words} within {WAIT_S} s; its log:\n" + self.log())
            if line is None:
                self.proc.wait(timeout=WAIT_S)  # so that log() has all of stderr
                pytest.fail(
                    f"job exited ({self.proc.poll()}) without saying any of {words}; its log:\n"
                    + self.log()
                )
            if line.split(" ", 1)[0] in words:
                if line.startswith("held "):
                    self.owner = line.split(" ", 1)[1]
                return line

    def release(self) -> None:
        """Tell the job to release the lease (a line on its stdin)."""
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no release, no cleanup, the way a job dies when the machine is OOM."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT_S)

    def finish(self) -> int:
        """Wait for the job to exit by itself; its exit code."""
        return self.proc.wait(timeout=WAIT_S)

    def log(self) -> str:
        """What the job wrote to stderr (its logging); all of it once the job exited."""
        if self.proc.poll() is not None:
            self._stderr_pump.join(timeout=WAIT_S)
        return "\n".join(line for line in self.stderr if line is not None)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """The ledger database: a SQLite file in tmp_path, or the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sink() -> str:
    """A sink identity of this test's own (the PostgreSQL database is shared by all tests)."""
    return f"sqlite:///crm-{uuid.uuid4().hex[:8]}.db"


@pytest.fixture
def start(tmp_path):
    """Start helper jobs; any still running at the end of the test is killed (by its pid)."""
    script = tmp_path / "lease_job.py"
    script.write_text(HELPER)
    jobs: list[Job] = []

    def _start(
        url: str,
        sink: str,
        ttl_s: float,
        heartbeat_s: float,
        go: Path | None = None,
        rounds: int = 1,
    ) -> Job:
        job = Job(script, url, sink, ttl_s, heartbeat_s, go, rounds)
        jobs.append(job)
        return job

    yield _start
    for job in jobs:
        if job.proc.poll() is None:
            job.proc.kill()
        job.proc.wait(timeout=WAIT_S)
        for stream in (job.proc.stdin, job.proc.stdout, job.proc.stderr):
            stream.close()


@pytest.fixture
def ledger(url):
    """The ledger (tables created) that the test process, "job B", uses."""
    ledger = Ledger(url)
    ledger.create()
    yield ledger
    ledger.close()


def lease_row(ledger: Ledger, sink: str) -> dict | None:
    """The sink's lease row as stored, if any."""
    with ledger.engine.connect() as conn:
        row = (
            conn.execute(sa.select(ledger.leases).where(ledger.leases.c.sink == sink))
            .mappings()
            .first()
        )
    return dict(row) if row else None


def put_row(ledger: Ledger, sink: str, owner: str, heartbeat_at: dt.datetime) -> None:
    """Write a lease row by hand (a dead or foreign job's)."""
    with ledger.engine.begin() as conn:
        conn.execute(ledger.leases.delete().where(ledger.leases.c.sink == sink))
        conn.execute(
            ledger.leases.insert().values(
                sink=sink,
                owner=owner,
                run_id="r-dead",
                acquired_at=heartbeat_at,
                heartbeat_at=heartbeat_at,
            )
        )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# -- two real processes ---------------------------------------------------------------------


def test_a_held_lease_refuses_a_second_job_naming_the_owner(url, sink, ledger, start):
    a = start(url, sink, 300, 60)
    a.expect("held")
    with pytest.raises(LeaseHeld) as refused:
        Lease(ledger, sink, ttl_s=300).acquire()
    message = str(refused.value)
    assert a.owner.startswith(f"{socket.gethostname()}:{a.proc.pid}:")
    assert a.owner in message and sink in message and "\n" not in message
    assert (
        "wait for it to finish" in message and "expires 300 s after its last heartbeat" in message
    )
    assert lease_row(ledger, sink)["owner"] == a.owner  # the refused job changed nothing
    a.release()
    a.expect("released")
    assert a.finish() == 0


def test_a_killed_jobs_lease_is_taken_over_once_its_heartbeat_is_older_than_the_ttl(
    url, sink, ledger, start, caplog
):
    ttl = 1.5
    a = start(url, sink, ttl, 0.5)
    a.expect("held")
    a.kill()
    last_beat = lease_row(ledger, sink)["heartbeat_at"]  # final: A is dead
    b = Lease(ledger, sink, ttl_s=ttl)
    deadline = time.monotonic() + WAIT_S
    with caplog.at_level("WARNING", logger="pipelines.writeback.lease"):
        while True:
            try:
                b.acquire()
                break
            except LeaseHeld as refused:
                assert a.owner in str(refused)
                assert time.monotonic() < deadline, "the dead job's lease was never taken over"
                time.sleep(0.1)
    try:
        # Not before the ttl had passed since the dead job's last heartbeat (a lower bound only).
        assert utcnow() - last_beat >= dt.timedelta(seconds=ttl)
        assert lease_row(ledger, sink)["owner"] == b.owner
        assert any(r.levelname == "WARNING" and a.owner in r.getMessage() for r in caplog.records)
    finally:
        b.release()
    assert lease_row(ledger, sink) is None


def test_a_released_lease_is_free_at_once(url, sink, ledger, start):
    a = start(url, sink, 300, 60)
    a.expect("held")
    a.release()
    a.expect("released")
    assert a.finish() == 0 and lease_row(ledger, sink) is None
    with Lease(ledger, sink, ttl_s=300) as b:  # no waiting: the ttl is 5 minutes
        b.set_run("20241101T000000-abcd1234")
        row = lease_row(ledger, sink)
        assert (row["owner"], row["run_id"]) == (b.owner, "20241101T000000-abcd1234")
    assert lease_row(ledger, sink) is None


@pytest.mark.parametrize("expired_row", [False, True], ids=["free", "dead-owner"])
def test_of_two_jobs_racing_for_the_lease_exactly_one_wins(url, sink, start, tmp_path, expired_row):
    """Fresh: both insert at once (the first round also creates the tables at once). Dead
    owner: both find an expired row and try to take it over at once."""
    rounds = 8
    go = tmp_path / "go"
    jobs = [start(url, sink, 300, 60, go, rounds) for _ in range(2)]
    for n in range(rounds):
        for job in jobs:
            job.expect("ready")
        if expired_row:
            ledger = Ledger(url)
            ledger.create()
            put_row(ledger, sink, "dead-host:1:000000000000", utcnow() - dt.timedelta(hours=1))
            ledger.close()
        Path(f"{go}-{n}").touch()
        said = [job.expect("held", "busy") for job in jobs]
        kinds = sorted(line.split(" ", 1)[0] for line in said)
        assert kinds == ["busy", "held"], f"round {n}: {said}"
        winner = jobs[0] if said[0].startswith("held") else jobs[1]
        winner.release()
        winner.expect("released")
    assert [job.finish() for job in jobs] == [0, 0]
    if expired_row:  # each round's winner took the dead owner's row over, and said so
        takeovers = sum(job.log().count("taken over from dead-host:1:000000000000") for job in jobs)
        assert takeovers == rounds


def test_the_heartbeat_keeps_a_live_lease_from_expiring(url, sink, ledger, start):
    ttl = 5.0
    a = start(url, sink, ttl, 0.25)
    a.expect("held")
    acquired = lease_row(ledger, sink)["acquired_at"]
    deadline = time.monotonic() + WAIT_S
    attempts = 0
    # Until the lease lived 1.5 ttl (so without renewals it would have expired), job B keeps
    # trying and is refused every time.
    while lease_row(ledger, sink)["heartbeat_at"] < acquired + dt.timedelta(seconds=1.5 * ttl):
        with pytest.raises(LeaseHeld, match=a.owner):
            Lease(ledger, sink, ttl_s=ttl).acquire()
        attempts += 1
        assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
        time.sleep(0.25)
    with pytest.raises(LeaseHeld, match=a.owner):
        Lease(ledger, sink, ttl_s=ttl).acquire()
    assert attempts > 0 and lease_row(ledger, sink)["owner"] == a.owner
    a.release()
    a.expect("released")


def test_a_lease_taken_from_its_holder_is_reported_lost(url, sink, ledger, start):
    """As when another job took it over after this one stalled for longer than the ttl."""
    a = start(url, sink, 30, 0.2)
    a.expect("held")
    with ledger.engine.begin() as conn:
        conn.execute(
            ledger.leases.update()
            .where(ledger.leases.c.sink == sink)
            .values(owner="other-host:2:000000000000")
        )
    a.expect("lost")
    a.expect("released")
    assert a.finish() == 0
    assert "ERROR" in a.log() and "taken over by another job or deleted" in a.log()
    assert lease_row(ledger, sink)["owner"] == "other-host:2:000000000000"  # not A's to delete


def test_a_postgresql_lease_is_lost_with_the_session_holding_its_lock(postgres_url, sink, start):
    ledger = Ledger(postgres_url)
    a = start(postgres_url, sink, 30, 0.2)
    a.expect("held")
    with ledger.engine.connect() as conn:
        killed = conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": f"leadscore lease {a.owner}"[:63]},
        ).scalars().all()  # fmt: skip
    assert killed == [True]
    a.expect("lost")
    a.expect("released")
    assert "advisory lock" in a.log() and "ERROR" in a.log()
    # A's row was still A's, so A deleted it: the sink is free at once.
    with Lease(ledger, sink, ttl_s=300):
        pass
    ledger.close()


def test_postgresql_advisory_lock_alone_refuses_a_second_job(postgres_url, sink):
    """Even with no lease row (e.g. clocks so far apart that it looks expired), the lock holds."""
    ledger = Ledger(postgres_url)
    ledger.create()
    holder = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with holder.connect() as conn:
        assert conn.execute(
            sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(sink)}
        ).scalar_one()
        with pytest.raises(LeaseHeld, match="owner not recorded yet"):
            Lease(ledger, sink, ttl_s=300).acquire()
        put_row(ledger, sink, "skewed-host:3:000000000000", utcnow() - dt.timedelta(days=1))
        with pytest.raises(LeaseHeld, match="skewed-host:3"):
            Lease(ledger, sink, ttl_s=300).acquire()
    holder.dispose()
    with Lease(ledger, sink, ttl_s=300) as lease:  # the session ended: free, the row expired
        assert lease_row(ledger, sink)["owner"] == lease.owner
    ledger.close()


# -- in one process: exact boundaries and the API ---------------------------------------------


def test_a_heartbeat_exactly_ttl_old_is_not_expired_a_microsecond_more_is(
    ledger, sink, monkeypatch
):
    beat = dt.datetime(2024, 11, 1, 12, 0, 0, 123456)
    put_row(ledger, sink, "other-host:4:000000000000", beat)
    lease = Lease(ledger, sink, ttl_s=2)
    monkeypatch.setattr(lease_module, "_utcnow", lambda: beat + dt.timedelta(seconds=2))
    with pytest.raises(LeaseHeld, match="other-host:4"):
        lease.acquire()
    monkeypatch.setattr(
        lease_module, "_utcnow", lambda: beat + dt.timedelta(seconds=2, microseconds=1)
    )
    lease.acquire()
    try:
        assert lease_row(ledger, sink)["owner"] == lease.owner
    finally:
        lease.release()


def test_the_takeover_compares_both_owner_and_heartbeat(ledger, sink):
    stale = dt.datetime(2024, 11, 1, 12, 0, 0, 5)
    put_row(ledger, sink, "other-host:5:000000000000", stale)
    lease = Lease(ledger, sink, ttl_s=2)
    read = lease_row(ledger, sink)
    # What a second job read before the first took over in the same microsecond: same heartbeat,
    # another owner. Its swap must fail; so must one with the right owner and another heartbeat.
    assert not lease._take_over({**read, "owner": "third-host:6:000000000000"})
    assert not lease._take_over({**read, "heartbeat_at": stale + dt.timedelta(microseconds=1)})
    assert lease_row(ledger, sink)["owner"] == "other-host:5:000000000000"
    assert lease._take_over(read)
    assert lease_row(ledger, sink)["owner"] == lease.owner


def test_the_context_manager_releases_on_exceptions_and_release_is_idempotent(ledger, sink):
    with pytest.raises(ZeroDivisionError), Lease(ledger, sink, ttl_s=300) as lease:
        assert lease.held and not lease.lost and lease.heartbeat_s == 100
        _ = 1 / 0
    assert not lease.held and lease_row(ledger, sink) is None
    lease.release()
    lease.acquire()
    lease.release()
    assert lease_row(ledger, sink) is None
    with pytest.raises(ValueError, match="heartbeat_s < ttl_s"):
        Lease(ledger, sink, ttl_s=10, heartbeat_s=10)


def test_set_run_on_a_lease_no_longer_ours_raises_lease_lost(ledger, sink):
    with Lease(ledger, sink, ttl_s=300) as lease:
        with ledger.engine.begin() as conn:
            conn.execute(ledger.leases.delete())
        with pytest.raises(LeaseLost, match="was lost"):
            lease.set_run("r1")
        assert lease.lost


def test_ledger_create_makes_the_lease_table_under_its_configured_name(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'sub' / 'ledger.db'}", {"leases": "my_leases"})
    assert ledger.leases.name == "my_leases" and ledger.runs.name == "scoring_runs"
    with Lease(ledger, "some sink", ttl_s=60):  # acquire creates the ledger's tables
        assert sa.inspect(ledger.engine).has_table("my_leases")
    assert {"scoring_runs", "scoring_failures", "lead_score_history", "my_leases"} <= set(
        sa.inspect(ledger.engine).get_table_names()
    )
    ledger.close()
