"""Pure evaluation helpers, table-driven: thresholds, hysteresis, label filters, limits from the inventory."""

from __future__ import annotations

import pytest

from callipso_agent.config.models import Device, Site
from callipso_agent.model import Severity
from callipso_agent.rules.engine import changed, label_matches, resolve_limit, threshold_level
from callipso_agent.rules.schema import LabelRef, Ref, Threshold, parse_duration

OK, WARN, CRIT = Severity.OK, Severity.WARNING, Severity.CRITICAL

ABOVE = Threshold(direction="above", warning=80, critical=95, hysteresis=5)
BELOW = Threshold(direction="below", warning=50, critical=25, hysteresis=5)


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (10, OK, OK),
        (80, OK, OK),  # the limit itself is not beyond it
        (80.1, OK, WARN),
        (95, OK, WARN),
        (95.1, OK, CRIT),
        (120, WARN, CRIT),
        (91, CRIT, CRIT),  # held: still above 95 - 5
        (90, CRIT, WARN),  # 90 is not above 90: drops to warning (above 80)
        (76, WARN, WARN),  # held: above 80 - 5
        (75, WARN, OK),
        (74, CRIT, OK),  # below every shifted limit at once
        (91, WARN, WARN),  # hysteresis never raises a level
    ],
)
def test_threshold_above_with_hysteresis(value: float, current: Severity, expected: Severity) -> None:
    assert threshold_level(value, ABOVE, 80, 95, current) is expected


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (60, OK, OK),
        (49.9, OK, WARN),
        (24, OK, CRIT),
        (29, CRIT, CRIT),
        (30, CRIT, WARN),
        (54, WARN, WARN),
        (55, WARN, OK),
    ],
)
def test_threshold_below_with_hysteresis(value: float, current: Severity, expected: Severity) -> None:
    assert threshold_level(value, BELOW, 50, 25, current) is expected


@pytest.mark.parametrize(
    ("warning", "critical", "value", "expected"),
    [
        (None, 0.5, 1, CRIT),
        (None, 0.5, 0, OK),
        (0.5, None, 1, WARN),
        (None, None, 100, OK),
    ],
)
def test_threshold_single_limit(
    warning: float | None, critical: float | None, value: float, expected: Severity
) -> None:
    th = Threshold(direction="above", warning=warning, critical=critical if critical is not None else 1e9)
    assert threshold_level(value, th, warning, critical, OK) is expected


SITE = Site(code="S", name="S", required_autonomy_minutes=20)
SBC = Device(
    name="sbc",
    site="S",
    family="audiocodes-sbc",
    address="sbc.example",
    snmp="c",
    attributes={"licensed_channels": 450, "label": "x", "wan_interface": "Gi0/0"},
)
BARE = Device(name="bare", site="S", family="audiocodes-sbc", address="bare.example", snmp="c")


@pytest.mark.parametrize(
    ("limit", "device", "expected"),
    [
        (12.0, SBC, 12.0),
        (Ref(ref="device.attributes.licensed_channels", factor=0.8), SBC, 360.0),
        (Ref(ref="site.required_autonomy_minutes", factor=60), SBC, 1200.0),
        (Ref(ref="device.attributes.licensed_channels", factor=0.8), BARE, None),  # attribute missing
        (Ref(ref="device.attributes.label"), SBC, None),  # not a number
        (Ref(ref="device.interval", offset=1), SBC, 61.0),
        (None, SBC, None),
    ],
)
def test_limits_from_inventory(limit: float | Ref | None, device: Device, expected: float | None) -> None:
    assert resolve_limit(limit, device, SITE) == expected


@pytest.mark.parametrize(
    ("labels", "wanted", "device", "expected"),
    [
        ({"severity": "critical"}, {"severity": "critical"}, SBC, True),
        ({"severity": "major"}, {"severity": "critical"}, SBC, False),
        ({"severity": "major"}, {"severity": ["critical", "major"]}, SBC, True),
        ({"interface": "Gi0/0"}, {"interface": LabelRef(ref="device.attributes.wan_interface")}, SBC, True),
        ({"interface": "Gi0/1"}, {"interface": LabelRef(ref="device.attributes.wan_interface")}, SBC, False),
        ({"interface": "Gi0/0"}, {"interface": LabelRef(ref="device.attributes.wan_interface")}, BARE, None),
        ({}, {}, SBC, True),
    ],
)
def test_label_filters(labels: dict[str, str], wanted: dict, device: Device, expected: bool | None) -> None:
    assert label_matches(labels, wanted, device, SITE) is expected


@pytest.mark.parametrize(
    ("kind", "previous", "value", "expected"),
    [
        ("decrease", 1000.0, 12.0, True),
        ("decrease", 1000.0, 1060.0, False),
        ("increase", 3.0, 4.0, True),
        ("any", 1.0, 0.0, True),
        ("any", 1.0, 1.0, False),
        ("any", None, 1.0, False),  # first observation: nothing to compare
    ],
)
def test_change_kinds(kind: str, previous: float | None, value: float, expected: bool) -> None:
    assert changed(kind, previous, value) is expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (60, 60.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "5 weeks", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
