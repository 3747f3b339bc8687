"""AudioCodes SBC and MP-118 gateway, OmniPCX Enterprise: recordings polled through snmpsim."""

from __future__ import annotations

import pytest

from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.snmp import PysnmpEngine
from tests.helpers.polling import find, names, poll, series, value

pytestmark = [pytest.mark.system, pytest.mark.asyncio(loop_scope="module")]


async def test_mediant_ve_sbc(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "audiocodes_virtualsbc", profiles, engine=engine)
    assert r["profile"] == "audiocodes-sbc"
    # 1.3.6.1.4.1.5003.9.10.10.2.3.1.0|4|Mediant VE SBC ; …2.2.1.0|4|7.40A.600.203 ; …2.3.2.0|66|1286095678
    assert r["system"]["model"] == "Mediant VE SBC"
    assert r["system"]["firmware"] == "7.40A.600.203"
    assert r["system"]["serial_number"] == "1286095678"
    # 1.3.6.1.4.1.5003.9.10.10.2.5.2.0|2|2 enabled
    op = find(r, "sbc_operational")
    assert (op["value"], op["state"], op["text"]) == (1, "ok", "enabled")
    # 1.3.6.1.4.1.5003.9.10.10.2.5.4.0|2|0 noAlarm ; …2.10.1.0|2|1 notApplicable (standalone VE)
    assert find(r, "sbc_highest_alarm_severity")["text"] == "noAlarm"
    assert find(r, "sbc_ha_status")["state"] == "ok"
    # 1.3.6.1.4.1.5003.15.3.1.1.2.2.1.3.0|66|1 active calls in, SRD 0 (no global counter in the recording)
    assert value(r, "sbc_srd_active_calls", srd="0", direction="in") == 1
    assert value(r, "sbc_active_calls", direction="in") == 1
    # channelStatusTable column 1 rTPActive: channels 8 and 16 active (…4.1.1.1.8|2|1, …1.1.16|2|1)
    assert value(r, "sbc_channels_active") == 2
    # no rows in acActiveAlarmTable: zero per severity, not absent
    assert {s["severity"] for s in series(r, "sbc_alarms_active")} == {
        "critical",
        "major",
        "minor",
        "warning",
        "indeterminate",
    }
    assert all(m["value"] == 0 for m in r["measurements"] if m["name"] == "sbc_alarms_active")
    # the channel table is not a hook state on an SBC
    assert "gateway_port_off_hook" not in names(r)


async def test_mp118_analog_ports(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "audiocodes_mp118", profiles, engine=engine)
    assert r["profile"] == "audiocodes-mp"
    # 1.3.6.1.4.1.5003.9.10.10.2.3.1.0|4|MP-118 FXS ; …2.2.1.0|4|6.60A.309.001
    assert r["system"]["model"] == "MP-118 FXS"
    assert r["system"]["firmware"] == "6.60A.309.001"
    ports = series(r, "gateway_port_off_hook")
    assert sorted(int(p["port"]) for p in ports) == list(range(1, 9))
    # port index 0: AC-ANALOG 1.3.6.1.4.1.5003.9.10.8.2.20.1.1.4.0|2|1 onHookState and AcBoard
    # 1.3.6.1.4.1.5003.9.10.1.4.1.1.18.0|2|1 onHook agree: 0 (on hook)
    p1 = find(r, "gateway_port_off_hook", port="1")
    assert p1["value"] == 0 and p1["text"] == "on_hook"
    # 1.3.6.1.4.1.5003.9.10.3.1.1.4.13.21.1.5.0|4|Fax ; 1.3.6.1.4.1.5003.9.10.3.1.1.1.21.1.8.0|4|9647
    assert p1["labels"]["description"] == "Fax" and p1["labels"]["number"] == "9647"
    # 1.3.6.1.4.1.5003.9.10.3.1.1.1.21.1.8.7|4|9806 on port 8
    assert find(r, "gateway_port_off_hook", port="8")["labels"]["number"] == "9806"
    assert value(r, "gateway_ports_off_hook") == 0


async def test_oxe_standby(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "omnipcx", profiles, engine=engine)
    assert r["profile"] == "oxe"
    # 1.3.6.1.4.1.637.64.4400.1.2|2|5 — recorded without .0
    st = find(r, "pbx_state")
    assert (st["value"], st["text"], st["state"]) == (5, "normal", "ok")
    # 1.3.6.1.4.1.637.64.4400.1.4.0|2|2 STAND-BY
    role = find(r, "pbx_role")
    assert (role["value"], role["text"]) == (2, "standby")
    assert value(r, "pbx_is_main") == 0
    # 1.3.6.1.4.1.637.64.4400.1.7.0|2|208 ; …1.8.0|2|237
    assert value(r, "pbx_sets_in_service") == 208
    assert value(r, "pbx_sets_out_of_service") == 237
    # UCD dskTable: 1.3.6.1.4.1.2021.9.1.9.2|2|57 for 1.3.6.1.4.1.2021.9.1.2.2|4|/usr2
    assert value(r, "host_disk_used_percent", mount="/usr2") == 57
    # 1.3.6.1.4.1.2021.11.11.0|2|99 idle → 1 % busy
    assert value(r, "host_cpu_utilization_percent", cpu="all") == 1
    # 1.3.6.1.4.1.2021.4.5.0|2|1010944 kB
    assert value(r, "host_memory_total_bytes") == 1010944 * 1024
    # no trunk or IP-domain rows in this recording
    assert not any(n.startswith("pbx_trunk") or n.startswith("pbx_domain") for n in names(r))
