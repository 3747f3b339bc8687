"""Escalation of unacknowledged incidents on a manual clock, and grouping during incident storms."""

from __future__ import annotations

from pathlib import Path

from callipso_agent.notify import NotifyDeliverer
from callipso_agent.outbox import OutboxWorker
from tests.outputs.routing_rig import RecordingChannel, config, make_rig, paris

STORM_RULES = """
notifications:
  storm: {threshold: 3, window_minutes: 10, bypass: [P1]}
  channels:
    teams-noc: {type: teams, flavour: workflow, url: "http://127.0.0.1:9/workflows/noc"}
  routes:
    - name: tout
      notify: [teams-noc]
"""


async def test_escalation_after_n_minutes_until_acknowledged(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    inc = await rig.incidents.open(priority="P1", title="OXE principal injoignable", site="HD13")
    quiet = await rig.incidents.open(priority="P1", title="Sonde HS", site="ARENC")
    rig.take()
    rig.clock.advance(10 * 60)
    await rig.incidents.acknowledge(quiet.id, "noc")
    rig.take()
    rig.clock.advance(4 * 60 + 59)
    assert await rig.router.tick() == []  # 14:59 after opening
    rig.clock.advance(1)
    level1 = await rig.router.tick()
    assert [(p.channel, p.recipient, p.event, p.incident_id) for p in level1] == [
        ("sms-chef", "+33600000001", "escalated", inc.id)
    ]
    (job,) = await rig.outbox.jobs(target="sms-chef")
    assert (
        job.payload["message"]["subject"]
        == "[P1] ESCALADE niveau 1, non pris en compte : OXE principal injoignable"
    )
    assert job.payload["skip_if"] == ["resolved", "acknowledged"]
    rig.clock.advance(60)
    assert await rig.router.tick() == []  # once only
    rig.clock.advance(14 * 60)
    level2 = await rig.router.tick()
    assert [(p.channel, p.event) for p in level2] == [("mail-noc", "escalated")]
    assert "ESCALADE niveau 2" in (await rig.outbox.jobs(target="mail-noc"))[0].payload["message"]["subject"]
    assert await rig.outbox.jobs(incident_id=quiet.id, target="sms-chef") == []
    await rig.store.close()


async def test_escalation_sent_after_acknowledgement_is_skipped(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    chef = RecordingChannel("sms-chef", "sms")
    worker = OutboxWorker(
        rig.outbox,
        {"notify": NotifyDeliverer({"sms-chef": chef}, rig.incidents)},
        clock=rig.clock,
        timeline=rig.incidents,
    )
    inc = await rig.incidents.open(priority="P1")
    rig.clock.advance(15 * 60)
    assert len(await rig.router.tick()) == 1
    await rig.incidents.acknowledge(inc.id, "chef")  # before the worker got to it
    await worker.drain()
    assert chef.sent == []
    texts = [e.text for e in rig.incidents.entries(inc.id, "delivery") if e.data["target"] == "sms-chef"]
    assert texts == [
        "SMS au +33600000001 (sms-chef) : livré (sans objet : incident pris en compte entre-temps)"
    ]
    await rig.store.close()


async def test_escalation_survives_a_restart(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23))
    inc = await rig.incidents.open(priority="P1")
    rig.clock.advance(20 * 60)
    assert len(await rig.router.tick()) == 1
    from callipso_agent.notify.router import NotificationRouter

    restarted = NotificationRouter(config(), rig.outbox, rig.incidents, rig.clock)  # fresh memory
    assert await restarted.tick() == []  # the outbox remembers level 1
    assert len(await rig.outbox.jobs(incident_id=inc.id, target="sms-chef")) == 1
    await rig.store.close()


async def test_storm_grouping(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 10), config(STORM_RULES))
    teams = RecordingChannel("teams-noc")
    worker = OutboxWorker(
        rig.outbox,
        {"notify": NotifyDeliverer({"teams-noc": teams}, rig.incidents)},
        clock=rig.clock,
        timeline=rig.incidents,
    )
    opened = []
    for n in range(3):
        opened.append(
            await rig.incidents.open(
                priority="P3",
                site="AUBAGNE",
                device=f"gw-aubagne-{n}",
                title=f"Passerelle analogique {n} injoignable",
            )
        )
        rig.clock.advance(60)
    assert [p.event for p in rig.take()] == ["opened"] * 3
    fourth = await rig.incidents.open(
        priority="P3", site="AUBAGNE", device="gw-aubagne-3", title="Passerelle 3"
    )
    (storm,) = rig.take()
    assert storm.event == "storm" and storm.incident_id == fourth.id
    (storm_job,) = [j for j in await rig.outbox.jobs() if j.payload["event"] == "storm"]
    assert storm_job.payload["message"]["subject"] == "[AUBAGNE] 4 incidents en 10 min"
    assert (
        "gw-aubagne-0" in storm_job.payload["message"]["body"]
        and "gw-aubagne-3" in storm_job.payload["message"]["body"]
    )
    rig.clock.advance(120)
    fifth = await rig.incidents.open(
        priority="P3", site="AUBAGNE", device="gw-aubagne-4", title="Passerelle 4"
    )
    sixth = await rig.incidents.open(
        priority="P2", site="AUBAGNE", device="gw-aubagne-5", title="Passerelle 5"
    )
    p1 = await rig.incidents.open(priority="P1", site="AUBAGNE", device="oxe-aubagne", title="OXE Aubagne")
    elsewhere = await rig.incidents.open(priority="P3", site="ARENC", device="ups-arenc", title="Onduleur")
    assert sorted((p.incident_id, p.event) for p in rig.take()) == [
        (p1.id, "opened"),
        (elsewhere.id, "opened"),
    ]
    for inc in (fifth, sixth):
        (note,) = rig.incidents.entries(inc.id, "notification")
        assert note.text == "Notification regroupée : rafale d'incidents en cours sur le site AUBAGNE"
    await rig.incidents.resolve(fifth.id, "noc", "ok")
    assert rig.take() == []  # grouped incidents get no individual follow-ups
    rig.clock.advance(9 * 60)
    assert await rig.router.tick() == []  # still within 10 minutes of the last one
    rig.clock.advance(2 * 60)
    (summary,) = await rig.router.tick()
    assert summary.event == "storm_summary"
    await worker.drain()
    subjects = [m.subject for m, _r, _k in teams.sent]
    assert subjects.count("[AUBAGNE] 4 incidents en 10 min") == 1
    assert subjects[-1] == "[AUBAGNE] Fin de rafale : 2 incidents regroupés"
    assert "Passerelle 4" in teams.sent[-1][0].body and "Passerelle 5" in teams.sent[-1][0].body
    assert len(teams.sent) == 3 + 1 + 2 + 1  # three alone, the storm, P1 + other site, the summary
    after = await rig.incidents.open(priority="P3", site="AUBAGNE", title="Encore une")
    assert [p.event for p in rig.take()] == ["opened"]  # calm again: one by one
    assert after.id not in rig.router._grouped
    await rig.store.close()
