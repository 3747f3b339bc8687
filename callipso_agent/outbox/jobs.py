"""Outbox job value objects."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol


class JobState(enum.StrEnum):
    PENDING = "pending"  # never tried
    IN_FLIGHT = "in_flight"  # claimed under a lease by a worker
    DONE = "done"
    FAILED = "failed"  # last attempt failed; retried at next_attempt_at
    DEAD = "dead"  # gave up (final error or too many attempts); kept for operators, requeue-able


TERMINAL = (JobState.DONE, JobState.DEAD)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    target: str
    payload: Mapping[str, Any]
    idempotency_key: str
    state: JobState
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    incident_id: int | None = None
    ordering_key: str | None = None
    uncertain: bool = False
    version: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_error: str | None = None
    result: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))


@dataclass(frozen=True, slots=True)
class Enqueued:
    job: Job
    created: bool  # False: a job with this idempotency key already existed (nothing was added)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a successful attempt produced: a one-line summary and data kept in the job's result."""

    summary: str
    result: Mapping[str, Any] = field(default_factory=dict)


class Deliverer(Protocol):
    """Carries out one job. Raise :class:`~callipso_agent.outbox.errors.DeliveryError` on failure."""

    async def deliver(self, job: Job) -> Delivered: ...


class TimelineSink(Protocol):
    """Where attempt results are reported (the incident engine's ``add_timeline``)."""

    async def add_timeline(
        self, incident_id: int, kind: str, text: str, data: Mapping[str, Any] | None = None
    ) -> None: ...
