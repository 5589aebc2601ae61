"""Scores into Salesforce Lead fields, through ``simple-salesforce``'s REST session.

Each batch is upserted by external id with the sObject Collections endpoint (API v46.0+), at
most 200 records a request::

    PATCH /services/data/v59.0/composite/sobjects/Lead/Leadscore_Lead_Id__c
    {"allOrNone": false,
     "records": [{"attributes": {"type": "Lead"}, "Leadscore_Lead_Id__c": "L1",
                  "Leadscore_Score__c": 87, "Leadscore_Scored_At__c": "2024-05-01T02:00:00.000Z", ...}]}

The answer is one result per record, in order (``{"id", "success", "errors", "created"}``).
``allOrNone: false`` lets good records through when others fail: those are appended to the
ledger's history, and the failed ones raise :class:`BatchWriteError` naming only them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from features.urls import display_url
from pipelines.writeback.http import HttpSink
from pipelines.writeback.identity import sink_identity
from pipelines.writeback.ledger import Ledger
from pipelines.writeback.retry import HTTPStatusError, retry_options

log = logging.getLogger(__name__)

TOKEN_ENV = "SALESFORCE_SESSION_ID"
#: sObject Collections accept at most 200 records per request.
MAX_BATCH = 200
#: Upsert by external id through sObject Collections exists from this API version on.
MIN_API_VERSION = 46.0
DEFAULT_VERSION = "59.0"
DEFAULT_OBJECT = "Lead"
DEFAULT_EXTERNAL_ID = "Leadscore_Lead_Id__c"
#: Score column -> Salesforce field (API name).
DEFAULT_FIELDS = {
    "score": "Leadscore_Score__c",
    "probability": "Leadscore_Probability__c",
    "expected_amount": "Leadscore_Expected_Amount__c",
    "expected_value": "Leadscore_Expected_Value__c",
    "stage": "Leadscore_Stage__c",
    "stage_reason": "Leadscore_Stage_Reason__c",
    "reasons_for": "Leadscore_Reasons_For__c",
    "reasons_against": "Leadscore_Reasons_Against__c",
    "amount_reasons": "Leadscore_Amount_Reasons__c",
    "stage_since": "Leadscore_Stage_Since__c",
    "last_sales_touch_at": "Leadscore_Last_Sales_Touch_At__c",
    "follow_up_due": "Leadscore_Follow_Up_Due__c",
    "bant_score": "Leadscore_Bant_Score__c",
    "model_version": "Leadscore_Model_Version__c",
    "scored_at": "Leadscore_Scored_At__c",
}


def salesforce_field_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns as JSON-ready values: numbers stay numbers, datetimes ISO 8601 UTC, missing None."""
    out = frame.copy()
    for name, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column):
            stamps = (
                column.dt.tz_convert("UTC").dt.tz_localize(None)
                if column.dt.tz is not None
                else column
            )
            out[name] = (stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z").astype(object)
    # NaN is not JSON (requests refuses it); None becomes null, which clears the field.
    return out.astype(object).where(frame.notna(), None)


def _api_version(version: str | float) -> str:
    text = str(version).removeprefix("v")
    text = text if "." in text else f"{text}.0"
    if float(text) < MIN_API_VERSION:
        raise ValueError(
            f"Salesforce API v{text} has no sObject Collections upsert (v{MIN_API_VERSION} or later)"
        )
    return text


class SalesforceSink(HttpSink):
    """Current scores as Salesforce Lead fields (upsert by external id); history in the ledger."""

    api_name = "Salesforce"
    max_batch = MAX_BATCH
    record_noun = "records"
    duplicate_rule = "Salesforce rejects a duplicate external id"

    def __init__(
        self,
        session_id: str,
        instance_url: str,
        ledger: Ledger,
        version: str = DEFAULT_VERSION,
        sobject: str = DEFAULT_OBJECT,
        external_id_field: str = DEFAULT_EXTERNAL_ID,
        fields: Mapping[str, str] | None = None,
        batch_size: int = MAX_BATCH,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_retry_after: float | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], Any] | None = None,
        rand: Callable[[], float] | None = None,
    ):
        if not session_id:
            raise ValueError("SalesforceSink needs a session id (access token)")
        super().__init__(ledger, batch_size=batch_size, timeout=timeout, max_attempts=max_attempts,
                         base_delay=base_delay, max_delay=max_delay, max_retry_after=max_retry_after,
                         sleep=sleep, rand=rand)  # fmt: skip
        self.instance_url = instance_url.rstrip("/")
        self.version = _api_version(version)
        self.sobject = sobject
        self.external_id_field = external_id_field
        self.fields = dict(DEFAULT_FIELDS if fields is None else fields)
        # Our own session (requests' default adapter does not retry: max_retries=0), so that a
        # response hook can keep the headers SalesforceError drops (Retry-After).
        self._session = requests.Session()
        self._session.hooks["response"].append(self._remember_headers)
        self._last_headers: Mapping[str, str] = {}
        self.sf = Salesforce(
            instance_url=self.instance_url,
            session_id=session_id,
            version=self.version,
            session=self._session,
        )
        if urlsplit(self.instance_url).scheme == "http":
            # simple-salesforce writes https:// into base_url whatever instance_url says; a local
            # test server speaks plain http.
            self.sf.base_url = self.sf.base_url.replace("https://", "http://", 1)

    @classmethod
    def from_url(
        cls, url: str, ledger: Ledger, settings: Mapping[str, Any] | None = None
    ) -> SalesforceSink:
        """``salesforce://example.my.salesforce.com`` (``salesforce+http://127.0.0.1:8124`` for tests).

        The session id (OAuth access token) is read from ``SALESFORCE_SESSION_ID``. ``settings``:
        params.yaml ``score.salesforce`` (``object``, ``external_id_field``, ``api_version``,
        optional ``fields`` mapping, ``batch_size``, ``timeout_s``) with ``retry`` (``score.retry``).
        """
        settings = dict(settings or {})
        instance_url = cls._base_url(
            url,
            "salesforce",
            "salesforce://<instance>.my.salesforce.com",
            f"session id in {TOKEN_ENV}",
        )
        session_id = cls._secret(TOKEN_ENV, "a Salesforce session id (OAuth access token)", url)
        return cls(
            session_id,
            instance_url,
            ledger,
            version=str(settings.get("api_version", DEFAULT_VERSION)),
            sobject=settings.get("object", DEFAULT_OBJECT),
            external_id_field=settings.get("external_id_field", DEFAULT_EXTERNAL_ID),
            fields=settings.get("fields"),
            batch_size=int(settings.get("batch_size", MAX_BATCH)),
            timeout=float(settings.get("timeout_s", 60.0)),
            **retry_options(settings.get("retry")),
        )

    @property
    def path(self) -> str:
        """The collections upsert path, relative to ``/services/data/vXX.X/``."""
        return f"composite/sobjects/{self.sobject}/{self.external_id_field}"

    def describe(self) -> str:
        """``salesforce <instance> <object> by <external id> (API vXX.X)`` (no session id)."""
        return f"salesforce {display_url(self.instance_url)} {self.sobject} by {self.external_id_field} (API v{self.version})"

    def identity(self) -> str:
        """``salesforce https://<instance>:<port> <object> by <external id>``, API version left
        out: every version writes the same records (see :func:`sink_identity`)."""
        parts = urlsplit(self.instance_url)
        return sink_identity(
            f"salesforce+{parts.scheme}://{parts.netloc}{parts.path}",
            {"salesforce": {"object": self.sobject, "external_id_field": self.external_id_field}},
        )

    def payloads(self, batch: pd.DataFrame) -> list[dict[str, Any]]:
        """The request bodies for a batch: ``{"allOrNone": false, "records": [...]}``, ``batch_size`` each."""
        columns = batch[list(self.fields)]
        if "scored_at" in columns:  # datetime64 even if it came as text or Python datetimes
            columns = columns.assign(scored_at=pd.to_datetime(columns["scored_at"]))
        values = salesforce_field_values(columns.rename(columns=self.fields))
        values.insert(
            0, self.external_id_field, batch["lead_id"].astype(str).to_numpy(dtype=object)
        )
        attributes = {"type": self.sobject}
        records = [
            {"attributes": attributes, **record} for record in values.to_dict(orient="records")
        ]
        return [{"allOrNone": False, "records": chunk} for chunk in self._chunks(records)]

    def _request_ids(self, body: dict[str, Any]) -> list[str]:
        return [record[self.external_id_field] for record in body["records"]]

    def _send(self, body: dict[str, Any]) -> Any:
        try:
            return self.sf.restful(self.path, method="PATCH", json=body, timeout=self.timeout)
        except SalesforceError as error:
            content = str(error.content)[:300]
            raise HTTPStatusError(
                error.status, self._last_headers, f"HTTP {error.status}: {content}"
            ) from error

    def _remember_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_headers = response.headers

    def _accepted(self, response: Any, ids: list[str]) -> tuple[set[str], str | None]:
        """Accepted lead ids from the per-record results, and the errors of the rejected ones."""
        if not isinstance(response, list) or len(response) != len(ids):
            # Results are matched to records by position: without one per record, none is known.
            return set(), f"{len(ids)} records rejected: unexpected answer: {str(response)[:200]}"
        accepted: set[str] = set()
        rejected: dict[str, str] = {}
        for lead_id, result in zip(ids, response, strict=True):
            if isinstance(result, Mapping) and result.get("success") is True:
                accepted.add(lead_id)
            else:
                errors = (result or {}).get("errors") or [{}]
                rejected[lead_id] = ", ".join(
                    f"{e.get('statusCode', '?')}: {e.get('message', '')}" for e in errors
                )
        if not rejected:
            return accepted, None
        return accepted, (
            f"{len(rejected)} records rejected: " + "; ".join(sorted(set(rejected.values())))[:500]
        )

    def close(self) -> None:
        """Close the HTTP session's connections."""
        self._session.close()
