"""What the météo reads of the estate at one instant: inventory, devices up/down, measurements, incidents.

A snapshot is built either in the agent's process (from the LatestCache and the incident engine) or by
the stateless CLI from the agent's HTTP API (``/api/v1/devices``, ``/api/v1/measurements`` and
``/api/v1/incidents``; a 404 on the last one means no incident engine yet, so no incidents).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import aiohttp

from callipso_agent.collect.cache import DeviceStatus, LatestCache
from callipso_agent.config.models import AgentConfig, ServiceLine, Site
from callipso_agent.errors import CallipsoError
from callipso_agent.meteo.spec import DeviceSelector
from callipso_agent.model import IncidentState, IncidentView, Measurement, MetricKind, Severity


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str
    site: str
    family: str
    services: tuple[str, ...] = ()
    role: str | None = None
    up: bool | None = None  # None: never polled (unknown), not "down"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    last_error: str | None = None


@dataclass(frozen=True)
class EstateSnapshot:
    at: datetime
    sites: Mapping[str, Site]
    services: Mapping[str, ServiceLine]
    devices: Mapping[str, DeviceInfo]
    measurements: tuple[Measurement, ...] = ()
    incidents: tuple[IncidentView, ...] = ()
    _by_device: dict[str, list[Measurement]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for m in self.measurements:
            self._by_device.setdefault(m.device, []).append(m)

    def series(self, device: str, metric: str) -> list[Measurement]:
        return [m for m in self._by_device.get(device, ()) if m.name == metric]

    def site_kind(self, code: str) -> str | None:
        s = self.sites.get(code)
        return s.kind.value if s is not None else None

    def select(self, selectors: Iterable[DeviceSelector]) -> list[DeviceInfo]:
        sels = list(selectors)
        return [
            d
            for d in self.devices.values()
            if any(
                s.matches(
                    name=d.name,
                    site=d.site,
                    family=d.family,
                    services=d.services,
                    role=d.role,
                    site_kind=self.site_kind(d.site),
                )
                for s in sels
            )
        ]

    def open_incidents(self) -> list[IncidentView]:
        return [i for i in self.incidents if i.state.active]


def build_snapshot(
    config: AgentConfig,
    *,
    at: datetime,
    up: Mapping[str, bool | None] | None = None,
    measurements: Iterable[Measurement] = (),
    incidents: Iterable[IncidentView] = (),
    last_errors: Mapping[str, str | None] | None = None,
) -> EstateSnapshot:
    """A snapshot of the inventory in ``config`` (enabled devices only) with the given statuses."""
    up = up or {}
    last_errors = last_errors or {}
    devices = {
        d.name: DeviceInfo(
            name=d.name,
            site=d.site,
            family=d.family,
            services=tuple(d.services),
            role=d.role,
            up=up.get(d.name),
            attributes=MappingProxyType(dict(d.attributes)),
            last_error=last_errors.get(d.name),
        )
        for d in config.devices
        if d.enabled
    }
    return EstateSnapshot(
        at=at,
        sites=MappingProxyType({s.code: s for s in config.sites}),
        services=MappingProxyType({s.key: s for s in config.services}),
        devices=MappingProxyType(devices),
        measurements=tuple(m for m in measurements if m.device in devices),
        incidents=tuple(incidents),
    )


def _up(status: DeviceStatus | None) -> bool | None:
    if status is None or status.last_poll is None:
        return None
    return status.up


def snapshot_from_cache(
    config: AgentConfig, cache: LatestCache, *, at: datetime, incidents: Iterable[IncidentView] = ()
) -> EstateSnapshot:
    """In the agent's process: statuses and measurements from the cache."""
    statuses = {d.name: cache.status(d.name) for d in config.devices}
    return build_snapshot(
        config,
        at=at,
        up={n: _up(s) for n, s in statuses.items()},
        last_errors={n: s.last_error if s else None for n, s in statuses.items()},
        measurements=cache.measurements(),
        incidents=incidents,
    )


# ---- JSON (the agent's HTTP API) ----------------------------------------------------------------------


def _dt(v: Any) -> datetime | None:
    if not v:
        return None
    return datetime.fromisoformat(str(v))


def measurement_from_json(d: Mapping[str, Any]) -> Measurement:
    state = d.get("state") or "ok"
    try:
        sev = Severity.parse(str(state))
    except ValueError:
        sev = Severity.UNKNOWN
    try:
        kind = MetricKind(d.get("kind") or "gauge")
    except ValueError:
        kind = MetricKind.GAUGE
    value = d.get("value")
    at = _dt(d.get("at"))
    if at is None:
        raise ValueError("measurement without 'at'")
    return Measurement(
        device=str(d["device"]),
        name=str(d["name"]),
        value=float(value) if value is not None else None,
        at=at,
        unit=str(d.get("unit") or ""),
        labels={str(k): str(v) for k, v in (d.get("labels") or {}).items()},
        kind=kind,
        state=sev,
        text=d.get("text"),
    )


def incident_to_json(i: IncidentView) -> dict[str, Any]:
    """The JSON form of an IncidentView the météo reads (what ``/api/v1/incidents`` is expected to list)."""
    return {
        "id": i.id,
        "key": i.key,
        "title": i.title,
        "state": i.state.value,
        "priority": i.priority,
        "severity": i.severity.label,
        "opened_at": i.opened_at.isoformat(),
        "site": i.site,
        "device": i.device,
        "services": list(i.services),
        "rule": i.rule,
        "itsm_ref": i.itsm_ref,
        "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
        "user_impact": i.user_impact,
        "technical_impact": i.technical_impact,
        "deadlines": {k: v.isoformat() for k, v in i.deadlines.items()},
        "runbook": i.runbook,
    }


def incident_from_json(d: Mapping[str, Any]) -> IncidentView:
    """Tolerant reading of an incident from the API: unknown fields ignored, optional ones defaulted."""
    opened = _dt(d.get("opened_at"))
    if opened is None:
        raise ValueError("incident without 'opened_at'")
    try:
        state = IncidentState(str(d.get("state") or "open"))
    except ValueError:
        state = IncidentState.OPEN
    try:
        severity = Severity.parse(str(d.get("severity") or "warning"))
    except ValueError:
        severity = Severity.WARNING
    return IncidentView(
        id=int(d["id"]),
        key=str(d.get("key") or f"incident:{d['id']}"),
        title=str(d.get("title") or ""),
        state=state,
        priority=str(d.get("priority") or "P3"),
        severity=severity,
        opened_at=opened,
        site=d.get("site"),
        device=d.get("device"),
        services=tuple(d.get("services") or ()),
        rule=d.get("rule"),
        itsm_ref=d.get("itsm_ref"),
        resolved_at=_dt(d.get("resolved_at")),
        user_impact=str(d.get("user_impact") or "none"),
        technical_impact=str(d.get("technical_impact") or "minor"),
        deadlines={
            k: v for k, v in ((k, _dt(v)) for k, v in (d.get("deadlines") or {}).items()) if v is not None
        },
        runbook=d.get("runbook"),
    )


class ApiError(CallipsoError):
    kind = "api_error"


async def _get_json(session: aiohttp.ClientSession, url: str, *, allow_404: bool = False) -> Any:
    try:
        async with session.get(url) as rsp:
            if rsp.status == 404 and allow_404:
                return None
            if rsp.status >= 400:
                text = (await rsp.text())[:200]
                raise ApiError(f"GET {url}: HTTP {rsp.status} {text}")
            return await rsp.json()
    except aiohttp.ClientError as err:
        raise ApiError(f"GET {url}: {err}") from err
    except TimeoutError as err:
        raise ApiError(f"GET {url}: timed out") from err


async def fetch_snapshot(
    config: AgentConfig,
    api_url: str,
    *,
    at: datetime,
    token: str | None = None,
    request_timeout: float = 20.0,
) -> EstateSnapshot:
    """Read devices, measurements and incidents from a running agent's HTTP API."""
    base = api_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=request_timeout)
    ) as session:
        devices = await _get_json(session, f"{base}/api/v1/devices")
        meas = await _get_json(session, f"{base}/api/v1/measurements")
        incs = await _get_json(session, f"{base}/api/v1/incidents?state=open", allow_404=True)
    up: dict[str, bool | None] = {}
    errors: dict[str, str | None] = {}
    for d in (devices or {}).get("devices", []):
        name = d.get("name")
        if not name:
            continue
        up[name] = bool(d.get("up")) if d.get("last_poll") else None
        errors[name] = d.get("last_error")
    measurements = [measurement_from_json(m) for m in (meas or {}).get("measurements", [])]
    incidents = [incident_from_json(i) for i in incidents_list(incs)]
    return build_snapshot(
        config, at=at, up=up, measurements=measurements, incidents=incidents, last_errors=errors
    )


def incidents_list(payload: Any) -> Sequence[Mapping[str, Any]]:
    if payload is None:
        return []
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        return list(payload.get("incidents") or [])
    raise ApiError("unexpected /api/v1/incidents payload")
