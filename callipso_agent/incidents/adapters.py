"""The incident engine seen through the output stage's ports (``callipso_agent.ports``).

The engine speaks its own types (IncidentDetail, TimelineRecord, per-scope maintenance windows,
IncidentNotice); the HTTP API, the outbox and the notifications speak the ports'. This module is the
one place that translates, so neither side imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from callipso_agent.incidents.engine import IncidentEngine, IncidentNotFound, IncidentNotice, IncidentStateError
from callipso_agent.incidents.maintenance import MaintenanceError
from callipso_agent.incidents.maintenance import MaintenanceWindow as EngineWindow
from callipso_agent.model import IncidentState, IncidentView
from callipso_agent.ports import (
    ChangeKind,
    IncidentChange,
    IncidentQuery,
    MaintenanceRequest,
    MaintenanceWindow,
    TimelineEntry,
)

log = structlog.get_logger()

_NOTICE_TO_CHANGE = {
    "opened": ChangeKind.OPENED,
    "reopened": ChangeKind.OPENED,
    "updated": ChangeKind.UPDATED,
    "deadline": ChangeKind.UPDATED,
    "acknowledged": ChangeKind.ACKNOWLEDGED,
    "note": ChangeKind.NOTE,
    "resolved": ChangeKind.RESOLVED,
}


class EngineIncidentSource:
    """``IncidentSource`` over the engine. Unknown ids raise LookupError, impossible transitions ValueError."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine

    async def get(self, incident_id: int) -> IncidentView | None:
        detail = await self.engine.get(incident_id)
        return detail.view if detail is not None else None

    async def list(self, query: IncidentQuery) -> Sequence[IncidentView]:
        """Unresolved incidents are listed top-level (a site incident carries its devices' incidents);
        a query that includes resolved ones reads the whole history."""
        unresolved = {IncidentState.OPEN, IncidentState.ACKNOWLEDGED}
        if query.states is not None and set(query.states) <= unresolved:
            views = await self.engine.open_incidents(site=query.site, device=query.device, service=query.service)
        else:
            states = tuple(s.value for s in query.states) if query.states is not None else None
            views = await self.engine.incidents(states=states, site=query.site, device=query.device,
                                                service=query.service, limit=query.offset + query.limit + 500)
        views = [v for v in views if query.matches(v)]
        return views[query.offset:query.offset + query.limit]

    async def timeline(self, incident_id: int) -> Sequence[TimelineEntry]:
        if await self.engine.get(incident_id) is None:
            raise LookupError(f"no incident {incident_id}")
        lang = self.engine.settings.lang
        return [TimelineEntry(at=r.at, kind=r.kind, text=(r.text_en if lang == "en" and r.text_en else r.text),
                              actor=r.actor, data=dict(r.data or {}))
                for r in await self.engine.timeline(incident_id)]

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            return await fn(*args)
        except IncidentNotFound as err:
            raise LookupError(str(err)) from err
        except IncidentStateError as err:
            raise ValueError(str(err)) from err

    async def acknowledge(self, incident_id: int, actor: str, comment: str | None = None) -> IncidentView:
        view: IncidentView = await self._call(self.engine.acknowledge, incident_id, actor, comment)
        return view

    async def add_note(self, incident_id: int, actor: str, text: str) -> None:
        await self._call(self.engine.add_note, incident_id, actor, text)

    async def resolve(self, incident_id: int, actor: str, reason: str) -> IncidentView:
        view: IncidentView = await self._call(self.engine.resolve, incident_id, actor, reason)
        return view

    async def add_timeline(self, incident_id: int, kind: str, text: str,
                           data: Mapping[str, Any] | None = None) -> None:
        await self._call(self.engine.add_timeline, incident_id, kind, text, dict(data or {}))

    async def set_itsm_ref(self, incident_id: int, ref: str) -> None:
        await self._call(self.engine.set_itsm_ref, incident_id, ref, self.engine.clock.now())


def _window_id(w: EngineWindow) -> int:
    """db:<n> → n; file:<n> → -n (file windows are listed, never deleted through the API)."""
    kind, _, n = (w.id or "db:0").partition(":")
    return int(n) if kind == "db" else -int(n)


def _to_port(w: EngineWindow) -> MaintenanceWindow:
    targets = tuple(w.targets)
    return MaintenanceWindow(
        id=_window_id(w), start=w.start, end=w.end, reason=w.reason or w.name, created_by=w.created_by,
        created_at=w.start,
        sites=targets if w.scope == "site" else (), devices=targets if w.scope == "device" else (),
        services=targets if w.scope == "service" else ())


class EngineMaintenanceSource:
    """``MaintenanceSource`` over the engine's maintenance book (one scope per window)."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine

    async def add(self, request: MaintenanceRequest, actor: str) -> MaintenanceWindow:
        scopes = [(s, t) for s, t in (("site", request.sites), ("device", request.devices),
                                       ("service", request.services)) if t]
        if len(scopes) != 1:
            raise ValueError("a maintenance window names sites, devices or services: exactly one of them")
        scope, targets = scopes[0]
        window = EngineWindow(name=request.reason[:200] or "maintenance", scope=scope,  # type: ignore[arg-type]
                              targets=list(targets), start=request.start, end=request.end,
                              reason=request.reason, created_by=actor)
        try:
            added = await self.engine.add_maintenance(window)
        except (IncidentStateError, MaintenanceError) as err:
            raise ValueError(str(err)) from err
        return _to_port(added)

    async def list(self, active_at: datetime | None = None) -> Sequence[MaintenanceWindow]:
        return [_to_port(w) for w in self.engine.list_maintenance(at=active_at)]

    async def remove(self, window_id: int, actor: str) -> bool:
        if window_id <= 0:
            return False
        try:
            return await self.engine.remove_maintenance(f"db:{window_id}")
        except MaintenanceError:
            return False


def notice_to_change(notice: IncidentNotice, at: datetime) -> IncidentChange:
    entry = notice.entry
    return IncidentChange(kind=_NOTICE_TO_CHANGE.get(notice.kind, ChangeKind.UPDATED), incident=notice.incident,
                          at=entry.at if entry is not None else at, actor=entry.actor if entry is not None else None,
                          text=notice.text or None, replayed=notice.replayed)


class OpenIncidents:
    """A synchronous snapshot of unresolved incidents for /metrics (scrapes cannot await the store).

    Every incident change makes the snapshot stale; it is read again ``settle`` seconds later, once for all
    the changes of that moment: a burst of traps (one notice each) costs one read of the open incidents
    instead of one per notice, which would grow as the square of the burst."""

    def __init__(self, engine: IncidentEngine, *, settle: float = 1.0) -> None:
        self.engine = engine
        self.settle = settle
        self._views: list[IncidentView] = []
        self._pending: asyncio.Task[None] | None = None
        self.reads = 0

    async def refresh(self) -> list[IncidentView]:
        self.reads += 1
        self._views = await self.engine.open_incidents()
        return self._views

    def stale(self) -> None:
        """An incident changed: read the snapshot again soon, once for the changes that follow meanwhile."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._refresh_later())

    async def _refresh_later(self) -> None:
        await asyncio.sleep(self.settle)
        try:
            await self.refresh()
        except Exception:
            log.warning("open_incidents_refresh_failed", exc_info=True)

    async def close(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending

    def __call__(self) -> list[IncidentView]:
        return [v for v in self._views if v.state.active]
