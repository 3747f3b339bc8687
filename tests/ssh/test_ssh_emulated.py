"""Each profile against its emulated device: the measurements hold what the fixture output holds.

Expected numbers are read off the fixture files named in each test (their '## Holds:' header states them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.collect.ssh import collect_ssh
from callipso_agent.lab.ssh_emulator import start_emulator
from callipso_agent.model import Measurement, Severity
from tests.ssh.support import FIXTURES, one, profile, session_for, trusted, value

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def poll(family: str, profile_name: str, state: str, tmp_path: Path) -> list[Measurement]:
    clock = ManualClock(NOW)
    emu = await start_emulator(family, state=state, clock=clock, fixtures_dir=FIXTURES)
    try:
        prof = profile(profile_name)
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=10) as s:
            return await collect_ssh("dev", prof, s, clock)
    finally:
        await emu.close()


def no_unknown(ms: list[Measurement]) -> None:
    assert [m for m in ms if m.state == Severity.UNKNOWN] == []


# -- OXE -----------------------------------------------------------------------------------------------------


async def test_oxe_nominal(tmp_path: Path) -> None:
    ms = await poll("oxe", "oxe", "nominal", tmp_path)
    no_unknown(ms)
    # role.txt: A MAIN, B STANDBY, SYNCHRONIZED, 1 switchover, last 02/01/26 04:12:55 Paris
    a, b = one(ms, "pbx_cpu_role", cpu="A"), one(ms, "pbx_cpu_role", cpu="B")
    assert (a.text, a.value, a.state) == ("main", 1, Severity.OK)
    assert (b.text, b.value, b.state) == ("standby", 0, Severity.OK)
    assert a.labels["cpu_host"] == "oxe-hd13-a"
    assert one(ms, "pbx_twin_switchover").text == "synchronised"
    assert value(ms, "pbx_twin_switchovers_total") == 1
    assert (
        value(ms, "pbx_twin_last_switchover_timestamp_seconds")
        == datetime(2026, 1, 2, 3, 12, 55, tzinfo=UTC).timestamp()
    )
    # incvisu.txt: levels 0 x3, 1 x1, 2 x2, 3 x0; newest 05/01/26 08:55:10 Paris
    assert {m.labels["severity"]: m.value for m in ms if m.name == "pbx_incidents_recent"} == {
        "info": 3,
        "minor": 1,
        "major": 2,
        "critical": 0,
    }
    assert (
        value(ms, "pbx_incidents_last_timestamp_seconds")
        == datetime(2026, 1, 5, 7, 55, 10, tzinfo=UTC).timestamp()
    )
    # trkstat.txt: group 10 = 25 F + 5 B; group 20 = 8 F + 3 B + 1 O
    trunks = {
        (m.labels["trunk_group"], m.labels["state"]): m.value for m in ms if m.name == "pbx_trunk_channels"
    }
    assert trunks == {
        ("T2-HD13-OPERATEUR", "free"): 25,
        ("T2-HD13-OPERATEUR", "busy"): 5,
        ("T2-HD13-OPERATEUR", "out_of_service"): 0,
        ("SIP-SBC-HD13", "free"): 8,
        ("SIP-SBC-HD13", "busy"): 3,
        ("SIP-SBC-HD13", "out_of_service"): 1,
    }
    # listerm.txt: 8068(IP) 3 ok + 1 flagged; 4039(LE) 2 ok; Z(ANA) 1 ok + 1 flagged
    sets = {(m.labels["type"], m.labels["state"]): m.value for m in ms if m.name == "pbx_sets"}
    assert sets == {
        ("8068(IP)", "in_service"): 3,
        ("8068(IP)", "out_of_service"): 1,
        ("4039(LE)", "in_service"): 2,
        ("4039(LE)", "out_of_service"): 0,
        ("Z(ANA)", "in_service"): 1,
        ("Z(ANA)", "out_of_service"): 1,
    }
    # licences.txt
    assert value(ms, "pbx_licence_used", licence="IP Phones") == 812
    assert value(ms, "pbx_licence_total", licence="IP Phones") == 1000
    assert value(ms, "pbx_licence_used", licence="Voice mail boxes") == 1400
    # backups.txt: latest OK at 05/01/26 02:00:05 Paris
    assert one(ms, "pbx_backup_ok").text == "ok"
    assert (
        value(ms, "pbx_backup_last_success_timestamp_seconds")
        == datetime(2026, 1, 5, 1, 0, 5, tzinfo=UTC).timestamp()
    )
    # date.txt: the emulator prints its (manual) clock: no drift
    assert value(ms, "pbx_time_drift_seconds") == 0


@pytest.mark.parametrize(
    ("state", "a", "b", "twin", "twin_severity"),
    [
        ("standby", "standby", "main", "synchronised", Severity.OK),  # role-standby.txt
        ("switchover", "switching", "main", "in_progress", Severity.WARNING),  # role-switchover.txt
    ],
)
async def test_oxe_twin_states(
    tmp_path: Path, state: str, a: str, b: str, twin: str, twin_severity: Severity
) -> None:
    ms = await poll("oxe", "oxe", state, tmp_path)
    assert one(ms, "pbx_cpu_role", cpu="A").text == a
    assert one(ms, "pbx_cpu_role", cpu="B").text == b
    sw = one(ms, "pbx_twin_switchover")
    assert (sw.text, sw.state) == (twin, twin_severity)
    assert value(ms, "pbx_twin_switchovers_total") == 2


async def test_oxe_trunk_down(tmp_path: Path) -> None:
    ms = await poll("oxe", "oxe", "trunk_down", tmp_path)
    # trkstat-trunk-down.txt: group 10 all 30 O; group 20 6 F + 6 B
    assert value(ms, "pbx_trunk_channels", trunk_group="T2-HD13-OPERATEUR", state="out_of_service") == 30
    assert value(ms, "pbx_trunk_channels", trunk_group="T2-HD13-OPERATEUR", state="free") == 0
    assert value(ms, "pbx_trunk_channels", trunk_group="SIP-SBC-HD13", state="busy") == 6
    # incvisu-trunk-down.txt: 0 x1, 2 x2, 3 x2
    assert {m.labels["severity"]: m.value for m in ms if m.name == "pbx_incidents_recent"} == {
        "info": 1,
        "minor": 0,
        "major": 2,
        "critical": 2,
    }


async def test_oxe_backup_failed_and_clock_drift(tmp_path: Path) -> None:
    ms = await poll("oxe", "oxe", "backup_failed", tmp_path)
    ok = one(ms, "pbx_backup_ok")
    assert (ok.value, ok.text, ok.state) == (0, "failed", Severity.CRITICAL)
    # backups-failed.txt: last success 04/01/26 02:00:06 Paris
    assert (
        value(ms, "pbx_backup_last_success_timestamp_seconds")
        == datetime(2026, 1, 4, 1, 0, 6, tzinfo=UTC).timestamp()
    )
    drift = await poll("oxe", "oxe", "clock_drift", tmp_path)
    assert value(drift, "pbx_time_drift_seconds") == 95  # device.yaml: clock_offset 95


# -- OTMS ----------------------------------------------------------------------------------------------------


async def test_otms_nominal(tmp_path: Path) -> None:
    ms = await poll("otms", "otms", "nominal", tmp_path)
    no_unknown(ms)
    up = {m.labels["service"]: (m.value, m.state) for m in ms if m.name == "host_service_up"}
    assert up == {
        s: (1, Severity.OK)
        for s in ["chronyd", "otms-core", "otms-media", "otms-sip", "otms-web", "postgresql"]
    }
    # df.txt
    fs = {m.labels["mount"]: m.value for m in ms if m.name == "host_filesystem_used_percent"}
    assert fs == {"/": 43, "/var": 61, "/var/log": 22, "/opt/otms": 75, "/boot": 20}
    # free.txt: 6021279744 / 16644714496
    assert value(ms, "host_memory_used_percent") == pytest.approx(100 * 6021279744 / 16644714496)
    # certs.txt, relative to the collection time NOW
    certs = {m.labels["cert"]: m.value for m in ms if m.name == "host_certificate_expiry_seconds"}
    assert certs == {
        "sip-tls": (datetime(2031, 3, 10, 12, tzinfo=UTC) - NOW).total_seconds(),
        "web": (datetime(2032, 1, 20, 8, 30, tzinfo=UTC) - NOW).total_seconds(),
        "ldap-ca": (datetime(2030, 6, 1, tzinfo=UTC) - NOW).total_seconds(),
    }
    assert one(ms, "host_info").text == "otms-hd13-1"


async def test_otms_service_down_and_disk_full(tmp_path: Path) -> None:
    ms = await poll("otms", "otms", "service_down", tmp_path)
    sip = one(ms, "host_service_up", service="otms-sip")
    assert (sip.value, sip.text, sip.state) == (0, "failed", Severity.CRITICAL)
    assert value(ms, "host_service_up", service="otms-core") == 1
    full = await poll("otms", "otms", "disk_full", tmp_path)
    assert value(full, "host_filesystem_used_percent", mount="/var/log") == 97


# -- OmniVista 8770 ------------------------------------------------------------------------------------------


async def test_8770_nominal(tmp_path: Path) -> None:
    ms = await poll("omnivista-8770", "omnivista-8770", "nominal", tmp_path)
    no_unknown(ms)
    # dirsync.txt
    assert (one(ms, "ov_directory_sync_ok").value, one(ms, "ov_directory_sync_ok").state) == (1, Severity.OK)
    assert value(ms, "ov_directory_sync_anomalies") == 3
    assert (
        value(ms, "ov_directory_sync_last_timestamp_seconds")
        == datetime(2026, 1, 5, 1, 3, 44, tzinfo=UTC).timestamp()
    )
    # backups.txt: 4 jobs, all Success
    assert {m.labels["job"]: m.value for m in ms if m.name == "ov_backup_ok"} == {
        "DB_8770_DAILY": 1,
        "OXE_HD13_DAILY": 1,
        "OXE_ARENC_DAILY": 1,
        "OTMS_HD13_WEEKLY": 1,
    }
    # alarms.txt
    assert {m.labels["severity"]: m.value for m in ms if m.name == "ov_alarms"} == {
        "critical": 0,
        "major": 2,
        "minor": 5,
        "warning": 1,
        "indeterminate": 0,
    }


async def test_8770_directory_sync_failed_and_backups_failed(tmp_path: Path) -> None:
    ms = await poll("omnivista-8770", "omnivista-8770", "directory_sync_failed", tmp_path)
    sync = one(ms, "ov_directory_sync_ok")
    assert (sync.value, sync.text, sync.state) == (0, "failed", Severity.CRITICAL)
    assert value(ms, "ov_directory_sync_anomalies") == 1  # dirsync-failed.txt
    bk = await poll("omnivista-8770", "omnivista-8770", "backups_failed", tmp_path)
    states = {m.labels["job"]: m.state for m in bk if m.name == "ov_backup_ok"}
    assert states == {
        "DB_8770_DAILY": Severity.CRITICAL,
        "OXE_HD13_DAILY": Severity.OK,
        "OXE_ARENC_DAILY": Severity.CRITICAL,
        "OTMS_HD13_WEEKLY": Severity.OK,
    }


# -- AudioCodes CLI ------------------------------------------------------------------------------------------


async def test_audiocodes_nominal(tmp_path: Path) -> None:
    ms = await poll("audiocodes-cli", "audiocodes-cli", "nominal", tmp_path)
    no_unknown(ms)
    # alarms.txt: 1 major, 1 minor
    assert {m.labels["severity"]: m.value for m in ms if m.name == "sbc_alarms_active"} == {
        "critical": 0,
        "major": 1,
        "minor": 1,
        "warning": 0,
    }
    assert value(ms, "sbc_calls_active") == 23  # calls.txt
    assert {m.labels["ip_group"]: m.value for m in ms if m.name == "sbc_ip_group_up"} == {
        "OXE-HD13": 1,
        "ITSP-OPERATEUR": 1,
        "OXE-ARENC": 1,
    }
    assert value(ms, "sbc_ip_group_keepalive_failures", ip_group="ITSP-OPERATEUR") == 2
    assert one(ms, "sbc_info").text == "7.40A.500.775"


async def test_audiocodes_ip_group_down(tmp_path: Path) -> None:
    ms = await poll("audiocodes-cli", "audiocodes-cli", "ip_group_down", tmp_path)
    itsp = one(ms, "sbc_ip_group_up", ip_group="ITSP-OPERATEUR")
    assert (itsp.value, itsp.text, itsp.state) == (0, "down", Severity.CRITICAL)
    assert value(ms, "sbc_ip_group_up", ip_group="OXE-HD13") == 1
    assert value(ms, "sbc_alarms_active", severity="critical") == 1  # alarms-itsp-down.txt


async def test_audiocodes_pager_is_switched_off_by_the_profile(tmp_path: Path) -> None:
    """calls.txt is longer than the 20-line pager: the paging-off commands must run first."""
    emu = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES)
    try:
        prof = profile("audiocodes-cli")
        async with session_for(emu, prof, trusted(emu, tmp_path), command_timeout=10) as s:
            res = await s.run("show voip calls active sbc")
        assert "--MORE--" not in res.output
        assert res.output.count("Connected") == 23
        assert emu.commands_seen[:3] == ["config system", "cli-settings", "window-height 0"]
    finally:
        await emu.close()


async def test_pager_prompt_is_answered_when_paging_stays_on(tmp_path: Path) -> None:
    import dataclasses

    emu = await start_emulator("audiocodes-cli", fixtures_dir=FIXTURES)
    try:
        prof = profile("audiocodes-cli")
        spec = dataclasses.replace(prof.platform.session_spec(), paging_off=())
        from callipso_agent.transports.ssh import SshSession
        from tests.ssh.support import target_for

        async with SshSession(target_for(emu, trusted(emu, tmp_path)), spec, command_timeout=10) as s:
            res = await s.run("show voip calls active sbc")
        assert "--MORE--" not in res.output
        assert res.output.count("Connected") == 23
        assert "window-height 0" not in emu.commands_seen
    finally:
        await emu.close()
