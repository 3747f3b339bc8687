"""Nagios range syntax ([@][start:][end], ~ = -inf) and the default thresholds file."""

from __future__ import annotations

import math

import pytest

from callipso_agent.errors import ConfigErrors
from callipso_agent.model import Severity
from callipso_agent.paths import checks_dir
from callipso_agent.rules.ranges import Range, RangeError
from callipso_agent.rules.thresholds import Thresholds, load_thresholds
from callipso_agent.yamlload import load_yaml_text, parse_model

# (range, value, alerts?) — the table of the Monitoring Plugins guidelines plus edge cases
CASES = [
    ("10", -1, True),
    ("10", 0, False),
    ("10", 10, False),
    ("10", 10.5, True),
    ("10:", 9.99, True),
    ("10:", 10, False),
    ("10:", 1e9, False),
    ("~:10", -1e9, False),
    ("~:10", 10, False),
    ("~:10", 11, True),
    ("10:20", 9, True),
    ("10:20", 10, False),
    ("10:20", 20, False),
    ("10:20", 21, True),
    ("@10:20", 9, False),
    ("@10:20", 10, True),
    ("@10:20", 15, True),
    ("@10:20", 20, True),
    ("@10:20", 21, False),
    ("@0", 0, True),
    ("@0", 1, False),
    ("0", 1, True),
    ("0", 0, False),
    ("-5:-1", -3, False),
    ("-5:-1", 0, True),
    ("1.5:2.5", 2.0, False),
    ("1.5:2.5", 2.6, True),
    ("@~:0", -3, True),
    ("@~:0", 0.1, False),
]


@pytest.mark.parametrize(("text", "v", "alerts"), CASES)
def test_range_table(text: str, v: float, alerts: bool) -> None:
    assert Range.parse(text).alerts(v) is alerts


@pytest.mark.parametrize(
    ("text", "start", "end", "inside"),
    [
        ("10", 0.0, 10.0, False),
        ("10:", 10.0, math.inf, False),
        ("~:10", -math.inf, 10.0, False),
        ("@5:6", 5.0, 6.0, True),
        (" 3:4 ", 3.0, 4.0, False),
    ],
)
def test_range_bounds(text: str, start: float, end: float, inside: bool) -> None:
    r = Range.parse(text)
    assert (r.start, r.end, r.inside) == (start, end, inside)


@pytest.mark.parametrize("text", ["", ":", "@", "abc", "10:5", "1:2:3", "~", "@@1", "1..2"])
def test_range_invalid(text: str) -> None:
    with pytest.raises(RangeError):
        Range.parse(text)


def test_default_thresholds_file() -> None:
    t = load_thresholds(checks_dir() / "thresholds.yaml")
    assert t.state("ups_battery_charge_percent", 55) == Severity.OK
    assert t.state("ups_battery_charge_percent", 49) == Severity.WARNING
    assert t.state("ups_battery_charge_percent", 19) == Severity.CRITICAL
    assert t.state("ups_on_battery", 1) == Severity.CRITICAL
    assert t.state("ups_on_battery", 0) == Severity.OK
    assert t.state("sbc_alarms_active", 1, {"severity": "major"}) == Severity.CRITICAL
    assert t.state("sbc_alarms_active", 1, {"severity": "minor"}) == Severity.WARNING
    assert t.state("sbc_alarms_active", 0, {"severity": "critical"}) == Severity.OK
    assert t.state("no_such_metric", 1e9) == Severity.OK
    assert t.state("ups_battery_charge_percent", None) == Severity.OK


def test_threshold_file_errors_name_the_line() -> None:
    data = load_yaml_text("thresholds:\n  ups_load_percent:\n    warning: '90:80'\n", "t.yaml")
    with pytest.raises(ConfigErrors) as info:
        parse_model(Thresholds, data, "t.yaml")
    err = info.value.errors[0]
    assert err.line == 3 and "greater than end" in err.message
