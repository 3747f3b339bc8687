"""UPS recordings (XUPS, MGE, UPS-MIB) served by snmpsim and polled with profile auto.

Every expected number is read by hand from the recording; the comment gives the recording line.
"""

from __future__ import annotations

import pytest

from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.snmp import PysnmpEngine
from tests.helpers.polling import find, names, poll, series, value

pytestmark = [pytest.mark.system, pytest.mark.asyncio(loop_scope="module")]


# ------------------------------------------------------------------------------------------ XUPS


async def test_connectups_xups(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "eatonups", profiles, engine=engine)
    assert r["profile"] == "eaton-xups"
    # 1.3.6.1.4.1.534.1.2.1.0|2|8620  xupsBatTimeRemaining is in SECONDS
    assert value(r, "ups_battery_runtime_seconds") == 8620
    # 1.3.6.1.4.1.534.1.2.4.0|2|100
    assert value(r, "ups_battery_charge_percent") == 100
    # 1.3.6.1.4.1.534.1.2.5.0|2|4  batteryResting is a normal ABM cycle, not an alarm
    abm = find(r, "ups_battery_abm_status")
    assert (abm["text"], abm["state"]) == ("resting", "ok")
    # 1.3.6.1.4.1.534.1.2.6.0|4|2001-01-01  factory default = unknown: neither a measurement nor identity
    assert "ups_battery_last_replaced" not in names(r)
    assert "battery_last_replaced" not in r["system"]
    # 1.3.6.1.4.1.534.1.3.1.0|2|500  tenths of Hz
    assert value(r, "ups_input_frequency_hertz", phase="1") == 50.0
    # 1.3.6.1.4.1.534.1.4.4.1.2.2|2|231
    assert value(r, "ups_output_voltage_volts", phase="2") == 231
    # 1.3.6.1.4.1.534.1.4.1.0|2|25
    assert value(r, "ups_load_percent", phase="total") == 25
    # 1.3.6.1.4.1.534.1.4.5.0|2|3 normal
    assert value(r, "ups_on_battery") == 0
    assert find(r, "ups_output_source")["text"] == "normal"
    # 1.3.6.1.4.1.534.1.6.5.0|2|21  EMP probe
    assert value(r, "sensor_temperature_celsius", sensor="emp") == 21
    # 1.3.6.1.4.1.534.1.6.10.0|2|29
    assert value(r, "sensor_temperature_high_threshold_celsius", sensor="emp") == 29
    # 1.3.6.1.4.1.534.1.8.2.0|2|2 passed
    assert find(r, "ups_battery_test_status")["text"] == "passed"
    # both contacts are notUsed(4): 1.3.6.1.4.1.534.1.6.8.1.2.1|2|4
    assert series(r, "ups_contact_state") == []


async def test_network_m2_with_emp002(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "eatonupsm2_9px+empg2", profiles, engine=engine)
    assert r["profile"] == "eaton-xups"
    # 1.3.6.1.4.1.534.1.1.6.0|4|GA10K33096 and xupsIdentModel "Eaton 9PX 1000i RT 2U"
    assert r["system"]["serial"] == "GA10K33096"
    assert r["system"]["model"].startswith("Eaton 9PX")
    # 1.3.6.1.4.1.534.1.2.6.0|4|08/17/2024 (a real date is kept)
    assert r["system"]["battery_last_replaced"] == "08/17/2024"
    # 1.3.6.1.4.1.534.1.2.1.0|2|26311 seconds (XUPS wins over UPS-MIB's 438 min)
    assert value(r, "ups_battery_runtime_seconds") == 26311
    # EATON-SENSOR-MIB: 1.3.6.1.4.1.534.6.8.1.2.3.1.3.1.1|2|267 with temperatureUnit.0 = 1 (tenths of °C)
    assert value(r, "sensor_temperature_celsius", sensor="EMPDT1H1C2 @1-T1") == pytest.approx(26.7)
    # 1.3.6.1.4.1.534.6.8.1.2.2.1.7.1.1|2|700 and .8.1.1|2|800 (tenths)
    assert value(
        r, "sensor_temperature_high_threshold_celsius", sensor="EMPDT1H1C2 @1-T1", level="warning"
    ) == pytest.approx(70.0)
    assert value(
        r, "sensor_temperature_high_threshold_celsius", sensor="EMPDT1H1C2 @1-T1", level="critical"
    ) == pytest.approx(80.0)
    # 1.3.6.1.4.1.534.6.8.1.3.3.1.3.1.1|2|240 → 24.0 %; 1.3.6.1.4.1.534.6.8.1.3.2.1.8.1.1|2|900 → 90.0 %
    assert value(r, "sensor_humidity_percent", sensor="EMPDT1H1C2 @1-H1") == pytest.approx(24.0)
    assert value(r, "sensor_humidity_high_threshold_percent", level="critical") == pytest.approx(90.0)
    # the same probe through XUPS (1.3.6.1.4.1.534.1.6.5.0|2|27) is skipped: sensorCount.0 = 1
    assert series(r, "sensor_temperature_celsius") == [
        {"probe": "1", "sensor": "EMPDT1H1C2 @1-T1", "sensor_index": "1"}
    ]
    # 1.3.6.1.4.1.534.1.8.2.0|2|7 scheduled
    assert find(r, "ups_battery_test_status")["text"] == "scheduled"
    # 1.3.6.1.4.1.534.1.4.4.1.2.1|2|229
    assert value(r, "ups_output_voltage_volts", phase="1") == 229


async def test_centreon_powerware_input_lines(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    # partial walk without the system group: the XUPS input table alone is enough to land on eaton-xups
    r = await poll(sim, "centreon_powerware-inputlines", profiles, engine=engine)
    assert r["profile"] == "eaton-xups"
    # .1.3.6.1.4.1.534.1.3.4.1.2.2 = INTEGER: 231
    assert value(r, "ups_input_voltage_volts", phase="2") == 231
    # .1.3.6.1.4.1.534.1.3.4.1.2.1 = INTEGER: 0 (a dead phase stays visible)
    assert value(r, "ups_input_voltage_volts", phase="1") == 0


# ------------------------------------------------------------------------------------------- MGE


async def test_mge_9px_network_ms(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "eaton-mgeups_9pxle", profiles, engine=engine)
    assert r["profile"] == "mge-ups"
    # 1.3.6.1.4.1.705.1.1.7.0|4|GA10J05109
    assert r["system"]["serial"] == "GA10J05109"
    # 1.3.6.1.4.1.705.1.5.5.0|2|550 deci-volts
    assert value(r, "ups_battery_voltage_volts") == pytest.approx(55.0)
    # 1.3.6.1.4.1.705.1.5.1.0|2|1132 seconds (UPS-MIB 1.3.6.1.2.1.33.1.2.3.0|2|18 minutes agrees)
    assert value(r, "ups_battery_runtime_seconds") == 1132
    # 1.3.6.1.4.1.705.1.6.2.1.2.1.0|2|2290 (row index carries a trailing .0)
    assert value(r, "ups_input_voltage_volts", phase="1") == pytest.approx(229.0)
    # 1.3.6.1.4.1.705.1.7.1.0|2|1: the three mgoutputVoltage rows are cut to one phase
    assert series(r, "ups_output_voltage_volts") == [{"phase": "1"}]
    # 1.3.6.1.4.1.705.1.7.2.1.4.1|2|40
    assert value(r, "ups_load_percent", phase="1") == 40
    # 1.3.6.1.4.1.705.1.7.3.0|2|2 → not on battery (yes(1)/no(2))
    assert value(r, "ups_on_battery") == 0
    # 1.3.6.1.4.1.705.1.5.9.0|2|2 → no fault
    assert find(r, "ups_battery_failure")["value"] == 0
    # cross-MIB: xupsAlarms.0 = 1 (1.3.6.1.4.1.534.1.7.1.0) wins over upsAlarmsPresent.0 = 0
    assert value(r, "ups_alarms_present") == 1
    alarm = find(r, "ups_alarm", table="xups")
    assert alarm["text"] == "returnFromLowBattery" and alarm["state"] == "ok"
    # the environment sensor reports a communication failure (upsmgEnvironmentComFailure.1 = yes(1))
    assert "sensor_temperature_celsius" not in names(r)


async def test_mge_5px_single_phase(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "eaton-mgeups_5px", profiles, engine=engine)
    assert r["profile"] == "mge-ups"
    # 1.3.6.1.4.1.705.1.6.2.1.2.1.0|2|2290; phases 2-3 at 0 V / 0 Hz (…2.2.0|2|0, …3.2.0|2|0) are dropped
    assert series(r, "ups_input_voltage_volts") == [{"phase": "1"}]
    # 1.3.6.1.4.1.705.1.5.5.0|2|810
    assert value(r, "ups_battery_voltage_volts") == pytest.approx(81.0)
    # 1.3.6.1.4.1.534.1.6.5.0|2|33 (EMP through XUPS on an MGE card)
    assert value(r, "sensor_temperature_celsius", sensor="emp") == 33
    # 1.3.6.1.4.1.705.1.7.9.0|2|1: a line-interactive 5PX runs its inverter only on battery
    inv = find(r, "ups_inverter_off")
    assert inv["value"] == 1 and inv["state"] == "ok"


async def test_mge_galaxy_7000(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "apc-mgeups_galaxy7000", profiles, engine=engine)
    assert r["profile"] == "mge-ups"
    # 1.3.6.1.4.1.705.1.6.2.1.2.2.0|2|4100
    assert value(r, "ups_input_voltage_volts", phase="2") == pytest.approx(410.0)
    # 1.3.6.1.4.1.705.1.7.2.1.5.3.0|2|410 deci-amps
    assert value(r, "ups_output_current_amperes", phase="3") == pytest.approx(41.0)
    # 1.3.6.1.4.1.705.1.5.7.0|2|23
    assert value(r, "ups_battery_temperature_celsius") == 23
    # 1.3.6.1.4.1.705.1.5.1.0|2|7260
    assert value(r, "ups_battery_runtime_seconds") == 7260


async def test_eaton_93e_saturated_runtime(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "eaton-93e-80", profiles, engine=engine)
    assert r["profile"] == "mge-ups"
    # hex-encoded sysDescr: 1.3.6.1.2.1.1.1.0|4x|4541544f4e20393345203830
    assert r["system"]["sys_descr"] == "EATON 93E 80"
    # upsmgBatteryRemainingTime and xupsBatTimeRemaining are both 65535 (saturated): UPS-MIB gives
    # 1.3.6.1.2.1.33.1.2.3.0|2|1092 minutes
    assert value(r, "ups_battery_runtime_seconds") == 1092 * 60
    # 1.3.6.1.4.1.705.1.7.2.1.3.1|2|490
    assert value(r, "ups_output_frequency_hertz") == pytest.approx(49.0)
    # 1.3.6.1.4.1.534.1.2.5.0|2|0: outside the ABM enum, reported without alarm
    assert find(r, "ups_battery_abm_status")["state"] == "ok"


# --------------------------------------------------------------------------------------- UPS-MIB


async def test_generex_cs141_on_bypass(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "generex-ups_cs141", profiles, engine=engine)
    assert r["profile"] == "ups-mib"
    # 1.3.6.1.2.1.33.1.4.1.0|2|4 bypass
    assert value(r, "ups_on_bypass") == 1
    assert find(r, "ups_on_bypass")["state"] == "warning"  # default threshold
    assert find(r, "ups_output_source")["text"] == "bypass"
    # 1.3.6.1.2.1.33.1.2.3.0|2|544 minutes
    assert value(r, "ups_battery_runtime_seconds") == 544 * 60
    # 1.3.6.1.2.1.33.1.3.3.1.3.3|2|235
    assert value(r, "ups_input_voltage_volts", phase="3") == 235


async def test_delta_mini_snmp_tenths_of_volts(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "deltaups_rfc1628string", profiles, engine=engine)
    assert r["profile"] == "ups-mib-delta-mini"
    # 1.3.6.1.2.1.33.1.3.3.1.3.1|2|2360 in 0.1 V on this card
    assert value(r, "ups_input_voltage_volts", phase="1") == pytest.approx(236.0)
    # 1.3.6.1.2.1.33.1.4.4.1.2.1|2|2300
    assert value(r, "ups_output_voltage_volts", phase="1") == pytest.approx(230.0)
    # phases 2-3 are Null-typed (1.3.6.1.2.1.33.1.3.3.1.3.2|5|): no series, no UNKNOWN
    assert series(r, "ups_input_voltage_volts") == [{"phase": "1"}]
    assert all(m["state"] != "unknown" for m in r["measurements"])
    # frequencies stay in 0.1 Hz: 1.3.6.1.2.1.33.1.3.3.1.2.1|2|500
    assert value(r, "ups_input_frequency_hertz", phase="1") == 50.0
    # 1.3.6.1.2.1.33.1.2.4.0|2|29 → below the default warning threshold 50:
    assert find(r, "ups_battery_charge_percent")["state"] == "warning"


async def test_delta_plain_card_keeps_volts(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "deltaups", profiles, engine=engine)
    assert r["profile"] == "ups-mib"
    # 1.3.6.1.2.1.33.1.3.3.1.3.1|2|121 (volts, a 120 V UPS)
    assert value(r, "ups_input_voltage_volts", phase="1") == 121
    # upsIdentManufacturer registered without .0: 1.3.6.1.2.1.33.1.1.1|4|Minuteman
    assert r["system"]["manufacturer"] == "Minuteman"
    # Null-typed upsBatteryCurrent (1.3.6.1.2.1.33.1.2.6.0|5|) gives no series
    assert "ups_battery_current_amperes" not in names(r)


async def test_huawei_gse200m_sentinels_and_resolution(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "huawei-gse200m", profiles, engine=engine)
    assert r["profile"] == "ups-mib-huawei-gse"
    # 1.3.6.1.2.1.33.1.2.3.0|2|-1, 1.3.6.1.2.1.33.1.2.4.0|2|-1, 1.3.6.1.2.1.33.1.2.7.0|2|-1: no values
    assert not {
        "ups_battery_runtime_seconds",
        "ups_battery_charge_percent",
        "ups_battery_temperature_celsius",
    } & names(r)
    # 1.3.6.1.2.1.33.1.3.3.1.3.1|66|2369 (0.1 V), 1.3.6.1.2.1.33.1.4.2.0|2|4999 (0.01 Hz)
    assert value(r, "ups_input_voltage_volts", phase="1") == pytest.approx(236.9)
    assert value(r, "ups_output_frequency_hertz") == pytest.approx(49.99)
    # 1.3.6.1.2.1.33.1.2.5.0|2|5385 battery voltage stays in the RFC's 0.1 V
    assert value(r, "ups_battery_voltage_volts") == pytest.approx(538.5)


async def test_netvision_65535_sentinels(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "netvision-rfc", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.2.3.0|2|65535 runtime, …2.6.0|2|65535 current, …3.3.1.4.1|2|655350 input current
    assert not {
        "ups_battery_runtime_seconds",
        "ups_battery_current_amperes",
        "ups_input_current_amperes",
    } & names(r)
    # 1.3.6.1.2.1.33.1.4.4.1.3.1|2|22 → 2.2 A
    assert value(r, "ups_output_current_amperes", phase="1") == pytest.approx(2.2)


async def test_poweralert_sentinel_and_other_source(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "poweralert_ups", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.2.7.0|2|-273 no sensor
    assert "ups_battery_temperature_celsius" not in names(r)
    # 1.3.6.1.2.1.33.1.4.1.0|2|1 other(1)
    src = find(r, "ups_output_source")
    assert (src["text"], src["state"]) == ("other", "warning")


async def test_poweralert_battery_bad_alarms(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "poweralert_2", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.6.1.0|2|2 typed INTEGER
    assert value(r, "ups_alarms_present") == 2
    # 1.3.6.1.2.1.33.1.6.2.1.2.22|6|1.3.6.1.2.1.33.1.6.3.1 and .23 → upsAlarmBatteryBad
    for alarm_id in ("22", "23"):
        a = find(r, "ups_alarm", alarm_id=alarm_id)
        assert (a["text"], a["state"]) == ("batteryBad", "critical")


async def test_powerwalker_null_battery_temperature(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "powerwalker-vfi_500r1u", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.2.7.0|5| Null-typed
    assert "ups_battery_temperature_celsius" not in names(r)
    # 1.3.6.1.2.1.33.1.2.3.0|2|20
    assert value(r, "ups_battery_runtime_seconds") == 1200


async def test_santak_timeticks_runtime(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "ingrasys-power-switch", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.2.3.0|67|0 TimeTicks-typed, 0 with upsBatteryStatus normal(2): not an estimate
    assert "ups_battery_runtime_seconds" not in names(r)
    # 1.3.6.1.2.1.33.1.4.4.1.3.1|2|400 → 40 A
    assert value(r, "ups_output_current_amperes", phase="1") == pytest.approx(40.0)
    # hex-encoded upsIdentModel: 1.3.6.1.2.1.33.1.1.2.0|4x|41727261792d3341332020202020
    assert r["system"]["model"] == "Array-3A3"


async def test_istars_trailing_zero_index(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "istars", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.3.3.1.3.1.0|2|224 (row index "1.0")
    assert value(r, "ups_input_voltage_volts", phase="1") == 224
    # 1.3.6.1.2.1.33.1.2.3.0|2|848
    assert value(r, "ups_battery_runtime_seconds") == 848 * 60


async def test_centreon_partial_walk_forced_profile(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    r = await poll(sim, "centreon_ups-standard", profiles, engine=engine)
    assert r["profile"] == "ups-mib"
    # .1.3.6.1.2.1.33.1.3.3.1.3.2 = INTEGER: 234
    assert value(r, "ups_input_voltage_volts", phase="2") == 234
    # .1.3.6.1.2.1.33.1.3.3.1.2.1 = INTEGER: 499
    assert value(r, "ups_input_frequency_hertz", phase="1") == pytest.approx(49.9)


@pytest.mark.parametrize(
    "community",
    [
        "abbups_abbups",
        "cyberpower_pr2200rt2uc",
        "dell-ups_tower1000w",
        "generex-ups_cs121",
        "liebert_apm",
        "marathonups",
        "netmanplus_204",
        "netmanplus_208",
        "powerwalker-vfi_20kcpgpf133",
        "eastpower-istars-swv053",
        "centreon_ups-standard-null-val",
    ],
)
async def test_other_ups_mib_cards(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine, community: str
) -> None:
    r = await poll(sim, community, profiles, engine=engine)
    assert r["profile"] == "ups-mib"
    # every UPS-MIB card answers some input or battery reading; none comes out UNKNOWN
    assert names(r) & {"ups_input_voltage_volts", "ups_input_frequency_hertz", "ups_battery_charge_percent"}
    assert all(m["state"] != "unknown" for m in r["measurements"]), [
        m for m in r["measurements"] if m["state"] == "unknown"
    ]


async def test_cyberpower_values(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "cyberpower_pr2200rt2uc", profiles, engine=engine)
    # 1.3.6.1.2.1.33.1.3.3.1.2.1|2|600 → 60.0 Hz; 1.3.6.1.2.1.33.1.2.5.0|2|548 → 54.8 V
    assert value(r, "ups_input_frequency_hertz", phase="1") == pytest.approx(60.0)
    assert value(r, "ups_battery_voltage_volts") == pytest.approx(54.8)
    # 1.3.6.1.2.1.33.1.2.7.0|2|27
    assert value(r, "ups_battery_temperature_celsius") == 27
