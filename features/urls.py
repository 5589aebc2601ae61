"""Secrets out of every URL the project prints, logs or stores: one masking function for all.

A database URL may carry a password (``postgresql+psycopg://user:SECRET@host/db``), and an
HTTP URL a token in its query (``?access_token=...``). Whatever shows or keeps a URL (messages,
log lines, run records, reports, MLflow params) passes it through :func:`display_url`, or, for
free text and nested settings, :func:`mask_secrets` / :func:`redact_settings`.

Better still, keep secrets out of URLs: PostgreSQL reads the password from ``PGPASSWORD``, a
``~/.pgpass`` file (``PGPASSFILE``) or a service file (``PGSERVICE``, ``?service=name``), so
``postgresql+psycopg://user@host/db`` needs none (docs/scoring.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: What a hidden secret is shown as.
MASK = "***"

# scheme://user:password@host -> the password; a user without a password is kept.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*):(?P<secret>[^@ \t\r\n]*)@")
# Query parameters that carry credentials (password=, token=, access_token=, key=, secret=...).
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:[A-Za-z0-9_\-]*?)(?:password|passwd|pwd|token|secret|api[_-]?key|key|session(?:_?id)?|sig(?:nature)?)=)(?P<secret>[^&\s#]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """``text`` with every URL password and credential-like query value replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)


def display_url(url: object) -> str:
    """A source or destination as text fit to print, log or store: secrets masked.

    A database URL is parsed as SQLAlchemy parses it (a password may hold ``/`` or ``:``), so
    that what masks it is what reads it; anything else is masked by :func:`mask_secrets`.
    """
    text = str(url)
    if "://" in text and "@" in text:
        import sqlalchemy as sa

        try:
            parsed = sa.make_url(text)
        except (sa.exc.ArgumentError, ValueError):
            parsed = None
        if parsed is not None and parsed.password is not None:
            text = parsed.render_as_string(hide_password=True)
    return mask_secrets(text)


def redact_settings(value: Any) -> Any:
    """A copy of nested settings (params.yaml) with :func:`mask_secrets` applied to every string."""
    if isinstance(value, Mapping):
        return {k: redact_settings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_settings(v) for v in value)
    if isinstance(value, str):
        return mask_secrets(value)
    return value


def sqlite_path(url: object) -> Path | None:
    """The absolute file a SQLite URL (text or ``sqlalchemy.URL``) opens; None for another
    database, one in memory, an SQLite URI filename (``file:...?mode=``) or an unparseable URL.

    Relative paths are taken from the working directory, as SQLite opens them.
    """
    import sqlalchemy as sa

    try:
        parsed = url if isinstance(url, sa.URL) else sa.make_url(str(url))
        backend = parsed.get_backend_name()
    except (sa.exc.ArgumentError, ValueError):
        return None
    database = parsed.database
    if backend.lower() != "sqlite" or database in (None, "", ":memory:"):
        return None
    if parsed.query.get("uri") or database.startswith("file:"):
        return None  # not a plain path to check
    return Path(database).absolute()
