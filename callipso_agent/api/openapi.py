"""The OpenAPI 3.1 description of the agent's HTTP API, served at ``/api/v1/openapi.json``.

Request bodies are the JSON Schemas of the pydantic models that validate them (so the document and the
validation cannot drift apart); responses are described here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from callipso_agent import __version__
from callipso_agent.api.alertmanager import WebhookPayload
from callipso_agent.api.incidents import (
    NAME,
    AckRequest,
    MaintenanceCreate,
    NoteRequest,
    ResolveRequest,
)

REF = "#/components/schemas/{model}"
ID_MAX = 2**63 - 1
STR_OR_NULL = {"type": ["string", "null"]}
DATETIME = {"type": "string", "format": "date-time"}
DATETIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request (one message per field)",
        401: "A bearer token is required",
        403: "Invalid token, or a token without the needed scope",
        404: "Unknown id",
        409: "The incident is not in a state that allows this",
        429: "Too many failed authentication attempts from this client",
        503: "Not processed now; retry later",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


TOO_LARGE = {
    "413": {
        "description": "Body larger than the server accepts (1 MiB)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX},
}
NAME_SCHEMA = {"type": "string", "pattern": NAME}

READ: list[dict[str, list[str]]] = [
    {},
    {"bearerAuth": []},
]  # open from loopback when configured so, else a token with 'read'
WRITE: list[dict[str, list[str]]] = [{"bearerAuth": []}]

RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
    "Incident": {
        "type": "object",
        "required": [
            "id",
            "key",
            "title",
            "state",
            "priority",
            "severity",
            "opened_at",
            "services",
            "deadlines",
        ],
        "properties": {
            "id": {"type": "integer"},
            "key": {"type": "string"},
            "title": {"type": "string"},
            "state": {"type": "string", "enum": ["open", "acknowledged", "suppressed", "resolved"]},
            "priority": {"type": "string", "pattern": "^P[1-4]$"},
            "severity": {"type": "string", "enum": ["ok", "warning", "critical", "unknown"]},
            "opened_at": DATETIME,
            "resolved_at": DATETIME_OR_NULL,
            "site": STR_OR_NULL,
            "device": STR_OR_NULL,
            "services": {"type": "array", "items": {"type": "string"}},
            "rule": STR_OR_NULL,
            "itsm_ref": {**STR_OR_NULL, "description": "EasyVista ticket number once known"},
            "user_impact": {"type": "string"},
            "technical_impact": {"type": "string"},
            "deadlines": {"type": "object", "additionalProperties": DATETIME},
            "runbook": STR_OR_NULL,
        },
    },
    "TimelineEntry": {
        "type": "object",
        "required": ["at", "kind", "text"],
        "properties": {
            "at": DATETIME,
            "kind": {"type": "string"},
            "text": {"type": "string"},
            "actor": STR_OR_NULL,
            "data": {"type": "object"},
        },
    },
    "MaintenanceWindow": {
        "type": "object",
        "required": ["id", "start", "end", "reason", "created_by", "sites", "devices", "services"],
        "properties": {
            "id": {"type": "integer"},
            "start": DATETIME,
            "end": DATETIME,
            "reason": {"type": "string"},
            "created_by": {"type": "string"},
            "created_at": DATETIME,
            "sites": {"type": "array", "items": {"type": "string"}},
            "devices": {"type": "array", "items": {"type": "string"}},
            "services": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Measurement": {
        "type": "object",
        "required": ["name", "value", "kind", "state", "at"],
        "properties": {
            "device": {"type": "string"},
            "name": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": {"type": ["number", "null"]},
            "unit": {"type": "string"},
            "kind": {"type": "string", "enum": ["gauge", "counter", "state", "info"]},
            "state": {"type": "string"},
            "text": STR_OR_NULL,
            "at": DATETIME,
        },
    },
    "Device": {
        "type": "object",
        "required": ["name", "site", "family", "up"],
        "properties": {
            "name": {"type": "string"},
            "site": {"type": "string"},
            "family": {"type": "string"},
            "address": {"type": "string"},
            "services": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
            "up": {"type": "boolean"},
            "last_poll": DATETIME_OR_NULL,
            "last_success": DATETIME_OR_NULL,
            "last_error": STR_OR_NULL,
            "last_error_text": STR_OR_NULL,
            "consecutive_failures": {"type": "integer"},
            "system": {"type": "object"},
            "measurements": {"type": "array", "items": _ref("Measurement")},
        },
    },
}


def _request_schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        AckRequest,
        NoteRequest,
        ResolveRequest,
        MaintenanceCreate,
        WebhookPayload,
    ]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


def _paths(alertmanager: bool) -> dict[str, Any]:
    incident_one = _json(
        {"type": "object", "required": ["incident"], "properties": {"incident": _ref("Incident")}},
        "The incident after the change",
    )
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "tags": ["agent"],
                "security": [],
                "responses": {"200": _json({"type": "object"}, "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness (store, scheduler, first polls)",
                "tags": ["agent"],
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "Ready"),
                    "503": _json({"type": "object"}, "Not ready"),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["agent"],
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI")},
            }
        },
        "/api/v1/devices": {
            "get": {
                "operationId": "listDevices",
                "summary": "Devices of the inventory and their polling state",
                "tags": ["devices"],
                "security": READ,
                "parameters": [
                    _query("site", {"type": "string"}, "only this site"),
                    _query("family", {"type": "string"}, "only this device family"),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["devices"],
                            "properties": {"devices": {"type": "array", "items": _ref("Device")}},
                        },
                        "Devices",
                    ),
                    **_errors(401, 403, 429),
                },
            }
        },
        "/api/v1/devices/{name}": {
            "get": {
                "operationId": "getDevice",
                "summary": "One device with its last measurements",
                "tags": ["devices"],
                "security": READ,
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("Device"), "The device"),
                    "404": _json(
                        {
                            "type": "object",
                            "required": ["error"],
                            "properties": {"error": {"type": "string"}},
                        },
                        "Unknown device",
                    ),
                    **_errors(401, 403, 429),
                },
            }
        },
        "/api/v1/measurements": {
            "get": {
                "operationId": "listMeasurements",
                "summary": "Last measurements (all devices or one)",
                "tags": ["devices"],
                "security": READ,
                "parameters": [
                    _query("device", {"type": "string"}, "only this device"),
                    _query("name", {"type": "string"}, "only this measurement name"),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["measurements"],
                            "properties": {"measurements": {"type": "array", "items": _ref("Measurement")}},
                        },
                        "Measurements",
                    ),
                    **_errors(401, 403, 429),
                },
            }
        },
        "/api/v1/incidents": {
            "get": {
                "operationId": "listIncidents",
                "summary": "Incidents, filtered",
                "tags": ["incidents"],
                "security": READ,
                "parameters": [
                    _query(
                        "state",
                        {"type": "string", "enum": ["open", "acknowledged", "suppressed", "resolved"]},
                        "incident state",
                    ),
                    _query("priority", {"type": "string", "pattern": "^P[1-4]$"}, "P1..P4"),
                    _query("site", NAME_SCHEMA, "site code"),
                    _query("service", NAME_SCHEMA, "service line key"),
                    _query("device", NAME_SCHEMA, "device name"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "page size",
                    ),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
                        "skip",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["incidents", "count"],
                            "properties": {
                                "incidents": {"type": "array", "items": _ref("Incident")},
                                "count": {"type": "integer"},
                            },
                        },
                        "Incidents",
                    ),
                    **_errors(400, 401, 403, 429),
                },
            }
        },
        "/api/v1/incidents/{id}": {
            "get": {
                "operationId": "getIncident",
                "summary": "One incident with its timeline",
                "tags": ["incidents"],
                "security": READ,
                "parameters": [ID_PARAM],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["incident", "timeline"],
                            "properties": {
                                "incident": _ref("Incident"),
                                "timeline": {"type": "array", "items": _ref("TimelineEntry")},
                            },
                        },
                        "The incident",
                    ),
                    **_errors(400, 401, 403, 404, 429),
                },
            }
        },
        "/api/v1/incidents/{id}/ack": {
            "post": {
                "operationId": "acknowledgeIncident",
                "summary": "Acknowledge (take charge of) an incident",
                "tags": ["incidents"],
                "security": WRITE,
                "parameters": [ID_PARAM],
                "requestBody": _body("AckRequest", False),
                "responses": {"200": incident_one, **_errors(400, 401, 403, 404, 409, 429), **TOO_LARGE},
            }
        },
        "/api/v1/incidents/{id}/notes": {
            "post": {
                "operationId": "addIncidentNote",
                "summary": "Add a note to an incident's timeline",
                "tags": ["incidents"],
                "security": WRITE,
                "parameters": [ID_PARAM],
                "requestBody": _body("NoteRequest"),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["incident"],
                            "properties": {"incident": {"anyOf": [_ref("Incident"), {"type": "null"}]}},
                        },
                        "Note added",
                    ),
                    **_errors(400, 401, 403, 404, 409, 429),
                    **TOO_LARGE,
                },
            }
        },
        "/api/v1/incidents/{id}/resolve": {
            "post": {
                "operationId": "resolveIncident",
                "summary": "Resolve an incident by hand",
                "tags": ["incidents"],
                "security": WRITE,
                "parameters": [ID_PARAM],
                "requestBody": _body("ResolveRequest"),
                "responses": {"200": incident_one, **_errors(400, 401, 403, 404, 409, 429), **TOO_LARGE},
            }
        },
        "/api/v1/maintenance": {
            "get": {
                "operationId": "listMaintenance",
                "summary": "Maintenance windows",
                "tags": ["maintenance"],
                "security": READ,
                "parameters": [_query("active", {"type": "boolean"}, "only windows in force now")],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["windows"],
                            "properties": {"windows": {"type": "array", "items": _ref("MaintenanceWindow")}},
                        },
                        "Windows",
                    ),
                    **_errors(400, 401, 403, 429),
                },
            },
            "post": {
                "operationId": "addMaintenance",
                "summary": "Declare a maintenance window",
                "description": "`end` must be after `start`, both with a UTC offset; name at least one "
                "site, device or service.",
                "tags": ["maintenance"],
                "security": WRITE,
                "requestBody": _body("MaintenanceCreate"),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["window"],
                            "properties": {"window": _ref("MaintenanceWindow")},
                        },
                        "Declared",
                    ),
                    **_errors(400, 401, 403, 429),
                    **TOO_LARGE,
                },
            },
        },
        "/api/v1/maintenance/{id}": {
            "delete": {
                "operationId": "deleteMaintenance",
                "summary": "Delete a maintenance window",
                "tags": ["maintenance"],
                "security": WRITE,
                "parameters": [ID_PARAM],
                "responses": {"204": {"description": "Deleted"}, **_errors(400, 401, 403, 404, 429)},
            }
        },
    }
    if alertmanager:
        paths["/api/v1/alertmanager"] = {
            "post": {
                "operationId": "alertmanagerWebhook",
                "summary": "Prometheus Alertmanager webhook (version 4)",
                "description": "Idempotent on groupKey + fingerprint + startsAt + status. "
                "Answers 503 while an alert's incident change cannot be written to the store yet (database "
                "down, disk full): Alertmanager then sends the alert again. "
                "Configure Alertmanager with `http_config.authorization.credentials` set to a token "
                "with the write scope.",
                "tags": ["alerts"],
                "security": WRITE,
                "requestBody": _body("WebhookPayload"),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["received", "accepted", "duplicates"],
                            "properties": {
                                "received": {"type": "integer"},
                                "accepted": {"type": "integer"},
                                "duplicates": {"type": "integer"},
                            },
                        },
                        "Received",
                    ),
                    **_errors(400, 401, 403, 429, 503),
                    **TOO_LARGE,
                },
            }
        }
    return paths


def build_openapi(*, alertmanager: bool = True) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callipso-agent",
            "version": __version__,
            "description": "Supervision agent API: devices, measurements, incidents, maintenance windows.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("agent", "devices", "incidents", "maintenance", "alerts")],
        "paths": _paths(alertmanager),
        "components": {
            "schemas": {**RESPONSE_SCHEMAS, **_request_schemas()},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token listed (as its sha256) in agent.http.tokens",
                }
            },
        },
    }
