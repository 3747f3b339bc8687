"""Build, archive and send on two working mornings; skip holidays and weekends; the archive, the diff
against the previous day, the failed-check hook, the schedule and the /meteo routes. Real SQLite store,
real SMTP server (aiosmtpd), real aiohttp server on 127.0.0.1; SYNTHETIC estate states."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callipso_agent.clock import ManualClock
from callipso_agent.incidents.contract import load_contract
from callipso_agent.meteo.archive import MeteoArchive
from callipso_agent.meteo.checks import FailedCheck
from callipso_agent.meteo.mail import MailError, SmtpSender
from callipso_agent.meteo.routes import meteo_routes
from callipso_agent.meteo.service import MeteoService, meteo_trigger, schedule_meteo
from callipso_agent.meteo.settings import MeteoSettings
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url
from tests.meteo.estate import Scenario, example_config, m, shipped_spec
from tests.meteo.smtp import Sink, smtp_server

MONDAY = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)  # 08:30 in Paris
TUESDAY = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
ARMISTICE = datetime(2026, 11, 11, 7, 30, tzinfo=UTC)  # a Wednesday, public holiday
SATURDAY = datetime(2026, 11, 28, 7, 30, tzinfo=UTC)


class World:
    """The estate as the service sees it: a scenario that the test changes from one morning to the next."""

    def __init__(self) -> None:
        self.config = example_config()
        self.scenario = Scenario()

    async def snapshot(self, at: datetime) -> Any:
        return self.scenario.snapshot(self.config, at)


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = Store(sqlite_url(tmp_path / "callipso.sqlite"))
    await s.migrate()
    yield s
    await s.close()


def make_service(
    world: World,
    clock: ManualClock,
    archive: MeteoArchive | None,
    port: int,
    hook: Any = None,
    **settings: Any,
) -> MeteoService:
    s = MeteoSettings.model_validate(
        {
            "sender": "supervision@cd13.example",
            "recipients": ["noc@cd13.example"],
            "retries": 0,
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
            **settings,
        }
    )
    return MeteoService(
        spec=shipped_spec(),
        settings=s,
        config=lambda: world.config,
        snapshot=world.snapshot,
        clock=clock,
        calendar=load_contract().business_calendar(),
        archive=archive,
        sender=SmtpSender.from_settings(s),
        on_failed_check=hook,
    )


async def test_two_mornings_archived_sent_and_compared(store: Store) -> None:
    world = World()
    clock = ManualClock(MONDAY)
    archive = MeteoArchive(store.engine)
    hooked: list[tuple[str, datetime]] = []

    async def hook(failed: FailedCheck, at: datetime) -> None:
        hooked.append((failed.key, at))

    with smtp_server() as srv:
        service = make_service(world, clock, archive, srv.port, hook)
        world.scenario = Scenario(
            down_sites={"GARDANNE-MDS"}, measurements=[m("oxe-hd13", "pbx_backup_ok", 0, text="failed")]
        )
        assert await service.run_scheduled() is True
        monday = await archive.get(date(2026, 11, 23))
        assert monday is not None and monday.sent_at == MONDAY and monday.send_error is None
        assert sorted(hooked) == [
            ("check:oxe_backup:oxe-hd13", MONDAY),
            ("check:remote_site_unreachable:GARDANNE-MDS", MONDAY),
        ]
        assert "diff" not in monday.data

        clock.set(TUESDAY)
        world.scenario = Scenario(
            measurements=[
                m("ups-aubagne-mds", "ups_on_battery", 1),
                m("oxe-hd13", "pbx_backup_ok", 0, text="failed"),
            ]
        )
        assert await service.run_scheduled() is True
        [first, second] = srv.sink.received
    assert first.message["Subject"] == "Météo Callipso du 23/11/2026"
    assert second.message["Subject"] == "Météo Callipso du 24/11/2026"
    text = second.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "DEPUIS LA MÉTÉO DU 23/11/2026" in text
    resolved = text[text.index("Résolu depuis hier") : text.index("LIGNES DE SERVICE")]
    assert "Site MDS Gardanne injoignable" in resolved
    new = text[text.index("Nouveau depuis hier") : text.index("Résolu depuis hier")]
    assert "Onduleur ups-aubagne-mds sur batterie" in new
    assert "Sauvegarde de la nuit en échec" not in new  # still failing: not new
    tuesday = await archive.latest()
    assert tuesday is not None and tuesday.day == date(2026, 11, 24)
    assert tuesday.data["diff"]["previous_day"] == "2026-11-23"
    assert (await archive.previous(date(2026, 11, 24))).day == date(2026, 11, 23)  # type: ignore[union-attr]
    assert await archive.days() == [date(2026, 11, 24), date(2026, 11, 23)]


async def test_holidays_and_weekends_are_skipped(store: Store) -> None:
    world = World()
    with smtp_server() as srv:
        for when in (ARMISTICE, SATURDAY):
            service = make_service(world, ManualClock(when), MeteoArchive(store.engine), srv.port)
            assert await service.run_scheduled() is False
        # unless the settings say every day
        service = make_service(
            world, ManualClock(SATURDAY), MeteoArchive(store.engine), srv.port, working_days_only=False
        )
        assert await service.run_scheduled() is True
        assert len(srv.sink.received) == 1
    assert await MeteoArchive(store.engine).days() == [date(2026, 11, 28)]


async def test_a_failed_sending_is_archived_with_its_error(store: Store) -> None:
    world = World()
    archive = MeteoArchive(store.engine)
    with smtp_server(Sink(refuse_first=5, refusal="550 5.1.1 Mailbox unavailable")) as srv:
        service = make_service(world, ManualClock(MONDAY), archive, srv.port)
        with pytest.raises(MailError):
            await service.publish()
        assert await service.run_scheduled() is False  # the scheduled job logs, never raises
    got = await archive.get(date(2026, 11, 23))
    assert got is not None and got.sent_at is None and got.send_error is not None and "550" in got.send_error


async def test_schedule_every_day_at_0830_paris() -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    settings = MeteoSettings(time="08:30")
    trigger = meteo_trigger(settings)
    # in winter 08:30 Paris is 07:30 UTC; in summer 06:30 UTC
    assert trigger.get_next_fire_time(None, datetime(2026, 11, 23, 7, 31, tzinfo=UTC)) == datetime(
        2026, 11, 24, 7, 30, tzinfo=UTC
    )
    assert trigger.get_next_fire_time(None, datetime(2026, 6, 1, 0, 0, tzinfo=UTC)) == datetime(
        2026, 6, 1, 6, 30, tzinfo=UTC
    )
    scheduler = AsyncIOScheduler()
    scheduler.start(paused=True)
    try:
        world = World()
        service = make_service(world, ManualClock(MONDAY), None, 25)
        schedule_meteo(scheduler, service)
        schedule_meteo(scheduler, service)  # a reload replaces the job
        [job] = scheduler.get_jobs()
        assert job.id == "meteo" and str(job.trigger) == str(trigger)
    finally:
        scheduler.shutdown(wait=False)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="quote the time"):
        MeteoSettings.model_validate({"time": 510})  # what YAML 1.1 makes of an unquoted 08:30
    with pytest.raises(ValueError, match="HH:MM"):
        MeteoSettings.model_validate({"time": "8h30"})
    with pytest.raises(ValueError, match="unknown time zone"):
        MeteoSettings.model_validate({"timezone": "Europe/Marseille"})
    with pytest.raises(ValueError):
        MeteoSettings.model_validate({"recipients": ["not an address"]})
    with pytest.raises(ValueError, match="Extra inputs"):
        MeteoSettings.model_validate({"recipient": ["noc@cd13.example"]})


async def test_routes_serve_the_latest_and_a_given_day(store: Store) -> None:
    world = World()
    archive = MeteoArchive(store.engine)
    with smtp_server() as srv:
        for when in (MONDAY, TUESDAY):
            service = make_service(world, ManualClock(when), archive, srv.port)
            await service.publish()

    async def live() -> tuple[str, str]:
        raise AssertionError("an archived météo exists: no live build")

    app = web.Application()
    app.add_routes(meteo_routes(archive, live=live))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        rsp = await client.get("/meteo")
        assert rsp.status == 200 and rsp.content_type == "text/html" and rsp.charset == "utf-8"
        assert "default-src 'none'" in rsp.headers["Content-Security-Policy"]
        body = await rsp.text()
        assert "Mardi 24 novembre 2026" in body
        rsp = await client.get("/meteo/2026-11-23")
        assert rsp.status == 200 and "Lundi 23 novembre 2026" in await rsp.text()
        rsp = await client.get("/meteo/2026-11-23?format=text")
        assert rsp.content_type == "text/plain" and (await rsp.text()).startswith("MÉTÉO DU SERVICE CALLIPSO")
        rsp = await client.get("/meteo?format=json")
        data = await rsp.json()
        assert data["day"] == "2026-11-24" and data["services"][0]["key"] == "toip"
        assert (await client.get("/meteo/2026-11-20")).status == 404
        assert (await client.get("/meteo/2026-13-01")).status == 400
        assert (await client.get("/meteo?format=pdf")).status == 400


async def test_route_without_archive_builds_live_or_says_nothing_yet(store: Store) -> None:
    archive = MeteoArchive(store.engine)
    app = web.Application()
    app.add_routes(meteo_routes(archive))
    calls: list[int] = []

    async def live() -> tuple[str, str]:
        calls.append(1)
        return '<html lang="fr">live</html>', "live"

    other = web.Application()
    other.add_routes(meteo_routes(lambda: archive, live=live))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        rsp = await client.get("/meteo")
        assert rsp.status == 404 and "no météo archived yet" in (await rsp.json())["error"]
    async with TestClient(TestServer(other, host="127.0.0.1")) as client:
        rsp = await client.get("/meteo")
        assert rsp.status == 200 and await rsp.text() == '<html lang="fr">live</html>' and calls == [1]
        assert (await client.get("/meteo?format=json")).status == 404


async def test_the_agent_wiring_reads_the_cache_and_the_incident_engine(tmp_path: Path, store: Store) -> None:
    """create_meteo_service as the daemon calls it: settings beside the config, the cache, the store."""
    import shutil

    from callipso_agent.collect.cache import LatestCache
    from callipso_agent.daemon import known_families
    from callipso_agent.meteo.wiring import create_meteo_service, meteo_web_routes
    from callipso_agent.model import PollResult
    from tests.meteo.estate import EXAMPLE_CONFIG, incident

    world = World()
    world.scenario = Scenario(
        measurements=[m("ups-aubagne-mds", "ups_on_battery", 1)], down={"ups-gardanne-mds"}
    )
    snap = world.scenario.snapshot(world.config, MONDAY)
    cache = LatestCache()
    for d in world.config.devices:
        ms = tuple(x for x in snap.measurements if x.device == d.name)
        ok = snap.devices[d.name].up
        cache.update(
            PollResult(d.name, MONDAY, 0.1, ms) if ok else PollResult(d.name, MONDAY, 5.0, error="timeout")
        )
    config_dir = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config_dir)
    open_incidents = [
        incident(
            12,
            "ups_on_battery:ups-aubagne-mds",
            "Onduleur d'Aubagne sur batterie",
            services=["toip"],
            site="AUBAGNE-MDS",
            itsm_ref="INC0077001",
        )
    ]

    async def incidents() -> list[Any]:
        return open_incidents

    hooked: list[str] = []

    async def hook(failed: FailedCheck, _at: datetime) -> None:
        hooked.append(failed.key)

    with smtp_server() as srv:
        (config_dir / "meteo" / "meteo.yaml").write_text(
            "# SYNTHETIC\nmeteo:\n  recipients: [noc@cd13.example]\n  retries: 0\n"
            f"  smtp: {{host: 127.0.0.1, port: {srv.port}, security: none}}\n",
            encoding="utf-8",
        )
        service = create_meteo_service(
            config_dir,
            config=lambda: world.config,
            cache=cache,
            clock=ManualClock(MONDAY),
            store_engine=store.engine,
            incidents=incidents,
            on_failed_check=hook,
            families=known_families(),
        )
        assert await service.run_scheduled() is True
        [got] = srv.sink.received
    text = got.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # the rules engine's incident and the failed check are one problem: one line, with the ticket number
    assert "    - AUBAGNE-MDS — INC0077001 — Onduleur d'Aubagne sur batterie\n" in text.replace("\r\n", "\n")
    assert "Alimentation secteur des onduleurs : INC0077001 — Onduleur ups-aubagne-mds sur batterie" in text
    assert "ups-gardanne-mds ne répond plus (MDS Gardanne)" in text
    assert "CHG0001234" not in text  # the example's changes are in December, beyond the horizon
    assert sorted(hooked) == [
        "check:remote_device_unreachable:ups-gardanne-mds",
        "check:ups_on_battery:ups-aubagne-mds",
    ]
    app = web.Application()
    app.add_routes(meteo_web_routes(service))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        rsp = await client.get("/meteo?format=text")
        assert rsp.status == 200 and "INC0077001" in await rsp.text()
