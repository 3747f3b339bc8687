"""Routing, outbox and channels together against the fake gateways: a P1 at night reaches the on-call
phones and Teams; a gateway outage delays the SMS but loses nothing."""

from __future__ import annotations

from pathlib import Path

from callipso_agent.clock import ManualClock
from callipso_agent.notify import NotifyDeliverer, build_channels
from callipso_agent.notify.fakes import FakeLinkMobility, FakeTeams
from callipso_agent.outbox import Backoff, JobState, OutboxWorker
from tests.outputs.routing_rig import NOTIFICATIONS, config, make_rig, paris


async def test_p1_at_night_reaches_phones_and_teams_despite_an_outage(tmp_path: Path) -> None:
    secret = tmp_path / "sms.secret"
    secret.write_text("sms-pw\n", encoding="utf-8")
    sms_password = "sms-pw"
    clock = ManualClock(paris(2026, 1, 6, 23).astimezone())
    gateway = FakeLinkMobility(users={"cd13": sms_password}, clock=clock)
    teams = FakeTeams()
    await gateway.start()
    await teams.start()
    text = (
        NOTIFICATIONS.replace("http://127.0.0.1:9/workflows/noc", teams.workflow_url())
        .replace("http://127.0.0.1:9/", gateway.url)
        .replace("{env: CALLIPSO_TEST_UNUSED}", f'{{file: "{secret}"}}')
    )
    rig = await make_rig(tmp_path, paris(2026, 1, 6, 23), config(text))
    channels = build_channels(rig.router.cfg.channels)
    rig.outbox.backoff = Backoff(base=30, factor=2, maximum=600, jitter=0.0)
    worker = OutboxWorker(
        rig.outbox,
        {"notify": NotifyDeliverer(channels, rig.incidents)},
        clock=rig.clock,
        timeline=rig.incidents,
    )
    try:
        await gateway.stop()  # the SMS gateway is unreachable
        inc = await rig.incidents.open(
            priority="P1", title="Perte du lien T2 niveau 2", site="HD13", device="oxe-hd13-main"
        )
        await worker.drain()
        assert len(teams.posts) == 1 and teams.posts[0].run_status == "Succeeded"
        sms_jobs = await rig.outbox.jobs(target="sms-astreinte")
        assert [j.state for j in sms_jobs] == [JobState.FAILED, JobState.FAILED]
        await gateway.start()
        rig.clock.advance(30)
        await worker.drain()
        assert sorted(m.body["destination"] for m in gateway.messages) == ["+33612345678", "+33698765432"]
        assert all(
            m.body["userData"].startswith(
                "[P1] Incident ouvert : Perte du lien T2 niveau 2 (HD13 / oxe-hd13-main)"
            )
            for m in gateway.messages
        )
        assert await rig.outbox.backlog_size() == 0
        deliveries = [e.text for e in rig.incidents.entries(inc.id, "delivery")]
        assert sum("échec de la tentative 1 (SMS gateway: cannot connect" in t for t in deliveries) == 2
        assert (
            sum(
                t.startswith("SMS au +336") and ": livré (SMS accepté par la passerelle" in t
                for t in deliveries
            )
            == 2
        )
        assert any(
            t == "Teams (teams-noc) : livré (accepté par le flux Teams (202), publication asynchrone)"
            for t in deliveries
        )
    finally:
        for ch in channels.values():
            await ch.close()
        await gateway.stop()
        await teams.stop()
        await rig.store.close()
