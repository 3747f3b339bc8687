"""What the output stage (outbox, ITSM, notifications, HTTP API) needs from the incident engine.

The engine satisfies these Protocols structurally; nothing here imports it. Conventions:

* ``IncidentSource.get`` returns ``None`` for an unknown id; the actions (``acknowledge``, ``add_note``,
  ``resolve``, ``timeline``) raise :class:`LookupError` (``KeyError`` is one) for an unknown id and
  :class:`ValueError` for a transition that makes no sense (acknowledging a resolved incident).
* Timestamps are UTC-aware.
* The engine tells the outputs what happened through :class:`IncidentChange` values handed to a
  callable it is given (see ``callipso_agent.notify.dispatch.OutputDispatcher.on_change``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from callipso_agent.model import IncidentState, IncidentView


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of an incident's history (opened, acknowledged, note, delivery, ...)."""

    at: datetime
    kind: str
    text: str
    actor: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Filters of ``IncidentSource.list``; ``None`` means "any"."""

    states: tuple[IncidentState, ...] | None = None
    priority: str | None = None
    site: str | None = None
    service: str | None = None
    device: str | None = None
    limit: int = 100
    offset: int = 0

    def matches(self, incident: IncidentView) -> bool:
        """Reference semantics of the filters (an in-memory source may use it as is)."""
        return (
            (self.states is None or incident.state in self.states)
            and (self.priority is None or incident.priority == self.priority)
            and (self.site is None or incident.site == self.site)
            and (self.service is None or self.service in incident.services)
            and (self.device is None or incident.device == self.device)
        )


@runtime_checkable
class IncidentSource(Protocol):
    async def get(self, incident_id: int) -> IncidentView | None: ...

    async def list(self, query: IncidentQuery) -> Sequence[IncidentView]: ...

    async def timeline(self, incident_id: int) -> Sequence[TimelineEntry]: ...

    async def acknowledge(self, incident_id: int, actor: str, comment: str | None = None) -> IncidentView: ...

    async def add_note(self, incident_id: int, actor: str, text: str) -> None: ...

    async def resolve(self, incident_id: int, actor: str, reason: str) -> IncidentView: ...

    async def add_timeline(
        self, incident_id: int, kind: str, text: str, data: Mapping[str, Any] | None = None
    ) -> None: ...

    async def set_itsm_ref(self, incident_id: int, ref: str) -> None: ...


@dataclass(frozen=True, slots=True)
class MaintenanceRequest:
    """A maintenance window to declare: at least one of sites, devices, services is named."""

    start: datetime
    end: datetime
    reason: str
    sites: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    services: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: int
    start: datetime
    end: datetime
    reason: str
    created_by: str
    created_at: datetime
    sites: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    services: tuple[str, ...] = ()


@runtime_checkable
class MaintenanceSource(Protocol):
    async def add(self, request: MaintenanceRequest, actor: str) -> MaintenanceWindow: ...

    async def list(self, active_at: datetime | None = None) -> Sequence[MaintenanceWindow]: ...

    async def remove(self, window_id: int, actor: str) -> bool: ...  # False when unknown


class AuditSink(Protocol):
    """``callipso_agent.store.Store`` satisfies it."""

    async def audit(
        self,
        at: datetime,
        actor: str,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None: ...


class ChangeKind(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"  # priority, title or impact changed
    ACKNOWLEDGED = "acknowledged"
    NOTE = "note"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """What the engine tells the outputs after it committed a change of an incident."""

    kind: ChangeKind
    incident: IncidentView
    at: datetime
    actor: str | None = None
    text: str | None = None  # the note, the acknowledgement comment, the resolution reason, what changed
    replayed: bool = False  # handed over again (after a restart): outputs skip what they already did
