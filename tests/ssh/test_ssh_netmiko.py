"""The optional netmiko transport (its real audiocode_72 driver) against the AudioCodes emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.collect.ssh import collect_ssh
from callipso_agent.errors import AuthFailed, HostKeyError
from callipso_agent.lab.ssh_emulator import EmulatorHandle, start_emulator
from callipso_agent.model import Measurement
from callipso_agent.transports.ssh_netmiko import NetmikoSession
from tests.ssh.support import FIXTURES, profile, session_for, target_for, trusted

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:netmiko.*")

PROFILE = profile("audiocodes-cli")


def table(ms: list[Measurement]) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float | None, str]]:
    return {(m.name, tuple(sorted(m.labels.items()))): (m.value, m.state.label) for m in ms}


def netmiko_session(emu: EmulatorHandle, kh: Path, **kw: object) -> NetmikoSession:
    return NetmikoSession(
        target_for(emu, kh, **kw), PROFILE.platform.session_spec(), "audiocode_72", command_timeout=10
    )


async def test_netmiko_and_asyncssh_give_the_same_measurements(tmp_path: Path) -> None:
    emu = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES, state="ip_group_down")
    try:
        kh = trusted(emu, tmp_path)
        async with netmiko_session(emu, kh) as s:
            via_netmiko = await collect_ssh("sbc", PROFILE, s, ManualClock())
            again = await collect_ssh("sbc", PROFILE, s, ManualClock())
            assert s.connects == 1  # the connection is reused
        async with session_for(emu, PROFILE, kh) as s:
            via_asyncssh = await collect_ssh("sbc", PROFILE, s, ManualClock())
    finally:
        await emu.close()
    assert table(via_netmiko) == table(via_asyncssh) == table(again)
    # proxy-sets-itsp-down.txt: ITSP-OPERATEUR OFFLINE
    assert table(via_netmiko)[("sbc_ip_group_up", (("ip_group", "ITSP-OPERATEUR"),))] == (0, "critical")
    assert "window-height 0" in emu.commands_seen


async def test_netmiko_host_keys(tmp_path: Path) -> None:
    emu = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES)
    try:
        kh = tmp_path / "known_hosts"
        async with netmiko_session(emu, kh) as s:
            with pytest.raises(HostKeyError) as exc:
                await s.run("show system version")
        assert "unknown" in str(exc.value) and emu.host_key_fingerprint in str(exc.value)
        async with netmiko_session(emu, kh, trust_on_first_use=True) as s:
            assert "7.40A" in (await s.run("show system version")).output
        assert kh.read_text() == emu.known_hosts_line
        emu.set_fault("changed_host_key")
        async with netmiko_session(emu, kh, trust_on_first_use=True) as s:
            with pytest.raises(HostKeyError) as exc:
                await s.run("show system version")
        assert "CHANGED" in str(exc.value) and emu.host_key_fingerprint in str(exc.value)
    finally:
        await emu.close()


async def test_netmiko_wrong_password(tmp_path: Path) -> None:
    emu = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES)
    try:
        emu.set_fault("wrong_password")
        async with netmiko_session(emu, trusted(emu, tmp_path)) as s:
            with pytest.raises(AuthFailed) as exc:
                await s.run("show system version")
        assert emu.password is not None and emu.password not in str(exc.value)
    finally:
        await emu.close()
