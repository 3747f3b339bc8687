"""Incident repository: rows, timeline and their transactions, the same on SQLite and PostgreSQL.

Writes that must not duplicate rely on the store's constraints, not on the caller's memory:
``create`` is an insert-or-get on the partial unique index (one unresolved incident per key), ``update``
is a conditional ``UPDATE ... WHERE`` whose timeline entries are written in the same transaction only
when the condition held, and timeline entries with a ``dedup`` key are written at most once. Restarts,
retries after a crash and a second agent on the same PostgreSQL therefore converge on one row per problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from callipso_agent.model import Severity
from callipso_agent.store.db import Store
from callipso_agent.store.tables import ACTIVE_WHERE, incident_timeline, incidents

UNRESOLVED = ("open", "acknowledged", "suppressed")
# timeline kinds that meet a deadline when first recorded
MEETS = {
    "notification": "first_information_at",
    "first_information": "first_information_at",
    "intervention": "intervention_at",
}


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One row of ``incidents`` as the engine reads it (timestamps UTC-aware)."""

    id: int
    key: str
    rule: str
    scope: str
    site: str | None
    device: str | None
    labels: Mapping[str, str]
    services: tuple[str, ...]
    parent_id: int | None
    state: str
    severity: Severity
    priority: str
    urgency: str
    impact: int
    priority_reasons: tuple[Mapping[str, Any], ...]
    outage: str
    user_impact: str
    technical_impact: str
    title_fr: str
    title_en: str
    detail: str | None
    runbook: str | None
    service_kind: str | None
    major: bool
    opened_at: datetime
    updated_at: datetime
    alarm_at: datetime
    ticket_created_at: datetime | None
    daily_check_failed_at: datetime | None
    clock_start: datetime
    deadlines: Mapping[str, Mapping[str, Any]]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    first_information_at: datetime | None
    intervention_at: datetime | None
    cleared_at: datetime | None
    last_signal_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    suppressed_by: str | None
    itsm_ref: str | None
    occurrences: int
    reopen_count: int

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> IncidentRecord:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["labels"] = dict(values["labels"] or {})
        values["services"] = tuple(values["services"] or ())
        values["severity"] = Severity(int(values["severity"]))
        values["priority_reasons"] = tuple(values["priority_reasons"] or ())
        values["deadlines"] = dict(values["deadlines"] or {})
        values["major"] = bool(values["major"])
        return cls(**values)

    @property
    def resolved(self) -> bool:
        return self.state == "resolved"

    @property
    def suppressed(self) -> bool:
        return self.state == "suppressed"

    def title(self, lang: str) -> str:
        return self.title_en if lang == "en" else self.title_fr


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """A timeline entry to write: French text first, English text optional, data for machines."""

    at: datetime
    kind: str
    text: str
    text_en: str | None = None
    actor: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    dedup: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineRecord:
    id: int
    incident_id: int
    at: datetime
    kind: str
    text: str
    text_en: str | None
    actor: str | None
    data: Mapping[str, Any]
    dedup: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> TimelineRecord:
        return cls(
            id=row["id"],
            incident_id=row["incident_id"],
            at=row["at"],
            kind=row["kind"],
            text=row["text"],
            text_en=row["text_en"],
            actor=row["actor"],
            data=dict(row["data"] or {}),
            dedup=row["dedup"],
        )

    def render(self, lang: str) -> str:
        return self.text_en if lang == "en" and self.text_en else self.text


@dataclass(frozen=True, slots=True)
class Written:
    """The row after a write, the timeline entries that write added, and whether it created the row."""

    record: IncidentRecord
    entries: tuple[TimelineRecord, ...] = ()
    created: bool = False

    @property
    def entry(self) -> TimelineRecord | None:
        return self.entries[0] if self.entries else None


class IncidentRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.store.dialect == "postgresql" else sqlite_insert)(table)

    # ---- writes ---------------------------------------------------------------------------------------
    async def create(self, values: Mapping[str, Any], entries: Sequence[TimelineEntry] = ()) -> Written:
        """Insert a new unresolved incident, or get the one already holding ``values['key']``.

        ``created`` tells whether this call created it; the timeline entries are written only then.
        """
        stmt = (
            self._insert(incidents)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[incidents.c.key], index_where=ACTIVE_WHERE)
            .returning(*incidents.c)
        )
        async with self.store.engine.begin() as conn:
            created = (await conn.execute(stmt)).mappings().first()
            if created is None:
                row = (
                    (
                        await conn.execute(
                            select(incidents).where(incidents.c.key == values["key"], ACTIVE_WHERE)
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is None:  # pragma: no cover - the conflicting row was resolved in between: retry once
                    raise RuntimeError(f"incident {values['key']!r} conflicted but is not unresolved")
                return Written(IncidentRecord.from_row(row))
            written = await self._write_entries(conn, created["id"], entries)
        return Written(IncidentRecord.from_row(created), tuple(written), created=True)

    async def update(
        self,
        incident_id: int,
        values: Mapping[str, Any],
        entries: Sequence[TimelineEntry] = (),
        *,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> Written | None:
        """Update when the row still matches ``where``; write ``entries`` in the same transaction.

        Returns the updated row, or None when the condition did not hold (someone else got there first).
        A unique-index violation (reopening while another unresolved row holds the key) propagates as
        ``sqlalchemy.exc.IntegrityError`` with nothing written.
        """
        stmt = (
            update(incidents)
            .where(incidents.c.id == incident_id, *where)
            .values(**values)
            .returning(*incidents.c)
        )
        async with self.store.engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            if row is None:
                return None
            written = await self._write_entries(conn, incident_id, entries)
        return Written(IncidentRecord.from_row(row), tuple(written))

    async def add_timeline(self, incident_id: int, entry: TimelineEntry) -> TimelineRecord | None:
        """Append one entry; None when an entry with the same ``dedup`` key already exists."""
        async with self.store.engine.begin() as conn:
            written = await self._write_entries(conn, incident_id, [entry])
        return written[0] if written else None

    async def _write_entries(
        self, conn: AsyncConnection, incident_id: int, entries: Sequence[TimelineEntry]
    ) -> list[TimelineRecord]:
        written: list[TimelineRecord] = []
        for e in entries:
            stmt = self._insert(incident_timeline).values(
                incident_id=incident_id,
                at=e.at,
                kind=e.kind,
                text=e.text,
                text_en=e.text_en,
                actor=e.actor,
                data=dict(e.data),
                dedup=e.dedup,
            )
            if e.dedup is not None:
                stmt = stmt.on_conflict_do_nothing(
                    index_elements=[incident_timeline.c.incident_id, incident_timeline.c.dedup]
                )
            new_id = (await conn.execute(stmt.returning(incident_timeline.c.id))).scalar_one_or_none()
            if new_id is None:
                continue
            written.append(
                TimelineRecord(
                    id=new_id,
                    incident_id=incident_id,
                    at=e.at,
                    kind=e.kind,
                    text=e.text,
                    text_en=e.text_en,
                    actor=e.actor,
                    data=dict(e.data),
                    dedup=e.dedup,
                )
            )
            column = MEETS.get(e.kind)
            if column is not None:
                col = incidents.c[column]
                await conn.execute(
                    update(incidents)
                    .where(incidents.c.id == incident_id, col.is_(None))
                    .values({column: e.at})
                )
        return written

    # ---- reads ----------------------------------------------------------------------------------------
    async def get(self, incident_id: int) -> IncidentRecord | None:
        async with self.store.engine.connect() as conn:
            row = (
                (await conn.execute(select(incidents).where(incidents.c.id == incident_id)))
                .mappings()
                .first()
            )
        return IncidentRecord.from_row(row) if row is not None else None

    async def active_by_key(self, key: str) -> IncidentRecord | None:
        async with self.store.engine.connect() as conn:
            row = (
                (await conn.execute(select(incidents).where(incidents.c.key == key, ACTIVE_WHERE)))
                .mappings()
                .first()
            )
        return IncidentRecord.from_row(row) if row is not None else None

    async def unresolved(self) -> list[IncidentRecord]:
        return await self.search(states=UNRESOLVED)

    async def last_resolved(self, key: str, since: datetime) -> IncidentRecord | None:
        """The most recent incident of ``key`` resolved at or after ``since`` (reopen candidates)."""
        stmt = (
            select(incidents)
            .where(incidents.c.key == key, incidents.c.state == "resolved", incidents.c.resolved_at >= since)
            .order_by(incidents.c.resolved_at.desc(), incidents.c.id.desc())
            .limit(1)
        )
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return IncidentRecord.from_row(row) if row is not None else None

    async def search(
        self,
        *,
        states: Iterable[str] | None = None,
        site: str | None = None,
        device: str | None = None,
        parent_id: int | None = None,
        top_level: bool = False,
        rule: str | None = None,
        opened_since: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[IncidentRecord]:
        conds: list[ColumnElement[bool]] = []
        if states is not None:
            conds.append(incidents.c.state.in_(list(states)))
        if site is not None:
            conds.append(incidents.c.site == site)
        if device is not None:
            conds.append(incidents.c.device == device)
        if parent_id is not None:
            conds.append(incidents.c.parent_id == parent_id)
        if top_level:
            conds.append(incidents.c.parent_id.is_(None))
        if rule is not None:
            conds.append(incidents.c.rule == rule)
        if opened_since is not None:
            conds.append(incidents.c.opened_at >= opened_since)
        order = incidents.c.id.desc() if newest_first else incidents.c.id
        stmt = select(incidents).where(*conds).order_by(order)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [IncidentRecord.from_row(r) for r in rows]

    async def timeline(self, incident_id: int) -> list[TimelineRecord]:
        stmt = (
            select(incident_timeline)
            .where(incident_timeline.c.incident_id == incident_id)
            .order_by(incident_timeline.c.at, incident_timeline.c.id)
        )
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [TimelineRecord.from_row(r) for r in rows]

    async def timeline_after(self, after_id: int, limit: int = 500) -> list[TimelineRecord]:
        """Entries of every incident with an id above ``after_id``, oldest first: what an outbox tails."""
        stmt = (
            select(incident_timeline)
            .where(incident_timeline.c.id > after_id)
            .order_by(incident_timeline.c.id)
            .limit(limit)
        )
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [TimelineRecord.from_row(r) for r in rows]

    async def dedup_keys(self, incident_ids: Iterable[int]) -> set[tuple[int, str]]:
        ids = list(incident_ids)
        if not ids:
            return set()
        stmt = select(incident_timeline.c.incident_id, incident_timeline.c.dedup).where(
            incident_timeline.c.incident_id.in_(ids), incident_timeline.c.dedup.is_not(None)
        )
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {(r[0], r[1]) for r in rows}
