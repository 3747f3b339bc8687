"""The one-shot poll (CLI hook): JSON shape, exit code, password from the environment only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.collect.ssh import add_ssh_arguments, poll_ssh, run_ssh_poll
from callipso_agent.errors import ConfigError
from callipso_agent.lab.ssh_emulator import start_emulator
from tests.ssh.support import FIXTURES, PROFILES, trusted


async def test_poll_ssh_json_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES)
    try:
        monkeypatch.setenv("SBC_PASSWORD", emu.password or "")
        result = await poll_ssh(
            "127.0.0.1",
            emu.port,
            "audiocodes-cli",
            emu.username,
            password_env="SBC_PASSWORD",
            known_hosts=trusted(emu, tmp_path),
            clock=ManualClock(),
            profiles_dir=PROFILES,
        )
    finally:
        await emu.close()
    assert set(result) == {"profile", "system", "measurements"}
    assert result["profile"] == "audiocodes-cli"
    assert result["system"]["software_version"] == "7.40A.500.775"  # version.txt
    assert result["system"]["model"] == "Mediant 4000"
    for m in result["measurements"]:
        assert {"name", "labels", "value", "unit", "state"} <= set(m)
    calls = [m for m in result["measurements"] if m["name"] == "sbc_calls_active"]
    assert calls == [{"name": "sbc_calls_active", "labels": {}, "value": 23.0, "unit": "", "state": "ok"}]
    json.dumps(result)  # serialisable as is


async def test_poll_ssh_needs_the_password_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALLIPSO_TEST_UNSET_VARIABLE"):
        await poll_ssh(
            "127.0.0.1",
            22,
            "otms",
            "u",
            password_env="CALLIPSO_TEST_UNSET_VARIABLE",
            known_hosts=tmp_path / "kh",
            profiles_dir=PROFILES,
        )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("--profile")
    parser.add_argument("--json", action="store_true")
    add_ssh_arguments(parser)
    return parser.parse_args(argv)


async def test_run_ssh_poll_prints_json_with_the_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = await start_emulator("omnivista-8770", fixtures_dir=FIXTURES, state="directory_sync_failed")
    try:
        monkeypatch.setenv("OV_PASSWORD", emu.password or "")
        kh = trusted(emu, tmp_path)
        args = parse(
            [
                "127.0.0.1",
                "--profile",
                "omnivista-8770",
                "--json",
                "--ssh-user",
                emu.username,
                "--ssh-port",
                str(emu.port),
                "--ssh-password-env",
                "OV_PASSWORD",
                "--known-hosts",
                str(kh),
            ]
        )
        capsys.readouterr()
        code = await run_ssh_poll(args)
        out = capsys.readouterr().out
    finally:
        await emu.close()
    result = json.loads(out[out.index("{") :])
    sync = [m for m in result["measurements"] if m["name"] == "ov_directory_sync_ok"]
    assert sync[0]["state"] == "critical"  # dirsync-failed.txt: Result FAILED
    assert code == 0  # the device answered; its states are in the output


async def test_run_ssh_poll_reports_a_refused_host_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp_path / "id"))
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        args = parse(
            [
                "127.0.0.1",
                "--profile",
                "otms",
                "--ssh-user",
                emu.username,
                "--ssh-port",
                str(emu.port),
                "--ssh-key",
                str(tmp_path / "id"),
                "--known-hosts",
                str(tmp_path / "empty"),
            ]
        )
        code = await run_ssh_poll(args)
    finally:
        await emu.close()
    assert code == 2
    assert "host_key" in capsys.readouterr().err
