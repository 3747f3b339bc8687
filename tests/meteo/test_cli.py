"""``callipso-agent meteo`` as a child process against the agent's real HTTP API server (callipso_agent.api)
fed with SYNTHETIC poll results, sending to a real SMTP server and archiving in a real SQLite store."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from callipso_agent.api.server import HttpServer
from callipso_agent.collect.cache import LatestCache
from callipso_agent.meteo.snapshot import incident_to_json
from callipso_agent.model import PollResult
from tests.meteo.estate import EXAMPLE_CONFIG, Scenario, example_config, incident, m
from tests.meteo.smtp import smtp_server
from tests.meteo.test_render import SERVICE_LABELS

pytestmark = pytest.mark.slow


def write_config(tmp: Path, smtp_port: int) -> tuple[Path, Path]:
    config_dir = tmp / "config"
    shutil.copytree(EXAMPLE_CONFIG, config_dir)
    state_dir = tmp / "state"
    agent = yaml.safe_load((config_dir / "agent.yaml").read_text(encoding="utf-8"))
    agent["agent"]["state_dir"] = str(state_dir)
    (config_dir / "agent.yaml").write_text(
        "# SYNTHETIC test copy\n" + yaml.safe_dump(agent), encoding="utf-8"
    )
    (config_dir / "meteo").mkdir(exist_ok=True)
    (config_dir / "meteo" / "meteo.yaml").write_text(
        "# SYNTHETIC test settings\n"
        "meteo:\n"
        "  sender: supervision@cd13.example\n"
        "  recipients: [exploitation@cd13.example]\n"
        "  retries: 0\n"
        f"  smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none}}\n",
        encoding="utf-8",
    )
    (config_dir / "meteo" / "changes.yaml").write_text(
        "# SYNTHETIC planned changes\n"
        "changes:\n"
        '  - {title: "Bascule de test OXE HD13 vers Arenc", start: 2026-11-24T19:00:00+01:00,'
        " end: 2026-11-24T20:00:00+01:00, sites: [HD13, ARENC], services: [toip], ref: CHG0004242}\n"
        "  - {title: \"Déménagement de l'annexe d'Aix\", kind: request, ref: REQ0007777}\n",
        encoding="utf-8",
    )
    return config_dir, state_dir


async def serve_agent(scenario: Scenario, *, with_incidents: bool) -> tuple[HttpServer, str]:
    config = example_config()
    snap = scenario.snapshot(config)
    cache = LatestCache()
    at = datetime.now(UTC)
    for d in config.devices:
        info = snap.devices[d.name]
        if info.up:
            cache.update(
                PollResult(d.name, at, 0.1, tuple(x for x in snap.measurements if x.device == d.name))
            )
        else:
            cache.update(PollResult(d.name, at, 5.0, error="timeout", error_text="no answer"))

    def inventory() -> dict[str, dict[str, Any]]:
        return {
            d.name: {
                "name": d.name,
                "site": d.site,
                "family": d.family,
                "address": d.address,
                "services": list(d.services),
                "enabled": d.enabled,
            }
            for d in config.devices
        }

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    server = HttpServer(cache, host="127.0.0.1", port=0, ready=ready, inventory=inventory)
    if with_incidents:

        async def incidents(_request: web.Request) -> web.Response:
            return web.json_response({"incidents": [incident_to_json(i) for i in scenario.incidents]})

        server.add_routes([web.get("/api/v1/incidents", incidents)])
    await server.start()
    return server, f"http://127.0.0.1:{server.bound_port}"


async def meteo_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callipso_agent.meteo",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


SCENARIO = Scenario(
    measurements=[
        m("ups-aubagne-mds", "ups_on_battery", 1),
        m("ov8770-hd13", "ov_directory_sync_ok", 0, text="failed"),
    ],
    down_sites={"GARDANNE-MDS"},
    incidents=[
        incident(
            311,
            "sbc_alarm:sbc-arenc",
            "Perte du lien de secours du SBC d'Arenc",
            services=["toip"],
            site="ARENC",
            device="sbc-arenc",
            itsm_ref="INC0051515",
        )
    ],
)


async def test_cli_reads_the_api_sends_the_email_and_archives_it(tmp_path: Path) -> None:
    with smtp_server() as srv:
        config_dir, state_dir = write_config(tmp_path, srv.port)
        server, url = await serve_agent(SCENARIO, with_incidents=True)
        try:
            html = tmp_path / "meteo.html"
            rc, out, err = await meteo_cli(
                "--config",
                str(config_dir),
                "--api",
                url,
                "--date",
                "2026-11-24",
                "--html",
                str(html),
                "--text",
                "--send",
            )
        finally:
            await server.stop()
        assert rc == 0, err
        [got] = srv.sink.received
    assert "sent to exploitation@cd13.example" in err
    assert got.message["Subject"] == "Météo Callipso du 24/11/2026"
    text = got.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert out == text.replace("\r\n", "\n")
    section = text[text.index("LIGNES DE SERVICE") :]
    positions = [section.index(label) for label in SERVICE_LABELS]
    assert positions == sorted(positions)
    for needle in (
        "INC0051515 — Perte du lien de secours du SBC d'Arenc",
        "Sur onduleur : 1",
        "Injoignables : 1",
        "AUBAGNE-MDS — Onduleur ups-aubagne-mds sur batterie",
        "Synchronisation de l'annuaire",
        "CHG0004242",
        "Bascule de test OXE HD13 vers Arenc",
        "REQ0007777",
        "LÉGENDE",
    ):
        assert needle in text, needle
    received_html = got.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.read_text(encoding="utf-8").rstrip("\n") == received_html.replace("\r\n", "\n").rstrip("\n")
    with sqlite3.connect(state_dir / "callipso.sqlite") as db:
        rows = db.execute("SELECT day, sent_at IS NOT NULL, lang FROM meteo_report").fetchall()
    assert rows == [("2026-11-24", 1, "fr")]


async def test_cli_without_incident_engine_and_in_english(tmp_path: Path) -> None:
    config_dir, state_dir = write_config(tmp_path, 25)
    server, url = await serve_agent(SCENARIO, with_incidents=False)  # /api/v1/incidents answers 404
    try:
        rc, out, err = await meteo_cli("--config", str(config_dir), "--api", url, "--lang", "en")
    finally:
        await server.stop()
    assert rc == 0, err
    assert out.startswith("CALLIPSO SERVICE WEATHER REPORT — ")
    assert "INC0051515" not in out and "On UPS: 1" in out and "Unreachable: 1" in out
    assert not (state_dir / "callipso.sqlite").exists()  # a preview touches no store


async def test_cli_errors(tmp_path: Path) -> None:
    config_dir, _ = write_config(tmp_path, 25)
    from callipso_agent.lab.snmpsim import free_tcp_port

    rc, _, err = await meteo_cli("--config", str(config_dir), "--api", f"http://127.0.0.1:{free_tcp_port()}")
    assert rc == 1 and "cannot read the agent's API" in err
    (config_dir / "meteo" / "meteo.yaml").write_text(
        "meteo:\n  recipients: [noc@cd13.example]\n  tme: '08:30'\n", encoding="utf-8"
    )
    rc, _, err = await meteo_cli("--config", str(config_dir))
    assert rc == 2 and f"{config_dir / 'meteo' / 'meteo.yaml'}:3: field 'meteo.tme'" in err
