"""Opening a sink: one identity per destination whatever its spelling, a mistyped path is not a
new database, and a scheme no sink speaks is one line, not a traceback."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from pipelines.writeback import (
    SinkConfigurationError,
    check_database_exists,
    open_ledger,
    open_sink,
    sink_identity,
    sink_kind,
)
from pipelines.writeback.files import FileSink
from pipelines.writeback.sql import SqlSink

TOKEN = "pat-na1-0000-test-token"
HUBSPOT = {"hubspot": {"object": "contacts", "id_property": "leadscore_lead_id"}}


@pytest.fixture
def tokens(monkeypatch):
    """Credentials for the HTTP sinks (no request is sent by these tests)."""
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SALESFORCE_SESSION_ID", TOKEN)


# --- sink identity ------------------------------------------------------------------------------

#: Spellings of one destination: (destination, settings) pairs that must share one identity.
#: ``{tmp}`` is the test's tmp_path.
SAME = {
    "hubspot": [
        ("hubspot://api.hubapi.com", {}),
        ("HUBSPOT://API.hubapi.com", {}),
        ("hubspot+https://api.hubapi.com:443/", {}),
        ("Hubspot+HTTPS://Api.HubApi.com/", HUBSPOT),
        ("hubspot://api.hubapi.com.:443", {}),
    ],
    "hubspot over http": [
        ("hubspot+http://127.0.0.1:8123", {}),
        ("HUBSPOT+HTTP://127.0.0.1:8123/", {}),
    ],
    "hubspot over http, default port": [
        ("hubspot+http://localhost", {}),
        ("hubspot+http://LOCALHOST:80/", {}),
    ],
    "salesforce": [
        ("salesforce://acme.my.salesforce.com", {}),
        ("salesforce+https://ACME.my.salesforce.com:443/", {"salesforce": {"object": "Lead"}}),
        (
            "SALESFORCE://acme.my.salesforce.com",
            {"salesforce": {"object": "lead", "api_version": "60.0"}},
        ),
    ],
    "postgresql": [
        ("postgresql://scorer@db.example:5432/crm", {}),
        ("postgresql+psycopg://scorer:secret@DB.example/crm", {}),
        ("POSTGRESQL+PSYCOPG://scorer:other@db.example:5432/crm?sslmode=require", {}),
        ("postgresql://scorer@db.example/crm", {"tables": {"current": "lead_scores"}}),
    ],
    "sqlite": [
        ("sqlite:///{tmp}/crm.db", {}),
        ("SQLITE:///{tmp}/crm.db", {}),
        ("sqlite+pysqlite:///{tmp}/sub/../crm.db", {}),
        ("sqlite:///{tmp}/link/crm.db", {}),  # link -> tmp: the resolved file
        ("sqlite:///crm.db", {}),  # relative to the working directory, tmp here
    ],
    "files": [
        ("{tmp}/out", {}),
        ("{tmp}/out/", {"file_format": "parquet"}),
        ("file://{tmp}/out", {}),
        ("FILE://{tmp}/x/../out", {}),
        ("out", {}),  # relative to the working directory, tmp here
    ],
}

#: Pairs of destinations that must NOT share an identity, and why.
DIFFERENT = [
    ("host", ("hubspot://api.hubapi.com", {}), ("hubspot://api.hubapi.eu", {})),
    ("port", ("hubspot+http://127.0.0.1:8123", {}), ("hubspot+http://127.0.0.1:8124", {})),
    ("http vs https", ("hubspot+http://api.hubapi.com", {}), ("hubspot://api.hubapi.com", {})),
    (
        "http vs https, same port",
        ("hubspot+http://h.example:443", {}),
        ("hubspot+https://h.example:443", {}),
    ),
    ("path", ("hubspot://api.hubapi.com/", {}), ("hubspot://api.hubapi.com/v2", {})),
    (
        "id property",
        ("hubspot://api.hubapi.com", {}),
        ("hubspot://api.hubapi.com", {"hubspot": {"id_property": "other_id"}}),
    ),
    ("crm", ("hubspot://crm.example", {}), ("salesforce://crm.example", {})),
    (
        "salesforce object",
        ("salesforce://acme.my.salesforce.com", {"salesforce": {"object": "Lead"}}),
        ("salesforce://acme.my.salesforce.com", {"salesforce": {"object": "Contact"}}),
    ),
    (
        "database",
        ("postgresql://scorer@db.example/crm", {}),
        ("postgresql://scorer@db.example/crm2", {}),
    ),
    (
        "pg host",
        ("postgresql://scorer@db.example/crm", {}),
        ("postgresql://scorer@db2.example/crm", {}),
    ),
    (
        "pg port",
        ("postgresql://scorer@db.example/crm", {}),
        ("postgresql://scorer@db.example:5433/crm", {}),
    ),
    (
        "pg user",
        ("postgresql://scorer@db.example/crm", {}),
        ("postgresql://admin@db.example/crm", {}),
    ),
    (
        "table",
        ("postgresql://scorer@db.example/crm", {}),
        ("postgresql://scorer@db.example/crm", {"tables": {"current": "lead_scores_v2"}}),
    ),
    ("sqlite file", ("sqlite:///{tmp}/crm.db", {}), ("sqlite:///{tmp}/crn.db", {})),
    ("backend", ("sqlite:///{tmp}/crm", {}), ("postgresql://scorer@localhost/crm", {})),
    ("folder", ("{tmp}/out", {}), ("{tmp}/out2", {})),
    ("file format", ("{tmp}/out", {}), ("{tmp}/out", {"file_format": "csv"})),
    ("folder vs database", ("{tmp}/crm.db", {}), ("sqlite:///{tmp}/crm.db", {})),
]


@pytest.fixture
def at_tmp(tmp_path, monkeypatch):
    """tmp_path as the working directory, with ``link`` -> tmp_path, for relative spellings."""
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", list(SAME))
def test_every_spelling_of_one_destination_has_one_identity(name, at_tmp):
    identities = {sink_identity(url.format(tmp=at_tmp), settings) for url, settings in SAME[name]}
    assert len(identities) == 1, identities


def test_identities_state_defaults_and_hold_no_secret(at_tmp):
    assert sink_identity("hubspot://API.hubapi.com/", {}) == (
        "hubspot https://api.hubapi.com:443 contacts by leadscore_lead_id"
    )
    assert sink_identity("salesforce+http://127.0.0.1:8124", {}) == (
        "salesforce http://127.0.0.1:8124 lead by leadscore_lead_id__c"
    )
    pg = sink_identity("postgresql+psycopg://scorer:secret@DB.example/crm", {})
    assert pg == "postgresql scorer@db.example:5432/crm lead_scores"
    assert sink_identity("sqlite:///crm.db", {}) == f"sqlite {at_tmp / 'crm.db'} lead_scores"
    assert sink_identity("out", {"file_format": "csv"}) == f"files {at_tmp / 'out'} csv"
    # The identity of the URL with a secret in its query is the same, and holds none either.
    assert sink_identity("hubspot://api.hubapi.com?access_token=secret", {}) == sink_identity(
        "hubspot://api.hubapi.com", {}
    )


@pytest.mark.parametrize(("why", "one", "other"), DIFFERENT, ids=[d[0] for d in DIFFERENT])
def test_different_destinations_have_different_identities(why, one, other, at_tmp):
    (url1, settings1), (url2, settings2) = one, other
    assert sink_identity(url1.format(tmp=at_tmp), settings1) != sink_identity(
        url2.format(tmp=at_tmp), settings2
    )


def test_each_sink_identity_is_the_function_of_the_url_it_was_opened_from(at_tmp, tokens):
    settings = {
        "tables": {"current": "scores_now", "history": "scores_then"},
        "file_format": "csv",
        "hubspot": {"id_property": "lead_key"},
        "salesforce": {
            "object": "Contact",
            "external_id_field": "Lead_Key__c",
            "api_version": "60.0",
        },
    }
    urls = [
        "sqlite:///crm.db",
        "SQLITE:///link/crm.db",
        "postgresql://scorer:secret@db.example/crm",
        "out",
        "file://link/out/",
        "HUBSPOT://api.hubapi.com/",
        "hubspot+http://127.0.0.1:8123",
        "salesforce://acme.my.salesforce.com",
        "Salesforce+HTTP://127.0.0.1:8124/",
    ]
    ledger = open_ledger("hubspot://api.hubapi.com", {"ledger": f"sqlite:///{at_tmp}/ledger.db"})
    try:
        for url in urls:
            sink = open_sink(url, settings, ledger, create=True)
            try:
                assert sink.identity() == sink_identity(url, settings), url
                assert "secret" not in sink.describe() and "secret" not in sink.identity()
            finally:
                sink.close()
    finally:
        ledger.close()
    # Sinks built directly say the same as through a URL.
    assert FileSink(at_tmp / "out", fmt="csv").identity() == sink_identity(
        "file://out", {"file_format": "csv"}
    )
    direct = SqlSink(f"sqlite:///{at_tmp}/crm.db")
    try:
        assert direct.identity() == sink_identity("sqlite:///crm.db", {})
    finally:
        direct.close()


def test_describe_stays_a_masked_display():
    sink = SqlSink("postgresql+psycopg://scorer:s3cr3t@db.example:5432/crm")
    try:
        assert sink.describe() == "postgresql+psycopg://scorer:***@db.example:5432/crm"
    finally:
        sink.close()


def test_an_http_url_with_a_path_is_refused_not_silently_shortened(tokens, tmp_path):
    ledger = open_ledger("hubspot://api.hubapi.com", {"ledger": f"sqlite:///{tmp_path}/ledger.db"})
    try:
        for url in (
            "hubspot://api.hubapi.com/crm/v3",
            "salesforce://acme.my.salesforce.com/services",
        ):
            with pytest.raises(SinkConfigurationError, match="names a host, not a path"):
                open_sink(url, {}, ledger)
    finally:
        ledger.close()


# --- a mistyped destination is not a new one ----------------------------------------------------


def test_a_missing_sqlite_database_is_refused_and_nothing_is_created(tmp_path):
    (tmp_path / "crm.db").touch()
    for url, missing in [
        (f"sqlite:///{tmp_path}/crn.db", tmp_path / "crn.db"),
        (
            f"sqlite:///{tmp_path}/nonexistent/dir/crm.db",
            tmp_path / "nonexistent" / "dir" / "crm.db",
        ),
    ]:
        settings: dict = {}
        with pytest.raises(SinkConfigurationError) as caught:
            ledger = open_ledger(url, settings)  # creates nothing by itself
            try:
                open_sink(url, settings, ledger)
            finally:
                ledger.close()
        assert str(caught.value) == (
            f"scores database {missing} does not exist: check the path, "
            "or pass --create to make it on the first run"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db"]


def test_a_missing_folder_is_refused_and_nothing_is_created(tmp_path):
    for destination in (str(tmp_path / "scores"), f"file://{tmp_path}/scores"):
        with pytest.raises(
            SinkConfigurationError, match=f"^scores folder {tmp_path / 'scores'} does not exist: "
        ):
            ledger = open_ledger(destination, {})
            try:
                open_sink(destination, {}, ledger)
            finally:
                ledger.close()
    (tmp_path / "a_file").touch()
    with pytest.raises(SinkConfigurationError, match="is a file, not a folder"):
        open_sink(str(tmp_path / "a_file"), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_create_makes_the_database_and_folder_on_prepare_only(tmp_path):
    url = f"sqlite:///{tmp_path}/new/dir/crm.db"
    sink = open_sink(url, {}, create=True)
    try:
        assert not (tmp_path / "new").exists()  # opening creates nothing: bad input leaves no trace
        ledger = open_ledger(url, {})
        ledger.create()  # the job creates the ledger (the same database for SQL) before prepare()
        ledger.close()
        sink.prepare()
        assert (tmp_path / "new" / "dir" / "crm.db").is_file()
        assert {"lead_scores", "lead_score_history"} <= set(
            sa.inspect(sink.engine).get_table_names()
        )
    finally:
        sink.close()
    folder = tmp_path / "scores"
    files = open_sink(str(folder), {}, create=True)
    assert not folder.exists()
    files.prepare()
    assert folder.is_dir()
    # Once there, the same destination opens without create.
    for destination in (url, str(folder)):
        open_sink(destination, {}).close()


def test_an_existing_database_opens_without_create(tmp_path):
    url = f"sqlite:///{tmp_path}/crm.db"
    sa.create_engine(url).connect().close()  # an empty SQLite file, as a CRM export would be
    sink = open_sink(url, {})
    try:
        sink.prepare()
    finally:
        sink.close()


def test_open_ledger_creates_nothing(tmp_path):
    for destination, settings in [
        (f"sqlite:///{tmp_path}/db/crm.db", {}),
        (str(tmp_path / "scores"), {}),
        ("hubspot://api.hubapi.com", {"ledger": f"sqlite:///{tmp_path}/ledger/ledger.db"}),
    ]:
        ledger = open_ledger(destination, settings)
        try:
            assert not ledger.exists()  # looking does not create either
        finally:
            ledger.close()
    assert list(tmp_path.iterdir()) == []


def test_check_database_exists_for_sources(tmp_path):
    with pytest.raises(SinkConfigurationError) as caught:
        check_database_exists(f"sqlite:///{tmp_path}/crm.db", "CRM database")
    assert str(caught.value) == f"CRM database {tmp_path / 'crm.db'} does not exist: check the path"
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(SinkConfigurationError, match="is a folder, not a SQLite database file"):
        check_database_exists(f"sqlite:///{tmp_path}/folder.db", "CRM database")
    (tmp_path / "crm.db").touch()
    check_database_exists(f"sqlite:///{tmp_path}/crm.db")
    check_database_exists("sqlite://")  # in memory: nothing to check
    check_database_exists("postgresql+psycopg://scorer@db.invalid/crm")  # no connection offline
    check_database_exists("mysql+pymysql://scorer@db.invalid/crm")  # a source may be any database
    with pytest.raises(
        SinkConfigurationError,
        match=r"^unsupported CRM database scheme 'foo' in foo://u:\*\*\*@x/db: ",
    ):
        check_database_exists("foo://u:pw@x/db", "CRM database")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db", "folder.db"]


# --- schemes no sink speaks ---------------------------------------------------------------------

BAD_SCHEMES = [
    ("hubspt://api.hubapi.com", "'hubspt'", "did you mean hubspot?"),
    ("mysql://scorer:secret@db.example/crm", "'mysql'", None),
    ("mysql+pymysql://scorer:secret@db.example/crm", "'mysql+pymysql'", None),
    ("foo://x", "'foo'", None),
    (
        "postgresql+psycopg2://scorer@db.example/crm",
        "'postgresql+psycopg2'",
        "did you mean postgresql+psycopg?",
    ),
    ("postgres://scorer@db.example/crm", "'postgres'", "did you mean postgresql?"),
    ("salesforce+ftp://acme.my.salesforce.com", "'salesforce+ftp'", None),
    ("file+x:///tmp/scores", "'file+x'", None),
]


@pytest.mark.parametrize(
    ("url", "scheme", "suggestion"), BAD_SCHEMES, ids=[b[1] for b in BAD_SCHEMES]
)
def test_an_unknown_scheme_is_one_line_naming_it_and_the_supported_ones(
    url, scheme, suggestion, monkeypatch
):
    def no_engine(*args, **kwargs):
        raise AssertionError("an engine was created for an unsupported scheme")

    monkeypatch.setattr(sa, "create_engine", no_engine)
    for call in (
        lambda: sink_kind(url),
        lambda: open_sink(url, {}),
        lambda: open_sink(url, {}, create=True),
        lambda: open_ledger(url, {}),
        lambda: open_ledger(url, {}, "sqlite:///ledger.db"),
        lambda: sink_identity(url, {}),
    ):
        with pytest.raises(SinkConfigurationError) as caught:
            call()
        message = str(caught.value)
        assert type(caught.value) is SinkConfigurationError and caught.value.__cause__ is None
        assert "\n" not in message and f"scheme {scheme}" in message
        assert message.endswith(
            "use sqlite, postgresql[+psycopg], hubspot[+https|+http], salesforce[+https|+http], "
            "file:// or a folder path"
        )
        assert "secret" not in message
        if suggestion:
            assert suggestion in message


def test_a_ledger_url_of_an_unknown_scheme_is_one_line(monkeypatch):
    monkeypatch.setattr(sa, "create_engine", lambda *a, **k: pytest.fail("engine created"))
    with pytest.raises(
        SinkConfigurationError,
        match=r"^unsupported ledger scheme 'mysql' in mysql://u:\*\*\*@h/db: use sqlite or postgresql\[\+psycopg\]$",
    ):
        open_ledger("hubspot://api.hubapi.com", {}, "mysql://u:pw@h/db")


def test_supported_kinds():
    assert [sink_kind(u) for u in ("sqlite:///x.db", "POSTGRESQL+PSYCOPG://h/db", "data/out", "file:///tmp/o",
                                   "hubspot+http://h:1", "Salesforce://x")] == [
        "sql", "sql", "files", "files", "hubspot", "salesforce"
    ]  # fmt: skip
