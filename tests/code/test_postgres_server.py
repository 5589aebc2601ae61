"""The suite's PostgreSQL server is real, takes COPY, and is gone after the context manager exits."""

from __future__ import annotations

import datetime as dt
import os
import socket
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from postgres_server import DATABASE, ENV_VAR, throwaway_postgres

ROWS = [
    (1, "Ana Álvarez", Decimal("30000.50"), dt.datetime(2024, 3, 10, 10, 0), True),
    # COPY's text format escapes tabs, newlines and backslashes: they must survive the trip.
    (
        2,
        'tab\there, newline\nhere, "quotes", back\\slash',
        Decimal("0.01"),
        dt.datetime(2024, 1, 1),
        False,
    ),
    (3, None, None, None, None),
]


def _server_facts(url: str) -> dict[str, str]:
    """What the server says about itself, over a connection to ``url``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: str(conn.execute(sa.text(sql)).scalar_one())
                for name, sql in {
                    "version_num": "SHOW server_version_num",
                    "database": "SELECT current_database()",
                    "server_addr": "SELECT host(inet_server_addr())",
                    "listen_addresses": "SHOW listen_addresses",
                    "data_directory": "SHOW data_directory",
                    "fsync": "SHOW fsync",
                }.items()
            }
    finally:
        engine.dispose()


def test_fixture_server_is_a_real_postgres_on_loopback(postgres_url):
    facts = _server_facts(postgres_url)
    assert int(facts["version_num"]) >= 130000
    assert facts["database"] == DATABASE
    assert facts["server_addr"] == "127.0.0.1"  # we reached it over TCP, not a unix socket
    if not os.environ.get(ENV_VAR):  # a developer's own server may listen where it likes
        assert facts["listen_addresses"] == "127.0.0.1"


def test_copy_rows_in_and_read_them_back_exactly(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS copy_roundtrip"))
            conn.execute(
                sa.text(
                    "CREATE TABLE copy_roundtrip ("
                    "id integer PRIMARY KEY, name text, amount numeric(12, 2), "
                    "seen_at timestamp, won boolean)"
                )
            )
            driver_conn = conn.connection.driver_connection
            assert isinstance(driver_conn, psycopg.Connection)  # psycopg 3, whose COPY we test
            with driver_conn.cursor() as cursor:
                with cursor.copy(
                    "COPY copy_roundtrip (id, name, amount, seen_at, won) FROM STDIN"
                ) as copy:
                    for row in ROWS:
                        copy.write_row(row)
            conn.commit()
        # A separate connection: the rows were committed, not just visible to their writer.
        with engine.connect() as conn:
            got = conn.execute(
                sa.text("SELECT id, name, amount, seen_at, won FROM copy_roundtrip ORDER BY id")
            )
            assert [tuple(row) for row in got] == ROWS
            conn.execute(sa.text("DROP TABLE copy_roundtrip"))
            conn.commit()
    finally:
        engine.dispose()


def _refuses_connections(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port any more."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


class BodyFailed(Exception):
    """Raised inside the context manager to check cleanup also happens on errors."""


@pytest.mark.parametrize("body_raises", [False, True], ids=["clean-exit", "body-raises"])
def test_context_manager_stops_server_and_removes_its_directory(tmp_path, monkeypatch, body_raises):
    # This tests the throwaway server itself, so never hand it a developer's own server.
    monkeypatch.delenv(ENV_VAR, raising=False)
    facts: dict[str, str] = {}
    try:
        with throwaway_postgres(tmp_path) as url:
            port = sa.make_url(url).port
            facts = _server_facts(url)
            assert facts["listen_addresses"] == "127.0.0.1"
            assert facts["fsync"] == "off"
            assert not _refuses_connections(port)
            if body_raises:
                raise BodyFailed
    except BodyFailed:
        assert body_raises
    # The server's own word on where its files are: their parent is the throwaway directory.
    server_dir = Path(facts["data_directory"]).parent
    assert _refuses_connections(port)
    assert not server_dir.exists()
    assert list(tmp_path.iterdir()) == []
