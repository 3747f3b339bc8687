"""HTTP API of incidents and maintenance windows, plus the Alertmanager webhook and the OpenAPI document.

Routes (all under ``/api/v1``): ``GET /incidents`` (filters state, priority, site, service, device,
limit, offset), ``GET /incidents/{id}`` (with its timeline), ``POST /incidents/{id}/ack``, ``POST
/incidents/{id}/notes``, ``POST /incidents/{id}/resolve``, ``GET|POST /maintenance``, ``DELETE
/maintenance/{id}``, ``POST /alertmanager``, ``GET /openapi.json``.

Inputs are validated with pydantic (400 with one message per field), unknown ids are 404, transitions
that make no sense are 409, and every accepted write is recorded in ``audit_log`` with the token's name.
Authentication is :class:`~callipso_agent.api.auth.TokenAuth`'s middleware.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import structlog
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from callipso_agent.api.alertmanager import AlertmanagerReceiver, WebhookPayload, describe
from callipso_agent.api.auth import PRINCIPAL, Principal, TokenAuth
from callipso_agent.clock import Clock
from callipso_agent.errors import NotStored
from callipso_agent.model import IncidentState, IncidentView
from callipso_agent.ports import (
    AuditSink,
    IncidentQuery,
    IncidentSource,
    MaintenanceRequest,
    MaintenanceSource,
    MaintenanceWindow,
    TimelineEntry,
)

log = structlog.get_logger()

MAX_ID = 2**63 - 1
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
Text = Annotated[str, Field(min_length=1, max_length=4000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class IncidentFilter(_Body):
    state: IncidentState | None = Field(
        default=None, description="open, acknowledged, suppressed (held by a maintenance window) or resolved"
    )
    priority: Annotated[str | None, Field(pattern=r"^P[1-4]$")] = None
    site: Annotated[str | None, Field(pattern=NAME)] = None
    service: Annotated[str | None, Field(pattern=NAME)] = None
    device: Annotated[str | None, Field(pattern=NAME)] = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class AckRequest(_Body):
    comment: Annotated[str | None, Field(max_length=4000)] = None


class NoteRequest(_Body):
    text: Text


class ResolveRequest(_Body):
    reason: Text


class MaintenanceFilter(_Body):
    active: bool | None = Field(default=None, description="true: only windows in force now")


class MaintenanceCreate(_Body):
    start: AwareDatetime
    end: AwareDatetime
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    sites: Annotated[list[Annotated[str, Field(pattern=NAME)]], Field(max_length=500)] = Field(
        default_factory=list
    )
    devices: Annotated[list[Annotated[str, Field(pattern=NAME)]], Field(max_length=5000)] = Field(
        default_factory=list
    )
    services: Annotated[list[Annotated[str, Field(pattern=NAME)]], Field(max_length=500)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _sane(self) -> MaintenanceCreate:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not (self.sites or self.devices or self.services):
            raise ValueError("name at least one site, device or service")
        return self


# ---- JSON views ----------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def incident_json(i: IncidentView) -> dict[str, Any]:
    return {
        "id": i.id,
        "key": i.key,
        "title": i.title,
        "state": i.state.value,
        "priority": i.priority,
        "severity": i.severity.label,
        "opened_at": _iso(i.opened_at),
        "resolved_at": _iso(i.resolved_at),
        "site": i.site,
        "device": i.device,
        "services": list(i.services),
        "rule": i.rule,
        "itsm_ref": i.itsm_ref,
        "user_impact": i.user_impact,
        "technical_impact": i.technical_impact,
        "deadlines": {k: _iso(v) for k, v in i.deadlines.items()},
        "runbook": i.runbook,
    }


def timeline_json(e: TimelineEntry) -> dict[str, Any]:
    return {"at": _iso(e.at), "kind": e.kind, "text": e.text, "actor": e.actor, "data": dict(e.data)}


def window_json(w: MaintenanceWindow) -> dict[str, Any]:
    return {
        "id": w.id,
        "start": _iso(w.start),
        "end": _iso(w.end),
        "reason": w.reason,
        "created_by": w.created_by,
        "created_at": _iso(w.created_at),
        "sites": list(w.sites),
        "devices": list(w.devices),
        "services": list(w.services),
    }


_dumps = partial(json.dumps, default=str, ensure_ascii=False)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _error(status: int, message: str, fields: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if fields is not None:
        body["fields"] = fields
    return _json(body, status)


def _field_errors(err: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(body)"
        out.append({"field": loc, "message": str(e["msg"])})
    return out


class BadRequest(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _body(request: web.Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if optional:
            data: Any = {}
        else:
            raise BadRequest(_error(400, "a JSON body is required"))
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(_error(400, "the body is not valid JSON")) from None
    if not isinstance(data, dict):
        raise BadRequest(_error(400, "the body must be a JSON object"))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(_error(400, "invalid request", _field_errors(err))) from None


def _query(request: web.Request, model: type[BaseModel]) -> Any:
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise BadRequest(_error(400, "invalid request", [{"field": key, "message": "give it once"}]))
        data[key] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(_error(400, "invalid request", _field_errors(err))) from None


def _id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise BadRequest(
            _error(400, "invalid request", [{"field": "id", "message": "expected a positive integer"}])
        )
    return int(text)


def _actor(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    return principal.name if isinstance(principal, Principal) else "unknown"


class IncidentApi:
    def __init__(
        self,
        incidents: IncidentSource,
        maintenance: MaintenanceSource,
        audit: AuditSink,
        clock: Clock,
        *,
        alerts: AlertmanagerReceiver | None = None,
    ) -> None:
        self.incidents = incidents
        self.maintenance = maintenance
        self.audit_sink = audit
        self.clock = clock
        self.alerts = alerts
        from callipso_agent.api.openapi import build_openapi

        self.openapi = build_openapi(alertmanager=alerts is not None)

    def routes(self) -> list[web.RouteDef]:
        routes = [
            web.get("/api/v1/openapi.json", self.openapi_document),
            web.get("/api/v1/incidents", self._wrap(self.list_incidents)),
            web.get("/api/v1/incidents/{id}", self._wrap(self.get_incident)),
            web.post("/api/v1/incidents/{id}/ack", self._wrap(self.acknowledge)),
            web.post("/api/v1/incidents/{id}/notes", self._wrap(self.add_note)),
            web.post("/api/v1/incidents/{id}/resolve", self._wrap(self.resolve)),
            web.get("/api/v1/maintenance", self._wrap(self.list_maintenance)),
            web.post("/api/v1/maintenance", self._wrap(self.add_maintenance)),
            web.delete("/api/v1/maintenance/{id}", self._wrap(self.delete_maintenance)),
        ]
        if self.alerts is not None:
            routes.append(web.post("/api/v1/alertmanager", self._wrap(self.alertmanager)))
        return routes

    def install(self, server: Any, auth: TokenAuth) -> None:
        """Add the routes and the authentication middleware to an ``HttpServer`` before it starts."""
        server.add_routes(self.routes())
        server.app.middlewares.append(auth.middleware)

    @staticmethod
    def _wrap(handler: Any) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
            except BadRequest as bad:
                return bad.response
            return response

        run.__name__ = handler.__name__
        return run

    async def _audit(self, request: web.Request, action: str, target: str, detail: dict[str, Any]) -> None:
        try:
            await self.audit_sink.audit(
                self.clock.now(), _actor(request), action, target, {"client": request.remote, **detail}
            )
        except Exception:
            log.exception("audit_write_failed", action=action, target=target)

    # ---- handlers ---------------------------------------------------------------------------------
    async def openapi_document(self, _request: web.Request) -> web.Response:
        return _json(self.openapi)

    async def list_incidents(self, request: web.Request) -> web.Response:
        f: IncidentFilter = _query(request, IncidentFilter)
        query = IncidentQuery(
            states=(f.state,) if f.state else None,
            priority=f.priority,
            site=f.site,
            service=f.service,
            device=f.device,
            limit=f.limit,
            offset=f.offset,
        )
        found = await self.incidents.list(query)
        return _json({"incidents": [incident_json(i) for i in found], "count": len(found)})

    async def get_incident(self, request: web.Request) -> web.Response:
        incident_id = _id(request)
        incident = await self.incidents.get(incident_id)
        if incident is None:
            return _error(404, f"no incident {incident_id}")
        timeline = await self.incidents.timeline(incident_id)
        return _json({"incident": incident_json(incident), "timeline": [timeline_json(e) for e in timeline]})

    async def _act(self, request: web.Request, action: str, body: BaseModel, call: Any) -> web.Response:
        incident_id = _id(request)
        try:
            result = await call(incident_id)
        except LookupError:
            return _error(404, f"no incident {incident_id}")
        except ValueError as err:
            return _error(409, str(err))
        await self._audit(request, action, f"incident:{incident_id}", body.model_dump(mode="json"))
        if isinstance(result, IncidentView):
            return _json({"incident": incident_json(result)})
        incident = await self.incidents.get(incident_id)
        return _json({"incident": incident_json(incident) if incident else None}, status=201)

    async def acknowledge(self, request: web.Request) -> web.Response:
        _id(request)
        body: AckRequest = await _body(request, AckRequest, optional=True)
        return await self._act(
            request,
            "incident.acknowledge",
            body,
            lambda i: self.incidents.acknowledge(i, _actor(request), body.comment),
        )

    async def add_note(self, request: web.Request) -> web.Response:
        _id(request)
        body: NoteRequest = await _body(request, NoteRequest)
        return await self._act(
            request, "incident.note", body, lambda i: self.incidents.add_note(i, _actor(request), body.text)
        )

    async def resolve(self, request: web.Request) -> web.Response:
        _id(request)
        body: ResolveRequest = await _body(request, ResolveRequest)
        return await self._act(
            request,
            "incident.resolve",
            body,
            lambda i: self.incidents.resolve(i, _actor(request), body.reason),
        )

    async def list_maintenance(self, request: web.Request) -> web.Response:
        f: MaintenanceFilter = _query(request, MaintenanceFilter)
        windows = await self.maintenance.list(self.clock.now() if f.active else None)
        return _json({"windows": [window_json(w) for w in windows]})

    async def add_maintenance(self, request: web.Request) -> web.Response:
        body: MaintenanceCreate = await _body(request, MaintenanceCreate)
        window = await self.maintenance.add(
            MaintenanceRequest(
                start=body.start.astimezone(UTC),
                end=body.end.astimezone(UTC),
                reason=body.reason,
                sites=tuple(body.sites),
                devices=tuple(body.devices),
                services=tuple(body.services),
            ),
            _actor(request),
        )
        await self._audit(
            request, "maintenance.add", f"maintenance:{window.id}", body.model_dump(mode="json")
        )
        return _json({"window": window_json(window)}, status=201)

    async def delete_maintenance(self, request: web.Request) -> web.StreamResponse:
        window_id = _id(request)
        if not await self.maintenance.remove(window_id, _actor(request)):
            return _error(404, f"no maintenance window {window_id}")
        await self._audit(request, "maintenance.delete", f"maintenance:{window_id}", {})
        return web.Response(status=204)

    async def alertmanager(self, request: web.Request) -> web.Response:
        assert self.alerts is not None
        payload: WebhookPayload = await _body(request, WebhookPayload)
        try:
            accepted, duplicates = await self.alerts.receive(payload)
        except NotStored as err:
            # held in memory until the store takes writes again: Alertmanager must send it again until then
            log.warning("alertmanager_not_stored", group=payload.groupKey, keys=err.keys[:20])
            return _error(503, "alerts could not be stored now; retry")
        except Exception:
            log.exception("alertmanager_sink_failed", group=payload.groupKey)
            return _error(503, "alerts could not be processed now; retry")
        if accepted:
            await self._audit(
                request,
                "alertmanager.receive",
                f"alertgroup:{payload.groupKey[:200]}",
                {**describe(payload), "accepted": accepted, "duplicates": duplicates},
            )
        return _json({"received": len(payload.alerts), "accepted": accepted, "duplicates": duplicates})
