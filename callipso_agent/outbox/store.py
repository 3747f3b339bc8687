"""The durable outbox: enqueue (idempotent), claim under a lease, complete, fail with backoff.

Every state change is one short transaction, so a crash at any point leaves the job either as it
was or in its next state. A job claimed by a worker that died stays ``in_flight`` until its lease
expires; the next claim then takes it again and marks it ``uncertain`` (the dead worker may have
delivered it), which tells the connector to look for the effect before acting again.

Claims use optimistic concurrency (``version``), so several workers (or agents sharing a PostgreSQL
store) never run the same job twice at once, without ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from callipso_agent.clock import Clock
from callipso_agent.outbox.backoff import Backoff
from callipso_agent.outbox.jobs import TERMINAL, Enqueued, Job, JobState
from callipso_agent.outbox.table import outbox

log = structlog.get_logger()

MAX_ERROR_TEXT = 2000


@dataclass(frozen=True, slots=True)
class TargetBacklog:
    target: str
    pending: int  # neither delivered nor given up
    dead: int  # given up: waiting for an operator
    oldest_due: datetime | None  # creation time of the oldest late job


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("outbox timestamps must be timezone-aware")
    return value.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(value: datetime) -> datetime:
    aware = _aware(value)
    assert aware is not None
    return aware


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        target=row["target"],
        payload=row["payload"] or {},
        idempotency_key=row["idempotency_key"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        next_attempt_at=_when(row["next_attempt_at"]),
        created_at=_when(row["created_at"]),
        updated_at=_when(row["updated_at"]),
        incident_id=row["incident_id"],
        ordering_key=row["ordering_key"],
        uncertain=bool(row["uncertain"]),
        version=row["version"],
        lease_owner=row["lease_owner"],
        lease_until=_aware(row["lease_until"]),
        last_error=row["last_error"],
        result=row["result"],
    )


class Outbox:
    def __init__(
        self, engine: AsyncEngine, clock: Clock, *, max_attempts: int = 25, backoff: Backoff | None = None
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._listeners: list[Callable[[], None]] = []

    # ---- producers ------------------------------------------------------------------------------
    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs after each enqueue that added a job (a worker's wake-up)."""
        self._listeners.append(callback)

    def _insert(self) -> Any:
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(outbox)

    async def enqueue(
        self,
        kind: str,
        target: str,
        payload: Mapping[str, Any],
        *,
        key: str,
        incident_id: int | None = None,
        ordering_key: str | None = None,
        not_before: datetime | None = None,
        max_attempts: int | None = None,
    ) -> Enqueued:
        """Add a job unless one with the same idempotency ``key`` exists (then return that one)."""
        now = to_utc(self.clock.now())
        due = max(now, to_utc(not_before)) if not_before is not None else now
        stmt = (
            self._insert()
            .values(
                kind=kind,
                target=target,
                payload=dict(payload),
                idempotency_key=key,
                ordering_key=ordering_key,
                incident_id=incident_id,
                state=JobState.PENDING.value,
                attempts=0,
                max_attempts=max_attempts or self.max_attempts,
                next_attempt_at=due,
                uncertain=False,
                version=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
            .returning(*outbox.c)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            created = row is not None
            if row is None:  # the key exists: that job
                row = (await conn.execute(select(outbox).where(outbox.c.idempotency_key == key))).mappings().one()
        job = _job(row)
        if created:
            log.debug("outbox_enqueued", job=job.id, kind=kind, target=target)
            for cb in self._listeners:
                cb()
        return Enqueued(job, created)

    # ---- reading --------------------------------------------------------------------------------
    async def get(self, job_id: int) -> Job | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(outbox).where(outbox.c.id == job_id))).mappings().first()
        return _job(row) if row else None

    async def by_key(self, key: str) -> Job | None:
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(outbox).where(outbox.c.idempotency_key == key))).mappings().first()
            )
        return _job(row) if row else None

    async def jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        incident_id: int | None = None,
        kind: str | None = None,
        target: str | None = None,
        limit: int = 1000,
    ) -> list[Job]:
        q = select(outbox).order_by(outbox.c.id).limit(limit)
        if states is not None:
            q = q.where(outbox.c.state.in_([s.value for s in states]))
        if incident_id is not None:
            q = q.where(outbox.c.incident_id == incident_id)
        if kind is not None:
            q = q.where(outbox.c.kind == kind)
        if target is not None:
            q = q.where(outbox.c.target == target)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_job(r) for r in rows]

    async def backlog(self) -> dict[str, int]:
        """Jobs per state, terminal states included (for metrics: ``callipso_outbox_jobs{state}``)."""
        q = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        counts = {s.value: 0 for s in JobState}
        counts.update({state: n for state, n in rows})
        return counts

    async def per_target(self) -> list[TargetBacklog]:
        """Undelivered and dead jobs per target (an EasyVista instance or a notification channel).

        ``oldest_due`` is the creation time of the oldest undelivered job that is already due or has
        failed at least once: a notification deferred to the end of quiet hours is not late.
        """
        now = to_utc(self.clock.now())
        live = outbox.c.state.not_in([s.value for s in TERMINAL])
        late = and_(live, or_(outbox.c.attempts > 0, outbox.c.next_attempt_at <= now))
        q = select(
            outbox.c.target,
            func.count().filter(live),
            func.count().filter(outbox.c.state == JobState.DEAD.value),
            func.min(outbox.c.created_at).filter(late),
        ).group_by(outbox.c.target)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [TargetBacklog(target, int(pending), int(dead), _aware(oldest))
                for target, pending, dead, oldest in rows]

    async def backlog_size(self) -> int:
        """Jobs not yet delivered nor given up (pending, in flight, waiting for a retry)."""
        q = select(func.count()).select_from(outbox).where(outbox.c.state.not_in([s.value for s in TERMINAL]))
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def next_due(self) -> datetime | None:
        """When the earliest waiting job becomes due (for a worker's sleep)."""
        waiting = select(func.min(outbox.c.next_attempt_at)).where(
            outbox.c.state.in_([JobState.PENDING.value, JobState.FAILED.value])
        )
        leased = select(func.min(outbox.c.lease_until)).where(outbox.c.state == JobState.IN_FLIGHT.value)
        async with self.engine.connect() as conn:
            a = _aware((await conn.execute(waiting)).scalar_one())
            b = _aware((await conn.execute(leased)).scalar_one())
        found = [t for t in (a, b) if t is not None]
        return min(found) if found else None

    # ---- workers --------------------------------------------------------------------------------
    async def claim(
        self, owner: str, *, limit: int, lease_seconds: float, room: Callable[[str], int] | None = None
    ) -> list[Job]:
        """Take up to ``limit`` due jobs under a lease for ``owner``.

        ``room(target)`` says how many more jobs of that target this worker may start now (its
        per-target concurrency). A job waits while an earlier job with the same ordering key is neither
        done nor dead, so a ticket is created before it is commented on and closed.
        """
        if limit <= 0:
            return []
        now = to_utc(self.clock.now())
        earlier = outbox.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                earlier.c.ordering_key == outbox.c.ordering_key,
                earlier.c.id < outbox.c.id,
                earlier.c.state.not_in([s.value for s in TERMINAL]),
            )
            .exists()
        )
        due = or_(
            and_(
                outbox.c.state.in_([JobState.PENDING.value, JobState.FAILED.value]),
                outbox.c.next_attempt_at <= now,
            ),
            and_(outbox.c.state == JobState.IN_FLIGHT.value, outbox.c.lease_until <= now),
        )
        q = (
            select(outbox)
            .where(due, or_(outbox.c.ordering_key.is_(None), ~blocked))
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(max(limit * 4, 50))
        )
        async with self.engine.connect() as conn:
            candidates = [_job(r) for r in (await conn.execute(q)).mappings().all()]
        taken: list[Job] = []
        started: dict[str, int] = {}
        lease_until = now + timedelta(seconds=lease_seconds)
        for job in candidates:
            if len(taken) >= limit:
                break
            if room is not None and room(job.target) - started.get(job.target, 0) <= 0:
                continue
            reclaim = job.state is JobState.IN_FLIGHT  # its previous worker died or lost its lease
            stmt = (
                update(outbox)
                .where(outbox.c.id == job.id, outbox.c.version == job.version)
                .values(
                    state=JobState.IN_FLIGHT.value,
                    lease_owner=owner,
                    lease_until=lease_until,
                    attempts=outbox.c.attempts + 1,
                    version=outbox.c.version + 1,
                    uncertain=True if reclaim else outbox.c.uncertain,
                    updated_at=now,
                )
            )
            async with self.engine.begin() as conn:
                if (await conn.execute(stmt)).rowcount != 1:
                    continue  # another worker took it
                row = (await conn.execute(select(outbox).where(outbox.c.id == job.id))).mappings().one()
            claimed = _job(row)
            if reclaim:
                log.warning("outbox_lease_expired", job=job.id, kind=job.kind, previous_owner=job.lease_owner)
            taken.append(claimed)
            started[claimed.target] = started.get(claimed.target, 0) + 1
        return taken

    async def complete(self, job: Job, owner: str, result: Mapping[str, Any] | None = None) -> bool:
        """Mark a claimed job done; False if the lease was lost meanwhile (then another worker owns it)."""
        now = to_utc(self.clock.now())
        stmt = (
            update(outbox)
            .where(outbox.c.id == job.id, outbox.c.lease_owner == owner, outbox.c.version == job.version)
            .values(
                state=JobState.DONE.value,
                lease_owner=None,
                lease_until=None,
                result=dict(result or {}),
                version=outbox.c.version + 1,
                updated_at=now,
            )
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def fail(
        self,
        job: Job,
        owner: str,
        error: str,
        *,
        retryable: bool,
        uncertain: bool = False,
        retry_after: float | None = None,
    ) -> Job | None:
        """Record a failed attempt: schedule a retry with backoff, or give up (dead).

        Returns the job's new state, or None if the lease was lost meanwhile.
        """
        now = to_utc(self.clock.now())
        give_up = not retryable or job.attempts >= job.max_attempts
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "last_error": error[:MAX_ERROR_TEXT],
            "version": outbox.c.version + 1,
            "updated_at": now,
            "uncertain": True if uncertain else outbox.c.uncertain,
        }
        if give_up:
            values["state"] = JobState.DEAD.value
        else:
            values["state"] = JobState.FAILED.value
            values["next_attempt_at"] = now + timedelta(seconds=self.backoff.delay(job.attempts, retry_after))
        stmt = (
            update(outbox)
            .where(outbox.c.id == job.id, outbox.c.lease_owner == owner, outbox.c.version == job.version)
            .values(**values)
        )
        async with self.engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return None
            row = (await conn.execute(select(outbox).where(outbox.c.id == job.id))).mappings().one()
        return _job(row)

    async def requeue(self, job_id: int) -> bool:
        """Give a dead job a fresh set of attempts (after an operator fixed the cause)."""
        now = to_utc(self.clock.now())
        stmt = (
            update(outbox)
            .where(outbox.c.id == job_id, outbox.c.state == JobState.DEAD.value)
            .values(
                state=JobState.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                version=outbox.c.version + 1,
                updated_at=now,
            )
        )
        async with self.engine.begin() as conn:
            changed = (await conn.execute(stmt)).rowcount == 1
        if changed:
            for cb in self._listeners:
                cb()
        return changed
