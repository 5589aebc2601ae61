"""A real, throwaway PostgreSQL server for the test suite.

``throwaway_postgres(tmp_dir)`` runs ``initdb`` into a fresh directory, starts the server on a
free port of 127.0.0.1 only, creates the ``leadscore_test`` database and yields its SQLAlchemy
URL; on exit it stops the server and deletes the directory, also when the body raised.

Where the binaries come from: ``/usr/lib/postgresql/<version>/bin`` (newest version first, the
Debian/Ubuntu layout), then ``PATH``. If neither has them and we run as root (CI does), they are
installed with apt; otherwise the error says what to install. ``initdb`` refuses to run as root,
so as root the server runs as the ``postgres`` OS user, in a directory owned by that user.

A developer with a server of their own can set ``LEADSCORE_TEST_POSTGRES_URL``; it is then
yielded as is and nothing is started.

Deliberately free of pytest, so it can also be used by hand::

    with throwaway_postgres(Path("/tmp")) as url:
        engine = sqlalchemy.create_engine(url)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = [
    "DATABASE",
    "ENV_VAR",
    "PostgresServerError",
    "PostgresBinaries",
    "find_postgres_binaries",
    "ensure_postgres_binaries",
    "free_port",
    "throwaway_postgres",
]

log = logging.getLogger(__name__)

ENV_VAR = "LEADSCORE_TEST_POSTGRES_URL"
DATABASE = "leadscore_test"
SUPERUSER = "postgres"
OS_USER = "postgres"
HOST = "127.0.0.1"

# Debian/Ubuntu keep one directory per major version; PATH is the fallback for other layouts.
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
APT_TIMEOUT_S = 900
# Linux's sun_path holds 108 bytes including the NUL; the socket file is "/.s.PGSQL.<port>".
MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535")

INSTALL_HINT = (
    "install the PostgreSQL server binaries (initdb, pg_ctl), e.g. "
    "`sudo apt-get install postgresql` on Debian/Ubuntu, `sudo dnf install postgresql-server` on "
    "Fedora, `brew install postgresql` on macOS; or point "
    f"{ENV_VAR} at a server of your own"
)


class PostgresServerError(RuntimeError):
    """PostgreSQL could not be found, installed, started or stopped."""


@dataclass(frozen=True)
class PostgresBinaries:
    """Paths of the two server programs the throwaway server needs."""

    initdb: Path
    pg_ctl: Path


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: "15" -> (15,), "9.6" -> (9, 6)."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (-1,)


def find_postgres_binaries() -> PostgresBinaries | None:
    """initdb and pg_ctl from the newest /usr/lib/postgresql/*/bin, else from PATH, else None."""
    for bin_dir in sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_version_key, reverse=True):
        initdb, pg_ctl = bin_dir / "initdb", bin_dir / "pg_ctl"
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return PostgresBinaries(initdb, pg_ctl)
    initdb_path, pg_ctl_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb_path and pg_ctl_path:
        return PostgresBinaries(Path(initdb_path), Path(pg_ctl_path))
    return None


def _run(
    cmd: Sequence[str | os.PathLike[str]], *, timeout: float, **kwargs
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, output captured as text (run() closes the pipes)."""
    return subprocess.run(
        [os.fspath(part) for part in cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def _tail(text: str, lines: int = 30) -> str:
    """The last lines of a program's output, for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _apt_install() -> None:
    """Install the distribution's PostgreSQL server with apt (root only)."""
    if shutil.which("apt-get") is None:
        raise PostgresServerError(
            f"PostgreSQL is not installed and apt-get is not available: {INSTALL_HINT}."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    log.info("PostgreSQL not found; installing it: %s", shlex.join(install))
    started = time.monotonic()
    result = _run(install, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        # A fresh container usually has empty package lists; only then is the update worth it.
        log.info(
            "apt-get install failed (exit %d); running apt-get update and retrying",
            result.returncode,
        )
        update = _run(["apt-get", "update"], timeout=APT_TIMEOUT_S, env=env)
        if update.returncode != 0:
            raise PostgresServerError(
                f"`apt-get update` failed (exit {update.returncode}); {INSTALL_HINT}.\n"
                f"{_tail(update.stdout + update.stderr)}"
            )
        result = _run(install, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        raise PostgresServerError(
            f"`{shlex.join(install)}` failed (exit {result.returncode}); {INSTALL_HINT}.\n"
            f"{_tail(result.stdout + result.stderr)}"
        )
    log.info("Installed PostgreSQL with apt in %.1f s", time.monotonic() - started)


def ensure_postgres_binaries() -> PostgresBinaries:
    """Find initdb and pg_ctl, installing PostgreSQL with apt when missing and running as root."""
    binaries = find_postgres_binaries()
    if binaries is None:
        if os.geteuid() != 0:
            raise PostgresServerError(
                f"PostgreSQL server binaries not found in {DEBIAN_PG_ROOT}/*/bin or on PATH, "
                f"and installing them needs root: {INSTALL_HINT}."
            )
        _apt_install()
        binaries = find_postgres_binaries()
        if binaries is None:
            raise PostgresServerError(
                f"apt installed postgresql, but initdb/pg_ctl are still not in {DEBIAN_PG_ROOT}/*/bin or on PATH."
            )
    log.info("Using PostgreSQL binaries %s, %s", binaries.initdb, binaries.pg_ctl)
    return binaries


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it when binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _Runner:
    """Runs the server programs as the right OS user: ourselves, or ``postgres`` when root."""

    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.uid: int | None = None
        self.gid: int | None = None
        if self.as_root:
            try:
                entry = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PostgresServerError(
                    f"Running as root, and initdb refuses to run as root, but there is no {OS_USER!r} "
                    f"OS user to run it as; create one (the postgresql package does) or run the tests "
                    f"as a non-root user."
                ) from None
            self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def command(self, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
        """``cmd``, wrapped to run as the postgres user when we are root."""
        cmd = [os.fspath(part) for part in cmd]
        if not self.as_root:
            return cmd
        if shutil.which("runuser"):
            return ["runuser", "-u", OS_USER, "--", *cmd]
        return ["su", OS_USER, "-s", "/bin/sh", "-c", shlex.join(cmd)]

    def run(
        self, cmd: Sequence[str | os.PathLike[str]], *, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` as the server's user, from ``cwd`` (a directory that user can enter)."""
        return _run(self.command(cmd), cwd=cwd, timeout=timeout)

    def give(self, path: Path) -> None:
        """Hand ``path`` to the server's user (a no-op unless we are root)."""
        if self.as_root:
            os.chown(path, self.uid, self.gid)

    def can_use(self, path: Path) -> bool:
        """Whether the server's user can create files in ``path``.

        Asking the OS as that user is the only exact answer: pytest's base temp dir is 0700 and
        owned by root, so a directory inside it is unreachable for ``postgres`` even when owned.
        """
        if not self.as_root:
            return True
        return (
            self.run(["test", "-w", path, "-a", "-x", path], cwd=Path("/"), timeout=30).returncode
            == 0
        )


def _make_server_dir(tmp_dir: Path, runner: _Runner) -> Path:
    """A fresh directory, owned by the server's user, for the data dir, socket and log."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    server_dir = Path(tempfile.mkdtemp(prefix="pg-", dir=tmp_dir))
    runner.give(server_dir)
    if len(str(server_dir)) > MAX_SOCKET_DIR_LEN:
        reason = "its path is too long for a unix socket"
    elif not runner.can_use(server_dir):
        reason = f"the {OS_USER!r} OS user cannot reach it (e.g. pytest's 0700 base temp dir)"
    else:
        return server_dir
    # Fall back to the system temp dir (world-traversable /tmp), still a fresh 0700 directory.
    server_dir.rmdir()
    fallback = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
    runner.give(fallback)
    log.info("Not running the server inside %s: %s; using %s instead", tmp_dir, reason, fallback)
    if not runner.can_use(fallback):
        shutil.rmtree(fallback, ignore_errors=True)
        raise PostgresServerError(
            f"The {OS_USER!r} OS user cannot write to {fallback}; set TMPDIR to a directory it can use."
        )
    return fallback


def _conf_string(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("'", "''") + "'"


def _write_settings(data_dir: Path, socket_dir: Path) -> None:
    """Append the throwaway server's settings to postgresql.conf (later lines win; port: _set_port)."""
    settings = {
        # TCP on loopback only, never on the machine's other interfaces.
        "listen_addresses": _conf_string(HOST),
        # Our own socket dir: the default /var/run/postgresql may not exist or be writable.
        "unix_socket_directories": _conf_string(str(socket_dir)),
        # Durability is pointless for a server whose data is deleted after the run, and these
        # make DDL/COPY-heavy tests much faster. Never use them for a server whose data matters.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        # Modest memory: tests use small tables, and CI machines are shared.
        "shared_buffers": "'32MB'",
        "max_connections": "50",
    }
    lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# Added by tests/postgres_server.py (throwaway test server)\n" + lines)


def _set_port(data_dir: Path, port: int) -> None:
    """Point the server at another port (for a retry after losing a race for the first)."""
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(f"port = {port}\n")


def _read_log(log_file: Path) -> str:
    """The server log's text, or a note why there is none."""
    try:
        return log_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"


def _wait_until_accepting(port: int, timeout: float) -> None:
    """Connect over TCP until the server answers a query (pg_ctl -w checks the socket only)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host=HOST, port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2
            ) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _start(
    runner: _Runner, binaries: PostgresBinaries, server_dir: Path, data_dir: Path, log_file: Path
) -> int:
    """Start the server on a free port, retrying if another process took the port first."""
    for attempt in range(1, 4):
        port = free_port()
        _set_port(data_dir, port)
        result = runner.run(
            [
                binaries.pg_ctl,
                "start",
                "-D",
                data_dir,
                "-l",
                log_file,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
            ],
            cwd=server_dir,
            timeout=START_TIMEOUT_S + 15,
        )
        server_log = _read_log(log_file)
        if result.returncode == 0:
            return port
        if "could not bind" in server_log and attempt < 3:
            log.info("Port %d was taken before the server bound it; retrying with another", port)
            continue
        raise PostgresServerError(
            f"PostgreSQL failed to start (pg_ctl exit {result.returncode}) in {data_dir}.\n"
            f"pg_ctl output:\n{_tail(result.stdout + result.stderr)}\n"
            f"Server log ({log_file}), last lines:\n{_tail(server_log)}"
        )
    raise AssertionError("unreachable")


def _stop(runner: _Runner, binaries: PostgresBinaries, server_dir: Path, data_dir: Path) -> None:
    """Stop the server: fast shutdown (disconnects clients), immediate if that fails."""
    errors = []
    for mode in ("fast", "immediate"):
        result = runner.run(
            [binaries.pg_ctl, "stop", "-D", data_dir, "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S)],
            cwd=server_dir,
            timeout=STOP_TIMEOUT_S + 15,
        )
        if result.returncode == 0:
            return
        errors.append(
            f"pg_ctl stop -m {mode} (exit {result.returncode}): {_tail(result.stdout + result.stderr)}"
        )
        log.warning("%s", errors[-1])
    raise PostgresServerError(
        "Could not stop the throwaway PostgreSQL server:\n" + "\n".join(errors)
    )


@contextlib.contextmanager
def throwaway_postgres(tmp_dir: Path) -> Iterator[str]:
    """Start a private PostgreSQL server and yield the SQLAlchemy URL of its ``leadscore_test`` db.

    The server lives in a fresh directory inside ``tmp_dir`` (or in the system temp dir when the
    ``postgres`` user cannot reach ``tmp_dir``), listens on 127.0.0.1 only, and trusts local
    connections. On exit it is stopped and the directory removed, also when the body raised.
    If ``LEADSCORE_TEST_POSTGRES_URL`` is set, that URL is yielded instead and nothing started.
    """
    own_url = os.environ.get(ENV_VAR)
    if own_url:
        log.info("%s is set; using that server instead of starting one", ENV_VAR)
        yield own_url
        return

    binaries = ensure_postgres_binaries()
    runner = _Runner()
    server_dir = _make_server_dir(Path(tmp_dir), runner)
    data_dir, log_file = server_dir / "data", server_dir / "server.log"
    try:
        started = time.monotonic()
        init = runner.run(
            [
                binaries.initdb,
                "-D",
                data_dir,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                # C locale: deterministic sorting, and works without any generated OS locales.
                "--locale=C",
                # No fsync of the fresh cluster: it is deleted after the run anyway.
                "--no-sync",
            ],
            cwd=server_dir,
            timeout=120,
        )
        if init.returncode != 0:
            raise PostgresServerError(
                f"initdb failed (exit {init.returncode}) for {data_dir}:\n{_tail(init.stdout + init.stderr)}"
            )
        # The server's own socket dir, so nothing depends on /var/run/postgresql existing.
        _write_settings(data_dir, server_dir)
        port = _start(runner, binaries, server_dir, data_dir, log_file)
        try:
            _wait_until_accepting(port, timeout=START_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise PostgresServerError(
                f"PostgreSQL started but does not accept connections on {HOST}:{port}: {exc}\n"
                f"Server log ({log_file}), last lines:\n{_tail(_read_log(log_file))}"
            ) from exc
        with psycopg.connect(
            host=HOST, port=port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        log.info(
            "Started throwaway PostgreSQL on %s:%d (data in %s) in %.2f s",
            HOST,
            port,
            data_dir,
            time.monotonic() - started,
        )
        yield f"postgresql+psycopg://{SUPERUSER}@{HOST}:{port}/{DATABASE}"
    finally:
        stopping = time.monotonic()
        try:
            # postmaster.pid exists from launch until shutdown: also stop a half-started server.
            if (data_dir / "postmaster.pid").exists():
                _stop(runner, binaries, server_dir, data_dir)
                log.info("Stopped throwaway PostgreSQL in %.2f s", time.monotonic() - stopping)
        finally:
            try:
                shutil.rmtree(server_dir)
                log.info("Removed %s", server_dir)
            except OSError as exc:
                log.warning("Could not remove %s: %s", server_dir, exc)
