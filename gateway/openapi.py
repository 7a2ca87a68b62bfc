"""The OpenAPI 3.1 description of the REST API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_XML = {"application/xml": {"schema": {"type": "string"}}}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok} if "description" in ok else ok
    for code in codes:
        out[str(code)] = {
            "description": {
                401: "no or unknown credential",
                403: "not allowed for this credential",
                404: "not found (or not yours)",
                422: "message refused; code is the StUF/GGk foutcode",
                400: "bad request",
                503: "store unavailable",
            }[code],
            "content": {"application/json": {"schema": _PROBLEM}},
        }
    return out


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "ggk-gateway REST API",
        "version": "1",
        "description": "Submit iWmo/iJw messages, follow them, pull an inbox. "
        "Authenticate with a client certificate (mutual TLS) or "
        "'Authorization: Bearer <token>'. StUF-GGk SOAP is at "
        "/ggk/OntvangAsynchroon (WSDL: ?wsdl).",
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "mtls": {"type": "mutualTLS"},
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["status", "title"],
                "properties": {
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "code": {"type": "string"},
                    "problems": {"type": "array"},
                },
            },
            "Accepted": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "referentienummer": {"type": "string"},
                    "duplicate": {"type": "boolean"},
                    "destinations": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
    "security": [{"bearer": []}, {"mtls": []}],
    "paths": {
        "/api/v1/messages": {
            "post": {
                "summary": "Submit a raw iWmo/iJw message as the authenticated partner",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": "lower-case UUID v4; becomes the envelope "
                        "referentienummer so a retried submission is recognised",
                    },
                    {
                        "name": "cross_ref",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "for a retour: the Di01 referentienummer, when the "
                        "heenbericht did not pass this gateway",
                    },
                ],
                "requestBody": {"required": True, "content": _XML},
                "responses": _responses(
                    {
                        "202": {
                            "description": "durably accepted",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Accepted"}
                                }
                            },
                        }
                    },
                    400,
                    401,
                    403,
                    422,
                    503,
                ),
            }
        },
        "/api/v1/messages/{id}": {
            "get": {
                "summary": "Status, deliveries, history and conversation of a message (by id or "
                "referentienummer)",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _responses({"description": "the message"}, 401, 404),
            }
        },
        "/api/v1/inbox": {
            "get": {
                "summary": "Messages waiting for the authenticated partner",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                "responses": _responses({"description": "waiting messages"}, 401),
            }
        },
        "/api/v1/inbox/{id}": {
            "get": {
                "summary": "The StUF-GGk envelope of one waiting message",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _responses({"description": "the envelope", "content": _XML}, 401, 404),
            }
        },
        "/api/v1/inbox/{id}/ack": {
            "post": {
                "summary": "Acknowledge a fetched message; it leaves the inbox",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _responses({"description": "acknowledged"}, 401, 404),
            }
        },
        "/api/v1/admin/dead-letters": {
            "get": {
                "summary": "Dead-lettered deliveries (admin)",
                "responses": _responses({"description": "dead letters"}, 401, 403),
            }
        },
        "/api/v1/admin/replay": {
            "post": {
                "summary": "Deliver again: one message, the dead letters, or since a time (admin)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "message_id": {"type": "string"},
                                    "dead_only": {"type": "boolean"},
                                    "since": {"type": "number"},
                                    "partner": {"type": "string"},
                                },
                            }
                        }
                    }
                },
                "responses": _responses({"description": "number replayed"}, 400, 401, 403),
            }
        },
        "/api/v1/admin/overdue": {
            "get": {
                "summary": "Heenberichten without a retourbericht after N days (admin)",
                "responses": _responses({"description": "overdue messages"}, 401, 403),
            }
        },
        "/healthz": {
            "get": {
                "summary": "Process is up",
                "security": [],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Store reachable",
                "security": [],
                "responses": _responses({"description": "ready"}, 503),
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": {"description": "text exposition"}},
            }
        },
    },
}
