"""Which destination a sink writes to, as one canonical string, and the checks made before opening it.

Run records say "the same sink" by comparing identities, so every spelling of one destination
must give one identity, and two destinations never share one:

- HTTP sinks: ``<kind> <http|https>://<host>:<port><path> <object> by <id field>``; the scheme's
  case, ``hubspot`` vs ``hubspot+https``, the host's case, a default port and a trailing slash
  make no difference; ``+http`` does;
- SQL: ``sqlite <absolute resolved file> <table>`` or ``postgresql <user>@<host>:<port>/<db>
  <table>``: the driver (``postgresql`` == ``postgresql+psycopg``) and the password never count;
- folders: ``files <absolute resolved folder> <format>``.

:func:`sink_kind` also refuses a scheme no sink speaks (``hubspt://``, ``mysql://``) with one
line naming the supported ones, before any engine or client exists; :func:`check_database_exists`
refuses a SQLite file that is not there (a mistyped path would otherwise become a new database).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from features.urls import display_url, sqlite_path
from pipelines.writeback.base import SinkConfigurationError
from pipelines.writeback.ledger import DEFAULT_TABLES

#: URL scheme -> sink kind, for the CRM APIs.
HTTP_SCHEMES = {"hubspot": "hubspot", "salesforce": "salesforce"}
#: ``<crm>[+transport]`` -> the protocol spoken; no transport is HTTPS.
HTTP_TRANSPORTS = {None: "https", "https": "https", "http": "http"}
#: SQL backends a sink or a ledger can use, with the drivers accepted for each (None: the
#: default one). PostgreSQL is spoken through psycopg 3 only: the bulk path uses its COPY.
SQL_DRIVERS = {"sqlite": {None, "pysqlite"}, "postgresql": {None, "psycopg"}}
#: Ports a URL may leave out; the identity always states them.
DEFAULT_PORTS = {"https": 443, "http": 80, "postgresql": 5432}
#: The destinations, as said in messages.
SUPPORTED = (
    "sqlite, postgresql[+psycopg], hubspot[+https|+http], salesforce[+https|+http], "
    "file:// or a folder path"
)
#: The databases, as said in messages.
_SQL_SUPPORTED = "sqlite or postgresql[+psycopg]"
#: Every scheme spelling accepted, for "did you mean" suggestions.
_KNOWN_SCHEMES = [
    f"{base}+{driver}" if driver else base
    for base, drivers in {
        **SQL_DRIVERS,
        **dict.fromkeys(HTTP_SCHEMES, set(HTTP_TRANSPORTS)),
    }.items()
    for driver in sorted(drivers, key=str)
] + ["file"]
#: How a missing database or folder is said when ``--create`` would make it.
CREATE_HINT = "pass --create to make it on the first run"


def _scheme(destination: str) -> tuple[str, str, str | None] | None:
    """``(scheme, base, driver)`` of a URL, lower case; None for a plain path."""
    if "://" not in destination:
        return None
    scheme = destination.split("://", 1)[0].lower()
    base, _, driver = scheme.partition("+")
    return scheme, base, driver or None


def _unsupported(
    scheme: str, destination: str, what: str, sql_only: bool = False
) -> SinkConfigurationError:
    """The one-line error for a scheme nothing here speaks, with the closest valid spelling."""
    supported = _SQL_SUPPORTED if sql_only else SUPPORTED
    known = (
        [s for s in _KNOWN_SCHEMES if s.split("+")[0] in SQL_DRIVERS]
        if sql_only
        else _KNOWN_SCHEMES
    )
    close = difflib.get_close_matches(scheme, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return SinkConfigurationError(
        f"unsupported {what} scheme {scheme!r} in {display_url(destination)}{hint}: use {supported}"
    )


def sink_kind(destination: str) -> str:
    """``sql``, ``hubspot``, ``salesforce`` or ``files``, from the destination's form.

    Raises :class:`SinkConfigurationError` (one line) for a scheme no sink speaks.
    """
    parts = _scheme(str(destination))
    if parts is None:
        return "files"
    scheme, base, driver = parts
    if base == "file" and driver is None:
        return "files"
    if base in HTTP_SCHEMES and driver in HTTP_TRANSPORTS:
        return HTTP_SCHEMES[base]
    if base in SQL_DRIVERS and driver in SQL_DRIVERS[base]:
        return "sql"
    raise _unsupported(scheme, str(destination), "destination")


def folder_path(destination: str) -> Path:
    """The folder of a files destination (``file://`` stripped, whatever its case), as given."""
    text = str(destination)
    return Path(text.split("://", 1)[1] if "://" in text else text)


def lower_scheme(url: str) -> str:
    """``url`` with its scheme in lower case (SQLAlchemy finds no dialect named ``SQLITE``)."""
    scheme, sep, rest = str(url).partition("://")
    return f"{scheme.lower()}{sep}{rest}" if sep else str(url)


def sql_url(url: str, what: str = "destination") -> sa.URL:
    """``url`` parsed, its scheme in lower case, checked to be SQLite or PostgreSQL (psycopg 3).

    Raises :class:`SinkConfigurationError` (one line) otherwise; creates no engine.
    """
    parts = _scheme(str(url))
    if parts is None:
        raise SinkConfigurationError(
            f"{what} {display_url(url)} is not a database URL: use {_SQL_SUPPORTED}"
        )
    scheme, base, driver = parts
    if base not in SQL_DRIVERS or driver not in SQL_DRIVERS[base]:
        raise _unsupported(scheme, str(url), what, sql_only=True)
    try:
        parsed = sa.make_url(str(url))
    except (sa.exc.ArgumentError, ValueError) as error:
        raise SinkConfigurationError(
            f"{what} {display_url(url)} is not a valid database URL: {error}"
        ) from error
    return parsed.set(drivername=scheme)


def sqlite_file(url: sa.URL) -> Path | None:
    """The resolved file of a SQLite URL (:func:`features.urls.sqlite_path`, symlinks followed:
    one file, one identity); None for another database, one in memory or a URI filename."""
    path = sqlite_path(url)
    return None if path is None else path.resolve()


def check_database_exists(url: str, what: str = "database", hint: str | None = None) -> None:
    """Refuse a SQLite ``url`` whose file does not exist (one line, naming the absolute path).

    For a CRM source as well as a scores database: ``what`` names it in the message ("scores
    database", "CRM database"); ``hint`` is added as the remedy ("pass --create ..."). Another
    database: nothing to check without connecting, but a scheme SQLAlchemy has no dialect for is
    refused in one line too. Raises :class:`SinkConfigurationError`; never creates anything.
    """
    try:
        parsed = sa.make_url(lower_scheme(url))
        # Loads the dialect's module only: no engine, no driver import, no connection.
        parsed.get_dialect()
    except sa.exc.NoSuchModuleError as error:
        scheme = str(url).split("://", 1)[0].lower()
        raise SinkConfigurationError(
            f"unsupported {what} scheme {scheme!r} in {display_url(url)}: no such database dialect"
        ) from error
    except (sa.exc.ArgumentError, ValueError) as error:
        raise SinkConfigurationError(
            f"{what} {display_url(url)} is not a valid database URL: {error}"
        ) from error
    file = sqlite_file(parsed)
    if file is None:
        return
    if file.is_dir():
        raise SinkConfigurationError(
            f"{what} {file} is a folder, not a SQLite database file: check the path"
        )
    if not file.exists():
        remedy = f", or {hint}" if hint else ""
        raise SinkConfigurationError(f"{what} {file} does not exist: check the path{remedy}")


def check_folder_exists(
    destination: str, what: str = "scores folder", hint: str | None = None
) -> None:
    """Refuse a files destination whose folder does not exist (one line, absolute path)."""
    folder = folder_path(destination).resolve()
    if folder.exists() and not folder.is_dir():
        raise SinkConfigurationError(f"{what} {folder} is a file, not a folder: check the path")
    if not folder.exists():
        remedy = f", or {hint}" if hint else ""
        raise SinkConfigurationError(f"{what} {folder} does not exist: check the path{remedy}")


def _sql_identity(destination: str, settings: Mapping[str, Any]) -> str:
    url = sql_url(destination)
    table = {**DEFAULT_TABLES, **(settings.get("tables") or {})}["current"]
    backend = url.get_backend_name()
    if backend == "sqlite":
        file = sqlite_file(url)
        return f"sqlite {file if file is not None else url.database or ':memory:'} {table}"
    # Host names are case-insensitive; a socket folder given as ?host=/run/postgresql is a path.
    host = url.host.lower() if url.host else str(url.query.get("host") or "")
    if ":" in host:  # an IPv6 address, bracketed as in a URL
        host = f"[{host}]"
    user = url.username or ""
    # libpq's default database is the user's name: leaving it out names the same database.
    database = url.database or user
    return f"{backend} {user}@{host}:{url.port or DEFAULT_PORTS[backend]}/{database} {table}"


def _http_identity(destination: str, kind: str, settings: Mapping[str, Any]) -> str:
    _, _, driver = _scheme(destination) or ("", "", None)
    transport = HTTP_TRANSPORTS[driver]
    parts = urlsplit(destination)
    try:
        port = parts.port or DEFAULT_PORTS[transport]
    except ValueError as error:
        raise SinkConfigurationError(
            f"invalid port in {display_url(destination)}: {error}"
        ) from error
    # A fully qualified name's final dot names the same host.
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise SinkConfigurationError(f"{kind} URL without a host: {display_url(destination)}")
    if ":" in host:
        host = f"[{host}]"
    where = f"{transport}://{host}:{port}{parts.path.rstrip('/')}"
    options = settings.get(kind) or {}
    if kind == "hubspot":
        from pipelines.writeback.hubspot import DEFAULT_ID_PROPERTY, DEFAULT_OBJECT

        return f"hubspot {where} {options.get('object', DEFAULT_OBJECT)} by {options.get('id_property', DEFAULT_ID_PROPERTY)}"
    from pipelines.writeback.salesforce import DEFAULT_EXTERNAL_ID, DEFAULT_OBJECT

    # Salesforce API names are case-insensitive: "Lead" and "lead" are one object.
    sobject = str(options.get("object", DEFAULT_OBJECT)).casefold()
    external_id = str(options.get("external_id_field", DEFAULT_EXTERNAL_ID)).casefold()
    return f"salesforce {where} {sobject} by {external_id}"


def sink_identity(destination: str, settings: Mapping[str, Any] | None = None) -> str:
    """The canonical identity of the destination a sink opened on ``destination`` writes to.

    ``settings``: params.yaml ``score`` (``tables``, ``file_format``, ``hubspot``, ``salesforce``).
    Equal for every spelling of one destination, different for different ones (see module doc);
    never holds a password or token. Raises :class:`SinkConfigurationError` for a bad URL.
    """
    settings = settings or {}
    destination = str(destination)
    kind = sink_kind(destination)
    if kind == "files":
        return (
            f"files {folder_path(destination).resolve()} {settings.get('file_format', 'parquet')}"
        )
    if kind == "sql":
        return _sql_identity(destination, settings)
    return _http_identity(destination, kind, settings)
