"""A local stand-in for HubSpot's batch upsert and Salesforce's sObject Collections upsert.

:class:`FakeCRM` runs a stdlib HTTP server on 127.0.0.1 (a free port) in a thread. It records
every request (method, path, headers, JSON body), checks what the official clients send (auth
header, path, JSON shape, batch size within the API's maximum) and appends anything wrong to
:attr:`FakeCRM.violations`, which tests assert to be empty. It answers like the real APIs:

- ``POST /crm/v3/objects/contacts/batch/upsert``: 200 with ``results``; 207 Multi-Status with
  ``errors`` (one per failed input, named by ``context.objectWriteTraceId``) when inputs fail;
- ``PATCH /services/data/v<version>/composite/sobjects/<object>/<externalIdField>``: 200 with
  one ``{"id", "success", "errors", "created"}`` per record, in order.

It can be scripted to answer the next requests with an error status (429 with ``Retry-After``,
500, 503, 400...), to drop the connection, or to reject specific records.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HUBSPOT_UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
HUBSPOT_MAX_INPUTS = 100
SALESFORCE_MAX_RECORDS = 200
NOW = "2024-05-01T02:00:01.000Z"


@dataclass
class Recorded:
    """One request as received, and the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class _Scripted:
    status: int
    retry_after: str | None = None
    disconnect: bool = False


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no handler thread outlives a test on keep-alive.
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        self.server.fake._handle(self)

    do_PATCH = do_PUT = do_GET = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    fake: FakeCRM


class FakeCRM:
    """HubSpot and Salesforce upsert endpoints on one local server (see module doc)."""

    def __init__(
        self,
        token: str = "test-token",
        *,
        hubspot_id_property: str = "leadscore_lead_id",
        hubspot_properties: set[str] | None = None,
        hubspot_error_context: bool = True,
        salesforce_version: str = "59.0",
        salesforce_object: str = "Lead",
        salesforce_external_id: str = "Leadscore_Lead_Id__c",
        salesforce_fields: set[str] | None = None,
    ):
        self.token = token
        self.hubspot_id_property = hubspot_id_property
        self.hubspot_properties = hubspot_properties
        #: False: 207 errors carry an empty context (the failed inputs cannot be told apart).
        self.hubspot_error_context = hubspot_error_context
        self.salesforce_path = f"/services/data/v{salesforce_version}/composite/sobjects/{salesforce_object}/{salesforce_external_id}"
        self.salesforce_object = salesforce_object
        self.salesforce_external_id = salesforce_external_id
        self.salesforce_fields = salesforce_fields
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        #: What the CRM holds: lead id -> properties (HubSpot) or fields (Salesforce).
        self.hubspot: dict[str, dict[str, str]] = {}
        self.salesforce: dict[str, dict[str, Any]] = {}
        self._script: deque[_Scripted] = deque()
        self._failing: dict[str, str] = {}
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        # A short poll interval: shutdown() waits for the serving loop to look again.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="fake-crm", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._server.server_address[1]

    def script(self, status: int, times: int = 1, retry_after: float | str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``, if given)."""
        with self._lock:
            self._script.extend(
                _Scripted(status, None if retry_after is None else str(retry_after))
                for _ in range(times)
            )

    def script_disconnect(self, times: int = 1) -> None:
        """Close the connection without answering the next ``times`` requests."""
        with self._lock:
            self._script.extend(_Scripted(0, disconnect=True) for _ in range(times))

    def fail_records(
        self, lead_ids: list[str], message: str = "Property values were not valid"
    ) -> None:
        """Reject these leads whenever they are sent (per-record errors; the others succeed)."""
        with self._lock:
            self._failing.update(dict.fromkeys(lead_ids, message))

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeCRM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- request handling -------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        violations: list[str] = []
        body: Any = None
        if raw:
            try:
                body = json.loads(
                    raw, parse_constant=lambda c: violations.append(f"non-JSON number {c}")
                )
            except ValueError as error:
                violations.append(f"body is not JSON: {error}")
        record = Recorded(handler.command, handler.path, dict(handler.headers.items()), body)
        with self._lock:
            self.requests.append(record)
            scripted = self._script.popleft() if self._script else None
            answer = self._answer(handler, record, body, violations, scripted)
            self.violations.extend(f"{record.method} {record.path}: {v}" for v in violations)
            record.status = answer.status if answer else 0
        if answer is None:  # a dropped connection: no status line at all
            handler.close_connection = True
            return
        payload = json.dumps(answer.body).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json;charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(
        self,
        handler: _Handler,
        record: Recorded,
        body: Any,
        violations: list[str],
        scripted: _Scripted | None,
    ) -> _Answer | None:
        is_hubspot = record.path.split("?")[0] == HUBSPOT_UPSERT_PATH
        is_salesforce = record.path.split("?")[0] == self.salesforce_path
        if record.headers.get("Authorization") != f"Bearer {self.token}":
            violations.append("Authorization is not 'Bearer <token>'")
            return _error(
                401, is_salesforce, "INVALID_SESSION_ID", "Authentication credentials not found"
            )
        if not re.match(r"application/json", record.headers.get("Content-Type", "")):
            violations.append(f"Content-Type {record.headers.get('Content-Type')!r}")
        if is_hubspot and record.method != "POST" or is_salesforce and record.method != "PATCH":
            violations.append(f"method {record.method}")
            return _error(405, is_salesforce, "METHOD_NOT_ALLOWED", "method not allowed")
        if not (is_hubspot or is_salesforce):
            violations.append("unknown path")
            return _error(
                404,
                "/services/" in record.path,
                "NOT_FOUND",
                "The requested resource does not exist",
            )
        shape = self._check_hubspot(body) if is_hubspot else self._check_salesforce(body)
        if violations or shape:
            violations.extend(shape)
            return _error(400, is_salesforce, "JSON_PARSER_ERROR", "; ".join(violations))
        if scripted is not None:
            if scripted.disconnect:
                return None
            headers = (
                {"Retry-After": scripted.retry_after} if scripted.retry_after is not None else {}
            )
            code = {429: "REQUEST_LIMIT_EXCEEDED", 503: "SERVER_UNAVAILABLE"}.get(
                scripted.status, "UNKNOWN_EXCEPTION"
            )
            answer = _error(scripted.status, is_salesforce, code, f"scripted {scripted.status}")
            answer.headers.update(headers)
            return answer
        return self._hubspot_upsert(body) if is_hubspot else self._salesforce_upsert(body)

    def _check_hubspot(self, body: Any) -> list[str]:
        if not isinstance(body, dict) or set(body) != {"inputs"}:
            return [
                f"body must be {{'inputs': [...]}}, got keys {sorted(body) if isinstance(body, dict) else type(body)}"
            ]
        inputs = body["inputs"]
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= HUBSPOT_MAX_INPUTS:
            return [
                f"inputs must be a list of 1..{HUBSPOT_MAX_INPUTS}, got {len(inputs) if isinstance(inputs, list) else type(inputs)}"
            ]
        problems = []
        for n, item in enumerate(inputs):
            if not isinstance(item, dict) or not {"id", "properties"} <= set(item) <= {
                "id",
                "idProperty",
                "properties",
                "objectWriteTraceId",
            }:
                problems.append(
                    f"input {n} has keys {sorted(item) if isinstance(item, dict) else type(item)}"
                )
                continue
            if item.get("idProperty") != self.hubspot_id_property:
                problems.append(f"input {n} idProperty {item.get('idProperty')!r}")
            if not isinstance(item["id"], str) or not item["id"]:
                problems.append(f"input {n} id {item['id']!r}")
            props = item["properties"]
            if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
                problems.append(f"input {n}: property values must be strings")
            elif self.hubspot_properties is not None and set(props) - self.hubspot_properties:
                problems.append(
                    f"input {n}: unknown properties {sorted(set(props) - self.hubspot_properties)}"
                )
        ids = [item.get("id") for item in inputs if isinstance(item, dict)]
        traces = [
            item["objectWriteTraceId"]
            for item in inputs
            if isinstance(item, dict) and "objectWriteTraceId" in item
        ]
        if len(set(ids)) != len(ids) or len(set(traces)) != len(traces):
            problems.append("duplicate id or objectWriteTraceId in one request")
        return problems

    def _check_salesforce(self, body: Any) -> list[str]:
        if not isinstance(body, dict) or set(body) != {"allOrNone", "records"}:
            return [
                f"body must be {{'allOrNone', 'records'}}, got {sorted(body) if isinstance(body, dict) else type(body)}"
            ]
        problems = []
        if body["allOrNone"] is not False:
            problems.append(
                f"allOrNone {body['allOrNone']!r} (the sink needs false: partial success)"
            )
        records = body["records"]
        if not isinstance(records, list) or not 1 <= len(records) <= SALESFORCE_MAX_RECORDS:
            return [*problems, f"records must be a list of 1..{SALESFORCE_MAX_RECORDS}"]
        ext = self.salesforce_external_id
        for n, rec in enumerate(records):
            if not isinstance(rec, dict) or rec.get("attributes") != {
                "type": self.salesforce_object
            }:
                problems.append(
                    f"record {n} attributes {rec.get('attributes') if isinstance(rec, dict) else rec!r}"
                )
                continue
            if not isinstance(rec.get(ext), str) or not rec[ext]:
                problems.append(f"record {n} has no {ext}")
            fields = set(rec) - {"attributes", ext}
            if self.salesforce_fields is not None and fields - self.salesforce_fields:
                problems.append(
                    f"record {n}: unknown fields {sorted(fields - self.salesforce_fields)}"
                )
            if any(isinstance(rec[f], dict | list) for f in fields):
                problems.append(f"record {n}: field values must be scalars")
        ids = [rec.get(ext) for rec in records if isinstance(rec, dict)]
        if len(set(ids)) != len(ids):
            problems.append("duplicate external id in one request")
        return problems

    def _hubspot_upsert(self, body: dict[str, Any]) -> _Answer:
        results, errors = [], []
        for item in body["inputs"]:
            lead_id, trace = item["id"], item.get("objectWriteTraceId")
            if lead_id in self._failing:
                context = (
                    {"objectWriteTraceId": [trace]} if self.hubspot_error_context and trace else {}
                )
                errors.append({"status": "error", "category": "VALIDATION_ERROR", "message": self._failing[lead_id],
                               "context": context, "errors": [], "links": {}})  # fmt: skip
                continue
            new = lead_id not in self.hubspot
            stored = self.hubspot.setdefault(
                lead_id, {"hs_object_id": str(next(self._ids)), self.hubspot_id_property: lead_id}
            )
            stored.update(item["properties"])
            result = {"id": stored["hs_object_id"], "properties": dict(stored), "createdAt": NOW, "updatedAt": NOW,
                      "archived": False, "new": new}  # fmt: skip
            if trace is not None:
                result["objectWriteTraceId"] = trace
            results.append(result)
        answer = {"status": "COMPLETE", "results": results, "startedAt": NOW, "completedAt": NOW}
        if errors:
            return _Answer(207, {**answer, "numErrors": len(errors), "errors": errors})
        return _Answer(200, answer)

    def _salesforce_upsert(self, body: dict[str, Any]) -> _Answer:
        results = []
        for rec in body["records"]:
            lead_id = rec[self.salesforce_external_id]
            if lead_id in self._failing:
                results.append({"success": False, "errors": [
                    {"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": self._failing[lead_id], "fields": []}
                ]})  # fmt: skip
                continue
            created = lead_id not in self.salesforce
            stored = self.salesforce.setdefault(lead_id, {"Id": f"00Q{next(self._ids):015d}"})
            stored.update({k: v for k, v in rec.items() if k != "attributes"})
            results.append({"id": stored["Id"], "success": True, "errors": [], "created": created})
        return _Answer(200, results)


def _error(status: int, salesforce: bool, code: str, message: str) -> _Answer:
    """An error body in the API's own shape."""
    if salesforce:
        return _Answer(status, [{"message": message, "errorCode": code}])
    category = "RATE_LIMITS" if status == 429 else "VALIDATION_ERROR" if status == 400 else code
    return _Answer(
        status,
        {
            "status": "error",
            "message": message,
            "correlationId": "00000000-fake",
            "category": category,
        },
    )
