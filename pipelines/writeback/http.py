"""What the HTTP sinks (HubSpot, Salesforce) share: batch size, retries, the write loop, history.

A subclass says how its API is spoken, in four small methods: :meth:`HttpSink.payloads` (the
request bodies of a batch, at most ``batch_size`` records each), :meth:`HttpSink._request_ids`
(the lead ids of one body), :meth:`HttpSink._send` (one request, no retry) and
:meth:`HttpSink._accepted` (which lead ids of a response the CRM accepted, and a message for the
rest). The rest is here: each request is sent with :func:`call_with_retries`, the accepted leads
are appended to the ledger's score history, and the leads not written raise one
:class:`BatchWriteError` (with the HTTP status that failed them, so that 401/403 stop the run).
``from_url`` of each sink checks its URL with :meth:`HttpSink._base_url` and reads its credential
with :meth:`HttpSink._secret`.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from features.urls import display_url
from pipelines.writeback.base import BatchWriteError, ScoreSink, SinkConfigurationError
from pipelines.writeback.ledger import Ledger
from pipelines.writeback.retry import RetryError, call_with_retries

log = logging.getLogger(__name__)


class HttpSink(ScoreSink):
    """Current scores through a CRM's batch upsert API; history in the ledger."""

    #: The API's name in messages ("HubSpot").
    api_name: ClassVar[str]
    #: The API's maximum number of records per request.
    max_batch: ClassVar[int]
    #: What one record of a request is called in retry messages.
    record_noun: ClassVar[str] = "records"
    #: Why a batch must hold each lead once, for the error raised when it does not.
    duplicate_rule: ClassVar[str]

    def __init__(
        self,
        ledger: Ledger,
        *,
        batch_size: int,
        timeout: float,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_retry_after: float | None = None,
        sleep: Callable[[float], Any] | None = None,
        rand: Callable[[], float] | None = None,
    ):
        if not 1 <= int(batch_size) <= self.max_batch:
            raise ValueError(
                f"{self.api_name} batch size must be within 1..{self.max_batch}, not {batch_size}"
            )
        self.ledger = ledger
        self.batch_size = int(batch_size)
        self.timeout = timeout
        #: :func:`call_with_retries` keywords (``sleep``/``rand`` only when injected).
        self.retry: dict[str, Any] = {"max_attempts": max_attempts, "base_delay": base_delay,
                                      "max_delay": max_delay, "max_retry_after": max_retry_after}  # fmt: skip
        if sleep is not None:
            self.retry["sleep"] = sleep
        if rand is not None:
            self.retry["rand"] = rand

    @classmethod
    def _base_url(cls, url: str, scheme: str, example: str, secret: str) -> str:
        """``http(s)://host[:port]`` of a ``<scheme>[+https|+http]://host[:port]`` URL, once checked.

        ``example`` shows the URL's form; ``secret`` says where the credential goes instead of the
        URL (``"token in HUBSPOT_ACCESS_TOKEN"``).
        """
        parts = urlsplit(url)
        given = parts.scheme.lower()
        if given not in (scheme, f"{scheme}+https", f"{scheme}+http"):
            raise ValueError(f"not a {cls.api_name} URL: {url!r} ({example})")
        if parts.username or parts.password:
            raise ValueError(f"put the {cls.api_name} {secret}, not in the URL")
        if not parts.hostname:
            raise ValueError(f"{cls.api_name} URL without a host: {url!r}")
        if parts.path.strip("/"):
            # The clients speak to the host's root (simple-salesforce keeps only host:port): a
            # path would be silently dropped, and the scores go elsewhere than the URL says.
            raise SinkConfigurationError(
                f"a {cls.api_name} URL names a host, not a path: {display_url(url)} ({example})"
            )
        http = "http" if given == f"{scheme}+http" else "https"
        return f"{http}://{parts.netloc}"

    @staticmethod
    def _secret(variable: str, what: str, url: str) -> str:
        """The credential in environment variable ``variable``; a clear error if it is not set."""
        value = os.environ.get(variable)
        if not value:
            raise SinkConfigurationError(f"{variable} is not set: it must hold {what} for {url}")
        return value

    @abstractmethod
    def payloads(self, batch: pd.DataFrame) -> list[dict[str, Any]]:
        """The request bodies for a batch, at most ``batch_size`` records each."""

    @abstractmethod
    def _request_ids(self, body: dict[str, Any]) -> list[str]:
        """The lead ids of one request body, in order."""

    @abstractmethod
    def _send(self, body: dict[str, Any]) -> Any:
        """Send one request body (no retry); raise on an HTTP error, with its status."""

    @abstractmethod
    def _accepted(self, response: Any, ids: list[str]) -> tuple[set[str], str | None]:
        """The lead ids of one request the CRM confirmed, and a message if any was not."""

    def _chunks(self, records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """``records`` in runs of ``batch_size``."""
        return [records[i : i + self.batch_size] for i in range(0, len(records), self.batch_size)]

    def previous_stages(self) -> pd.DataFrame:
        """The stages the ledger's history last wrote to the CRM (the CRM is not read back)."""
        return self.ledger.latest_stages()

    def written_lead_ids(self, run_id: str) -> set[str]:
        """Leads of ``run_id`` with a history row in the ledger."""
        return self.ledger.written_lead_ids(run_id)

    def write_batch(self, batch: pd.DataFrame) -> None:
        """Upsert the batch (in requests of ``batch_size``), then append the accepted leads to history.

        Raises :class:`BatchWriteError` with the leads not written: those of a request that failed
        after its retries, and those the answer did not confirm (rejected, or not matched).
        """
        if batch["lead_id"].duplicated().any():
            raise ValueError(f"a batch must hold each lead once ({self.duplicate_rule})")
        # The CRM's upsert cannot compare times: never send a score older than one already
        # written (a backfill after a newer run). Such rows go to history only.
        ids = batch["lead_id"].astype(str)
        known = (
            self.ledger.latest_scored_at(ids)
            .reindex(ids.to_numpy())
            .to_numpy(dtype="datetime64[us]")
        )
        scored_at = pd.to_datetime(batch["scored_at"]).to_numpy(dtype="datetime64[us]")
        stale = ~np.isnat(known) & (known > scored_at)
        if stale.any():
            log.info(
                "%d leads already have a newer score in %s: history only",
                int(stale.sum()),
                self.describe(),
            )
            self.ledger.append_history(batch[stale])
            batch = batch[~stale]
        failed: list[str] = []
        messages: list[str] = []
        attempts = 1
        status: int | None = None
        for body in self.payloads(batch) if len(batch) else []:
            ids = self._request_ids(body)
            calls = 0

            def send(body: dict[str, Any] = body) -> Any:
                nonlocal calls
                calls += 1
                return self._send(body)

            what = f"{self.describe()}: upsert of {len(ids)} {self.record_noun}"
            try:
                response = call_with_retries(send, what=what, **self.retry)
            except RetryError as error:
                failed.extend(ids)
                messages.append(str(error))
                attempts = max(attempts, error.attempts)
                status = error.status or status
                continue
            accepted, message = self._accepted(response, ids)
            if accepted:
                self.ledger.append_history(batch[batch["lead_id"].astype(str).isin(accepted)])
            if message:
                failed.extend(i for i in ids if i not in accepted)
                messages.append(message)
                attempts = max(attempts, calls)
        if failed:
            raise BatchWriteError(
                f"{self.describe()}: {len(failed)} of {len(batch)} leads not written: "
                + " | ".join(messages)[:1500],
                failed,
                attempts,
                status,
            )
