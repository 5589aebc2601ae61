"""A PostgreSQL password never needs to be in a URL: libpq reads PGPASSWORD or a .pgpass file.

On the throwaway server (tests/postgres_server.py, which trusts local connections), a role that
must give a password (scram-sha-256 in pg_hba.conf) is created; the CRM is then read through a
URL without any password, the password coming from the environment or a .pgpass file.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from features.readers import read_crm
from features.validation import ContractError

ROLE = "leadscore_scorer"


@pytest.fixture(scope="module")
def password_role(postgres_url):
    """(URL of the role without password, its password): the role must authenticate."""
    password = uuid.uuid4().hex
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        hba = conn.exec_driver_sql("SHOW hba_file").scalar_one()
        if not os.access(hba, os.W_OK):
            pytest.skip(f"{hba} is not writable: cannot require a password on this server")
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {ROLE}")
        conn.exec_driver_sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f"GRANT ALL ON SCHEMA public TO {ROLE}")
        with open(hba) as f:
            original = f.read()
        # First matching line wins: this role must authenticate over TCP and on the socket.
        rules = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\nlocal all {ROLE} scram-sha-256\n"
        with open(hba, "w") as f:
            f.write(rules + original)
        conn.exec_driver_sql("SELECT pg_reload_conf()")
    url = sa.make_url(postgres_url).set(username=ROLE, password=None)
    try:
        yield url.render_as_string(hide_password=False), password
    finally:
        with open(hba, "w") as f:
            f.write(original)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_reload_conf()")
        engine.dispose()


def _write_crm(url: str, tiny_tables) -> None:
    from features.readers import write_crm

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in (*tiny_tables, "leadscore_owned_tables"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    write_crm(tiny_tables, url)


def test_a_url_without_password_is_refused_without_one(password_role, monkeypatch):
    url, _ = password_role
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    with pytest.raises(ContractError) as caught:
        read_crm(url)
    assert "\n" not in str(caught.value) and "password" in str(caught.value).lower()


def test_the_password_comes_from_pgpassword(password_role, tiny_tables, monkeypatch):
    url, password = password_role
    monkeypatch.setenv("PGPASSWORD", password)
    _write_crm(url, tiny_tables)
    assert len(read_crm(url)["leads"]) == len(tiny_tables["leads"])


def test_the_password_comes_from_a_pgpass_file(password_role, tiny_tables, tmp_path, monkeypatch):
    url, password = password_role
    monkeypatch.delenv("PGPASSWORD", raising=False)
    parts = sa.make_url(url)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{parts.host}:{parts.port}:{parts.database}:{ROLE}:{password}\n")
    pgpass.chmod(0o600)  # libpq ignores a .pgpass others can read
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    _write_crm(url, tiny_tables)
    assert set(read_crm(url)) == set(tiny_tables)
