"""Trap rules interpreted without the network (SYNTHETIC varbinds built from the MIBs)."""

from __future__ import annotations

import pytest

from callipso_agent.model import Severity
from callipso_agent.transports.snmp import SnmpValue
from callipso_agent.traps import TrapRules, interpret, load_trap_rules, looks_like_snmp
from tests.helpers.polling import COLLECTORS


@pytest.fixture(scope="module")
def rules() -> TrapRules:
    return load_trap_rules(COLLECTORS / "traps")


def I(n: int) -> SnmpValue:  # noqa: E743
    return SnmpValue("integer", n)


def O(oid: str) -> SnmpValue:  # noqa: E743
    return SnmpValue("oid", oid)


@pytest.mark.parametrize(
    ("raise_n", "clear_n", "event"),
    [
        (3, 5, "ups_on_battery"),
        (4, 6, "ups_low_battery"),
        (11, 17, "ups_on_bypass"),
        (26, 49, "ups_communications_lost"),
        (21, 22, "ups_alarm"),
    ],
)
def test_xups_pairs(rules: TrapRules, raise_n: int, clear_n: int, event: str) -> None:
    base = "1.3.6.1.4.1.534.1.11.4.1.0"
    up = interpret(rules, f"{base}.{raise_n}", [])
    down = interpret(rules, f"{base}.{clear_n}", [])
    assert (up.event, up.clear) == (event, False) and up.severity in (Severity.WARNING, Severity.CRITICAL)
    assert (down.event, down.clear, down.severity) == (event, True, Severity.OK)


def test_ups_mib_alarm_added_and_removed_correlate(rules: TrapRules) -> None:
    vbs = [("1.3.6.1.2.1.33.1.6.2.1.1.7", I(7)), ("1.3.6.1.2.1.33.1.6.2.1.2.7", O("1.3.6.1.2.1.33.1.6.3.8"))]
    added = interpret(rules, "1.3.6.1.2.1.33.2.3", vbs)
    removed = interpret(rules, "1.3.6.1.2.1.33.2.4", vbs)
    assert (added.event, added.source, added.labels["alarm_id"]) == ("ups_alarm", "outputOverload", "7")
    assert (removed.event, removed.source, removed.clear) == ("ups_alarm", "outputOverload", True)


def test_v1_translated_form_of_smiv2_notification(rules: TrapRules) -> None:
    # upsTrapOnBattery sent as SNMPv1 (enterprise upsTraps, specific 1) arrives as …33.2.0.1
    assert interpret(rules, "1.3.6.1.2.1.33.2.0.1", []).event == "ups_on_battery"


@pytest.mark.parametrize(
    ("severity", "expected", "clear"),
    [
        (0, Severity.OK, True),
        (1, Severity.WARNING, False),
        (3, Severity.WARNING, False),
        (4, Severity.CRITICAL, False),
        (5, Severity.CRITICAL, False),
        (9, Severity.WARNING, False),
    ],
)
def test_audiocodes_severity_varbind(
    rules: TrapRules, severity: int, expected: Severity, clear: bool
) -> None:
    vbs = [("1.3.6.1.4.1.5003.9.10.1.21.1.4.0", I(severity))]
    it = interpret(rules, "1.3.6.1.4.1.5003.9.10.1.21.2.0.94", vbs)
    assert (it.event, it.severity, it.clear) == ("audiocodes_proxy_connection_lost", expected, clear)
    generic = interpret(rules, "1.3.6.1.4.1.5003.9.10.1.21.2.0.123", vbs)
    assert (generic.event, generic.severity) == ("audiocodes_alarm", expected)


def test_oxe_when_conditions(rules: TrapRules) -> None:
    def cmip(n: int, sev: int) -> list[tuple[str, SnmpValue]]:
        return [("1.3.6.1.4.1.637.64.0.10.1.1.8.0", I(n)), ("1.3.6.1.4.1.637.64.0.10.1.1.5.0", I(sev))]

    trap = "1.3.6.1.4.1.637.64.0.10.1.2.0.3"
    assert interpret(rules, trap, cmip(2042, 2)).event == "oxe_coupler"
    assert interpret(rules, trap, cmip(2019, 6)).clear is True
    other = interpret(rules, trap, cmip(4321, 6))
    assert (other.event, other.clear) == ("oxe_incident", True)


def test_unknown(rules: TrapRules) -> None:
    it = interpret(rules, "1.3.6.1.4.1.1.2.3", [], unknown_severity=Severity.UNKNOWN)
    assert (it.event, it.severity, it.rule) == ("trap_unknown", Severity.UNKNOWN, None)


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        (b"\x30\x0b\x02\x01\x01\x04\x06public", True),
        (b"\x30\x81\x0b\x02\x01\x03\x04\x06public", True),
        (b"\x30\x0b\x02\x01\x02\x04\x06public", False),  # version 2 does not exist
        (b"\x30\x0c\x02\x01\x01\x04\x06public", False),  # length does not match
        (b"garbage!", False),
        (b"", False),
        (b"\x30\x84\xff\xff\xff\xff\x02\x01\x00", False),
    ],
)
def test_envelope_check(data: bytes, ok: bool) -> None:
    assert looks_like_snmp(data) is ok
