"""Retries for HTTP sinks: HTTP 429, 5xx and connection errors, backoff with full jitter.

One function, :func:`call_with_retries`, used by the HubSpot and Salesforce sinks. ``tenacity``
is not installed in this project, so the loop is written here rather than added as a dependency.

The wait before attempt ``n + 1`` is ``Retry-After`` when the server sent one (in seconds, capped
at ``max_retry_after``), else a uniform draw in ``[0, min(max_delay, base_delay * 2**(n-1))]``
("full jitter": spreads clients that failed together instead of having them retry in lockstep).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
import urllib3.exceptions

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors raised before any HTTP status arrived (refused, reset, timed out); worth another try.
#: An upsert is idempotent, so re-sending one whose response was lost is safe.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
)


class HTTPStatusError(RuntimeError):
    """An HTTP error status with its response headers (for clients whose errors drop them)."""

    def __init__(self, status: int, headers: Mapping[str, str] | None, message: str):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


class RetryError(RuntimeError):
    """An operation that did not succeed: retries exhausted, or an error not worth retrying."""

    def __init__(self, message: str, attempts: int, status: int | None):
        super().__init__(message)
        self.attempts = attempts
        self.status = status


def http_status(error: BaseException) -> int | None:
    """The HTTP status an error carries (HubSpot ``ApiException``, ``SalesforceError``, requests)."""
    status = getattr(error, "status", None)
    if status is None and getattr(error, "response", None) is not None:
        status = getattr(error.response, "status_code", None)
    return int(status) if isinstance(status, int) and status > 0 else None


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)  # case-insensitive for urllib3's and requests' header dicts
    if value is None and isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return value


def retry_after_seconds(error: BaseException) -> float | None:
    """``Retry-After`` of the error's response, in seconds (HTTP dates are not honoured)."""
    headers = getattr(error, "headers", None)
    if headers is None and getattr(error, "response", None) is not None:
        headers = getattr(error.response, "headers", None)
    value = _header(headers, "Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def is_retryable(error: BaseException) -> bool:
    """429, any 5xx, or a connection-level error."""
    status = http_status(error)
    if status is not None:
        return status == 429 or 500 <= status <= 599
    return isinstance(error, CONNECTION_ERRORS)


def call_with_retries(
    operation: Callable[[], T],
    *,
    max_attempts: int = 6,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    max_retry_after: float | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    rand: Callable[[], float] = random.random,
    what: str = "request",
) -> T:
    """``operation()``'s result, retried on 429/5xx/connection errors (see module doc).

    ``rand`` returns a float in [0, 1); ``max_retry_after`` defaults to ``max_delay``. Raises
    :class:`RetryError` (``attempts``, ``status``; the last error as ``__cause__``) when the last
    attempt failed or at once on an error that is not retryable (400, 401, 404, ...).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
    retry_after_cap = max_delay if max_retry_after is None else max_retry_after
    for attempt in range(1, max_attempts + 1):
        try:
            return operation()
        except Exception as error:  # classified below; re-raised as RetryError
            status = http_status(error)
            label = f"HTTP {status}" if status is not None else type(error).__name__
            if not is_retryable(error):
                raise RetryError(
                    f"{what}: {label} is not retryable: {error}", attempt, status
                ) from error
            if attempt == max_attempts:
                raise RetryError(
                    f"{what}: {label} after {attempt} attempts: {error}", attempt, status
                ) from error
            retry_after = retry_after_seconds(error)
            if retry_after is not None:
                wait = min(retry_after, retry_after_cap)
            else:
                wait = rand() * min(max_delay, base_delay * 2 ** (attempt - 1))
            log.warning(
                "%s: %s on attempt %d/%d, retrying in %.2fs%s",
                what, label, attempt, max_attempts, wait, " (Retry-After)" if retry_after is not None else "",
            )  # fmt: skip
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_options(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """:func:`call_with_retries` keywords from params.yaml ``score.retry``."""
    settings = settings or {}
    options: dict[str, Any] = {}
    if "max_attempts" in settings:
        options["max_attempts"] = int(settings["max_attempts"])
    if "base_delay_s" in settings:
        options["base_delay"] = float(settings["base_delay_s"])
    if "max_delay_s" in settings:
        options["max_delay"] = float(settings["max_delay_s"])
    if settings.get("max_retry_after_s") is not None:
        options["max_retry_after"] = float(settings["max_retry_after_s"])
    return options
