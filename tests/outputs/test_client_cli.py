"""The ``incident`` and ``maintenance`` sub-commands against a running API."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from callipso_agent.api import client_cli
from callipso_agent.store.tables import audit_log
from tests.outputs.api_rig import NOC_TOKEN, ApiRig, start_api


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callipso-agent")
    sub = p.add_subparsers(dest="command", required=True)
    client_cli.register(sub)
    return p


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ApiRig]:
    r = await start_api(tmp_path)
    await r.incidents.open(
        priority="P1", title="OXE principal injoignable", site="HD13", device="oxe-hd13-main"
    )
    await r.incidents.open(
        priority="P3", title="Sonde température absente", site="ARENC", device="probe-arenc-2"
    )
    yield r
    await r.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(NOC_TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


async def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return int(await asyncio.to_thread(args.func, args))


async def test_list_and_show(rig: ApiRig, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("incident", "list", "--url", rig.url) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "PRIO", "ÉTAT", "SITE", "ÉQUIPEMENT", "TICKET", "TITRE"]
    assert out[1].split()[:5] == ["1", "P1", "open", "HD13", "oxe-hd13-main"]
    assert out[1].endswith("OXE principal injoignable") and len(out) == 3
    assert await run("incident", "list", "--url", rig.url, "--priority", "P3", "--lang", "en") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[2] == "STATE" and len(out) == 2 and "probe-arenc-2" in out[1]
    assert await run("incident", "show", "1", "--url", rig.url) == 0
    text = capsys.readouterr().out
    assert text.startswith("#1 [P1] OXE principal injoignable (open)")
    assert "Ouvert le: 06/01/2026 10:00" in text and "Historique:" in text


async def test_writes_with_a_token_file(
    rig: ApiRig, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--url", rig.url, "--token-file", str(token_file)]
    assert await run("incident", "ack", "1", "--comment", "je prends", *common) == 0
    assert capsys.readouterr().out.strip() == "Incident 1 pris en compte"
    assert await run("incident", "note", "1", "technicien en route", *common) == 0
    assert await run("incident", "resolve", "1", "--reason", "redémarré", *common) == 0
    assert capsys.readouterr().out.splitlines() == ["Note ajoutée à l'incident 1", "Incident 1 résolu"]
    assert [e.kind for e in rig.incidents.timelines[1]] == ["opened", "acknowledged", "note", "resolved"]
    async with rig.store.engine.connect() as conn:
        rows = (await conn.execute(select(audit_log.c.actor, audit_log.c.action))).all()
    assert [tuple(r) for r in rows] == [
        ("noc", "incident.acknowledge"),
        ("noc", "incident.note"),
        ("noc", "incident.resolve"),
    ]


async def test_errors_are_reported(rig: ApiRig, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("incident", "ack", "1", "--url", rig.url) == 1
    assert capsys.readouterr().err.strip() == "error 401: a bearer token is required"
    assert await run("incident", "show", "42", "--url", rig.url) == 1
    assert "error 404: no incident 42" in capsys.readouterr().err
    assert (
        await run("incident", "ack", "1", "--url", rig.url, "--token-file", str(token_file.parent / "nope"))
        == 2
    )
    assert "cannot read token file" in capsys.readouterr().err
    assert await run("incident", "list", "--url", "http://127.0.0.1:9") == 1
    assert "cannot reach the agent" in capsys.readouterr().err
    assert (
        await run(
            "maintenance",
            "add",
            "--url",
            rig.url,
            "--token-file",
            str(token_file),
            "--duration",
            "2h",
            "--reason",
            "x",
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "error 400: invalid request" in err and "name at least one site, device or service" in err


async def test_maintenance_add_list_delete(
    rig: ApiRig, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--url", rig.url, "--token-file", str(token_file)]
    assert (
        await run(
            "maintenance",
            "add",
            "--start",
            "2026-01-06T22:00",
            "--duration",
            "1h30m",
            "--reason",
            "bascule OXE",
            "--site",
            "HD13",
            "--device",
            "oxe-hd13-main",
            *common,
        )
        == 0
    )
    assert (
        capsys.readouterr().out.strip()
        == "Fenêtre de maintenance 1 déclarée (06/01/2026 22:00 → 06/01/2026 23:30)"
    )
    (window,) = rig.maintenance.windows.values()
    assert window.start.isoformat() == "2026-01-06T21:00:00+00:00" and window.created_by == "noc"
    assert await run("maintenance", "list", "--url", rig.url) == 0
    assert "[HD13, oxe-hd13-main]  bascule OXE  (noc)" in capsys.readouterr().out
    assert await run("maintenance", "delete", "1", *common) == 0
    assert rig.maintenance.windows == {}


def test_token_sources() -> None:
    args = parser().parse_args(["incident", "list", "--token-env", "CALLIPSO_TOKEN"])
    assert client_cli.read_token(args, {"CALLIPSO_TOKEN": " abc \n"}) == "abc"
    with pytest.raises(client_cli.CliError) as err:
        client_cli.read_token(args, {})
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        parser().parse_args(
            ["incident", "list", "--token", "abc"]
        )  # no way to put a token on the command line
    with pytest.raises(SystemExit):
        parser().parse_args(["incident", "list", "--token-env", "A", "--token-file", "f"])


def test_durations() -> None:
    from datetime import timedelta

    assert client_cli.parse_duration("1h30m") == timedelta(minutes=90)
    assert client_cli.parse_duration("2d") == timedelta(days=2)
    with pytest.raises(client_cli.CliError):
        client_cli.parse_duration("soon")


def test_joins_an_existing_incident_group() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    incident = sub.add_parser("incident")
    actions = incident.add_subparsers(dest="incident_command", required=True)
    actions.add_parser("report").set_defaults(func="report")
    client_cli.register(sub, incident_actions=actions)
    assert p.parse_args(["incident", "report"]).func == "report"
    assert p.parse_args(["incident", "ack", "3"]).func is client_cli.cmd_incident_ack
    assert p.parse_args(["maintenance", "list"]).func is client_cli.cmd_maintenance_list
