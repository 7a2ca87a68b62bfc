"""The OpenAPI 3.1 description of the REST API, served at ``/api/v1/openapi.json``.

Every operation has an ``operationId`` and typed responses, every refusal is an
``application/problem+json`` document (RFC 9457), so a client generator produces a complete
typed client. ``tests/test_openapi.py`` checks the document against the OpenAPI 3.1 schema
and the live answers against it.
"""

from __future__ import annotations

from typing import Any

from gateway import parameters
from gateway.parameters import MESSAGE, MESSAGE_ID, MONTH, PARTNER, UUID4
from gateway.stats import DURATIONS
from gateway.stats import MEASURES as FIGURE_MEASURES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_MONTH = MONTH.schema()
_XML = {"application/xml": {"schema": {"type": "string"}}}
_REFUSALS = {
    400: "a malformed parameter, body or Content-Encoding",
    401: "no or unknown credential",
    403: "not allowed for this credential",
    404: "not found (or not the caller's)",
    413: "larger than the message limit (code IB007)",
    422: "message refused; code is the StUF/GGk foutcode",
    503: "busy (body budget full) or store unavailable",
}


def _answers(ok_status: int, ok: dict[str, Any], *refusals: int) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok_status): ok}
    for status in refusals:
        out[str(status)] = {
            "description": _REFUSALS[status],
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    return out


def _path_id(shape: parameters.Shape = MESSAGE_ID) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": shape.schema()}


def _paging(maximum: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": 100},
        },
        {
            "name": "after",
            "in": "query",
            "description": "the `next` of the previous page (cursor pagination)",
            "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0},
        },
    ]


_TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
_EPOCH = {"type": ["number", "null"], "description": "seconds since 1970-01-01T00:00:00Z"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_UNLINKED = {
    "type": "boolean",
    "description": "a Du01/Fo01 whose reference names no message between its two parties: "
    'accepted only with [gateway] conversations = "lenient" (or before the gateway was '
    "strict); treat its crossRefnummer as unverified",
}
_CURSOR = {
    "type": ["integer", "null"],
    "description": "pass as `after` for the next page; null on the last page",
}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["status", "title"],
        "properties": {
            "status": {"type": "integer"},
            "title": {"type": "string"},
            "code": {"type": "string", "description": "StUF/GGk foutcode, where one applies"},
            "problems": {"type": "array", "items": _ref("Finding")},
        },
    },
    "Finding": {
        "type": "object",
        "description": "one validation finding",
        "properties": {
            "rule": {"type": "string"},
            "message": {"type": "string"},
            "path": _NULLABLE_STRING,
            "line": {"type": ["integer", "null"]},
            "expected": _NULLABLE_STRING,
            "found": _NULLABLE_STRING,
            "level": {"type": ["integer", "null"]},
            "retourcode": _NULLABLE_STRING,
            "severity": {"type": "string"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["id", "referentienummer", "duplicate", "destinations"],
        "properties": {
            "id": {"type": "string"},
            "referentienummer": {"type": "string"},
            "duplicate": {"type": "boolean"},
            "destinations": {"type": "array", "items": {"type": "string"}},
            "warnings": {
                "type": "array",
                "items": _ref("Finding"),
                "description": "Findings that did not refuse the message (IV034; a release "
                "without known rules, RULES-RELEASE); absent when there are none.",
            },
        },
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "destination": {"type": "string"},
            "adapter": {"type": "string"},
            "copy": {"type": "integer"},
            "state": {
                "type": "string",
                "enum": ["pending", "inflight", "retry", "delivered", "dead", "inbox"],
            },
            "attempts": {"type": "integer"},
            "next_attempt_at": {**_TIME, "type": ["string", "null"]},
            "last_error": {**_NULLABLE_STRING, "description": "our summary, never partner text"},
            "updated_at": _TIME,
        },
    },
    "Event": {
        "type": "object",
        "properties": {"at": _TIME, "event": {"type": "string"}, "detail": {"type": "string"}},
    },
    "ConversationItem": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "functie": _NULLABLE_STRING,
            "zender": {"type": "string"},
            "ontvanger": {"type": "string"},
            "received_at": _TIME,
            "retourcodes": _NULLABLE_STRING,
        },
    },
    "MessageView": {
        "type": "object",
        "required": ["id", "kind", "zender", "ontvanger", "referentienummer"],
        "properties": {
            "id": {"type": "string"},
            "received_at": _TIME,
            "kind": {"type": "string", "enum": ["Di01", "Du01", "Fo01"]},
            "zender": {"type": "string"},
            "ontvanger": {"type": "string"},
            "referentienummer": {"type": "string"},
            "cross_ref": _NULLABLE_STRING,
            "functie": _NULLABLE_STRING,
            "message_code": _NULLABLE_STRING,
            "heen_id": _NULLABLE_STRING,
            "unlinked": _UNLINKED,
            "retourcodes": _NULLABLE_STRING,
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "events": {"type": "array", "items": _ref("Event")},
            "conversation": {"type": "array", "items": _ref("ConversationItem")},
        },
    },
    "InboxItem": {
        "type": "object",
        "properties": {
            "cursor": {"type": "integer"},
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "functie": _NULLABLE_STRING,
            "zender": {"type": "string"},
            "referentienummer": {"type": "string"},
            "cross_ref": _NULLABLE_STRING,
            "received_at": _TIME,
            "unlinked": _UNLINKED,
        },
    },
    "Inbox": {
        "type": "object",
        "required": ["partner", "messages", "next"],
        "properties": {
            "partner": {"type": "string"},
            "messages": {"type": "array", "items": _ref("InboxItem")},
            "next": _CURSOR,
        },
    },
    "Acknowledged": {
        "type": "object",
        "required": ["acknowledged"],
        "properties": {"acknowledged": {"type": "string"}},
    },
    "DeadLetter": {
        "type": "object",
        "properties": {
            "cursor": {"type": "integer"},
            "id": {"type": "string"},
            "referentienummer": {"type": "string"},
            "functie": _NULLABLE_STRING,
            "zender": {"type": "string"},
            "destination": {"type": "string"},
            "attempts": {"type": "integer"},
            "last_error": _NULLABLE_STRING,
            "updated_at": _TIME,
        },
    },
    "DeadLetters": {
        "type": "object",
        "required": ["dead_letters", "next"],
        "properties": {
            "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
            "next": _CURSOR,
        },
    },
    "ReplayRequest": {
        "type": "object",
        "description": "one of message_id, since, or neither (all dead letters); null = absent",
        "properties": {
            "message_id": {**MESSAGE.schema(), "type": ["string", "null"]},
            "dead_only": {"type": "boolean", "default": True},
            "since": _EPOCH,
            "partner": {**PARTNER.schema(), "type": ["string", "null"]},
        },
    },
    "Submission": {
        "type": "object",
        "description": "the JSON form of a submission: the iWmo/iJw message base64-encoded, "
        "and the options of the XML form (a member may repeat its header or query parameter "
        "only with the same value)",
        "required": ["payload"],
        "additionalProperties": False,
        "properties": {
            "payload": {
                **parameters.BASE64.schema(),
                "contentEncoding": "base64",
                "contentMediaType": "application/xml",
                "description": "the iWmo/iJw message, base64 (RFC 4648) with padding",
            },
            "idempotency_key": {
                **UUID4.schema(),
                "description": "as the Idempotency-Key header",
            },
            "cross_ref": {**UUID4.schema(), "description": "as the cross_ref query parameter"},
        },
    },
    "Replayed": {
        "type": "object",
        "required": ["replayed"],
        "properties": {"replayed": {"type": "integer", "minimum": 0}},
    },
    "Overdue": {
        "type": "object",
        "required": ["days", "overdue"],
        "properties": {
            "days": {"type": "number"},
            "overdue": {"type": "array", "items": _ref("ConversationItem")},
        },
    },
    "Figure": {
        "description": "a count rounded to a multiple of method.base (docs/figures.md), an "
        "amount in euro cents, or 'x' for an amount not shown",
        "oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^x$"}],
    },
    "FigureRow": {
        "type": "object",
        "required": ["gemeente", "month", "categorie", *FIGURE_MEASURES],
        "properties": {
            "gemeente": {"type": "string"},
            "month": {"type": "string"},
            "categorie": {"type": "string"},
            **{name: _ref("Figure") for name in FIGURE_MEASURES},
        },
    },
    "Doorlooptijd": {
        "type": "object",
        "required": ["gemeente", "month", "doorlooptijd", "n", "median_days", "p90_days"],
        "properties": {
            "gemeente": {"type": "string"},
            "month": {"type": "string"},
            "doorlooptijd": {"type": "string", "enum": list(DURATIONS)},
            "n": _ref("Figure"),
            "median_days": {"type": ["number", "null"]},
            "p90_days": {"type": ["number", "null"]},
        },
    },
    "Figures": {
        "type": "object",
        "required": ["threshold", "method", "rows", "totals", "doorlooptijden"],
        "properties": {
            "threshold": {"type": "integer"},
            "method": {
                "type": "object",
                "description": "how the counts are protected: rounded to a multiple of base",
                "required": ["name", "base"],
                "properties": {
                    "name": {"type": "string", "enum": ["afronding"]},
                    "base": {"type": "integer", "minimum": 1},
                },
            },
            "rows": {"type": "array", "items": _ref("FigureRow")},
            "totals": {"type": "array", "items": _ref("FigureRow")},
            "doorlooptijden": {"type": "array", "items": _ref("Doorlooptijd")},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "ggk-gateway REST API",
        "version": "1",
        "description": "Submit iWmo/iJw messages, follow them, pull an inbox. "
        "Authenticate with a client certificate (mutual TLS) or "
        "'Authorization: Bearer <token>'. StUF-GGk SOAP is at "
        "/ggk/OntvangAsynchroon (WSDL: ?wsdl for the 0210 envelopes, ?wsdl=0310 for the "
        "0310 bundle's; both generations are accepted there).",
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "mtls": {"type": "mutualTLS"},
        },
        "schemas": SCHEMAS,
    },
    "security": [{"bearer": []}, {"mtls": []}],
    "paths": {
        "/api/v1/messages": {
            "post": {
                "operationId": "submitMessage",
                "summary": "Submit a raw iWmo/iJw message as the authenticated partner",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": UUID4.schema(),
                        "description": "lower-case UUID v4; becomes the envelope "
                        "referentienummer so a retried submission is recognised",
                    },
                    {
                        "name": "cross_ref",
                        "in": "query",
                        "schema": UUID4.schema(),
                        "description": "for a retour: the Di01 referentienummer. The "
                        "payload's BerichtIdentificatie decides: when its heenbericht passed "
                        "this gateway, cross_ref must name that message (else StUF043); when "
                        "it did not, the retour is refused (StUF043) unless conversations = "
                        '"lenient", where cross_ref is required and the retour goes unlinked',
                    },
                ],
                "requestBody": {
                    "required": True,
                    "description": "the message as XML, or the JSON form (Submission)",
                    "content": {**_XML, **_json(_ref("Submission"))},
                },
                "responses": _answers(
                    202,
                    {"description": "durably accepted", "content": _json(_ref("Accepted"))},
                    400,
                    401,
                    403,
                    413,
                    422,
                    503,
                ),
            }
        },
        "/api/v1/messages/{id}": {
            "get": {
                "operationId": "getMessage",
                "summary": "A message the caller sent or received: deliveries, history, "
                "conversation (by id or referentienummer)",
                "parameters": [_path_id(MESSAGE)],
                "responses": _answers(
                    200,
                    {"description": "the message", "content": _json(_ref("MessageView"))},
                    400,
                    401,
                    404,
                ),
            }
        },
        "/api/v1/inbox": {
            "get": {
                "operationId": "listInbox",
                "summary": "Messages waiting for the authenticated partner, a page at a time",
                "parameters": _paging(1000),
                "responses": _answers(
                    200,
                    {"description": "waiting messages", "content": _json(_ref("Inbox"))},
                    400,
                    401,
                ),
            }
        },
        "/api/v1/inbox/{id}": {
            "get": {
                "operationId": "getInboxEnvelope",
                "summary": "The StUF-GGk envelope of one waiting message",
                "parameters": [_path_id()],
                "responses": _answers(
                    200, {"description": "the envelope", "content": _XML}, 400, 401, 404
                ),
            }
        },
        "/api/v1/inbox/{id}/ack": {
            "post": {
                "operationId": "acknowledgeInboxMessage",
                "summary": "Acknowledge a fetched message; it leaves the inbox",
                "parameters": [_path_id()],
                "responses": _answers(
                    200,
                    {"description": "acknowledged", "content": _json(_ref("Acknowledged"))},
                    400,
                    401,
                    404,
                ),
            }
        },
        "/api/v1/admin/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "summary": "Dead-lettered deliveries (admin), a page at a time",
                "parameters": [
                    *_paging(10000),
                    {"name": "partner", "in": "query", "schema": PARTNER.schema()},
                ],
                "responses": _answers(
                    200,
                    {"description": "dead letters", "content": _json(_ref("DeadLetters"))},
                    400,
                    401,
                    403,
                ),
            }
        },
        "/api/v1/admin/replay": {
            "post": {
                "operationId": "replay",
                "summary": "Deliver again: one message, the dead letters, or since a time (admin)",
                "requestBody": {"required": True, "content": _json(_ref("ReplayRequest"))},
                "responses": _answers(
                    200,
                    {"description": "number replayed", "content": _json(_ref("Replayed"))},
                    400,
                    401,
                    403,
                ),
            }
        },
        "/api/v1/admin/overdue": {
            "get": {
                "operationId": "listOverdue",
                "summary": "Heenberichten without a retourbericht after N days (admin)",
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "schema": {"type": "number", "minimum": 0, "maximum": 36500},
                    }
                ],
                "responses": _answers(
                    200,
                    {"description": "overdue messages", "content": _json(_ref("Overdue"))},
                    400,
                    401,
                    403,
                ),
            }
        },
        "/api/v1/stats": {
            "get": {
                "operationId": "getFigures",
                "summary": "Beleidsinformatie per gemeente, month and product category, small "
                "counts rounded to a base (a gemeente its own; the operator all)",
                "parameters": [
                    {"name": "gemeente", "in": "query", "schema": PARTNER.schema()},
                    {"name": "from", "in": "query", "schema": _MONTH},
                    {"name": "to", "in": "query", "schema": _MONTH},
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "csv"]},
                    },
                ],
                "responses": _answers(
                    200,
                    {
                        "description": "the figures (CSV: gemeente,maand,categorie,maat,waarde)",
                        "content": {
                            **_json(_ref("Figures")),
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    400,
                    401,
                    403,
                ),
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Process is up",
                "security": [],
                "responses": {"200": {"description": "ok", "content": _json(_ref("Status"))}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Store reachable",
                "security": [],
                "responses": _answers(
                    200, {"description": "ready", "content": _json(_ref("Status"))}, 503
                ),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (admin or scrape token)",
                "security": [{"bearer": []}],
                "responses": _answers(
                    200,
                    {"description": "text exposition", "content": {"text/plain": {}}},
                    401,
                ),
            }
        },
    },
}

RATE_LIMITED_OPERATIONS = (
    ("/api/v1/messages", "post"),
    ("/api/v1/messages/{id}", "get"),
    ("/api/v1/inbox", "get"),
    ("/api/v1/inbox/{id}", "get"),
    ("/api/v1/inbox/{id}/ack", "post"),
    ("/api/v1/stats", "get"),
)
"""What a partner asks costs a token of its bucket ([limits] partner_rate, gateway/ratelimit.py);
the operator's admin token is not limited."""
for _path, _method in RATE_LIMITED_OPERATIONS:
    OPENAPI["paths"][_path][_method]["responses"]["429"] = {
        "description": "over the partner's rate ([limits] partner_rate and partner_burst); "
        "nothing of the request was read",
        "headers": {
            "Retry-After": {
                "description": "seconds until the partner may send again",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
OPENAPI["paths"]["/api/v1/admin/replay"]["post"]["responses"]["413"] = {
    "description": "a replay body is a small JSON object (at most 4 KiB)",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}
