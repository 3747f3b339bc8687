"""Profile evaluation of single raw values: scale, sentinels, state maps, value maps (pure, no I/O)."""

from __future__ import annotations

import pytest

from callipso_agent.model import Severity
from callipso_agent.profiles.engine import evaluate_value
from callipso_agent.profiles.schema import MetricSpec
from callipso_agent.transports.snmp import SnmpValue

RUNTIME = MetricSpec(name="ups_battery_runtime_seconds", oid="1.3.6.1.2.1.33.1.2.3", scale=60,
                     none_values=[-1, 65535], unit="seconds")
TEMP = MetricSpec(name="ups_battery_temperature_celsius", oid="1.3.6.1.2.1.33.1.2.7",
                  none_values=[0, -1, -273], min=-40, max=100)
SOURCE = MetricSpec.model_validate({
    "name": "ups_output_source", "oid": "1.3.6.1.2.1.33.1.4.1", "type": "state",
    "states": {3: {"label": "normal", "severity": "ok"}, 5: {"label": "battery", "severity": "critical"}}})
ON_BATT = MetricSpec(name="ups_on_battery", oid="1.3.6.1.2.1.33.1.4.1", value_map={5: 1}, default=0)
HUMID = MetricSpec(name="sensor_humidity_percent", oid="1.3.6.1.4.1.21796.3.3.3.1.4", regex=r"([\d.]+)")


@pytest.mark.parametrize("spec,raw,value,state,text", [
    (RUNTIME, SnmpValue("integer", 544), 32640.0, Severity.OK, None),
    (RUNTIME, SnmpValue("integer", -1), None, Severity.OK, None),
    (RUNTIME, SnmpValue("integer", 65535), None, Severity.OK, None),
    (RUNTIME, SnmpValue("timeticks", 30), 1800.0, Severity.OK, None),  # mistyped TimeTicks still a number
    (RUNTIME, SnmpValue("null", None), None, Severity.OK, None),  # Null-typed cell: an absent value, not a fault
    (TEMP, SnmpValue("integer", 25), 25.0, Severity.OK, None),
    (TEMP, SnmpValue("integer", 0), None, Severity.OK, None),
    (TEMP, SnmpValue("integer", -273), None, Severity.OK, None),
    (TEMP, SnmpValue("integer", 900), None, Severity.OK, None),  # out of plausible range
    (SOURCE, SnmpValue("integer", 3), 3.0, Severity.OK, "normal"),
    (SOURCE, SnmpValue("integer", 5), 5.0, Severity.CRITICAL, "battery"),
    (SOURCE, SnmpValue("integer", 42), 42.0, Severity.UNKNOWN, "unknown(42)"),
    (ON_BATT, SnmpValue("integer", 5), 1.0, Severity.OK, None),
    (ON_BATT, SnmpValue("integer", 3), 0.0, Severity.OK, None),
    (HUMID, SnmpValue("octets", b"29.6 %RH"), 29.6, Severity.OK, None),
    (HUMID, SnmpValue("octets", b"garbage"), None, Severity.UNKNOWN, "garbage"),
])
def test_evaluate(spec: MetricSpec, raw: SnmpValue, value: float | None, state: Severity, text: str | None) -> None:
    assert evaluate_value(spec, raw) == (value, state, text)


def test_schema_refuses_ambiguous_metric() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        MetricSpec(name="x", oid="1.3.6.1", column="1.3.6.1.2")
    with pytest.raises(ValueError, match="_total"):
        MetricSpec(name="x_count", oid="1.3.6.1", type="counter")
