"""Routing table: who gets what, when (time windows, quiet hours, deferral, follow-ups, rate limits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callipso_agent.errors import ConfigErrors
from callipso_agent.notify import NotifyDeliverer
from callipso_agent.notify.config import RateLimit
from callipso_agent.outbox import JobState, OutboxWorker
from tests.outputs.routing_rig import NOTIFICATIONS, RecordingChannel, config, make_rig, paris

SMS1, SMS2 = "+33612345678", "+33698765432"

CASES = [
    # (when, priority, expected (channel, recipient), deferred to (Paris) or None, reasons)
    (
        "Tue 23:00 P1 at night",
        paris(2026, 1, 6, 23),
        "P1",
        {("sms-astreinte", SMS1), ("sms-astreinte", SMS2), ("teams-noc", None)},
        None,
        (),
    ),
    (
        "Tue 10:00 P1 in working hours",
        paris(2026, 1, 6, 10),
        "P1",
        {("teams-noc", None), ("mail-noc", None)},
        None,
        (),
    ),
    (
        "Sat 15:00 P1 at the weekend",
        paris(2026, 1, 10, 15),
        "P1",
        {("sms-astreinte", SMS1), ("sms-astreinte", SMS2), ("teams-noc", None)},
        None,
        (),
    ),
    (
        "New Year's Day 10:00 P1 (holiday)",
        paris(2026, 1, 1, 10),
        "P1",
        {("sms-astreinte", SMS1), ("sms-astreinte", SMS2), ("teams-noc", None)},
        None,
        (),
    ),
    (
        "Tue 19:00 P2 evening",
        paris(2026, 1, 6, 19),
        "P2",
        {("mail-noc", None), ("teams-noc", None)},
        None,
        (),
    ),
    (
        "Tue 23:00 P2 in quiet hours",
        paris(2026, 1, 6, 23),
        "P2",
        {("mail-noc", None), ("teams-noc", None)},
        paris(2026, 1, 7, 7),
        ("quiet_hours",),
    ),
    (
        "Wed 03:00 P2 in quiet hours",
        paris(2026, 1, 7, 3),
        "P2",
        {("mail-noc", None), ("teams-noc", None)},
        paris(2026, 1, 7, 7),
        ("quiet_hours",),
    ),
    ("Tue 10:00 P3 in working hours", paris(2026, 1, 6, 10), "P3", {("mail-noc", None)}, None, ()),
    (
        "Tue 19:00 P3 after hours",
        paris(2026, 1, 6, 19),
        "P3",
        {("mail-noc", None)},
        paris(2026, 1, 7, 8),
        ("window",),
    ),
    (
        "Tue 23:30 P3 at night",
        paris(2026, 1, 6, 23, 30),
        "P3",
        {("mail-noc", None)},
        paris(2026, 1, 7, 8),
        ("window",),
    ),
    (
        "Fri 19:00 P3 before the weekend",
        paris(2026, 1, 9, 19),
        "P3",
        {("mail-noc", None)},
        paris(2026, 1, 12, 8),
        ("window",),
    ),
    ("Tue 10:00 P4 (no route)", paris(2026, 1, 6, 10), "P4", set(), None, ()),
]


@pytest.mark.parametrize(
    ("label", "at", "priority", "expected", "deferred", "reasons"), CASES, ids=[c[0] for c in CASES]
)
async def test_routing_table(
    tmp_path: Path,
    label: str,
    at: datetime,
    priority: str,
    expected: set[tuple[str, str | None]],
    deferred: datetime | None,
    reasons: tuple[str, ...],
) -> None:
    rig = await make_rig(tmp_path, at)
    inc = await rig.incidents.open(priority=priority, title="Onduleur sur batterie", site="AUBAGNE")
    planned = rig.take()
    assert {(p.channel, p.recipient) for p in planned} == expected
    for p in planned:
        assert p.not_before == (deferred.astimezone(UTC) if deferred else None)
        assert p.reasons == reasons
    jobs = await rig.outbox.jobs()
    assert len(jobs) == len(expected)
    assert {j.kind for j in jobs} <= {"notify.sms", "notify.email", "notify.teams"}
    notes = rig.incidents.entries(inc.id, "notification")
    assert len(notes) == len(expected)
    if deferred is not None:
        assert all(f"différée au {deferred:%d/%m/%Y %H:%M}" in n.text for n in notes)
    await rig.store.close()


async def test_timeline_text_and_payload(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    inc = await rig.incidents.open(priority="P1", title="Lien T2 perdu", site="HD13", device="oxe-hd13-main")
    texts = sorted(n.text for n in rig.incidents.entries(inc.id, "notification"))
    assert texts[0] == (
        "Notification « [P1] Incident ouvert : Lien T2 perdu » : SMS au +33612345678 "
        "(sms-astreinte), règle p1-astreinte"
    )
    (job,) = await rig.outbox.jobs(target="teams-noc")
    assert job.idempotency_key == f"notify:{inc.id}:opened:teams-noc:-"
    assert job.payload["message"]["link"] == f"https://callipso.cd13.fr/incidents/{inc.id}"
    assert (
        job.payload["skip_if"] == ["resolved"]
        and job.payload["meta"]["incident"]["device"] == "oxe-hd13-main"
    )
    await rig.store.close()


async def test_replayed_change_plans_nothing_twice(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    await rig.incidents.open(priority="P1")
    first = rig.take()
    from callipso_agent.ports import ChangeKind, IncidentChange

    again = await rig.router.on_change(
        IncidentChange(ChangeKind.OPENED, rig.incidents.incidents[1], rig.clock.now())
    )
    assert len(first) == 3 and again == []
    assert len(await rig.outbox.jobs()) == 3
    await rig.store.close()


async def test_follow_ups_go_where_the_opening_went(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    teams = RecordingChannel("teams-noc")
    sms = RecordingChannel("sms-astreinte", "sms")
    worker = OutboxWorker(
        rig.outbox,
        {"notify": NotifyDeliverer({"teams-noc": teams, "sms-astreinte": sms}, rig.incidents)},
        clock=rig.clock,
        timeline=rig.incidents,
    )
    inc = await rig.incidents.open(priority="P1")
    await worker.drain()
    rig.take()
    rig.clock.advance(300)
    await rig.incidents.acknowledge(inc.id, "noc", "je prends")
    acks = rig.take()
    assert {(p.channel, p.event) for p in acks} == {
        ("sms-astreinte", "acknowledged"),
        ("teams-noc", "acknowledged"),
    }
    await rig.incidents.resolve(inc.id, "noc", "secteur revenu")
    assert {p.event for p in rig.take()} == {"resolved"}
    await worker.drain()
    subjects = [m.subject for m, _r, _k in teams.sent]
    assert subjects == [
        "[P1] Incident ouvert : Onduleur sur batterie",
        "[P1] Incident pris en compte : Onduleur sur batterie",
        "[P1] Incident résolu : Onduleur sur batterie",
    ]
    assert ("Motif", "secteur revenu") in teams.sent[2][0].facts
    assert len(sms.sent) == 6 and {r for _m, (r,), _k in sms.sent} == {SMS1, SMS2}
    deliveries = rig.incidents.entries(inc.id, "delivery")
    assert len(deliveries) == 9 and all(e.data["outcome"] == "done" for e in deliveries)
    await rig.store.close()


async def test_deferred_notice_of_an_incident_resolved_meanwhile(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    mail = RecordingChannel("mail-noc", "email")
    teams = RecordingChannel("teams-noc")
    worker = OutboxWorker(
        rig.outbox,
        {"notify": NotifyDeliverer({"mail-noc": mail, "teams-noc": teams}, rig.incidents)},
        clock=rig.clock,
        timeline=rig.incidents,
    )
    inc = await rig.incidents.open(priority="P2")
    assert await worker.drain() == 0  # quiet hours
    rig.clock.advance(1800)
    await rig.incidents.resolve(inc.id, "auto", "retour à la normale")
    assert rig.take()[2:] == []  # no "resolved" notice for an opening nobody received
    assert any(
        "l'avis d'ouverture n'a pas été envoyé" in n.text
        for n in rig.incidents.entries(inc.id, "notification")
    )
    rig.clock.set(paris(2026, 1, 7, 7).astimezone(UTC))
    assert await worker.drain() == 2
    assert mail.sent == [] and teams.sent == []
    outcomes = {e.text for e in rig.incidents.entries(inc.id, "delivery")}
    assert outcomes == {
        "Courriel à noc@cd13.fr (mail-noc) : livré (sans objet : incident résolu entre-temps)",
        "Teams (teams-noc) : livré (sans objet : incident résolu entre-temps)",
    }
    assert {j.state for j in await rig.outbox.jobs()} == {JobState.DONE}
    await rig.store.close()


async def test_rate_limit_defers_rather_than_drops(tmp_path: Path) -> None:
    cfg = config(rate_limit=RateLimit(max_per_hour=2))
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 10), cfg)
    for n in range(3):
        await rig.incidents.open(priority="P2", site=f"SITE{n}")
        rig.clock.advance(60)
    teams = [p for p in rig.take() if p.channel == "teams-noc"]
    assert [p.not_before for p in teams[:2]] == [None, None]
    assert teams[2].not_before == paris(2026, 1, 6, 11).astimezone(UTC) and teams[2].reasons == (
        "rate_limit",
    )
    await rig.store.close()


def test_schema_errors_name_file_line_and_field() -> None:
    broken = (
        NOTIFICATIONS.replace("when: [outside_working_hours]", "when: [outside_workinghours]")
        .replace("notify: [sms-astreinte, teams-noc]", "notify: [sms-astreinte, teams-nco]")
        .replace('quiet_hours: {start: "22:00"', "quiet_hours: {start: 22:00")
    )
    with pytest.raises(ConfigErrors) as err:
        config(broken)
    text = [str(e) for e in err.value.errors]
    assert any(t.startswith("notifications.yaml:5: field 'notifications.quiet_hours.start'") for t in text), (
        text
    )
    assert any(
        "field 'notifications.routes[0].match.when[0]'" in t and "outside_workinghours" in t for t in text
    )
    lines = NOTIFICATIONS.splitlines()
    when_line = next(i for i, ln in enumerate(lines, 1) if "outside_working_hours" in ln)
    assert any(t.startswith(f"notifications.yaml:{when_line}:") for t in text)


def test_unknown_channel_is_reported_with_its_line() -> None:
    broken = NOTIFICATIONS.replace("notify: [sms-astreinte, teams-noc]", "notify: [sms-astreinte, teams-nco]")
    with pytest.raises(ConfigErrors) as err:
        config(broken)
    (e,) = err.value.errors
    line = next(
        i for i, ln in enumerate(NOTIFICATIONS.splitlines(), 1) if "notify: [sms-astreinte, teams-noc]" in ln
    )
    assert (e.line, e.field) == (line, "notifications.routes[0].notify[1]")
    assert "unknown channel 'teams-nco'" in e.message


def test_next_open_and_quiet_until(tmp_path: Path) -> None:
    from callipso_agent.clock import ManualClock
    from callipso_agent.notify.config import When
    from callipso_agent.notify.router import NotificationRouter

    router = NotificationRouter(config(), None, None, ManualClock())  # type: ignore[arg-type]
    fri = paris(2026, 1, 9, 18, 30)
    assert router.next_open([When.WORKING_HOURS], fri) == paris(2026, 1, 12, 8).astimezone(UTC)
    assert router.next_open([When.NIGHTS], paris(2026, 1, 9, 10)) == paris(2026, 1, 9, 20).astimezone(UTC)
    assert router.quiet_until(paris(2026, 1, 9, 23)) == paris(2026, 1, 10, 7).astimezone(UTC)
    assert router.quiet_until(paris(2026, 1, 9, 6, 59)) == paris(2026, 1, 9, 7).astimezone(UTC)
    assert router.quiet_until(paris(2026, 1, 9, 7)) is None
    # daylight saving: the night of 28-29 March 2026 is an hour shorter in UTC
    assert router.quiet_until(paris(2026, 3, 28, 23)) - paris(2026, 3, 28, 23).astimezone(UTC) == timedelta(
        hours=7
    )
