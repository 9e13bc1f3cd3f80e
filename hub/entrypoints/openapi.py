"""The OpenAPI 3.1 description served at /v1/openapi.json (kept next to the handlers it describes)."""

from __future__ import annotations

from typing import Any

from hub.domain.errors import ErrorCode
from hub.entrypoints.http_errors import STATUS


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document() -> dict[str, Any]:
    doc = _document()
    # Every call that needs a caller: who it is, what the caller's role may not do, and its limits.
    for item in doc["paths"].values():
        for operation in item.values():
            if operation.get("security") == []:
                continue
            responses = operation["responses"]
            responses.setdefault("401", _error("no known client certificate or valid bearer token"))
            responses.setdefault("403", _error("the caller's role may not do this"))
            responses["429"] = _error(
                "rate_limited: the party's rate or concurrency limit; retry after Retry-After seconds"
            )
    post = doc["paths"]["/v1/berichten"]["post"]["responses"]
    post["503"] = _error(
        "database or broker unavailable, or too many request bytes in flight; see Retry-After"
    )
    return doc


def _document() -> dict[str, Any]:
    codes = sorted(c.value for c in ErrorCode)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "iStandaarden routing hub",
            "version": "1",
            "description": "Receives iWmo, iJw, iEb and iPgb messages, validates and routes them to their "
            "receiver. Error codes and their HTTP status: "
            + ", ".join(f"{c.value}={s}" for c, s in sorted(STATUS.items(), key=lambda i: i[0].value)),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "off when HUB_BEARER_TOKENS=off",
                },
                "mutualTLS": {
                    "type": "mutualTLS",
                    "description": "a client certificate of HUB_TLS_CLIENT_CA, mapped to a party by the "
                    "OIN in its subject's serialNumber or by its SHA-256 fingerprint "
                    "(routing_rules/certificates.csv)",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "request_id"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "errors"],
                            "properties": {
                                "code": {"type": "string", "enum": codes},
                                "message": {"type": "string"},
                                "errors": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "line": {"type": ["integer", "null"]},
                                            "path": {"type": ["string", "null"]},
                                            "reason": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "message_id": {"type": "string", "format": "uuid"},
                        "standard": {"type": "string"},
                        "release": {"type": "string"},
                        "message": {"type": "string"},
                        "afzender": {"type": "string"},
                        "ontvanger": {"type": "string"},
                        "receiver": {"type": "string", "description": "kind:code, e.g. gemeente:0363"},
                        "status_url": {"type": "string"},
                        "duplicate": {"type": "boolean"},
                    },
                },
            },
        },
        "security": [{"mutualTLS": []}, {"bearer": []}],
        "paths": {
            "/v1/berichten": {
                "post": {
                    "summary": "Send a message",
                    "requestBody": {
                        "required": True,
                        "content": {"application/xml": {"schema": {"type": "string"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted: stored and confirmed in the receiver's queue",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                            },
                        },
                        "200": {
                            "description": "A duplicate of an earlier message; message_id is the original",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                            },
                        },
                        "400": _error("not well-formed or hostile XML"),
                        "401": _error("no valid bearer token"),
                        "403": _error("the header's Afzender is not the authenticated party"),
                        "409": _error("the same identity was used before for a different message"),
                        "413": _error("body too large"),
                        "415": _error("not an XML content type"),
                        "422": _error("schema-invalid, unknown message/release/receiver, route not allowed"),
                        "503": _error("database or broker unavailable; see Retry-After"),
                    },
                }
            },
            "/v1/berichten/{message_id}": {
                "get": {
                    "summary": "A message's status and audit trail (its sender and receiver only)",
                    "parameters": [
                        {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "status and events"},
                        "401": _error("no valid bearer token"),
                        "404": _error("no such message for this party"),
                        "503": _error("database unavailable"),
                    },
                }
            },
            "/v1/mailbox": {
                "get": {
                    "summary": "The caller's undelivered messages, oldest first (paged by `after`)",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}},
                        {"name": "after", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "berichten and next"}, "401": _error("no token")},
                }
            },
            "/v1/mailbox/{message_id}": {
                "get": {
                    "summary": "A message's body from the caller's mailbox",
                    "parameters": [
                        {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "the XML body", "content": {"application/xml": {}}},
                        "404": _error("not in this mailbox"),
                        "410": _error("deleted by retention"),
                    },
                }
            },
            "/v1/mailbox/{message_id}/ack": {
                "post": {
                    "summary": "Acknowledge: the message is delivered",
                    "parameters": [
                        {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "acked"}, "404": _error("not in this mailbox")},
                }
            },
            "/v1/admin/deadletters": {
                "get": {
                    "summary": "Dead letters (admin)",
                    "responses": {"200": {"description": "dead_letters"}},
                }
            },
            "/v1/admin/replay": {
                "post": {
                    "summary": "Deliver messages again from their stored body (admin)",
                    "responses": {"200": {"description": "all replayed"}, "207": {"description": "some not"}},
                }
            },
            "/v1/admin/overdue": {
                "get": {
                    "summary": "Overdue answers (admin)",
                    "responses": {"200": {"description": "overdue"}},
                }
            },
            "/v1/admin/routes/reload": {
                "post": {
                    "summary": "Reload routing_rules/ (admin); a broken file is refused, the old rules stay",
                    "responses": {"200": {"description": "reloaded"}, "422": {"description": "refused"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "the process lives",
                    "security": [],
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "database and RabbitMQ reachable, schemas and rules loaded",
                    "security": [],
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of this process (text, or OpenMetrics on request)",
                    "security": [],
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
        },
    }
