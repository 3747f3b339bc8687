"""Incident scenarios on a ManualClock, each on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.incidents.engine import IncidentNotFound, IncidentStateError
from callipso_agent.incidents.maintenance import MaintenanceWindow
from callipso_agent.model import IncidentState, Severity
from callipso_agent.store import Store
from callipso_agent.store.incidents import IncidentRepository
from tests.helpers.estate import m, poll
from tests.incidents.harness import Scenario

MONDAY_10H_PARIS = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # business hours are 07:00-17:00 UTC in January


def utc(h: int, mi: int, day: int = 5) -> datetime:
    return datetime(2026, 1, day, h, mi, tzinfo=UTC)


# ---- UPS on battery: the for-delay, priority and deadlines ----------------------------------------------


async def test_ups_30_seconds_on_battery_opens_nothing(store: Store) -> None:
    sc = await Scenario(store).start()
    await sc.ups("ups-aubagne", True, 30)
    await sc.ups("ups-aubagne", False, 600)
    assert await sc.rows() == [] and sc.notices == []


async def test_ups_90_seconds_on_battery_opens_one_incident_with_its_priority(store: Store) -> None:
    sc = await Scenario(store).start()
    await sc.ups("ups-aubagne", True, 90)
    (view,) = await sc.engine.open_incidents()
    # AUBAGNE: standard site, no VIP, the UPS carries no service line -> urgency U2; on battery -> impact 2
    # (backup); matrix U2 x 2 = P3, raised to P2 because supervision detected it (technical floor).
    assert view.key == "ups_on_battery:ups-aubagne" and view.priority == "P2"
    assert view.state is IncidentState.OPEN and view.severity is Severity.CRITICAL
    assert view.opened_at == utc(9, 1)  # on battery since 09:00:00, the 60 s delay ends at 09:01:00
    assert (view.user_impact, view.technical_impact) == ("none", "major")
    assert view.runbook == "ups-on-battery.md" and "ups-aubagne" in view.title
    # P2 on a business-hours site: 30 min / 2 h / 4 h of business time from 09:01 UTC (10:01 Paris)
    assert dict(view.deadlines) == {
        "taking_charge": utc(9, 31),
        "first_information": utc(11, 1),
        "restoration": utc(13, 1),
    }
    detail = await sc.engine.get(view.id)
    assert detail is not None
    assert [r["code"] for r in detail.record.priority_reasons] == ["u2", "i2_backup", "matrix", "floor"]
    assert detail.explanation[-1] == (
        "Priorité relevée de P3 à P2 : incident technique détecté par la supervision"
    )
    assert sc.kinds() == ["opened"]
    await sc.ups("ups-aubagne", True, 300)  # still on battery: still one incident, no new notice
    assert len(await sc.rows()) == 1 and sc.kinds() == ["opened"]


async def test_cercle0_service_on_a_sensitive_site_adds_the_intervention_deadline(store: Store) -> None:
    sc = await Scenario(store).start()
    await sc.ups("ups-aix", True, 90)
    (view,) = await sc.engine.open_incidents()
    detail = await sc.engine.get(view.id)
    assert detail is not None
    # AIX is sensitive and the UPS carries 'toip' (Cercle 0): U1; backup -> impact 2; U1 x 2 = P2
    assert [r["code"] for r in detail.record.priority_reasons] == [
        "u1_service_cercle0",
        "u1_site",
        "i2_backup",
        "matrix",
    ]
    assert view.priority == "P2"
    assert dict(view.deadlines) == {
        "taking_charge": utc(9, 31),
        "first_information": utc(11, 1),
        "restoration": utc(13, 1),
        "intervention": utc(9, 31),
    }


@pytest.mark.parametrize(
    ("device", "taking_charge"),
    [
        (
            "ups-aubagne",
            utc(7, 21, day=6),
        ),  # business clock: 9 min left today, 21 min from 08:00 Paris next day
        ("ups-hd13", utc(17, 21)),  # HD13 is run 24x7: the site clock never stops
    ],
)
async def test_deadlines_follow_the_site_clock(store: Store, device: str, taking_charge: datetime) -> None:
    sc = await Scenario(store, ManualClock(utc(16, 50))).start()
    await sc.ups(device, True, 90)
    (view,) = await sc.engine.open_incidents()
    assert view.opened_at == utc(16, 51) and view.deadlines["taking_charge"] == taking_charge


async def test_severity_rise_raises_the_priority_and_recomputes_deadlines(store: Store) -> None:
    sc = await Scenario(store).start()

    async def source(label: str, sev: Severity, seconds: int) -> None:
        end = sc.now + timedelta(seconds=seconds)
        while sc.now < end:
            await sc.pipeline.on_poll(
                poll(
                    "ups-hd13", sc.now, m("ups-hd13", "ups_output_source", 1.0, sc.now, state=sev, text=label)
                )
            )
            await sc.step(10)

    await source("bypass", Severity.WARNING, 90)
    (first,) = await sc.engine.open_incidents()
    assert first.priority == "P2" and first.user_impact == "none"
    await source("none", Severity.CRITICAL, 90)
    (now,) = await sc.engine.open_incidents()
    # output off at HD13: total outage of 900 users with external users -> impact 1; U1 -> P1
    assert now.id == first.id and now.priority == "P1" and now.severity is Severity.CRITICAL
    assert now.user_impact == "outage" and now.deadlines["taking_charge"] == first.opened_at  # P1: immediate
    detail = await sc.engine.get(now.id)
    assert detail is not None and detail.record.major
    # P1 taking charge is immediate and counts from the first alarm: already missed at the next tick
    assert [e.kind for e in detail.timeline] == [
        "opened",
        "severity_changed",
        "priority_changed",
        "deadline_missed",
    ]
    assert sc.kinds() == ["opened", "updated", "deadline"]


# ---- hold time, flapping, restart ------------------------------------------------------------------------


async def test_clearing_resolves_after_the_hold_time(store: Store) -> None:
    sc = await Scenario(store, hold=300).start()
    await sc.ups("ups-aubagne", True, 90)
    cleared_at = sc.now
    await sc.ups("ups-aubagne", False, 290)
    (view,) = await sc.engine.open_incidents()
    assert view.state is IncidentState.OPEN
    await sc.ups("ups-aubagne", False, 20)
    assert await sc.engine.open_incidents() == []
    (row,) = await sc.rows()
    assert row.state == "resolved" and row.resolved_by == "auto" and row.cleared_at == cleared_at
    assert row.resolved_at is not None and (row.resolved_at - cleared_at).total_seconds() >= 300
    assert sc.kinds() == ["opened", "resolved"]


@pytest.mark.parametrize(
    ("down_s", "up_s", "reopens"),
    [
        (180, 120, 0),  # back before the 5-minute hold: the incident never resolves
        (180, 480, 9),  # resolved between cycles, back within the hour: the same incident is reopened
    ],
)
async def test_flapping_wan_link_is_one_incident(store: Store, down_s: int, up_s: int, reopens: int) -> None:
    sc = await Scenario(store, hold=300, flap=3600).start()
    labels = {"ifindex": "1", "interface": "Gi0/0"}
    for _ in range(10):
        for up, seconds in ((0.0, down_s), (1.0, up_s)):
            end = sc.now + timedelta(seconds=seconds)
            while sc.now < end:
                await sc.value("wan1-aix", "interface_oper_up", up, labels)
                await sc.step(20)
    rows = await sc.rows()
    assert len(rows) == 1
    (row,) = rows
    assert row.key == "wan_link_down:wan1-aix{interface=Gi0/0}" and row.occurrences == 10
    assert row.reopen_count == reopens
    # dual-WAN site: one link down is a perturbation (degraded, perturbé), the users see nothing
    assert (row.outage, row.user_impact, row.technical_impact) == ("degraded", "none", "minor")
    assert sc.kinds().count("opened") == 1 and sc.kinds().count("reopened") == reopens


async def test_restart_finds_the_open_incident_instead_of_opening_another(store_url: str) -> None:
    clock = ManualClock()
    first = Store(store_url)
    await first.migrate()
    sc = await Scenario(first, clock).start()
    await sc.ups("ups-aubagne", True, 90)
    (before,) = await sc.rows()
    await first.close()

    second = Store(store_url)  # a new process: new engine, new rule state, same database
    try:
        sc2 = await Scenario(second, clock).start()
        await sc2.ups("ups-aubagne", True, 300)
        rows = await sc2.rows()
        assert [r.id for r in rows] == [before.id] and sc2.notices == []
        await sc2.ups("ups-aubagne", False, 320)  # the restored problem clears and resolves
        (after,) = await sc2.rows()
        assert after.id == before.id and after.state == "resolved"
    finally:
        await second.close()


async def test_two_engines_on_one_store_never_duplicate(store_url: str) -> None:
    clock = ManualClock()
    a, b = Store(store_url), Store(store_url)
    await a.migrate()
    try:
        one, two = await Scenario(a, clock).start(), await Scenario(b, clock).start()
        for _ in range(9):
            t = clock.now()
            await asyncio.gather(*(s.value("ups-aubagne", "ups_on_battery", 1.0) for s in (one, two)))
            await asyncio.gather(one.pipeline.tick(), two.pipeline.tick())
            assert clock.now() == t
            clock.advance(10)
        rows = await one.rows()
        assert len(rows) == 1 and rows[0].state == "open"
        assert one.kinds().count("opened") + two.kinds().count("opened") == 1
    finally:
        await a.close()
        await b.close()


# ---- site correlation -------------------------------------------------------------------------------------


async def _cut(sc: Scenario, devices: list[str], polls: int, *, answering: list[str] = ()) -> None:
    for _ in range(polls):
        for d in devices:
            await sc.fail(d)
        for d in answering:
            await sc.ok(d)
        await sc.step(60)


async def test_unreachable_site_is_one_incident_carrying_its_devices(store: Store) -> None:
    sc = await Scenario(store).start()
    site = ["ups-aubagne", "probe-aubagne", "gw-aubagne"]
    await _cut(sc, site, 4)
    (view,) = await sc.engine.open_incidents()
    assert view.key == "site_unreachable:AUBAGNE" and view.device is None and view.site == "AUBAGNE"
    assert (view.user_impact, view.technical_impact) == ("outage", "major")
    assert "3 équipements" in view.title
    detail = await sc.engine.get(view.id)
    assert detail is not None
    assert sorted(c.key for c in detail.children) == [f"device_unreachable:{d}" for d in sorted(site)]
    assert [e.kind for e in detail.timeline].count("child_attached") == 3
    every = await sc.engine.open_incidents(include_children=True)
    assert len(every) == 4
    assert sc.kinds() == ["opened"]  # the children are attached, not opened separately
    # the site answers again: children and site clear and resolve after the hold time
    for _ in range(8):
        for d in site:
            await sc.ok(d)
        await sc.step(60)
    assert await sc.engine.open_incidents(include_children=True) == []
    assert sc.kinds() == ["opened", "resolved"]


async def test_partly_recovered_site_leaves_the_last_device_on_its_own(store: Store) -> None:
    sc = await Scenario(store).start()
    await _cut(sc, ["ups-aubagne", "probe-aubagne", "gw-aubagne"], 4)
    (site,) = await sc.engine.open_incidents()
    for _ in range(8):
        await sc.ok("ups-aubagne")
        await sc.ok("probe-aubagne")
        await sc.fail("gw-aubagne")
        await sc.step(60)
    (left,) = await sc.engine.open_incidents()
    assert left.key == "device_unreachable:gw-aubagne"
    detail = await sc.engine.get(left.id)
    assert detail is not None and detail.record.parent_id is None
    assert [e.kind for e in detail.timeline][-1] == "detached"
    assert sc.kinds() == ["opened", "resolved", "opened"] and sc.notices[-1].incident.id == left.id
    assert (await sc.engine.get(site.id)).view.state is IncidentState.RESOLVED  # type: ignore[union-attr]


async def test_both_wan_routers_down_is_a_site_outage(store: Store) -> None:
    sc = await Scenario(store).start()
    await _cut(sc, ["wan1-aix", "wan2-aix"], 4, answering=["ups-aix", "gw-aix"])
    (view,) = await sc.engine.open_incidents()
    assert view.key == "site_unreachable:AIX" and view.user_impact == "outage"
    detail = await sc.engine.get(view.id)
    assert detail is not None and len(detail.children) == 2


async def test_one_wan_router_down_on_a_dual_site_is_a_perturbation(store: Store) -> None:
    sc = await Scenario(store).start()
    await _cut(sc, ["wan1-aix"], 3, answering=["wan2-aix", "ups-aix", "gw-aix"])
    assert await sc.engine.open_incidents() == []  # waiting for the rest of the site (90 s)
    await _cut(sc, ["wan1-aix"], 2, answering=["wan2-aix", "ups-aix", "gw-aix"])
    (view,) = await sc.engine.open_incidents()
    assert view.key == "device_unreachable:wan1-aix"
    assert (view.user_impact, view.technical_impact) == ("none", "minor")  # perturbé, not inaccessible
    assert (await sc.engine.get(view.id)).record.outage == "degraded"  # type: ignore[union-attr]


# ---- maintenance ------------------------------------------------------------------------------------------


def _window(
    start: datetime, minutes: int, scope: str = "device", target: str = "ups-aubagne"
) -> MaintenanceWindow:
    return MaintenanceWindow(
        name="Remplacement batteries",
        scope=scope,
        targets=[target],
        start=start,
        end=start + timedelta(minutes=minutes),
        reason="CHG-42",
    )


async def test_maintenance_suppresses_opening_but_records(store: Store) -> None:
    sc = await Scenario(
        store, windows=[_window(MONDAY_10H_PARIS, 30).model_copy(update={"id": "file:1"})]
    ).start()
    await sc.ups("ups-aubagne", True, 120)
    assert await sc.engine.open_incidents() == [] and sc.notices == []
    (held,) = await sc.engine.suppressed_incidents()
    # a held incident reads as suppressed, not open: NOC counts, météo and the API leave it out
    assert held.state is IncidentState.SUPPRESSED and not held.state.active
    assert [v.id for v in await sc.engine.incidents(states=("suppressed",))] == [held.id]
    detail = await sc.engine.get(held.id)
    assert detail is not None and detail.suppressed_by == "Remplacement batteries (file:1)"
    assert [e.kind for e in detail.timeline] == ["suppressed"]
    assert "Remplacement batteries" in detail.timeline[0].text
    await sc.ups("ups-aubagne", False, 60)  # fixed during the window: closed without ever opening
    (row,) = await sc.rows()
    assert row.state == "resolved" and sc.notices == []


async def test_problem_outliving_the_maintenance_opens_when_it_ends(store: Store) -> None:
    sc = await Scenario(store).start()
    added = await sc.engine.add_maintenance(_window(MONDAY_10H_PARIS, 10, scope="site", target="AUBAGNE"))
    assert added.id is not None and added.id.startswith("db:")
    assert [w.id for w in sc.engine.list_maintenance(at=sc.now)] == [added.id]
    await sc.ups("ups-aubagne", True, 9 * 60)
    assert await sc.engine.open_incidents() == []
    await sc.ups("ups-aubagne", True, 2 * 60)
    (view,) = await sc.engine.open_incidents()
    assert view.opened_at >= MONDAY_10H_PARIS + timedelta(minutes=10)
    detail = await sc.engine.get(view.id)
    assert detail is not None and [e.kind for e in detail.timeline] == ["suppressed", "maintenance_ended"]
    assert sc.kinds() == ["opened"]
    assert await sc.engine.remove_maintenance(added.id) is True
    assert sc.engine.list_maintenance() == []


async def test_maintenance_targets_must_exist(store: Store) -> None:
    sc = await Scenario(store).start()
    with pytest.raises(IncidentStateError, match="unknown device"):
        await sc.engine.add_maintenance(_window(MONDAY_10H_PARIS, 10, target="ups-nowhere"))


# ---- deadlines, operator actions ---------------------------------------------------------------------------


async def test_deadline_at_risk_then_missed_each_written_once(store_url: str) -> None:
    clock = ManualClock()
    s1 = Store(store_url)
    await s1.migrate()
    sc = await Scenario(s1, clock).start()
    await sc.ups("ups-aubagne", True, 90)  # opened 09:01, taking charge due 09:31, at risk after 24 min
    (view,) = await sc.engine.open_incidents()
    await sc.ups("ups-aubagne", True, 32 * 60, step=60)  # polled and ticked every minute until 09:33
    await s1.close()
    s2 = Store(store_url)
    try:
        sc2 = await Scenario(s2, clock).start()  # after a restart: nothing is written twice
        await sc2.ups("ups-aubagne", True, 5 * 60, step=60)
        timeline = await sc2.engine.timeline(view.id)
        deadline_kinds = [(e.kind, e.data["deadline"]) for e in timeline if e.kind.startswith("deadline")]
        assert deadline_kinds == [("deadline_at_risk", "taking_charge"), ("deadline_missed", "taking_charge")]
        at_risk = next(e for e in timeline if e.kind == "deadline_at_risk")
        assert utc(9, 25) <= at_risk.at < utc(9, 31)
        assert "Prise en charge" in at_risk.text and "Taking charge" in (at_risk.text_en or "")
        assert sc.kinds().count("deadline") == 2 and sc2.kinds() == []
        # a notification recorded by the outbox meets the first-information deadline
        await sc2.engine.add_timeline(view.id, "notification", "SMS envoyé à l'astreinte", {"channel": "sms"})
        await sc2.ups("ups-aubagne", True, 170 * 60, step=60)  # until about 12:20: restoration at risk
        detail = await sc2.engine.get(view.id)
        assert detail is not None
        assert detail.deadline_status == {
            "taking_charge": "missed",
            "first_information": "met",
            "restoration": "at_risk",
        }
        kinds = [(e.kind, e.data.get("deadline")) for e in detail.timeline if e.kind.startswith("deadline")]
        assert kinds[-1] == ("deadline_at_risk", "restoration") and len(kinds) == 3
    finally:
        await s2.close()


async def test_acknowledge_note_and_resolve_by_hand(store: Store) -> None:
    sc = await Scenario(store).start()
    await sc.ups("ups-aubagne", True, 90)
    (view,) = await sc.engine.open_incidents()
    acked = await sc.engine.acknowledge(view.id, "noc-jdupont", note="Coupure ENEDIS confirmée par le site")
    assert acked.state is IncidentState.ACKNOWLEDGED
    with pytest.raises(IncidentStateError):
        await sc.engine.acknowledge(view.id, "noc-jdupont")
    await sc.engine.add_note(view.id, "noc-jdupont", "Retour secteur annoncé vers 11 h")
    done = await sc.engine.resolve(view.id, "noc-jdupont", "Secteur rétabli")
    assert done.state is IncidentState.RESOLVED and done.resolved_at == sc.now
    with pytest.raises(IncidentStateError):
        await sc.engine.resolve(view.id, "noc-jdupont", "again")
    with pytest.raises(IncidentNotFound):
        await sc.engine.add_note(9999, "x", "y")
    detail = await sc.engine.get(view.id)
    assert detail is not None
    assert [e.kind for e in detail.timeline] == ["opened", "acknowledged", "note", "note", "resolved"]
    assert detail.timeline[1].actor == "noc-jdupont" and detail.deadline_status["taking_charge"] == "met"
    assert sc.kinds() == ["opened", "acknowledged", "note", "resolved"]


async def test_ticket_created_before_the_alarm_moves_the_clock_start(store: Store) -> None:
    sc = await Scenario(store).start()
    await sc.ups("ups-aubagne", True, 90)
    (view,) = await sc.engine.open_incidents()
    updated = await sc.engine.set_itsm_ref(view.id, "I260105_000042", utc(8, 50))
    assert updated.itsm_ref == "I260105_000042"
    assert updated.deadlines["taking_charge"] == utc(9, 20) and updated.deadlines["restoration"] == utc(
        12, 50
    )
    later = await sc.engine.daily_check_failed(view.id, utc(9, 30))  # later than the start: no change
    assert later.deadlines == updated.deadlines


async def test_reads_filter_by_site_device_and_service(store: Store) -> None:
    sc = await Scenario(store).start()
    await asyncio.gather(sc.ups("ups-aubagne", True, 90))
    await sc.ups("ups-aix", True, 90)
    assert {v.device for v in await sc.engine.open_incidents()} == {"ups-aubagne", "ups-aix"}
    assert [v.device for v in await sc.engine.open_incidents(site="AIX")] == ["ups-aix"]
    assert [v.device for v in await sc.engine.open_incidents(device="ups-aubagne")] == ["ups-aubagne"]
    assert [v.device for v in await sc.engine.open_incidents(service="toip")] == ["ups-aix"]
    assert [v.device for v in await sc.engine.incidents(limit=1)] == ["ups-aix"]


# ---- the store going away -----------------------------------------------------------------------------


class FlakyRepository(IncidentRepository):
    """The real repository, made to fail on demand like a store that went away."""

    down = False

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise OSError("store unavailable")
        return await super().create(*args, **kwargs)

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise OSError("store unavailable")
        return await super().search(*args, **kwargs)


async def test_signals_are_retried_when_the_store_comes_back(store: Store) -> None:
    sc = await Scenario(store).start()
    flaky = FlakyRepository(store)
    sc.engine.repo = flaky
    flaky.down = True
    await sc.ups("ups-aubagne", True, 120)
    await sc.ups("ups-aix", True, 90)
    await sc.ups("ups-aix", False, 10)  # cleared while the store is down: its opening is dropped
    flaky.down = False
    await sc.step(10)
    assert [v.key for v in await sc.engine.open_incidents()] == ["ups_on_battery:ups-aubagne"]
    assert sc.kinds() == ["opened"]
