"""The rule engine on the shipped rules and a synthetic estate, driven by a ManualClock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.model import Event, Severity
from callipso_agent.rules.engine import RuleEngine
from callipso_agent.rules.loader import RuleSet, load_rules
from callipso_agent.rules.schema import EventRule
from callipso_agent.rules.signal import Signal
from callipso_agent.transports.snmp import SnmpValue
from callipso_agent.traps import interpret, load_trap_rules
from tests.helpers.estate import event, failed, inventory, m, poll
from tests.helpers.polling import COLLECTORS

RULES = load_rules()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(clock: ManualClock) -> RuleEngine:
    return RuleEngine(RULES, inventory(), clock)


def only(signals: list[Signal], rule: str) -> list[Signal]:
    return [s for s in signals if s.rule == rule]


def run_ups(
    engine: RuleEngine, clock: ManualClock, on_battery_s: int, *, step: int = 10, tail: int = 120
) -> list[Signal]:
    """Poll the UPS every ``step`` s: on battery for ``on_battery_s`` s, then back on mains; tick between.

    Polls see the UPS on battery at 0, 10, ... s: 60 s on battery is seen for 50 s only and does not fire.
    """
    out: list[Signal] = []
    for t in range(0, on_battery_s + tail, step):
        value = 1.0 if t < on_battery_s else 0.0
        out += engine.on_poll(
            poll("ups-aubagne", clock.now(), m("ups-aubagne", "ups_on_battery", value, clock.now()))
        )
        out += engine.tick()
        clock.advance(step)
    return only(out, "ups_on_battery")


@pytest.mark.parametrize(
    ("seconds", "fires"), [(30, False), (50, False), (60, False), (70, True), (90, True), (600, True)]
)
def test_ups_on_battery_needs_60_seconds(
    engine: RuleEngine, clock: ManualClock, seconds: int, fires: bool
) -> None:
    signals = run_ups(engine, clock, seconds)
    if not fires:
        assert signals == []
        return
    assert [s.active for s in signals] == [True, False]
    raised, cleared = signals
    assert raised.severity is Severity.CRITICAL and raised.key == "ups_on_battery:ups-aubagne"
    assert raised.fields["for"] == "1 min"
    assert cleared.severity is Severity.OK


def test_for_delay_completes_between_polls_on_tick(clock: ManualClock) -> None:
    """A device polled every 60 s: the 60 s delay completes on a tick even if no poll lands exactly on it."""
    engine = RuleEngine(RULES, inventory(), clock)
    start = clock.now()
    assert engine.on_poll(poll("ups-aubagne", start, m("ups-aubagne", "ups_on_battery", 1.0, start))) == []
    clock.advance(45)
    assert engine.tick() == []
    clock.advance(15)
    (sig,) = engine.tick()
    assert sig.active and sig.at == start + timedelta(seconds=60)


def test_stale_value_does_not_complete_a_delay(clock: ManualClock) -> None:
    engine = RuleEngine(RULES, inventory(), clock)
    engine.on_poll(poll("ups-aubagne", clock.now(), m("ups-aubagne", "ups_on_battery", 1.0, clock.now())))
    clock.advance(600)  # no poll for 10 intervals: the last value says nothing about now
    assert only(engine.tick(), "ups_on_battery") == []


@pytest.mark.parametrize(
    ("device", "series", "expected"),
    [
        # licensed_channels = 400: warning above 320, critical above 380, hysteresis 5; for 2 min
        ("sbc-hd13", [100, 250, 300], []),
        ("sbc-hd13", [330, 330, 330, 330], [("active", Severity.WARNING)]),
        (
            "sbc-hd13",
            [390] * 4 + [330] * 2 + [310],
            [("active", Severity.CRITICAL), ("active", Severity.WARNING), ("clear", Severity.OK)],
        ),
        ("sbc-hd13", [330, 316, 330, 330], []),  # the dip under 320 restarts the 2-minute delay
        ("sbc-nolicence", [10_000] * 5, []),  # no licensed_channels attribute: the rule does not apply
    ],
)
def test_sbc_calls_against_licensed_channels(
    clock: ManualClock, device: str, series: list[int], expected: list[tuple[str, Severity]]
) -> None:
    engine = RuleEngine(RULES, inventory(), clock)
    got: list[Signal] = []
    for value in series:
        got += engine.on_poll(
            poll(device, clock.now(), m(device, "sbc_calls_active", float(value), clock.now()))
        )
        clock.advance(60)
    got = only(got, "sbc_calls_near_capacity")
    assert [("active" if s.active else "clear", s.severity) for s in got] == expected
    if got and got[0].active:
        assert got[0].fields["threshold"] == (380.0 if got[0].severity is Severity.CRITICAL else 320.0)


@pytest.mark.parametrize(
    ("device", "runtime_s", "expected"),
    [
        ("ups-aubagne", 1200, None),  # 10 min required: 1200 s is over 1.5 x 600 s
        ("ups-aubagne", 800, Severity.WARNING),  # under 900 s (1.5 x) but over 600 s
        ("ups-aubagne", 500, Severity.CRITICAL),  # under the 600 s required
        ("ups-aix", 1500, Severity.WARNING),  # 20 min required: under 1800 s
        ("ups-hd13", 1500, Severity.CRITICAL),  # 30 min required
    ],
)
def test_ups_runtime_against_site_autonomy(
    clock: ManualClock, device: str, runtime_s: float, expected: Severity | None
) -> None:
    engine = RuleEngine(RULES, inventory(), clock)
    got: list[Signal] = []
    for _ in range(7):  # for: 5m
        got += engine.on_poll(
            poll(device, clock.now(), m(device, "ups_battery_runtime_seconds", runtime_s, clock.now()))
        )
        clock.advance(60)
    got = only(got, "ups_runtime_below_autonomy")
    assert [s.severity for s in got] == ([] if expected is None else [expected])


def test_state_rule_uses_profile_state_with_override(engine: RuleEngine, clock: ManualClock) -> None:
    def source(label: str, sev: Severity) -> list[Signal]:
        out = engine.on_poll(
            poll(
                "ups-hd13",
                clock.now(),
                m("ups-hd13", "ups_output_source", 1.0, clock.now(), state=sev, text=label),
            )
        )
        clock.advance(30)
        return only(out + engine.tick(), "ups_output_source")

    for _ in range(4):  # battery is ups_on_battery's business (states: {battery: ok})
        assert source("battery", Severity.CRITICAL) == []
    assert source("bypass", Severity.WARNING) == []  # for: 60s, completed by the tick 60 s later
    (sig,) = source("bypass", Severity.WARNING)
    assert sig.active and sig.severity is Severity.WARNING and sig.fields["detail"] == "bypass"
    assert source("none", Severity.CRITICAL) == []  # already firing: a higher level waits its own delay
    (worse,) = source("none", Severity.CRITICAL)
    assert worse.active and worse.severity is Severity.CRITICAL
    (cleared,) = source("normal", Severity.OK)
    assert not cleared.active


def test_several_series_on_one_key_count_the_worst(engine: RuleEngine, clock: ManualClock) -> None:
    """pbx_cpu_stopped is keyed by cpu; two nodes report CPU A: the stopped one decides."""

    def cpus(a1: Severity, a2: Severity) -> list[Signal]:
        t = clock.now()
        out = engine.on_poll(
            poll(
                "oxe-hd13",
                t,
                m(
                    "oxe-hd13",
                    "pbx_cpu_role",
                    1,
                    t,
                    {"node": "1", "cpu": "A", "cpu_host": "x"},
                    state=a1,
                    text="main",
                ),
                m(
                    "oxe-hd13",
                    "pbx_cpu_role",
                    -1,
                    t,
                    {"node": "2", "cpu": "A", "cpu_host": "y"},
                    state=a2,
                    text="stopped",
                ),
            )
        )
        clock.advance(150)
        return only(out, "pbx_cpu_stopped")

    assert cpus(Severity.OK, Severity.CRITICAL) == []
    (sig,) = cpus(Severity.OK, Severity.CRITICAL)
    assert sig.key == "pbx_cpu_stopped:oxe-hd13{cpu=A}" and sig.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("results", "fires_at"),
    [
        (["timeout", "timeout"], None),
        (["timeout", "unreachable", "timeout"], 3),
        (["timeout", "ok", "timeout", "timeout"], None),
        (["timeout", "auth_failed", "timeout", "timeout"], 4),  # another error kind neither counts nor resets
        (["timeout"] * 6, 3),
    ],
)
def test_unreachable_after_three_failed_polls(
    engine: RuleEngine, clock: ManualClock, results: list[str], fires_at: int | None
) -> None:
    got: list[tuple[int, Signal]] = []
    for i, r in enumerate(results, start=1):
        pr = poll("gw-aubagne", clock.now()) if r == "ok" else failed("gw-aubagne", clock.now(), r)
        got += [(i, s) for s in only(engine.on_poll(pr), "device_unreachable")]
        clock.advance(60)
    if fires_at is None:
        assert [s.active for _, s in got] == []
    else:
        assert [(i, s.active) for i, s in got] == [(fires_at, True)]
        assert got[0][1].key == "device_unreachable:gw-aubagne"


def test_unreachable_clears_on_first_answer_and_auth_has_its_own_rule(
    engine: RuleEngine, clock: ManualClock
) -> None:
    for _ in range(3):
        engine.on_poll(failed("gw-aubagne", clock.now()))
        clock.advance(60)
    (cleared,) = only(engine.on_poll(poll("gw-aubagne", clock.now())), "device_unreachable")
    assert not cleared.active
    (auth,) = only(engine.on_poll(failed("gw-aubagne", clock.now(), "auth_failed")), "device_auth_failed")
    assert auth.active and auth.severity is Severity.WARNING and "auth_failed" in auth.fields["detail"]


def test_silent_device_is_unreachable_on_tick(engine: RuleEngine, clock: ManualClock) -> None:
    engine.on_poll(poll("gw-aubagne", clock.now()))
    clock.advance(179)
    assert only(engine.tick(), "device_unreachable") == []
    clock.advance(1)
    (sig,) = only(engine.tick(), "device_unreachable")
    assert sig.active and "no poll result" in sig.fields["detail"]
    (back,) = only(engine.on_poll(poll("gw-aubagne", clock.now())), "device_unreachable")
    assert not back.active


def test_reboot_is_uptime_going_backwards_and_clears_later(engine: RuleEngine, clock: ManualClock) -> None:
    def uptime(v: float) -> list[Signal]:
        out = engine.on_poll(
            poll("oxe-hd13", clock.now(), m("oxe-hd13", "device_uptime_seconds", v, clock.now()))
        )
        clock.advance(60)
        return only(out + engine.tick(), "device_rebooted")

    assert uptime(100_000) == [] and uptime(100_060) == []
    (sig,) = uptime(30)
    assert sig.active and sig.fields["previous"] == 100_060 and sig.fields["value"] == 30
    for _ in range(28):
        assert uptime(90 + _ * 60) == []
    (cleared,) = uptime(2000)
    assert not cleared.active  # clear_after: 30m


def test_switchover_fires_once_for_both_cpus(engine: RuleEngine, clock: ManualClock) -> None:
    def roles(a: int, b: int) -> list[Signal]:
        t = clock.now()
        out = engine.on_poll(
            poll(
                "oxe-hd13",
                t,
                m(
                    "oxe-hd13",
                    "pbx_cpu_role",
                    a,
                    t,
                    {"node": "1", "cpu": "A", "cpu_host": "cpu-a"},
                    text="main" if a else "standby",
                ),
                m(
                    "oxe-hd13",
                    "pbx_cpu_role",
                    b,
                    t,
                    {"node": "1", "cpu": "B", "cpu_host": "cpu-b"},
                    text="main" if b else "standby",
                ),
            )
        )
        clock.advance(60)
        return only(out, "pbx_switchover")

    assert roles(1, 0) == [] and roles(1, 0) == []
    (sig,) = roles(0, 1)
    assert sig.key == "pbx_switchover:oxe-hd13" and sig.active
    assert roles(0, 1) == []


def test_firmware_change_from_system_information(engine: RuleEngine, clock: ManualClock) -> None:
    first = engine.on_poll(poll("ups-aix", clock.now(), system={"firmware": "1.2"}))
    again = engine.on_poll(poll("ups-aix", clock.now(), system={"firmware": "1.2"}))
    (sig,) = only(
        engine.on_poll(poll("ups-aix", clock.now(), system={"firmware": "1.3"})), "firmware_changed"
    )
    assert only(first + again, "firmware_changed") == []
    assert sig.fields["detail"] == "firmware 1.2 -> firmware 1.3"


TRAPS = load_trap_rules(COLLECTORS / "traps")
AC = "1.3.6.1.4.1.5003.9.10.1.21"  # acBoard: notifications under .2.0.N, varbinds under .1.N


def trap(device: str, at: datetime, trap_oid: str, varbinds: dict[str, SnmpValue] | None = None) -> Event:
    """An event as the trap receiver makes it: the shipped trap maps interpret the notification."""
    it = interpret(TRAPS, trap_oid, list((varbinds or {}).items()))
    assert it.rule is not None, trap_oid
    return Event(device=device, name=it.event, severity=it.severity, at=at, source=it.source, text=it.text,
                 clear=it.clear, labels=dict(it.labels))


def ac_alarm(device: str, at: datetime, n: int, source: str, severity: int) -> Event:
    text = lambda v: SnmpValue("octets", v.encode())  # noqa: E731
    return trap(device, at, f"{AC}.2.0.{n}", {
        f"{AC}.1.1": text("acProxyConnectionLost"), f"{AC}.1.2": text("Proxy set lost"),
        f"{AC}.1.3": text(source), f"{AC}.1.4": SnmpValue("integer", severity),
    })


def test_audiocodes_trap_raise_and_clear_by_name_and_source(engine: RuleEngine, clock: ManualClock) -> None:
    src1, src2 = "Board#1/ProxySet#1", "Board#1/ProxySet#2"
    (a,) = engine.on_event(ac_alarm("sbc-hd13", clock.now(), 94, src1, 5))
    (b,) = engine.on_event(ac_alarm("sbc-hd13", clock.now(), 94, src2, 3))
    assert a.key != b.key
    assert a.key == f"audiocodes_alarm_trap:sbc-hd13{{event=audiocodes_proxy_connection_lost,source={src1}}}"
    assert a.severity is Severity.CRITICAL and b.severity is Severity.WARNING
    assert engine.on_event(ac_alarm("sbc-hd13", clock.now(), 94, src1, 5)) == []  # resent: nothing new
    (cleared,) = engine.on_event(ac_alarm("sbc-hd13", clock.now(), 94, src1, 0))  # severity cleared(0)
    assert cleared.key == a.key and not cleared.active
    assert engine.on_event(event("sbc-hd13", "acUnknownThing", clock.now())) == []
    # not an AudioCodes family
    assert engine.on_event(ac_alarm("ups-hd13", clock.now(), 94, src1, 5)) == []


def test_sbc_switchover_trap_opens_the_switchover_rule(engine: RuleEngine, clock: ManualClock) -> None:
    signals = engine.on_event(ac_alarm("sbc-hd13", clock.now(), 35, "Board#1", 4))
    assert {s.rule for s in signals} == {"sbc_ha_switchover"}


def test_event_without_clear_clears_after_its_delay(engine: RuleEngine, clock: ManualClock) -> None:
    low = "1.3.6.1.4.1.534.1.11.4.1.0.4"  # xupstdLowBattery
    (raised,) = engine.on_event(trap("ups-hd13", clock.now(), low))
    assert raised.rule == "ups_trap_alarm" and raised.severity is Severity.CRITICAL  # the rule fixes it
    clock.advance(20 * 60)
    assert engine.on_event(trap("ups-hd13", clock.now(), low)) == []  # resent: refreshes the delay
    clock.advance(20 * 60)
    assert only(engine.tick(), "ups_trap_alarm") == []
    clock.advance(10 * 60)
    (cleared,) = only(engine.tick(), "ups_trap_alarm")
    assert not cleared.active


def test_oxe_link_trap_opens_and_its_up_trap_clears(engine: RuleEngine, clock: ManualClock) -> None:
    nmc = "1.3.6.1.4.1.637.64.0.10.1"

    def cmip(n: int) -> Event:
        return trap("oxe-hd13", clock.now(), f"{nmc}.2.0.3", {
            f"{nmc}.1.8": SnmpValue("integer", n), f"{nmc}.1.9": SnmpValue("octets", b"T2 access 12/3"),
        })

    (lost,) = engine.on_event(cmip(310))
    assert lost.rule == "pbx_trap_alarm" and lost.active and lost.severity is Severity.CRITICAL
    (up,) = engine.on_event(cmip(311))
    assert up.key == lost.key and not up.active


def test_every_event_a_rule_waits_for_is_emitted_by_a_trap_map_or_the_agent() -> None:
    emitted = {t.event for t in TRAPS.rules} | {"daily_check_failed"}
    waited = {(r.name, e) for r in RULES if isinstance(r, EventRule) for e in (*r.events, *r.clear_events)}
    assert {(name, e) for name, e in waited if e not in emitted} == set()


def test_wan_link_rule_watches_only_the_declared_interface(engine: RuleEngine, clock: ManualClock) -> None:
    def ifaces(gi0: float, gi1: float) -> list[Signal]:
        t = clock.now()
        out = engine.on_poll(
            poll(
                "wan1-aix",
                t,
                m("wan1-aix", "interface_oper_up", gi0, t, {"ifindex": "1", "interface": "Gi0/0"}),
                m("wan1-aix", "interface_oper_up", gi1, t, {"ifindex": "2", "interface": "Gi0/1"}),
            )
        )
        clock.advance(60)
        return only(out, "wan_link_down")

    assert ifaces(1, 0) == [] and ifaces(1, 0) == []  # Gi0/1 is not wan1's WAN interface
    assert ifaces(0, 1) == []  # for: 60s
    (sig,) = ifaces(0, 1)
    assert sig.key == "wan_link_down:wan1-aix{interface=Gi0/0}" and sig.site == "AIX"


def test_restore_lets_an_open_problem_clear_after_restart(clock: ManualClock) -> None:
    engine = RuleEngine(RULES, inventory(), clock)
    assert engine.restore("ups_on_battery", "ups-aubagne", {}, Severity.CRITICAL, clock.now())
    assert engine.restore("device_unreachable", "gw-aubagne", {}, Severity.CRITICAL, clock.now())
    assert not engine.restore("no_such_rule", "gw-aubagne", {}, Severity.CRITICAL, clock.now())
    signals = engine.on_poll(
        poll("ups-aubagne", clock.now(), m("ups-aubagne", "ups_on_battery", 0.0, clock.now()))
    )
    signals += engine.on_poll(poll("gw-aubagne", clock.now()))
    assert sorted((s.key, s.active) for s in signals) == [
        ("device_unreachable:gw-aubagne", False),
        ("ups_on_battery:ups-aubagne", False),
    ]


def test_unknown_devices_and_families_are_ignored(clock: ManualClock) -> None:
    engine = RuleEngine(RuleSet([]), inventory(), clock)
    assert engine.on_poll(failed("gw-aubagne", clock.now())) == []
    engine = RuleEngine(RULES, inventory(), clock)
    assert engine.on_poll(failed("not-in-inventory", clock.now())) == []


def test_refused_ssh_host_key_has_its_own_rule_with_the_operator_text(
    engine: RuleEngine, clock: ManualClock
) -> None:
    got = engine.on_poll(failed("oxe-hd13", clock.now(), "host_key"))
    assert only(got, "device_auth_failed") == []
    (sig,) = only(got, "device_host_key_refused")
    assert sig.active and sig.severity is Severity.CRITICAL and "host_key" in sig.fields["detail"]
    (back,) = only(engine.on_poll(poll("oxe-hd13", clock.now())), "device_host_key_refused")
    assert not back.active


def test_refused_host_key_on_the_ssh_part_of_a_composite_poll(engine: RuleEngine, clock: ManualClock) -> None:
    """SNMP answered, SSH was refused: collector_up{transport=ssh} is CRITICAL and the state rule fires;
    another SSH failure (UNKNOWN) raises nothing."""
    lost = m("oxe-hd13", "collector_up", 0.0, clock.now(), {"transport": "ssh"}, state=Severity.UNKNOWN)
    assert only(engine.on_poll(poll("oxe-hd13", clock.now(), lost)), "device_ssh_host_key_refused") == []
    refused = m("oxe-hd13", "collector_up", 0.0, clock.now(), {"transport": "ssh"}, state=Severity.CRITICAL,
                text="host_key: oxe-hd13: host key of [10.0.0.1]:22 has CHANGED")
    (sig,) = only(engine.on_poll(poll("oxe-hd13", clock.now(), refused)), "device_ssh_host_key_refused")
    assert sig.active and sig.key.startswith("device_ssh_host_key_refused:oxe-hd13")
    assert "CHANGED" in sig.fields["detail"]
    snmp_ok = m("oxe-hd13", "collector_up", 1.0, clock.now(), {"transport": "snmp"})
    assert only(engine.on_poll(poll("oxe-hd13", clock.now(), snmp_ok, refused)), "device_ssh_host_key_refused") == []
    ok = m("oxe-hd13", "collector_up", 1.0, clock.now(), {"transport": "ssh"})
    (back,) = only(engine.on_poll(poll("oxe-hd13", clock.now(), ok)), "device_ssh_host_key_refused")
    assert not back.active


def test_ssh_connection_lost_at_every_poll_is_unreachable(engine: RuleEngine, clock: ManualClock) -> None:
    out = []
    for _ in range(3):
        out += engine.on_poll(failed("gw-aubagne", clock.now(), "connection_lost"))
        clock.advance(60)
    (sig,) = only(out, "device_unreachable")
    assert sig.active and "connection_lost" in sig.fields["detail"]
