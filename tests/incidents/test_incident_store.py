"""The incident repository on SQLite and PostgreSQL: insert-or-get, conditional updates, idempotent
entries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError, StatementError

from callipso_agent.clock import ManualClock
from callipso_agent.errors import ConfigErrors
from callipso_agent.incidents.maintenance import (
    MaintenanceBook,
    MaintenanceError,
    MaintenanceWindow,
    load_maintenance_file,
)
from callipso_agent.store import Store
from callipso_agent.store.incidents import IncidentRepository, TimelineEntry
from callipso_agent.store.tables import incidents as T

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def row(key: str, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "key": key,
        "rule": "ups_on_battery",
        "scope": "device",
        "site": "AUBAGNE",
        "device": "ups-aubagne",
        "labels": {},
        "services": ["toip"],
        "state": "open",
        "severity": 2,
        "priority": "P2",
        "urgency": "U2",
        "impact": 2,
        "priority_reasons": [{"code": "u2", "params": {}}],
        "outage": "backup",
        "user_impact": "none",
        "technical_impact": "major",
        "title_fr": "Onduleur",
        "title_en": "UPS",
        "opened_at": T0,
        "updated_at": T0,
        "alarm_at": T0,
        "clock_start": T0,
        "deadlines": {},
        "last_signal_at": T0,
        "major": False,
    }
    values.update(over)
    return values


def entry(kind: str = "opened", dedup: str | None = None) -> TimelineEntry:
    return TimelineEntry(T0, kind, "texte", "text", dedup=dedup)


async def test_schema_is_migrated_on_both_databases(store: Store) -> None:
    await store.migrate()  # idempotent
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("incidents"))
    assert {
        "incidents",
        "incident_timeline",
        "maintenance_windows",
        "ha_agents",
        "ha_leases",
        "ha_job_runs",
    } <= tables
    (active,) = [i for i in indexes if i["name"] == "uq_incidents_active_key"]
    assert active["unique"] and active["column_names"] == ["key"]


async def test_insert_or_get_on_the_problem_key(store: Store) -> None:
    repo = IncidentRepository(store)
    first = await repo.create(row("k"), [entry()])
    again = await repo.create(row("k", title_fr="autre"), [entry()])
    assert first.created and not again.created and again.record.id == first.record.id
    assert again.record.title_fr == "Onduleur" and again.entries == ()
    assert [e.kind for e in await repo.timeline(first.record.id)] == ["opened"]
    await repo.update(first.record.id, {"state": "resolved", "resolved_at": T0}, [entry("resolved")])
    third = await repo.create(row("k"), [entry()])
    assert third.created and third.record.id != first.record.id  # a resolved incident does not hold its key
    with pytest.raises(IntegrityError):  # reopening the old one while the new one is unresolved
        await repo.update(first.record.id, {"state": "open", "resolved_at": None}, [entry("reopened")])
    assert [e.kind for e in await repo.timeline(first.record.id)] == [
        "opened",
        "resolved",
    ]  # nothing half-written


async def test_concurrent_opening_from_many_connections_creates_one_row(store_url: str, store: Store) -> None:
    others = [Store(store_url) for _ in range(6)]
    try:
        results = await asyncio.gather(
            *(
                IncidentRepository(s).create(row("race"), [entry()])
                for s in [store, *others]
                for _ in range(3)
            )
        )
    finally:
        for s in others:
            await s.close()
    assert sum(r.created for r in results) == 1
    assert len({r.record.id for r in results}) == 1
    assert len(await IncidentRepository(store).search()) == 1


async def test_conditional_update_and_idempotent_entries(store: Store) -> None:
    repo = IncidentRepository(store)
    rec = (await repo.create(row("k"), [entry()])).record
    assert (
        await repo.update(
            rec.id, {"state": "acknowledged"}, [entry("acknowledged")], where=[T.c.state == "suppressed"]
        )
        is None
    )
    w = await repo.update(
        rec.id,
        {"state": "acknowledged", "acknowledged_at": T0},
        [entry("acknowledged")],
        where=[T.c.state == "open"],
    )
    assert (
        w is not None
        and w.record.state == "acknowledged"
        and w.entry is not None
        and w.entry.kind == "acknowledged"
    )
    assert await repo.add_timeline(rec.id, entry("deadline_missed", dedup="deadline:taking_charge:missed"))
    assert (
        await repo.add_timeline(rec.id, entry("deadline_missed", dedup="deadline:taking_charge:missed"))
        is None
    )
    assert await repo.add_timeline(rec.id, entry("note")) and await repo.add_timeline(rec.id, entry("note"))
    note = TimelineEntry(T0 + timedelta(minutes=5), "notification", "SMS", data={"to": "astreinte"})
    await repo.add_timeline(rec.id, note)
    await repo.add_timeline(rec.id, TimelineEntry(T0 + timedelta(minutes=9), "notification", "mail"))
    got = await repo.get(rec.id)
    assert got is not None and got.first_information_at == T0 + timedelta(minutes=5)  # the first one counts
    kinds = [e.kind for e in await repo.timeline(rec.id)]
    assert kinds.count("deadline_missed") == 1 and kinds.count("note") == 2
    tail = await repo.timeline_after(0)
    assert [e.id for e in tail] == sorted(e.id for e in tail) and len(tail) == len(kinds)
    assert await repo.timeline_after(tail[-1].id) == []
    assert await repo.dedup_keys([rec.id]) == {(rec.id, "deadline:taking_charge:missed")}


async def test_timestamps_come_back_aware_and_naive_ones_are_refused(store: Store) -> None:
    repo = IncidentRepository(store)
    paris = datetime(2026, 7, 1, 10, 30, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    rec = (await repo.create(row("tz", opened_at=paris))).record
    assert (
        rec.opened_at == paris
        and rec.opened_at.tzinfo is not None
        and rec.opened_at.utcoffset() == timedelta(0)
    )
    assert await repo.last_resolved("tz", T0) is None
    with pytest.raises((StatementError, ValueError)):
        await repo.create(row("naive", opened_at=datetime(2026, 1, 5, 9, 0)))


async def test_maintenance_windows_in_the_store_and_in_a_file(store: Store, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    f = tmp_path / "maintenance.yaml"
    f.write_text(
        "maintenance:\n  - name: Travaux\n    scope: site\n    targets: [AUBAGNE]\n"
        "    start: 2026-01-05T10:00:00+01:00\n    end: 2026-01-05T12:00:00+01:00\n",
        encoding="utf-8",
    )
    book = MaintenanceBook(store, clock, load_maintenance_file(f))
    added = await book.add(
        MaintenanceWindow(
            name="Batteries",
            scope="device",
            targets=["ups-aix"],
            start=T0 + timedelta(hours=1),
            end=T0 + timedelta(hours=2),
        )
    )
    other = MaintenanceBook(store, clock, [])  # another agent sees the stored window after a refresh
    await other.refresh()
    assert [w.id for w in other.windows()] == [added.id]
    assert book.active_for(site="AUBAGNE", device="gw-aubagne", services=[], at=T0).id == "file:1"  # type: ignore[union-attr]
    assert book.active_for(site="AIX", device="ups-aix", services=[], at=T0) is None
    assert book.active_for(site="AIX", device="ups-aix", services=[], at=T0 + timedelta(hours=1)) is not None
    with pytest.raises(MaintenanceError, match="maintenance file"):
        await book.remove("file:1")
    assert await book.remove(added.id or "") and not await book.remove(added.id or "")


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (
            "maintenance:\n  - name: x\n    scope: building\n    targets: [A]\n"
            "    start: 2026-01-05T10:00:00+01:00\n"
            "    end: 2026-01-05T11:00:00+01:00\n",
            3,
            "maintenance[0].scope",
        ),
        (
            "maintenance:\n  - name: x\n    scope: site\n    targets: [A]\n    start: 2026-01-05T10:00:00\n"
            "    end: 2026-01-05T11:00:00+01:00\n",
            5,
            "maintenance[0].start",
        ),
        (
            "maintenance:\n  - name: x\n    scope: site\n    targets: [A]\n"
            "    start: 2026-01-05T10:00:00+01:00\n"
            "    end: 2026-01-05T09:00:00+01:00\n    ticket: 4\n",
            7,
            "maintenance[0].ticket",
        ),
    ],
)
def test_maintenance_file_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    f = tmp_path / "maintenance.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_maintenance_file(f)
    assert any(e.line == line and e.field == field and e.file == str(f) for e in info.value.errors), [
        str(e) for e in info.value.errors
    ]
