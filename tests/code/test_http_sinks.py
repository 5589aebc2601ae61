"""HubSpot and Salesforce sinks through their official clients, against a local fake CRM server.

Nothing sleeps for real: the sinks get an injected ``sleep`` (recording the waits) and ``rand``.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import urllib3.util.connection
from fake_crm_server import HUBSPOT_UPSERT_PATH, FakeCRM

from pipelines.writeback.base import (
    HISTORY_COLUMNS,
    SCORE_COLUMNS,
    BatchWriteError,
    SinkConfigurationError,
)
from pipelines.writeback.hubspot import DEFAULT_PROPERTIES, HubSpotSink
from pipelines.writeback.ledger import Ledger
from pipelines.writeback.retry import HTTPStatusError, RetryError, call_with_retries
from pipelines.writeback.salesforce import DEFAULT_FIELDS, SalesforceSink

TOKEN = "pat-na1-0000-test-token"
SF_PATH = "/services/data/v59.0/composite/sobjects/Lead/Leadscore_Lead_Id__c"
STAGES = ["SQL", "MQL", "nurture", "disqualified"]
KINDS = ["hubspot", "salesforce"]


def scores(n: int, run_id: str = "run-1") -> pd.DataFrame:
    """``n`` scored leads L00000.. with every SCORE_COLUMNS field set (every 10th stage_reason missing)."""
    i = np.arange(n)
    score = (i * 7) % 101
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{k:05d}" for k in i],
            "score": score.astype("int64"),
            "probability": score / 100 + 0.0001,
            "expected_amount": 12_000.0 + i,
            "expected_value": (score / 100 + 0.0001) * (12_000.0 + i),
            "stage": [STAGES[k % 4] for k in i],
            "stage_reason": [None if k % 10 == 0 else f"reason {k}" for k in i],
            "bant_score": (i % 5).astype("int64"),
            "gate_budget": "pass",
            "gate_authority": "fail",
            "gate_need": "pass",
            "gate_timeline": "unknown",
            "reasons_for": "pricing page views; senior title",
            "reasons_against": ["" if k % 2 else "free email domain" for k in i],
            "amount_reasons": [
                "" if k % 3 else "Larger deal: Company has 2,400 employees" for k in i
            ],
            "stage_since": pd.Timestamp("2024-04-30 02:00:00"),
            "last_sales_touch_at": [
                pd.NaT if k % 2 else pd.Timestamp("2024-04-29 15:30") for k in i
            ],
            "follow_up_due": pd.array(
                [None if k % 5 == 0 else k % 2 == 1 for k in i], dtype="boolean"
            ),
            "model_name": "lead-conversion",
            "model_version": "3",
            "scored_at": pd.Timestamp("2024-05-01 02:00:00") + pd.to_timedelta(i * 1500, unit="ms"),
            "run_id": run_id,
        }
    )
    return frame[SCORE_COLUMNS]


def ids(frame: pd.DataFrame) -> list[str]:
    """The frame's lead ids."""
    return frame["lead_id"].tolist()


def history(ledger: Ledger) -> pd.DataFrame:
    """The ledger's history rows, by lead id."""
    with ledger.engine.connect() as conn:
        return pd.read_sql(sa.select(ledger.history).order_by(ledger.history.c.lead_id), conn)


@pytest.fixture
def fake():
    """A fake CRM that knows the default HubSpot properties and Salesforce fields."""
    with FakeCRM(
        TOKEN,
        hubspot_properties=set(DEFAULT_PROPERTIES.values()),
        salesforce_fields=set(DEFAULT_FIELDS.values()),
    ) as server:
        yield server


@pytest.fixture
def ledger(tmp_path):
    """A fresh SQLite ledger."""
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.create()
    yield ledger
    ledger.close()


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the sinks asked for, in order."""
    return []


@pytest.fixture
def make_sink(fake, ledger, sleeps):
    """``make_sink(kind, **options)``: a sink pointed at the fake server, closed after the test."""
    sinks = []

    def make(kind: str, **options):
        options = {"sleep": sleeps.append, "rand": lambda: 0.5, **options}
        token = options.pop("token", TOKEN)
        if kind == "hubspot":
            sink = HubSpotSink(token, options.pop("ledger", ledger), host=fake.url, **options)
        else:
            sink = SalesforceSink(
                token, fake.url, options.pop("ledger", ledger), version="59.0", **options
            )
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def request_sizes(fake: FakeCRM) -> list[int]:
    """Records per request received."""
    return [len(r.body.get("inputs") or r.body.get("records")) for r in fake.requests]


def stored(fake: FakeCRM, kind: str) -> dict:
    """What the fake CRM holds for this kind, by lead id."""
    return fake.hubspot if kind == "hubspot" else fake.salesforce


def write_like_the_runner(sink, frame: pd.DataFrame) -> list[BatchWriteError]:
    """Slice by ``sink.batch_size`` and write each batch, as the scoring job does."""
    errors = []
    for start in range(0, len(frame), sink.batch_size):
        try:
            sink.write_batch(frame.iloc[start : start + sink.batch_size])
        except BatchWriteError as error:
            errors.append(error)
    return errors


# --- everything written, exact values ---------------------------------------------------------


def test_hubspot_writes_every_lead_in_requests_of_100_with_string_values(
    fake, ledger, sleeps, make_sink
):
    frame = scores(250)
    sink = make_sink("hubspot")
    assert sink.batch_size == 100

    sink.write_batch(frame)  # more than batch_size: the sink splits it into requests of 100

    assert fake.violations == []
    assert request_sizes(fake) == [100, 100, 50]
    assert [(r.method, r.path, r.status) for r in fake.requests] == [
        ("POST", HUBSPOT_UPSERT_PATH, 200)
    ] * 3
    first = fake.requests[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["User-Agent"].startswith("hubspot-api-client-python")
    assert first.body["inputs"][7] == {
        "idProperty": "leadscore_lead_id",
        "id": "L00007",
        "objectWriteTraceId": "L00007",
        "properties": {
            "leadscore_score": "49",
            "leadscore_probability": "0.4901",
            "leadscore_expected_amount": "12007",
            "leadscore_expected_value": "5884.6307",
            "leadscore_stage": "disqualified",
            "leadscore_stage_reason": "reason 7",
            "leadscore_reasons_for": "pricing page views; senior title",
            "leadscore_reasons_against": "",
            "leadscore_amount_reasons": "",
            "leadscore_stage_since": "2024-04-30T02:00:00.000Z",
            "leadscore_last_sales_touch_at": "",
            "leadscore_follow_up_due": "true",
            "leadscore_bant_score": "2",
            "leadscore_model_version": "3",
            "leadscore_scored_at": "2024-05-01T02:00:10.500Z",
        },
    }
    # A missing value is sent as "" (clears the property), never as "nan" or "None".
    assert first.body["inputs"][10]["properties"]["leadscore_stage_reason"] == ""
    assert first.body["inputs"][0]["properties"]["leadscore_probability"] == "0.0001"
    assert sorted(fake.hubspot) == ids(frame)
    assert fake.hubspot["L00249"]["leadscore_score"] == str(249 * 7 % 101)
    assert sink.written_lead_ids("run-1") == set(ids(frame))
    pd.testing.assert_frame_equal(history(ledger), frame[HISTORY_COLUMNS], check_dtype=False)
    assert sleeps == []


def test_salesforce_writes_every_lead_in_requests_of_200_with_json_values(
    fake, ledger, sleeps, make_sink
):
    frame = scores(250)
    sink = make_sink("salesforce")
    assert sink.batch_size == 200

    sink.write_batch(frame)

    assert fake.violations == []
    assert request_sizes(fake) == [200, 50]
    assert [(r.method, r.path, r.status) for r in fake.requests] == [("PATCH", SF_PATH, 200)] * 2
    first = fake.requests[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.body["allOrNone"] is False
    assert first.body["records"][7] == {
        "attributes": {"type": "Lead"},
        "Leadscore_Lead_Id__c": "L00007",
        "Leadscore_Score__c": 49,
        "Leadscore_Probability__c": 49 / 100 + 0.0001,
        "Leadscore_Expected_Amount__c": 12_007.0,
        "Leadscore_Expected_Value__c": (49 / 100 + 0.0001) * 12_007.0,
        "Leadscore_Stage__c": "disqualified",
        "Leadscore_Stage_Reason__c": "reason 7",
        "Leadscore_Reasons_For__c": "pricing page views; senior title",
        "Leadscore_Reasons_Against__c": "",
        "Leadscore_Amount_Reasons__c": "",
        "Leadscore_Stage_Since__c": "2024-04-30T02:00:00.000Z",
        "Leadscore_Last_Sales_Touch_At__c": None,
        "Leadscore_Follow_Up_Due__c": True,
        "Leadscore_Bant_Score__c": 2,
        "Leadscore_Model_Version__c": "3",
        "Leadscore_Scored_At__c": "2024-05-01T02:00:10.500Z",
    }
    assert first.body["records"][10]["Leadscore_Stage_Reason__c"] is None  # null, not NaN
    assert sorted(fake.salesforce) == ids(frame)
    assert sink.written_lead_ids("run-1") == set(ids(frame))
    pd.testing.assert_frame_equal(history(ledger), frame[HISTORY_COLUMNS], check_dtype=False)
    assert sleeps == []


# --- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_429_waits_exactly_retry_after_then_succeeds(kind, fake, ledger, sleeps, make_sink):
    frame = scores(10)
    fake.script(429, retry_after=7)
    make_sink(kind).write_batch(frame)

    assert sleeps == [7.0]
    assert [r.status for r in fake.requests] == [429, 200]
    assert fake.requests[0].body == fake.requests[1].body
    assert fake.violations == []
    assert history(ledger)["lead_id"].tolist() == ids(frame)


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_is_capped(kind, fake, sleeps, make_sink):
    fake.script(429, retry_after=120)
    make_sink(kind, max_retry_after=30.0).write_batch(scores(3))
    assert sleeps == [30.0]


@pytest.mark.parametrize("kind", KINDS)
def test_5xx_twice_then_success_waits_grow_within_full_jitter_bounds(
    kind, fake, ledger, sleeps, make_sink
):
    frame = scores(10)
    fake.script(500)
    fake.script(503)
    make_sink(kind, base_delay=2.0, max_delay=60.0, rand=random.Random(11).random).write_batch(
        frame
    )

    same = random.Random(11)
    assert sleeps == [same.random() * 2.0, same.random() * 4.0]
    assert 0 <= sleeps[0] <= 2.0 and 0 <= sleeps[1] <= 4.0
    assert [r.status for r in fake.requests] == [500, 503, 200]
    assert history(ledger)["lead_id"].tolist() == ids(frame)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_failing_after_max_attempts_raises_with_exactly_its_leads(
    kind, fake, ledger, sleeps, make_sink
):
    sink = make_sink(kind, max_attempts=3)
    size = sink.batch_size
    frame = scores(2 * size + 10)
    first, second, third = frame.iloc[:size], frame.iloc[size : 2 * size], frame.iloc[2 * size :]

    sink.write_batch(first)
    fake.script(503, times=3)
    with pytest.raises(BatchWriteError) as caught:
        sink.write_batch(second)
    sink.write_batch(third)

    assert caught.value.lead_ids == ids(second)
    assert caught.value.attempts == 3
    assert "HTTP 503 after 3 attempts" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert sleeps == [0.5, 1.0]
    assert [r.status for r in fake.requests] == [200, 503, 503, 503, 200]
    assert history(ledger)["lead_id"].tolist() == ids(first) + ids(third)
    assert sink.written_lead_ids("run-1") == set(ids(first) + ids(third))


@pytest.mark.parametrize("kind", KINDS)
def test_runner_style_batches_keep_going_after_a_failed_batch(kind, fake, ledger, make_sink):
    sink = make_sink(kind, max_attempts=2)
    frame = scores(2 * sink.batch_size + 10)
    fake.script(503, times=2)  # the first batch fails both attempts
    errors = write_like_the_runner(sink, frame)

    assert [e.lead_ids for e in errors] == [ids(frame.iloc[: sink.batch_size])]
    assert history(ledger)["lead_id"].tolist() == ids(frame.iloc[sink.batch_size :])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [400, 404])
def test_non_retryable_status_fails_at_once(kind, status, fake, ledger, sleeps, make_sink):
    frame = scores(5)
    fake.script(status)
    with pytest.raises(BatchWriteError) as caught:
        make_sink(kind).write_batch(frame)

    assert caught.value.lead_ids == ids(frame)
    assert caught.value.attempts == 1
    assert f"HTTP {status} is not retryable" in str(caught.value)
    assert sleeps == []
    assert len(fake.requests) == 1
    assert history(ledger).empty


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_token_is_a_401_not_retried_and_a_recorded_violation(
    kind, fake, ledger, sleeps, make_sink
):
    with pytest.raises(BatchWriteError) as caught:
        make_sink(kind, token="not-the-token").write_batch(scores(5))

    assert caught.value.attempts == 1
    assert "HTTP 401" in str(caught.value)
    assert "not-the-token" not in str(caught.value)
    path, method = (HUBSPOT_UPSERT_PATH, "POST") if kind == "hubspot" else (SF_PATH, "PATCH")
    assert fake.violations == [f"{method} {path}: Authorization is not 'Bearer <token>'"]
    assert sleeps == []
    assert history(ledger).empty


@pytest.mark.parametrize("kind", KINDS)
def test_dropped_connection_is_retried_once_by_us_not_by_the_client(
    kind, fake, ledger, sleeps, make_sink
):
    frame = scores(5)
    fake.script_disconnect()
    make_sink(kind).write_batch(frame)

    assert len(fake.requests) == 2  # the client did not retry on its own
    assert [r.status for r in fake.requests] == [0, 200]
    assert sleeps == [0.5]
    assert history(ledger)["lead_id"].tolist() == ids(frame)


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_counts_attempts_once(kind, ledger, sleeps, monkeypatch):
    with FakeCRM(TOKEN) as gone:
        url = gone.url  # closed on leaving: nothing listens there any more
    connects = []
    real_connect = urllib3.util.connection.create_connection

    def counting_connect(*args, **kwargs):
        connects.append(args[0])
        return real_connect(*args, **kwargs)

    # Both clients connect through urllib3: one connection try per attempt means neither client
    # retried on its own (hubspot-api-client's default urllib3 Retry(3) would make 4 per attempt).
    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting_connect)
    options = {"max_attempts": 3, "sleep": sleeps.append, "rand": lambda: 0.5}
    if kind == "hubspot":
        sink = HubSpotSink(TOKEN, ledger, host=url, **options)
    else:
        sink = SalesforceSink(TOKEN, url, ledger, **options)
    try:
        with pytest.raises(BatchWriteError) as caught:
            sink.write_batch(scores(3))
    finally:
        sink.close()
    assert caught.value.attempts == 3
    assert len(connects) == 3
    assert sleeps == [0.5, 1.0]


# --- per-record failures ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_per_record_failures_are_not_recorded_and_raise_with_only_them(
    kind, fake, ledger, sleeps, make_sink
):
    frame = scores(30)
    fake.fail_records(["L00003", "L00012"], "Enter a valid number")
    with pytest.raises(BatchWriteError) as caught:
        make_sink(kind).write_batch(frame)

    assert caught.value.lead_ids == ["L00003", "L00012"]
    assert caught.value.attempts == 1
    assert "Enter a valid number" in str(caught.value)
    written = [i for i in ids(frame) if i not in ("L00003", "L00012")]
    assert history(ledger)["lead_id"].tolist() == written
    assert sorted(stored(fake, kind)) == written
    assert [r.status for r in fake.requests] == [207 if kind == "hubspot" else 200]
    assert sleeps == []  # a rejected record is not retried
    assert fake.violations == []


def test_hubspot_207_without_error_context_relies_on_the_confirmed_results(ledger, sleeps):
    frame = scores(30)
    with FakeCRM(TOKEN, hubspot_error_context=False) as fake:
        fake.fail_records(["L00003"])
        sink = HubSpotSink(TOKEN, ledger, host=fake.url, sleep=sleeps.append)
        try:
            with pytest.raises(BatchWriteError) as caught:
                sink.write_batch(frame)
        finally:
            sink.close()
    # Results echo objectWriteTraceId, so the confirmed 29 are known even without error context.
    assert caught.value.lead_ids == ["L00003"]
    assert len(history(ledger)) == 29


@pytest.mark.parametrize(
    ("context", "accepted"),
    [
        ({}, set()),  # nothing names the failed input: none of the request is recorded
        ({"objectWriteTraceId": ["L00001"]}, {"L00000", "L00002", "L00003"}),
        ({"ids": "L00001"}, {"L00000", "L00002", "L00003"}),  # a bare string, not its letters
    ],
)
def test_hubspot_207_without_results_trusts_only_named_errors(context, accepted, ledger):
    class Error:
        message = "boom"

    Error.context = context

    class Response:  # a 207 whose results echo nothing
        results = []
        errors = [Error()]
        num_errors = 1

    sink = HubSpotSink(TOKEN, ledger, host="http://127.0.0.1:9")
    try:
        got, message = sink._accepted(Response(), ids(scores(4)))
    finally:
        sink.close()
    assert got == accepted
    assert message == f"{4 - len(accepted)} inputs rejected (207, 1 errors): boom"


# --- idempotence, configuration -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_rewriting_the_same_batch_adds_no_history_rows(kind, fake, ledger, make_sink):
    frame = scores(120)
    sink = make_sink(kind)
    sink.write_batch(frame)
    sink.write_batch(frame)

    assert len(fake.requests) == (4 if kind == "hubspot" else 2)
    assert len(history(ledger)) == 120
    pd.testing.assert_frame_equal(history(ledger), frame[HISTORY_COLUMNS], check_dtype=False)
    assert len(stored(fake, kind)) == 120


@pytest.mark.parametrize(
    ("kind", "variable"),
    [("hubspot", "HUBSPOT_ACCESS_TOKEN"), ("salesforce", "SALESFORCE_SESSION_ID")],
)
def test_from_url_without_the_secret_names_the_variable(kind, variable, ledger, monkeypatch):
    monkeypatch.delenv(variable, raising=False)
    cls = HubSpotSink if kind == "hubspot" else SalesforceSink
    with pytest.raises(SinkConfigurationError, match=f"^{variable} is not set: "):
        cls.from_url(f"{kind}://example.test", ledger, {})


#: params.yaml ``score.retry`` as the from_url tests pass it.
RETRY_SETTINGS = {"max_attempts": 4, "base_delay_s": 0.25, "max_delay_s": 8.0}


def write_through_from_url(cls, url: str, ledger: Ledger, settings: dict, described: str) -> None:
    """``cls.from_url(url, ledger, settings)`` is ``described``, retries as RETRY_SETTINGS say, writes 5 leads."""
    sink = cls.from_url(url, ledger, settings)
    try:
        assert sink.describe() == described
        assert sink.retry == {
            "max_attempts": 4,
            "base_delay": 0.25,
            "max_delay": 8.0,
            "max_retry_after": None,
        }
        sink.write_batch(scores(5))
    finally:
        sink.close()


def test_hubspot_from_url_reads_token_and_settings(fake, ledger, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    settings = {"object": "contacts", "id_property": "leadscore_lead_id", "retry": RETRY_SETTINGS}
    write_through_from_url(
        HubSpotSink,
        f"hubspot+http://127.0.0.1:{fake.port}",
        ledger,
        settings,
        f"hubspot http://127.0.0.1:{fake.port} contacts by leadscore_lead_id",
    )
    assert fake.violations == []
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert HubSpotSink.from_url("hubspot://api.hubapi.com", ledger).describe() == (
        "hubspot https://api.hubapi.com contacts by leadscore_lead_id"
    )


def test_salesforce_from_url_reads_session_id_and_settings(fake, ledger, monkeypatch):
    monkeypatch.setenv("SALESFORCE_SESSION_ID", TOKEN)
    settings = {"object": "Lead", "external_id_field": "Leadscore_Lead_Id__c", "api_version": "59.0",
                "retry": RETRY_SETTINGS}  # fmt: skip
    write_through_from_url(
        SalesforceSink,
        f"salesforce+http://127.0.0.1:{fake.port}",
        ledger,
        settings,
        f"salesforce http://127.0.0.1:{fake.port} Lead by Leadscore_Lead_Id__c (API v59.0)",
    )
    assert fake.violations == []
    assert fake.requests[0].path == SF_PATH
    https = SalesforceSink.from_url("salesforce://example.my.salesforce.com", ledger)
    try:
        assert https.sf.base_url == "https://example.my.salesforce.com/services/data/v59.0/"
        assert TOKEN not in https.describe()
    finally:
        https.close()


@pytest.mark.parametrize(
    ("cls", "url", "message"),
    [
        (HubSpotSink, "hubspot://user:secret@api.hubapi.com", "not in the URL"),
        (HubSpotSink, "salesforce://x.my.salesforce.com", "not a HubSpot URL"),
        (SalesforceSink, "salesforce://:secret@x.my.salesforce.com", "not in the URL"),
        (SalesforceSink, "hubspot://api.hubapi.com", "not a Salesforce URL"),
    ],
)
def test_from_url_rejects_bad_urls(cls, url, message, ledger, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SALESFORCE_SESSION_ID", TOKEN)
    with pytest.raises(ValueError, match=message):
        cls.from_url(url, ledger)


def test_batch_sizes_above_the_api_maximum_are_refused(ledger):
    with pytest.raises(ValueError, match="1..100"):
        HubSpotSink(TOKEN, ledger, batch_size=101)
    with pytest.raises(ValueError, match="1..200"):
        SalesforceSink(TOKEN, "https://x.my.salesforce.com", ledger, batch_size=201)
    with pytest.raises(ValueError, match="v46.0 or later"):
        SalesforceSink(TOKEN, "https://x.my.salesforce.com", ledger, version="45.0")


# --- the retry function on its own ---------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_logs_each_retry(caplog):
    waits: list[float] = []
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 6:
            raise HTTPStatusError(503, {}, "unavailable")
        return "done"

    with caplog.at_level(logging.WARNING, logger="pipelines.writeback.retry"):
        result = call_with_retries(flaky, max_attempts=6, base_delay=1.0, max_delay=5.0, sleep=waits.append,
                                   rand=lambda: 0.5, what="op")  # fmt: skip
    assert result == "done"
    assert waits == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert caplog.messages[0] == "op: HTTP 503 on attempt 1/6, retrying in 0.50s"
    assert len(caplog.messages) == 5


def test_retry_gives_up_with_the_attempt_count_and_the_cause():
    waits: list[float] = []
    error = HTTPStatusError(429, {"retry-after": "3"}, "slow down")

    def always():
        raise error

    with pytest.raises(RetryError) as caught:
        call_with_retries(always, max_attempts=3, sleep=waits.append, what="op")
    assert caught.value.attempts == 3
    assert caught.value.status == 429
    assert caught.value.__cause__ is error
    assert waits == [3.0, 3.0]  # Retry-After, found whatever its header's case


def test_not_retryable_fails_at_once():
    waits: list[float] = []

    def bad():
        raise HTTPStatusError(401, {}, "unauthorised")

    with pytest.raises(RetryError, match="HTTP 401 is not retryable") as caught:
        call_with_retries(bad, sleep=waits.append)
    assert caught.value.attempts == 1
    assert waits == []

    with pytest.raises(RetryError, match="ValueError is not retryable"):
        call_with_retries(lambda: int("x"), sleep=waits.append)
    assert waits == []
