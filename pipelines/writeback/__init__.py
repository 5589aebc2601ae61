"""Write-back: scores to the CRM through one small interface, the sink chosen by URL.

- an SQLAlchemy URL (``sqlite:///data/crm.db``, ``postgresql+psycopg://...``): :class:`SqlSink`;
- ``hubspot://api.hubapi.com`` (``hubspot+http://host:port`` for a local test server);
- ``salesforce://<instance>.my.salesforce.com`` (``salesforce+http://...``);
- anything else is a folder: Parquet files, or CSV with ``score.file_format: csv``.

The ledger (run records, failed batches, and history for HTTP sinks) is the database itself for
SQL sinks, else ``score.ledger`` (default: a SQLite file beside the output, or data/scoring/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.writeback.base import BatchWriteError, ScoreSink
from pipelines.writeback.ledger import Ledger

__all__ = ["BatchWriteError", "Ledger", "ScoreSink", "open_ledger", "open_sink", "sink_kind"]

HTTP_SCHEMES = {"hubspot": "hubspot", "salesforce": "salesforce"}


def sink_kind(destination: str) -> str:
    """``sql``, ``hubspot``, ``salesforce`` or ``files``, from the destination's form."""
    if "://" not in destination:
        return "files"
    scheme = destination.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in HTTP_SCHEMES:
        return HTTP_SCHEMES[scheme]
    if scheme == "file":
        return "files"
    return "sql"


def _ledger_url(destination: str, settings: dict[str, Any], ledger_url: str | None) -> str:
    if ledger_url or settings.get("ledger"):
        return ledger_url or settings["ledger"]
    kind = sink_kind(destination)
    if kind == "sql":
        return destination
    # Absolute: the same ledger whatever the working directory of the job (cron, DVC...).
    folder = Path(destination.removeprefix("file://")) if kind == "files" else Path("data/scoring")
    return f"sqlite:///{(folder / 'scoring_ledger.db').resolve()}"


def open_ledger(destination: str, settings: dict[str, Any], ledger_url: str | None = None) -> Ledger:
    """The ledger for scores written to ``destination`` (see module doc)."""
    return Ledger(_ledger_url(destination, settings, ledger_url), settings.get("tables"))


def open_sink(destination: str, settings: dict[str, Any], ledger: Ledger | None = None) -> ScoreSink:
    """The sink for ``destination`` (see module doc), configured by params.yaml ``score``."""
    kind = sink_kind(destination)
    batch = settings.get("batch_size", {}) or {}
    if kind == "sql":
        from pipelines.writeback.sql import SqlSink

        return SqlSink(destination, settings.get("tables"), batch_size=int(batch.get("sql", 100_000)))
    if kind == "files":
        from pipelines.writeback.files import FileSink

        return FileSink(
            destination.removeprefix("file://"),
            fmt=settings.get("file_format", "parquet"),
            batch_size=int(batch.get("files", 250_000)),
        )
    ledger = ledger or open_ledger(destination, settings)
    if kind == "hubspot":
        from pipelines.writeback.hubspot import HubSpotSink

        return HubSpotSink.from_url(destination, ledger, settings.get("hubspot", {}) | {"retry": settings.get("retry", {})})
    from pipelines.writeback.salesforce import SalesforceSink

    return SalesforceSink.from_url(destination, ledger, settings.get("salesforce", {}) | {"retry": settings.get("retry", {})})
