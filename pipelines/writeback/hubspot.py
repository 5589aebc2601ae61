"""Scores into HubSpot contact properties, through the official client (``hubspot-api-client``).

Each batch is sent to the batch upsert endpoint (``POST /crm/v3/objects/contacts/batch/upsert``,
at most 100 inputs a request), keyed by a unique custom property holding our ``lead_id``
(``leadscore_lead_id`` by default; it must exist in the portal with unique values)::

    {"inputs": [{"idProperty": "leadscore_lead_id", "id": "L1", "objectWriteTraceId": "L1",
                 "properties": {"leadscore_score": "87", "leadscore_scored_at": "2024-05-01T02:00:00.000Z", ...}}]}

Every property value is a string, as HubSpot wants them; datetimes are ISO 8601 in UTC.
``objectWriteTraceId`` (= lead id) lets a 207 Multi-Status answer name the inputs that failed.
Once HubSpot accepted a request, its leads are appended to the ledger's score history; a lead
that HubSpot did not confirm is never recorded as written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from hubspot import HubSpot
from urllib3.util.retry import Retry

from features.urls import display_url
from pipelines.writeback.http import HttpSink
from pipelines.writeback.identity import sink_identity
from pipelines.writeback.ledger import Ledger
from pipelines.writeback.retry import retry_options

log = logging.getLogger(__name__)

TOKEN_ENV = "HUBSPOT_ACCESS_TOKEN"
DEFAULT_HOST = "https://api.hubapi.com"
#: The batch endpoints' maximum number of inputs per request.
MAX_BATCH = 100
DEFAULT_ID_PROPERTY = "leadscore_lead_id"
#: The only HubSpot object written (params.yaml ``score.hubspot.object``).
DEFAULT_OBJECT = "contacts"
#: Score column -> HubSpot contact property (internal name).
DEFAULT_PROPERTIES = {
    "score": "leadscore_score",
    "probability": "leadscore_probability",
    "expected_amount": "leadscore_expected_amount",
    "expected_value": "leadscore_expected_value",
    "stage": "leadscore_stage",
    "stage_reason": "leadscore_stage_reason",
    "reasons_for": "leadscore_reasons_for",
    "reasons_against": "leadscore_reasons_against",
    "amount_reasons": "leadscore_amount_reasons",
    "stage_since": "leadscore_stage_since",
    "last_sales_touch_at": "leadscore_last_sales_touch_at",
    "follow_up_due": "leadscore_follow_up_due",
    "bant_score": "leadscore_bant_score",
    "model_version": "leadscore_model_version",
    "scored_at": "leadscore_scored_at",
}


def iso_utc(values: pd.Series) -> pd.Series:
    """Datetimes (naive = UTC) as ISO 8601 strings with milliseconds and ``Z``; missing: None."""
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return text.astype(object).where(stamps.notna(), None)


def hubspot_property_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as HubSpot property strings, column by column; missing values become ``""``.

    Integers without a decimal point, floats in fixed notation (HubSpot's number parser is not
    promised to read ``1e-05``), datetimes via :func:`iso_utc`.
    """
    out = {}
    for name, column in frame.items():
        present = column.notna()
        if pd.api.types.is_datetime64_any_dtype(column):
            text = iso_utc(column)
        elif pd.api.types.is_bool_dtype(column):
            text = column.map({True: "true", False: "false"})
        elif pd.api.types.is_integer_dtype(column):
            text = column.astype("Int64").astype(str)
        elif pd.api.types.is_float_dtype(column):
            fixed = pd.Series(
                np.char.mod("%.6f", column.fillna(0).to_numpy(dtype=float)), index=column.index
            )
            text = fixed.str.rstrip("0").str.rstrip(".")
        else:
            text = column.astype(str)
        out[name] = text.astype(object).where(present, "")
    return pd.DataFrame(out, index=frame.index)


class HubSpotSink(HttpSink):
    """Current scores as HubSpot contact properties; history in the ledger."""

    api_name = "HubSpot"
    max_batch = MAX_BATCH
    record_noun = "leads"
    duplicate_rule = "HubSpot rejects duplicate ids in a request"

    def __init__(
        self,
        access_token: str,
        ledger: Ledger,
        host: str = DEFAULT_HOST,
        id_property: str = DEFAULT_ID_PROPERTY,
        properties: Mapping[str, str] | None = None,
        batch_size: int = MAX_BATCH,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_retry_after: float | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], Any] | None = None,
        rand: Callable[[], float] | None = None,
    ):
        if not access_token:
            raise ValueError("HubSpotSink needs an access token")
        super().__init__(ledger, batch_size=batch_size, timeout=timeout, max_attempts=max_attempts,
                         base_delay=base_delay, max_delay=max_delay, max_retry_after=max_retry_after,
                         sleep=sleep, rand=rand)  # fmt: skip
        self.host = host.rstrip("/")
        self.id_property = id_property
        self.properties = dict(DEFAULT_PROPERTIES if properties is None else properties)
        # Retry(0): the client hands urllib3 its own retry policy, whose default (3) would retry
        # connection errors inside the call, so attempts would be counted twice.
        client = HubSpot(
            access_token=access_token, host=self.host, retry=Retry(total=0, redirect=False)
        )
        # Each access to ``client.crm.contacts.batch_api`` builds a new ApiClient and urllib3
        # pool: take it once and keep it, so that connections are reused and closed in close().
        self._api = client.crm.contacts.batch_api

    @classmethod
    def from_url(
        cls, url: str, ledger: Ledger, settings: Mapping[str, Any] | None = None
    ) -> HubSpotSink:
        """``hubspot://api.hubapi.com`` (``hubspot+http://127.0.0.1:8123`` for a local test server).

        The token is read from ``HUBSPOT_ACCESS_TOKEN``. ``settings``: params.yaml ``score.hubspot``
        (``object``, ``id_property``, optional ``properties`` mapping, ``batch_size``, ``timeout_s``)
        with ``retry`` (``score.retry``).
        """
        settings = dict(settings or {})
        host = cls._base_url(url, "hubspot", "hubspot://api.hubapi.com", f"token in {TOKEN_ENV}")
        if settings.get("object", DEFAULT_OBJECT) != DEFAULT_OBJECT:
            raise ValueError(f"HubSpotSink writes contacts, not {settings['object']!r}")
        token = cls._secret(TOKEN_ENV, "the HubSpot private-app access token", url)
        return cls(
            token,
            ledger,
            host=host,
            id_property=settings.get("id_property", DEFAULT_ID_PROPERTY),
            properties=settings.get("properties"),
            batch_size=int(settings.get("batch_size", MAX_BATCH)),
            timeout=float(settings.get("timeout_s", 60.0)),
            **retry_options(settings.get("retry")),
        )

    def describe(self) -> str:
        """``hubspot <host> contacts by <id_property>`` (no token)."""
        return f"hubspot {display_url(self.host)} {DEFAULT_OBJECT} by {self.id_property}"

    def identity(self) -> str:
        """``hubspot https://<host>:<port> contacts by <id_property>`` (see :func:`sink_identity`)."""
        parts = urlsplit(self.host)
        return sink_identity(
            f"hubspot+{parts.scheme}://{parts.netloc}{parts.path}",
            {"hubspot": {"object": DEFAULT_OBJECT, "id_property": self.id_property}},
        )

    def payloads(self, batch: pd.DataFrame) -> list[dict[str, Any]]:
        """The request bodies for a batch: ``{"inputs": [...]}`` of at most ``batch_size`` inputs."""
        lead_ids = batch["lead_id"].astype(str).tolist()
        columns = batch[list(self.properties)]
        if "scored_at" in columns:  # datetime64 even if it came as text or Python datetimes
            columns = columns.assign(scored_at=pd.to_datetime(columns["scored_at"]))
        values = hubspot_property_values(columns.rename(columns=self.properties))
        inputs = [
            {
                "idProperty": self.id_property,
                "id": lead_id,
                "objectWriteTraceId": lead_id,
                "properties": props,
            }
            for lead_id, props in zip(lead_ids, values.to_dict(orient="records"), strict=True)
        ]
        return [{"inputs": chunk} for chunk in self._chunks(inputs)]

    def _request_ids(self, body: dict[str, Any]) -> list[str]:
        return [item["id"] for item in body["inputs"]]

    def _send(self, body: dict[str, Any]) -> Any:
        return self._api.upsert(body, _request_timeout=self.timeout)

    def _accepted(self, response: Any, ids: list[str]) -> tuple[set[str], str | None]:
        """The lead ids of one request HubSpot confirmed, and a message if any was not."""
        errors = getattr(response, "errors", None) or []
        num_errors = getattr(response, "num_errors", None) or len(errors)
        if not errors and not num_errors:
            return set(ids), None  # 200: every input was upserted
        # 207 Multi-Status: errors name the failed inputs by objectWriteTraceId in their context.
        sent = set(ids)
        named: set[str] = set()
        unattributed = 0
        for error in errors:
            context = getattr(error, "context", None) or {}
            values = [context.get(key) for key in ("objectWriteTraceId", "ids", "id")]
            ids_here = {
                str(v)
                for value in values
                if value is not None
                for v in ([value] if isinstance(value, str) else value)
            }
            named |= ids_here & sent
            unattributed += not ids_here
        confirmed = set()
        for result in getattr(response, "results", None) or []:
            trace = getattr(result, "object_write_trace_id", None)
            trace = trace or (getattr(result, "properties", None) or {}).get(self.id_property)
            if trace is not None:
                confirmed.add(str(trace))
        if confirmed:
            accepted = (confirmed & sent) - named
        elif named and not unattributed:
            accepted = sent - named
        else:  # cannot tell which inputs failed: none is recorded as written (a re-run redoes them)
            accepted = set()
        summary = "; ".join(sorted({str(getattr(e, "message", e))[:200] for e in errors}))
        return (
            accepted,
            f"{len(sent) - len(accepted)} inputs rejected (207, {num_errors} errors): {summary}",
        )

    def close(self) -> None:
        """Close the client's connection pool (and thread pool, if one was started)."""
        api_client = self._api.api_client
        api_client.rest_client.pool_manager.clear()
        api_client.close()
