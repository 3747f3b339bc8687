"""Faults of emulated devices give typed errors (or UNKNOWN states), and never block other devices."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.collect.ssh import collect_ssh
from callipso_agent.errors import AuthFailed, Timeout, Unreachable
from callipso_agent.lab.ssh_emulator import FAULTS, start_emulator
from callipso_agent.model import Severity
from callipso_agent.transports.ssh import ConnectionLost, SshPool
from tests.ssh.support import FIXTURES, profile, session_for, target_for, trusted, value


async def test_slow_output_beyond_the_command_timeout_is_a_timeout(tmp_path: Path) -> None:
    emu = await start_emulator("oxe", fixtures_dir=FIXTURES, slow_delay=0.5)
    try:
        prof = profile("oxe")
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=0.8) as s:
            emu.set_fault("slow")
            with pytest.raises(Timeout) as exc:
                await s.run("listerm")  # 14 lines at 0.5 s each
            assert "listerm" in str(exc.value) and "0.8 s" in str(exc.value)
            emu.set_fault(None)
            res = await s.run("role")  # the session reconnects after a timeout
            assert "MAIN" in res.output
            assert s.connects == 2
    finally:
        await emu.close()


async def test_slow_output_within_the_timeout_is_complete(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES, slow_delay=0.01)
    try:
        emu.set_fault("slow")
        prof = profile("otms")
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=20) as s:
            ms = await collect_ssh("dev", prof, s, ManualClock())
        assert [m for m in ms if m.state == Severity.UNKNOWN] == []
        assert value(ms, "host_filesystem_used_percent", mount="/var") == 61
    finally:
        await emu.close()


@pytest.mark.parametrize("family", ["oxe", "otms"])  # shell and exec mode
async def test_dropped_connection_mid_command_then_reconnect(tmp_path: Path, family: str) -> None:
    emu = await start_emulator(family, fixtures_dir=FIXTURES)
    try:
        prof = profile(family)
        cmd = prof.commands[1].command
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=10) as s:
            emu.set_fault("drop")
            with pytest.raises(ConnectionLost) as exc:
                await s.run(cmd)
            assert isinstance(exc.value, Unreachable)
            assert "connection lost" in str(exc.value) and cmd in str(exc.value)
            emu.set_fault(None)
            res = await s.run(cmd)
            assert not res.failed and res.output.strip()
            assert emu.connections == 2
    finally:
        await emu.close()


@pytest.mark.parametrize("family", ["oxe", "omnivista-8770"])
async def test_hang_after_login_is_a_timeout(tmp_path: Path, family: str) -> None:
    emu = await start_emulator(family, fixtures_dir=FIXTURES)
    try:
        emu.set_fault("hang")
        prof = profile(family)
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=0.5) as s:
            with pytest.raises(Timeout):
                await collect_ssh("dev", prof, s, ManualClock())
    finally:
        await emu.close()


async def test_session_budget_bounds_a_whole_poll(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES, slow_delay=0.2)
    try:
        emu.set_fault("slow")
        prof = profile("otms")
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=30) as s:
            with pytest.raises(Timeout) as exc:
                await collect_ssh("dev", prof, s, ManualClock(), session_timeout=1.0)
        assert "session did not finish" in str(exc.value)
    finally:
        await emu.close()


async def test_hung_device_does_not_block_a_healthy_one(tmp_path: Path) -> None:
    hung = await start_emulator("oxe", fixtures_dir=FIXTURES)
    healthy = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES)
    pool = SshPool(semaphore=asyncio.Semaphore(2), command_timeout=30, session_timeout=60)
    try:
        hung.set_fault("hang")
        oxe, sbc = profile("oxe"), profile("audiocodes-cli")
        s_hung = await pool.session(
            target_for(hung, trusted(hung, tmp_path, "kh1"), device="oxe"), oxe.platform.session_spec()
        )
        s_ok = await pool.session(
            target_for(healthy, trusted(healthy, tmp_path, "kh2"), device="sbc"), sbc.platform.session_spec()
        )
        hung_task = asyncio.create_task(collect_ssh("oxe", oxe, s_hung, ManualClock()))
        polls = []
        for _ in range(3):
            polls.append(await collect_ssh("sbc", sbc, s_ok, ManualClock()))
        assert not hung_task.done()  # still waiting for its prompt, yet the SBC was polled 3 times
        for ms in polls:
            assert value(ms, "sbc_calls_active") == 23
        assert s_ok.connects == 1  # one connection reused across the three polls
        await s_hung.close()  # closing a session under a hung command ends it with a typed error
        with pytest.raises(ConnectionLost):
            await hung_task
    finally:
        await pool.close()
        await hung.close()
        await healthy.close()


async def test_wrong_password_is_auth_failed(tmp_path: Path) -> None:
    emu = await start_emulator("oxe", fixtures_dir=FIXTURES)
    try:
        emu.set_fault("wrong_password")
        prof = profile("oxe")
        async with session_for(emu, prof, trusted(emu, tmp_path)) as s:
            with pytest.raises(AuthFailed) as exc:
                await s.run("role")
        assert "authentication failed" in str(exc.value) and "mtcl" in str(exc.value)
        assert exc.value.kind == "auth_failed"
    finally:
        await emu.close()


@pytest.mark.parametrize(
    ("family", "fault"),
    [
        ("oxe", "garbage"),
        ("otms", "garbage"),
        ("omnivista-8770", "garbage"),
        ("audiocodes-cli", "garbage"),
        ("oxe", "truncated"),
        ("otms", "truncated"),
        ("omnivista-8770", "truncated"),
    ],
)
async def test_garbage_and_truncated_output_give_unknown_with_the_raw_text(
    tmp_path: Path, family: str, fault: str
) -> None:
    emu = await start_emulator(family, fixtures_dir=FIXTURES)
    try:
        prof = profile(family)
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=10) as s:
            emu.set_fault(fault)
            ms = await collect_ssh("dev", prof, s, ManualClock())
        unknown = [m for m in ms if m.state == Severity.UNKNOWN]
        assert unknown, "bad output must not pass as data"
        for m in unknown:
            assert m.value is None and m.text
        if fault == "garbage":
            # every command's output is noise: nothing may come out as OK data
            assert all(m.state == Severity.UNKNOWN for m in ms if m.name != "host_info")
    finally:
        await emu.close()


def test_fault_and_state_names_are_checked() -> None:
    assert set(FAULTS) >= {"slow", "drop", "hang", "wrong_password", "garbage", "changed_host_key"}


async def test_unknown_fault_or_state_is_refused() -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        with pytest.raises(ValueError, match="known: "):
            emu.set_fault("meteor")
        with pytest.raises(ValueError, match="service_down"):
            emu.set_state("nope")
    finally:
        await emu.close()


async def test_failed_command_gives_unknown(tmp_path: Path) -> None:
    """An exec command the host does not know: non-zero exit, UNKNOWN with the error text."""
    from callipso_agent.profiles.ssh import SshProfile

    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        base = profile("otms")
        cmd = base.commands[0].model_copy(update={"command": "no-such-tool --status"})
        prof = SshProfile.model_validate({**base.model_dump(), "commands": [cmd.model_dump()]})
        async with session_for(emu, prof, trusted(emu, tmp_path)) as s:
            [m] = await collect_ssh("dev", prof, s, ManualClock())
        assert m.state == Severity.UNKNOWN
        assert m.text is not None and "exit status 127" in m.text and "command not found" in m.text
    finally:
        await emu.close()


async def test_pool_reuses_a_device_session_and_replaces_it_when_its_target_changes(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    pool = SshPool(semaphore=asyncio.Semaphore(4))
    try:
        spec = profile("otms").platform.session_spec()
        kh = trusted(emu, tmp_path)
        first = await pool.session(target_for(emu, kh, device="otms"), spec)
        await first.run("hostname")
        assert await pool.session(target_for(emu, kh, device="otms"), spec) is first
        assert first.connected
        other = await pool.session(target_for(emu, kh, device="otms", connect_timeout=3.0), spec)
        assert other is not first
        assert not first.connected  # the replaced session was closed
        assert (await other.run("hostname")).output.strip() == "otms-hd13-1"
    finally:
        await pool.close()
        await emu.close()


async def test_fetcher_turns_output_with_nothing_readable_into_a_parse_error(tmp_path: Path) -> None:
    from callipso_agent.collect.ssh_fetcher import SshFetcher
    from callipso_agent.errors import ParseError

    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    pool = SshPool(semaphore=asyncio.Semaphore(2), command_timeout=10)
    try:
        prof = profile("otms")
        fetcher = SshFetcher("otms-1", target_for(emu, trusted(emu, tmp_path), device="otms-1"), prof, pool,
                             ManualClock())
        assert (await fetcher.fetch()).measurements
        emu.set_fault("garbage")
        with pytest.raises(ParseError) as exc:
            await fetcher.fetch()
        assert exc.value.kind == "parse_error" and "no readable output" in str(exc.value)
        assert "otms-1" in str(exc.value) and "otms" in str(exc.value)
        emu.set_fault(None)
        out = await fetcher.fetch()
        assert not [m for m in out.measurements if m.state == Severity.UNKNOWN]
    finally:
        await pool.close()
        await emu.close()


async def test_composite_poll_marks_a_refused_host_key_critical_and_a_lost_connection_unknown(
    tmp_path: Path,
) -> None:
    """Two transports of one device (two real SSH servers here): one healthy, one faulty; the poll succeeds
    and ``collector_up`` of the faulty one says why."""
    from callipso_agent.collect.coordinator import FetchOutput
    from callipso_agent.collect.ssh_fetcher import CompositeFetcher, SshFetcher
    from callipso_agent.model import Measurement

    good = await start_emulator("otms", fixtures_dir=FIXTURES)
    bad = await start_emulator("oxe", fixtures_dir=FIXTURES)
    pool = SshPool(semaphore=asyncio.Semaphore(4), command_timeout=10)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(good.known_hosts_line + bad.known_hosts_line, encoding="utf-8")
        composite = CompositeFetcher("dev", [
            ("cli", SshFetcher("dev", target_for(good, known, device="dev-cli"), profile("otms"), pool, ManualClock())),
            ("ssh", SshFetcher("dev", target_for(bad, known, device="dev-ssh"), profile("oxe"), pool, ManualClock())),
        ], ManualClock())

        def transport(out: FetchOutput, name: str) -> Measurement:
            return next(m for m in out.measurements if m.name == "collector_up" and m.labels["transport"] == name)

        bad.set_fault("changed_host_key")
        bad.drop_connections()
        out = await composite.fetch()
        refused, fine = transport(out, "ssh"), transport(out, "cli")
        assert refused.value == 0.0 and refused.state is Severity.CRITICAL
        assert refused.text is not None and refused.text.startswith("host_key:") and "CHANGED" in refused.text
        assert fine.value == 1.0

        bad.set_fault("drop")
        out = await composite.fetch()
        lost = transport(out, "ssh")
        assert lost.state is Severity.UNKNOWN and (lost.text or "").startswith("connection_lost:")
    finally:
        await pool.close()
        await good.close()
        await bad.close()
