"""``call_with_retries`` on tenacity: Retry-After as an HTTP date, and what must not change.

Nothing sleeps or reads the real clock: ``sleep``, ``rand`` and ``now`` are injected. The older
retry tests (backoff doubling, giving up, not retryable) are in ``test_http_sinks.py``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import requests

from pipelines.writeback.retry import (
    HTTPStatusError,
    RetryError,
    call_with_retries,
    retry_after_seconds,
    retry_options,
)

DATE = "Wed, 21 Oct 2026 07:28:00 GMT"
WHEN = datetime(2026, 10, 21, 7, 28, tzinfo=UTC)


def clock(at: datetime):
    """A ``now`` that always answers ``at``."""
    return lambda: at


def failing(errors: list[BaseException], result: str = "done"):
    """An operation raising ``errors`` in turn, then returning ``result``; ``.calls`` counts."""

    def operation():
        operation.calls += 1
        if operation.calls <= len(errors):
            raise errors[operation.calls - 1]
        return result

    operation.calls = 0
    return operation


def never_drawn() -> float:
    raise AssertionError("rand() must not be drawn when Retry-After decides the wait")


# --- Retry-After as an HTTP date ------------------------------------------------------------------


def test_retry_after_http_date_in_the_future_waits_until_then(caplog):
    waits: list[float] = []
    operation = failing([HTTPStatusError(503, {"Retry-After": DATE}, "unavailable")])

    with caplog.at_level(logging.WARNING, logger="pipelines.writeback.retry"):
        result = call_with_retries(operation, sleep=waits.append, rand=never_drawn, what="op",
                                   now=clock(WHEN - timedelta(seconds=42)))  # fmt: skip
    assert result == "done"
    assert operation.calls == 2
    assert waits == [42.0]
    assert caplog.messages == ["op: HTTP 503 on attempt 1/6, retrying in 42.00s (Retry-After)"]


def test_retry_after_http_date_is_capped_like_seconds():
    waits: list[float] = []
    error = HTTPStatusError(429, {"Retry-After": DATE}, "slow down")
    early = clock(WHEN - timedelta(hours=1))

    call_with_retries(failing([error]), sleep=waits.append, rand=never_drawn, now=early)
    call_with_retries(failing([error]), sleep=waits.append, rand=never_drawn, now=early,
                      max_retry_after=7.5)  # fmt: skip
    assert waits == [60.0, 7.5]  # max_retry_after defaults to max_delay


def test_retry_after_http_date_in_the_past_waits_nothing():
    waits: list[float] = []
    operation = failing([HTTPStatusError(503, {"retry-after": DATE}, "unavailable")] * 2)

    call_with_retries(operation, sleep=waits.append, rand=never_drawn,
                      now=clock(WHEN + timedelta(days=3)))  # fmt: skip
    assert waits == [0.0, 0.0]
    assert operation.calls == 3


@pytest.mark.parametrize("value", ["soon", "Wed, 32 Oct 2026 07:28:00 GMT", "", "-5", "nan"])
def test_unreadable_or_negative_retry_after_falls_back_to_jittered_backoff(value):
    waits: list[float] = []
    operation = failing([HTTPStatusError(503, {"Retry-After": value}, "unavailable")] * 3)

    call_with_retries(operation, base_delay=1.0, max_delay=5.0, sleep=waits.append,
                      rand=lambda: 0.5, now=clock(WHEN))  # fmt: skip
    assert waits == [0.5, 1.0, 2.0]


def test_exhaustion_with_an_http_date_keeps_attempts_status_and_cause():
    waits: list[float] = []
    error = HTTPStatusError(429, {"Retry-After": DATE}, "slow down")
    operation = failing([error] * 10)

    with pytest.raises(RetryError, match=r"^op: HTTP 429 after 4 attempts: slow down$") as caught:
        call_with_retries(operation, max_attempts=4, sleep=waits.append, rand=never_drawn,
                          what="op", now=clock(WHEN - timedelta(seconds=2)))  # fmt: skip
    assert operation.calls == 4
    assert caught.value.attempts == 4
    assert caught.value.status == 429
    assert caught.value.__cause__ is error
    assert waits == [2.0, 2.0, 2.0]


def test_requests_error_with_an_http_date_on_its_response():
    response = requests.Response()
    response.status_code = 503
    response.headers["RETRY-AFTER"] = DATE  # requests' headers: any case
    error = requests.HTTPError("503 Server Error", response=response)

    assert retry_after_seconds(error, now=clock(WHEN - timedelta(seconds=90))) == 90.0


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 2026 07:28:00 GMT",  # IMF-fixdate, the form servers must send
        "Wednesday, 21-Oct-26 07:28:00 GMT",  # obsolete RFC 850 form
        "Wed Oct 21 07:28:00 2026",  # obsolete asctime form (no zone: GMT)
        "Wed, 21 Oct 2026 09:28:00 +0200",  # a zone other than GMT still names the same instant
    ],
)
def test_every_rfc_7231_date_form_is_read(value):
    error = HTTPStatusError(503, {"Retry-After": value}, "unavailable")
    assert retry_after_seconds(error, now=clock(WHEN - timedelta(seconds=10))) == 10.0
    # A naive clock is read as UTC rather than failing on naive-vs-aware arithmetic.
    naive = WHEN.replace(tzinfo=None) - timedelta(seconds=10)
    assert retry_after_seconds(error, now=clock(naive)) == 10.0


def test_retry_after_seconds_without_a_date():
    assert retry_after_seconds(HTTPStatusError(429, {"Retry-After": "3"}, "x")) == 3.0
    assert retry_after_seconds(HTTPStatusError(429, {"Retry-After": "0"}, "x")) == 0.0
    assert retry_after_seconds(HTTPStatusError(429, {}, "x")) is None
    assert retry_after_seconds(ValueError("no headers")) is None


# --- behaviour kept from the hand-written loop ----------------------------------------------------


def test_rand_is_drawn_once_per_retry_only():
    """Not on the last attempt nor on a non-retryable error: an injected sequence must not drift."""
    draws: list[float] = []

    def rand() -> float:
        draws.append(0.25)
        return 0.25

    with pytest.raises(RetryError):
        call_with_retries(failing([ConnectionError("reset")] * 5), max_attempts=3,
                          sleep=lambda s: None, rand=rand)  # fmt: skip
    assert len(draws) == 2

    with pytest.raises(RetryError, match="HTTP 400 is not retryable") as caught:
        call_with_retries(failing([HTTPStatusError(400, {}, "bad")]), sleep=lambda s: None,
                          rand=rand)  # fmt: skip
    assert caught.value.attempts == 1
    assert caught.value.status == 400
    assert len(draws) == 2


def test_not_retryable_after_retries_reports_its_attempt():
    waits: list[float] = []
    operation = failing([TimeoutError("slow"), HTTPStatusError(404, {}, "gone")])

    with pytest.raises(RetryError, match=r"^op: HTTP 404 is not retryable: gone$") as caught:
        call_with_retries(operation, sleep=waits.append, rand=lambda: 0.5, what="op")
    assert caught.value.attempts == 2
    assert caught.value.status == 404
    assert isinstance(caught.value.__cause__, HTTPStatusError)
    assert waits == [0.5]


def test_sleep_gets_plain_floats():
    waits: list[float] = []
    call_with_retries(failing([ConnectionError("reset")]), sleep=waits.append, rand=lambda: 0.5)
    assert [type(wait) for wait in waits] == [float]


def test_a_single_attempt_never_sleeps_and_zero_attempts_are_refused():
    waits: list[float] = []
    with pytest.raises(RetryError, match="after 1 attempts") as caught:
        call_with_retries(failing([ConnectionError("reset")]), max_attempts=1,
                          sleep=waits.append)  # fmt: skip
    assert caught.value.attempts == 1
    assert caught.value.status is None
    assert waits == []
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        call_with_retries(lambda: "x", max_attempts=0)


def test_base_exceptions_and_sleep_errors_propagate_unwrapped():
    operation = failing([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        call_with_retries(operation, sleep=lambda s: None)
    assert operation.calls == 1

    def broken_sleep(seconds: float) -> None:
        raise OSError("sleep failed")

    with pytest.raises(OSError, match="sleep failed"):
        call_with_retries(failing([ConnectionError("reset")]), sleep=broken_sleep)


def test_retry_options_from_params():
    assert retry_options(None) == {}
    assert retry_options(
        {"max_attempts": "4", "base_delay_s": 2, "max_delay_s": 30, "max_retry_after_s": None}
    ) == {"max_attempts": 4, "base_delay": 2.0, "max_delay": 30.0}
    assert retry_options({"max_retry_after_s": 120}) == {"max_retry_after": 120.0}
