"""The assembled output stage (configuration files → outbox worker, EasyVista, Teams, API) and the
example configuration files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from callipso_agent.api.server import HttpServer
from callipso_agent.clock import SystemClock
from callipso_agent.collect.cache import LatestCache
from callipso_agent.config.models import AgentSettings
from callipso_agent.itsm.fake_easyvista import FakeEasyVista
from callipso_agent.model import Event
from callipso_agent.notify.fakes import FakeTeams
from callipso_agent.outputs_app import build_outputs, check_outputs
from callipso_agent.paths import example_config_dir
from tests.outputs.api_rig import NOC_TOKEN, TOKENS
from tests.outputs.helpers import open_store
from tests.outputs.memory import MemoryIncidents, MemoryMaintenance


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


async def test_assembled_outputs(tmp_path: Path) -> None:
    fake_ev = FakeEasyVista(users={"callipso": "ev-secret"})
    teams = FakeTeams()
    await fake_ev.start()
    await teams.start()
    conf = tmp_path / "conf"
    (conf / "outputs").mkdir(parents=True)
    (conf / "ev.secret").write_text("ev-secret\n", encoding="utf-8")
    (conf / "outputs" / "easyvista.yaml").write_text(
        f"""
easyvista:
  url: {fake_ev.url}
  auth: {{username: callipso, password: {{file: ev.secret}}}}
  reference_prefix: TEST
  mapping: {{catalog_code: INC_TELEPHONIE}}
""",
        encoding="utf-8",
    )
    (conf / "outputs" / "notifications.yaml").write_text(
        f"""
notifications:
  channels:
    teams-noc: {{type: teams, flavour: workflow, url: "{teams.workflow_url()}"}}
  routes:
    - {{name: tout, notify: [teams-noc]}}
""",
        encoding="utf-8",
    )
    clock = SystemClock()
    store = await open_store(tmp_path / "agent.sqlite")
    incidents = MemoryIncidents(clock)
    events: list[Event] = []
    outputs = build_outputs(
        conf,
        agent=AgentSettings.model_validate({"http": {"tokens": [t.model_dump() for t in TOKENS]}}),
        store=store,
        clock=clock,
        incidents=incidents,
        maintenance=MemoryMaintenance(clock),
        events=events.append,
        tick_seconds=0.2,
    )
    server = HttpServer(LatestCache(), host="127.0.0.1", port=0, ready=_ready, inventory=dict)
    outputs.install(server)
    await server.start()
    await outputs.start()
    incidents.subscribers.append(outputs.on_change)
    try:
        inc = await incidents.open(priority="P2", title="Onduleur sur batterie", site="HD13")
        async with asyncio.timeout(20):
            while not (fake_ev.tickets and teams.posts and incidents.incidents[inc.id].itsm_ref):
                await asyncio.sleep(0.05)
        (ticket,) = fake_ev.tickets.values()
        assert ticket.fields["external_reference"].startswith(f"TEST-{inc.id}-")
        base = f"http://127.0.0.1:{server.bound_port}"
        async with aiohttp.ClientSession() as s:
            async with asyncio.timeout(20):
                while len(incidents.entries(inc.id, "delivery")) < 2:
                    await asyncio.sleep(0.05)
            async with s.get(f"{base}/api/v1/incidents/{inc.id}") as rsp:
                body = await rsp.json()
            assert body["incident"]["itsm_ref"] == ticket.rfc_number
            assert {e["kind"] for e in body["timeline"]} >= {"opened", "notification", "delivery"}
            async with s.post(
                f"{base}/api/v1/alertmanager",
                headers={"Authorization": f"Bearer {NOC_TOKEN}"},
                json={
                    "version": "4",
                    "groupKey": "g",
                    "status": "firing",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": {"alertname": "X", "instance": "h"},
                            "startsAt": "2026-01-06T09:00:00Z",
                            "fingerprint": "f1",
                        }
                    ],
                },
            ) as rsp:
                assert rsp.status == 200
        assert [e.name for e in events] == ["X"]
        assert (await outputs.backlog())["done"] == 2
    finally:
        await outputs.stop()
        await server.stop()
        await store.close()
        await fake_ev.stop()
        await teams.stop()


def test_example_files_are_valid() -> None:
    assert check_outputs(example_config_dir()) == []


def test_broken_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "easyvista.yaml").write_text(
        "easyvista:\n  url: ftp://nowhere\n  auth: {username: a}\n  mapping: {}\n", encoding="utf-8"
    )
    errors = check_outputs(tmp_path)
    fields = sorted(e.field or "" for e in errors)
    assert fields == ["easyvista.auth", "easyvista.mapping", "easyvista.url"]
    assert all(e.file and e.file.endswith("easyvista.yaml") and e.line for e in errors)
