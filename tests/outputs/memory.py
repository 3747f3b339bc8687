"""In-memory implementations of the outputs' own Protocols (IncidentSource, MaintenanceSource).

They stand in for the incident engine (built elsewhere) so the outputs can be tested on their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from callipso_agent.clock import Clock
from callipso_agent.model import IncidentState, IncidentView, Severity
from callipso_agent.ports import (
    ChangeKind,
    IncidentChange,
    IncidentQuery,
    MaintenanceRequest,
    MaintenanceWindow,
    TimelineEntry,
)

Subscriber = Callable[[IncidentChange], Awaitable[None]]


class MemoryIncidents:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.incidents: dict[int, IncidentView] = {}
        self.timelines: dict[int, list[TimelineEntry]] = {}
        self.subscribers: list[Subscriber] = []
        self._next = 1

    async def _emit(
        self, kind: ChangeKind, incident: IncidentView, actor: str | None = None, text: str | None = None
    ) -> None:
        change = IncidentChange(kind, incident, self.clock.now(), actor, text)
        for sub in self.subscribers:
            await sub(change)

    async def open(
        self,
        *,
        title: str = "Onduleur sur batterie",
        priority: str = "P2",
        severity: Severity = Severity.CRITICAL,
        site: str | None = "HD13",
        device: str | None = "ups-hd13-1",
        services: tuple[str, ...] = ("telephonie",),
        key: str | None = None,
        opened_at: datetime | None = None,
        deadlines: Mapping[str, datetime] | None = None,
    ) -> IncidentView:
        incident_id = self._next
        self._next += 1
        view = IncidentView(
            id=incident_id,
            key=key or f"test:{incident_id}",
            title=title,
            state=IncidentState.OPEN,
            priority=priority,
            severity=severity,
            opened_at=opened_at or self.clock.now(),
            site=site,
            device=device,
            services=services,
            deadlines=dict(deadlines or {}),
        )
        self.incidents[incident_id] = view
        self.timelines[incident_id] = [TimelineEntry(view.opened_at, "opened", title)]
        await self._emit(ChangeKind.OPENED, view)
        return view

    def _known(self, incident_id: int) -> IncidentView:
        try:
            return self.incidents[incident_id]
        except KeyError:
            raise KeyError(f"unknown incident {incident_id}") from None

    async def get(self, incident_id: int) -> IncidentView | None:
        return self.incidents.get(incident_id)

    async def list(self, query: IncidentQuery) -> Sequence[IncidentView]:
        found = [i for _, i in sorted(self.incidents.items()) if query.matches(i)]
        return found[query.offset : query.offset + query.limit]

    async def timeline(self, incident_id: int) -> Sequence[TimelineEntry]:
        self._known(incident_id)
        return list(self.timelines[incident_id])

    async def acknowledge(self, incident_id: int, actor: str, comment: str | None = None) -> IncidentView:
        view = self._known(incident_id)
        if view.state is IncidentState.RESOLVED:
            raise ValueError("incident already resolved")
        view = dataclasses.replace(view, state=IncidentState.ACKNOWLEDGED)
        self.incidents[incident_id] = view
        self.timelines[incident_id].append(
            TimelineEntry(self.clock.now(), "acknowledged", comment or "", actor)
        )
        await self._emit(ChangeKind.ACKNOWLEDGED, view, actor, comment)
        return view

    async def add_note(self, incident_id: int, actor: str, text: str) -> None:
        view = self._known(incident_id)
        self.timelines[incident_id].append(TimelineEntry(self.clock.now(), "note", text, actor))
        await self._emit(ChangeKind.NOTE, view, actor, text)

    async def resolve(self, incident_id: int, actor: str, reason: str) -> IncidentView:
        view = self._known(incident_id)
        if view.state is IncidentState.RESOLVED:
            raise ValueError("incident already resolved")
        view = dataclasses.replace(view, state=IncidentState.RESOLVED, resolved_at=self.clock.now())
        self.incidents[incident_id] = view
        self.timelines[incident_id].append(TimelineEntry(self.clock.now(), "resolved", reason, actor))
        await self._emit(ChangeKind.RESOLVED, view, actor, reason)
        return view

    async def add_timeline(
        self, incident_id: int, kind: str, text: str, data: Mapping[str, Any] | None = None
    ) -> None:
        self._known(incident_id)
        self.timelines[incident_id].append(TimelineEntry(self.clock.now(), kind, text, None, data or {}))

    async def set_itsm_ref(self, incident_id: int, ref: str) -> None:
        view = self._known(incident_id)
        self.incidents[incident_id] = dataclasses.replace(view, itsm_ref=ref)

    def entries(self, incident_id: int, kind: str) -> list[TimelineEntry]:
        return [e for e in self.timelines[incident_id] if e.kind == kind]


class MemoryMaintenance:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.windows: dict[int, MaintenanceWindow] = {}
        self._next = 1

    async def add(self, request: MaintenanceRequest, actor: str) -> MaintenanceWindow:
        window = MaintenanceWindow(
            id=self._next,
            start=request.start,
            end=request.end,
            reason=request.reason,
            created_by=actor,
            created_at=self.clock.now(),
            sites=request.sites,
            devices=request.devices,
            services=request.services,
        )
        self.windows[window.id] = window
        self._next += 1
        return window

    async def list(self, active_at: datetime | None = None) -> Sequence[MaintenanceWindow]:
        return [
            w for _, w in sorted(self.windows.items()) if active_at is None or w.start <= active_at < w.end
        ]

    async def remove(self, window_id: int, actor: str) -> bool:
        return self.windows.pop(window_id, None) is not None
