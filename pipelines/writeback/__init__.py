"""Write-back: scores to the CRM through one small interface, the sink chosen by URL.

- an SQLAlchemy URL (``sqlite:///data/crm.db``, ``postgresql+psycopg://...``): :class:`SqlSink`;
- ``hubspot://api.hubapi.com`` (``hubspot+http://host:port`` for a local test server);
- ``salesforce://<instance>.my.salesforce.com`` (``salesforce+http://...``);
- anything else is a folder: Parquet files, or CSV with ``score.file_format: csv``.

The ledger (run records, failed batches, and history for HTTP sinks) is the database itself for
SQL sinks, else ``score.ledger`` (default: a SQLite file beside the output, or data/scoring/).

Opening creates nothing: a SQLite database or a folder that does not exist is refused (a
mistyped path is not a new destination) unless ``create=True`` (``--create``); the sink's
``prepare()`` then makes it. A scheme no sink speaks is refused before any engine exists.
Each sink's :meth:`~ScoreSink.identity` (from :func:`sink_identity`) says which destination it
is, whatever the URL's spelling; :meth:`~ScoreSink.describe` is for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.writeback.base import BatchWriteError, ScoreSink, SinkConfigurationError
from pipelines.writeback.identity import (
    CREATE_HINT,
    check_database_exists,
    check_folder_exists,
    folder_path,
    lower_scheme,
    sink_identity,
    sink_kind,
    sql_url,
)
from pipelines.writeback.ledger import Ledger

__all__ = [
    "BatchWriteError",
    "Ledger",
    "ScoreSink",
    "SinkConfigurationError",
    "check_database_exists",
    "open_ledger",
    "open_sink",
    "sink_identity",
    "sink_kind",
]

#: Leads per write when params.yaml ``score.batch_size`` does not say.
DEFAULT_BATCH_SIZES = {"sql": 100_000, "files": 250_000}


def _ledger_url(destination: str, settings: dict[str, Any], ledger_url: str | None) -> str:
    if ledger_url or settings.get("ledger"):
        return ledger_url or settings["ledger"]
    kind = sink_kind(destination)
    if kind == "sql":
        return destination
    # Absolute: the same ledger whatever the working directory of the job (cron, DVC...).
    folder = folder_path(destination) if kind == "files" else Path("data/scoring")
    return f"sqlite:///{(folder / 'scoring_ledger.db').resolve()}"


def open_ledger(
    destination: str, settings: dict[str, Any], ledger_url: str | None = None
) -> Ledger:
    """The ledger for scores written to ``destination`` (see module doc). Creates nothing.

    Raises :class:`SinkConfigurationError` for a destination or ledger URL of an unsupported
    scheme, before any engine is created.
    """
    sink_kind(destination)  # an explicit ledger must not hide a destination no sink speaks
    url = _ledger_url(destination, settings, ledger_url)
    sql_url(url, "ledger")
    # SQLAlchemy's engine connects lazily: constructing the Ledger touches no file.
    return Ledger(lower_scheme(url), settings.get("tables"))


def open_sink(
    destination: str, settings: dict[str, Any], ledger: Ledger | None = None, create: bool = False
) -> ScoreSink:
    """The sink for ``destination`` (see module doc), configured by params.yaml ``score``.

    ``create`` False: a SQLite database file or a folder that does not exist raises
    :class:`SinkConfigurationError` (a mistyped path); True: ``prepare()`` creates it. An
    unsupported scheme raises it too, before anything is opened.
    """
    kind = sink_kind(destination)
    batch = {**DEFAULT_BATCH_SIZES, **(settings.get("batch_size", {}) or {})}
    if kind == "sql":
        from pipelines.writeback.sql import SqlSink

        if not create:
            check_database_exists(destination, "scores database", CREATE_HINT)
        return SqlSink(destination, settings.get("tables"), batch_size=int(batch["sql"]))
    if kind == "files":
        from pipelines.writeback.files import FileSink

        if not create:
            check_folder_exists(destination, "scores folder", CREATE_HINT)
        return FileSink(
            folder_path(destination),
            fmt=settings.get("file_format", "parquet"),
            batch_size=int(batch["files"]),
        )
    ledger = ledger or open_ledger(destination, settings)
    if kind == "hubspot":
        from pipelines.writeback.hubspot import HubSpotSink

        return HubSpotSink.from_url(
            destination, ledger, settings.get("hubspot", {}) | {"retry": settings.get("retry", {})}
        )
    from pipelines.writeback.salesforce import SalesforceSink

    return SalesforceSink.from_url(
        destination, ledger, settings.get("salesforce", {}) | {"retry": settings.get("retry", {})}
    )
