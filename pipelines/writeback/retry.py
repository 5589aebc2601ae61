"""Retries for HTTP sinks: HTTP 429, 5xx and connection errors, backoff with full jitter.

One function, :func:`call_with_retries`, used by the HubSpot and Salesforce sinks. The loop, the
stop rule, the sleeping and the per-retry hook are ``tenacity``'s (:class:`tenacity.Retrying`);
this module only says which errors are worth another try, how long to wait, and what to raise.

The wait before attempt ``n + 1`` is ``Retry-After`` when the server sent one (seconds, or an HTTP
date as RFC 7231 allows, then the seconds until it; capped at ``max_retry_after``), else a uniform
draw in ``[0, min(max_delay, base_delay * 2**(n-1))]`` ("full jitter": spreads clients that failed
together instead of having them retry in lockstep).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, TypeVar

import requests
import tenacity
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


def retry_after_seconds(
    error: BaseException, now: Callable[[], datetime] = _utc_now
) -> float | None:
    """``Retry-After`` of the error's response in seconds: a number, or an HTTP date's distance.

    ``now`` is the clock an HTTP date is measured from (UTC; tests inject one); a date already past
    is 0. ``None`` when there is no header, or it is negative or unreadable (the caller backs off).
    """
    headers = getattr(error, "headers", None)
    if headers is None and getattr(error, "response", None) is not None:
        headers = getattr(error.response, "headers", None)
    value = _header(headers, "Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return _seconds_until_http_date(value, now)
    return seconds if seconds >= 0 else None


def _seconds_until_http_date(value: Any, now: Callable[[], datetime]) -> float | None:
    try:
        # All three RFC 7231 forms (IMF-fixdate, RFC 850, asctime) parse here.
        when = parsedate_to_datetime(str(value).strip())
    except (TypeError, ValueError, IndexError):
        return None
    current = now()
    # HTTP dates are GMT; asctime and "-0000" dates come back naive, so read them as UTC, and a
    # naive clock too (comparing naive with aware datetimes raises).
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    return max(0.0, (when - current).total_seconds())


def is_retryable(error: BaseException) -> bool:
    """429, any 5xx, or a connection-level error."""
    status = http_status(error)
    if status is not None:
        return status == 429 or 500 <= status <= 599
    return isinstance(error, CONNECTION_ERRORS)


def _label(error: BaseException) -> str:
    status = http_status(error)
    return f"HTTP {status}" if status is not None else type(error).__name__


def _failure(state: tenacity.RetryCallState) -> BaseException:
    # tenacity calls the stop, wait, before-sleep and give-up hooks only after an attempt raised.
    error = state.outcome.exception() if state.outcome is not None else None
    if error is None:
        raise RuntimeError("retry hook called without a failed attempt")  # pragma: no cover
    return error


def _stop_if_not_retryable(state: tenacity.RetryCallState) -> bool:
    return not is_retryable(_failure(state))


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
    now: Callable[[], datetime] = _utc_now,
) -> T:
    """``operation()``'s result, retried on 429/5xx/connection errors (see module doc).

    ``rand`` returns a float in [0, 1); ``max_retry_after`` defaults to ``max_delay``; ``now`` is
    the UTC clock a ``Retry-After`` HTTP date is measured from. Raises :class:`RetryError`
    (``attempts``, ``status``; the last error as ``__cause__``) when the last attempt failed or at
    once on an error that is not retryable (400, 401, 404, ...).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
    retry_after_cap = max_delay if max_retry_after is None else max_retry_after
    # Not retryable stops at once, like running out of attempts; both end in give_up below.
    stop = tenacity.stop_any(tenacity.stop_after_attempt(max_attempts), _stop_if_not_retryable)
    # The full-jitter ceiling min(max_delay, base_delay * 2**(n-1)); tenacity's own
    # wait_random_exponential draws from the global ``random``, so ``rand`` could not be injected.
    ceiling = tenacity.wait_exponential(multiplier=base_delay, max=max_delay)
    waited_for_retry_after = False

    def wait(state: tenacity.RetryCallState) -> float:
        nonlocal waited_for_retry_after
        # tenacity asks for the wait before it asks whether to stop: a wait that will not be slept
        # must not draw from ``rand`` (an injected sequence would drift from one call to the next).
        if stop(state):
            return 0.0
        retry_after = retry_after_seconds(_failure(state), now)
        waited_for_retry_after = retry_after is not None
        if retry_after is not None:
            return min(retry_after, retry_after_cap)
        return rand() * ceiling(state)

    def log_retry(state: tenacity.RetryCallState) -> None:
        log.warning(
            "%s: %s on attempt %d/%d, retrying in %.2fs%s",
            what, _label(_failure(state)), state.attempt_number, max_attempts, state.upcoming_sleep,
            " (Retry-After)" if waited_for_retry_after else "",
        )  # fmt: skip

    def give_up(state: tenacity.RetryCallState) -> NoReturn:
        error = _failure(state)
        label, attempts = _label(error), state.attempt_number
        if is_retryable(error):
            message = f"{what}: {label} after {attempts} attempts: {error}"
        else:
            message = f"{what}: {label} is not retryable: {error}"
        raise RetryError(message, attempts, http_status(error)) from error

    retrying = tenacity.Retrying(
        # tenacity hands its own float subclass to ``sleep``; callers recording waits get floats.
        sleep=lambda seconds: sleep(float(seconds)),
        stop=stop,
        wait=wait,
        # Any Exception is classified by stop/give_up; KeyboardInterrupt and other BaseExceptions
        # are not retried and propagate as they are.
        retry=tenacity.retry_if_exception_type(Exception),
        before_sleep=log_retry,
        retry_error_callback=give_up,
    )
    return retrying(operation)


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
