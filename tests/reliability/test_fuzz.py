"""Property-based fuzzing of every parser of untrusted input.

Each property states what the parser promises for *any* input: SNMP values from devices, SSH command
outputs, trap datagrams, configuration and profile YAML, REST bodies (Alertmanager webhook, incident API).
The CI run keeps the example counts small; ``CALLIPSO_FUZZ_EXAMPLES=20000`` runs each property that many
times (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import string
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callipso_agent.clock import ManualClock
from callipso_agent.errors import CallipsoError, ConfigError, ConfigErrors
from callipso_agent.model import Measurement, Severity
from callipso_agent.parsers.table import RAW_KEEP
from callipso_agent.profiles.engine import RawData, build, evaluate_value
from callipso_agent.profiles.loader import load_profiles
from callipso_agent.transports.snmp import SnmpValue

ROOT = Path(__file__).resolve().parents[2]
COLLECTORS = ROOT / "collectors"
EXAMPLES = int(os.environ.get("CALLIPSO_FUZZ_EXAMPLES", "0") or 0)


def fuzz(ci_examples: int) -> Any:
    """Hypothesis settings: a small CI budget, or CALLIPSO_FUZZ_EXAMPLES for the long run."""
    return settings(
        max_examples=EXAMPLES or ci_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        database=None,
    )


# ------------------------------------------------------------------------------------------ SNMP values

SNMP_TYPES = ["integer", "gauge", "counter", "counter64", "timeticks", "octets", "oid", "ipaddress", "opaque",
              "null", "nosuchobject", "nosuchinstance", "endofmibview"]
NUMERIC_TEXT = st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "-1e400", "1e308", " 42 ", "3,5", "0x10",
                                "29.6 %RH", "", "\x00", "-0"])
SNMP_PAYLOAD = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.binary(max_size=64),
    st.text(max_size=64),
    NUMERIC_TEXT,
    NUMERIC_TEXT.map(lambda s: s.encode()),
)
SNMP_VALUES = st.builds(SnmpValue, st.sampled_from(SNMP_TYPES), SNMP_PAYLOAD)

PROFILES = load_profiles(COLLECTORS)
ALL_METRICS = [m for p in PROFILES.profiles.values() for m in p.metrics] if hasattr(PROFILES, "profiles") else []


def _resolved_profiles() -> list[Any]:
    names = sorted(getattr(PROFILES, "profiles", {}) or {})
    return [PROFILES.profiles[n] for n in names]


def test_shipped_profiles_load() -> None:
    assert _resolved_profiles(), "no SNMP profile loaded from collectors/"
    assert ALL_METRICS


def _check_result(value: float | None, state: Severity, text: str | None) -> None:
    assert isinstance(state, Severity)
    assert value is None or (isinstance(value, float) and math.isfinite(value)), value
    assert text is None or isinstance(text, str)


@fuzz(600)
@given(data=st.data(), v=SNMP_VALUES)
def test_evaluate_value_any_snmp_value(data: st.DataObject, v: SnmpValue) -> None:
    spec = data.draw(st.sampled_from(ALL_METRICS))
    try:
        value, state, text = evaluate_value(spec, v)
    except CallipsoError:
        return
    _check_result(value, state, text)


def _oid_suffix() -> st.SearchStrategy[str]:
    return st.lists(st.integers(min_value=0, max_value=2**32), min_size=0, max_size=6).map(
        lambda parts: ".".join(str(p) for p in parts)
    )


@fuzz(300)
@given(data=st.data())
def test_build_any_raw_data(data: st.DataObject) -> None:
    """Whatever a device answers for the OIDs a profile reads, build() gives Measurements or a typed error."""
    profile = data.draw(st.sampled_from(_resolved_profiles()))
    scalars: dict[str, SnmpValue] = {}
    columns: dict[str, dict[str, SnmpValue]] = {}
    for m in profile.metrics:
        if m.oid is not None:
            if data.draw(st.booleans()):
                scalars[m.oid] = data.draw(SNMP_VALUES)
        elif m.column:
            rows = data.draw(st.dictionaries(_oid_suffix(), SNMP_VALUES, max_size=4))
            columns.setdefault(m.column, {}).update(rows)
        for lk in [*m.lookups, *m.skip_conditions, *m.keep_if]:
            if getattr(lk, "oid", None):
                scalars[lk.oid] = data.draw(SNMP_VALUES)
            elif getattr(lk, "column", None):
                columns.setdefault(lk.column, {}).update(
                    data.draw(st.dictionaries(_oid_suffix(), SNMP_VALUES, max_size=3)))
        for oid in m.rows_limit:
            scalars[oid] = data.draw(SNMP_VALUES)
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    try:
        out = build("dev", profile, RawData(scalars, columns), at)
    except CallipsoError:
        return
    for meas in out:
        assert isinstance(meas, Measurement)
        _check_result(meas.value, meas.state, meas.text)


# ------------------------------------------------------------------------------------------ SSH outputs

def _ssh_profiles() -> list[Any]:
    from callipso_agent.profiles.ssh import load_ssh_profile_file

    return [load_ssh_profile_file(p) for p in sorted((COLLECTORS / "ssh").glob("*.yaml"))]


SSH_PROFILES = _ssh_profiles()
CLI_WORDS = st.sampled_from(["MAIN", "STANDBY", "UP", "DOWN", "OK", "|", ":", "=", "---", "0", "42", "1,5",
                             "Cpu", "Running", "\t", "  ", "\r\n", "\x1b[2J", "%", "Error", "N/A", "--More--"])
CLI_TEXT = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(CLI_WORDS, st.text(string.printable, max_size=12)), max_size=120).map(" ".join),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.integers(min_value=RAW_KEEP, max_value=200_000).map(lambda n: "x" * n),  # huge output
)


def test_ssh_profiles_shipped() -> None:
    assert len(SSH_PROFILES) >= 4


@fuzz(300)
@given(data=st.data(), failed=st.booleans())
def test_ssh_parse_results_any_output(data: st.DataObject, failed: bool) -> None:
    from callipso_agent.collect.ssh import parse_results
    from callipso_agent.transports.ssh import CommandResult

    profile = data.draw(st.sampled_from(SSH_PROFILES))
    outputs = []
    for spec in profile.commands:
        text = data.draw(CLI_TEXT)
        # sometimes a real-looking output truncated at a random point
        outputs.append(CommandResult(spec.command, text, 0.1, failed and data.draw(st.booleans())))
    clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    out = parse_results("dev", profile, outputs, clock)
    assert out, "a command always yields its measurements (values or UNKNOWN)"
    for m in out:
        assert isinstance(m.state, Severity)
        assert m.value is None or math.isfinite(m.value), m
        if m.state == Severity.UNKNOWN and m.value is None:
            # the raw text is kept for the operator, bounded
            assert m.text, m
        assert m.text is None or len(m.text) <= RAW_KEEP + 200, len(m.text or "")


# ------------------------------------------------------------------------------------------ trap datagrams

def _valid_trap(community: str = "public") -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import rfc1902
    from pysnmp.proto.api import v2c

    pdu = v2c.SNMPv2TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    v2c.apiTrapPDU.set_varbinds(pdu, [
        (v2c.ObjectIdentifier("1.3.6.1.2.1.1.3.0"), v2c.TimeTicks(123)),
        (v2c.ObjectIdentifier("1.3.6.1.6.3.1.1.4.1.0"), v2c.ObjectIdentifier("1.3.6.1.4.1.534.1.0.1")),
        (v2c.ObjectIdentifier("1.3.6.1.4.1.534.1.1.1.0"), rfc1902.OctetString(b"x" * 8)),
    ])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


VALID_TRAP = _valid_trap()


@st.composite
def _mutated_trap(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID_TRAP)
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        pos = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data[pos] = draw(st.integers(min_value=0, max_value=255))
    cut = draw(st.integers(min_value=1, max_value=len(data)))
    return bytes(data[:cut])


DATAGRAMS = st.one_of(st.binary(min_size=1, max_size=600), _mutated_trap(),
                      st.binary(max_size=40).map(lambda b: b"\x30" + bytes([len(b) + 3]) + b"\x02\x01\x01" + b))


class _TrapRig:
    def __init__(self) -> None:
        from callipso_agent.traps import TrapReceiver, load_trap_rules

        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(ctx))
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.receiver = TrapReceiver(load_trap_rules(COLLECTORS / "traps"), self.queue, port=0,
                                     communities=["public"], devices={})
        self.loop.run_until_complete(self.receiver.start())

    def feed(self, datagram: bytes) -> None:
        self.receiver._transport.datagram_received(datagram, ("127.0.0.1", 40000))  # the decode path
        self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        self.loop.run_until_complete(self.receiver.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def trap_rig() -> Iterator[_TrapRig]:
    rig = _TrapRig()
    yield rig
    rig.close()


def test_trap_rig_decodes_a_valid_trap(trap_rig: _TrapRig) -> None:
    before = trap_rig.receiver.counters.notifications
    trap_rig.feed(VALID_TRAP)
    for _ in range(50):
        trap_rig.loop.run_until_complete(asyncio.sleep(0.01))
        if trap_rig.receiver.counters.notifications > before:
            break
    assert trap_rig.receiver.counters.notifications == before + 1


@fuzz(500)
@given(datagram=DATAGRAMS)
def test_trap_decode_any_datagram(trap_rig: _TrapRig, datagram: bytes) -> None:
    c = trap_rig.receiver.counters
    received, malformed = c.received, c.malformed
    trap_rig.feed(datagram)  # must not raise
    assert c.received == received + 1
    assert c.errors == 0
    assert not trap_rig.loop_errors, trap_rig.loop_errors[:1]
    if datagram != VALID_TRAP:
        # a datagram is either dropped as malformed, refused or decoded by pysnmp: never an exception
        assert c.malformed >= malformed


# ------------------------------------------------------------------------------------------ YAML files

YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=20), st.sampled_from(["1.3.6.1.2.1", "HD13", "snmp", "public", "*"]))
KEYS = st.sampled_from(["agent", "credentials", "sites", "devices", "services", "name", "site", "family",
                        "address", "credential", "metrics", "oid", "column", "include", "states", "type",
                        "scale", "match", "sys_object_id", "community", "version", "x", "labels"])
YAML_DOCS = st.recursive(
    YAML_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)
RAW_YAML = st.one_of(
    YAML_DOCS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.text(max_size=300),
    st.sampled_from(["&a [*a]", "a: &x {b: *x}", "!!python/object:os.system {}", "- - - -", "{{{", "\t- a",
                     "a: !!binary AAAA", "? [a]\n: b", "%YAML 9.9\n---\na", "a: 1\na: 2"]),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def _assert_config_error(err: Exception, file: Path) -> None:
    errors = err.errors if isinstance(err, ConfigErrors) else [err]
    assert errors
    for e in errors:
        assert isinstance(e, ConfigError)
        assert e.file, f"error without a file name: {e!r}"


@fuzz(300)
@given(text=RAW_YAML)
def test_config_loader_any_yaml(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from callipso_agent.config.loader import load_config

    d = tmp_path_factory.mktemp("cfg")
    f = d / "agent.yaml"
    f.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(f)
    except (ConfigError, ConfigErrors) as err:
        _assert_config_error(err, f)


@fuzz(300)
@given(text=RAW_YAML, mutate_shipped=st.booleans(), data=st.data())
def test_profile_loader_any_yaml(tmp_path_factory: pytest.TempPathFactory, text: str, mutate_shipped: bool,
                                 data: st.DataObject) -> None:
    d = tmp_path_factory.mktemp("prof")
    if mutate_shipped:
        # a shipped profile cut at a random point: the realistic broken edit
        src = data.draw(st.sampled_from(sorted(COLLECTORS.glob("*.yaml"))))
        body = src.read_text(encoding="utf-8")
        text = body[: data.draw(st.integers(min_value=0, max_value=len(body)))]
    (d / "fuzzed.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_profiles(d)
    except (ConfigError, ConfigErrors) as err:
        _assert_config_error(err, d / "fuzzed.yaml")


# ------------------------------------------------------------------------------------------ REST bodies

class _ApiThread:
    """The agent's HTTP server with the incident API and the Alertmanager receiver, in its own loop thread."""

    def __init__(self, tmp: Path) -> None:
        from tests.outputs.api_rig import NOC_TOKEN, start_api

        self.token = NOC_TOKEN
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rig = asyncio.run_coroutine_threadsafe(start_api(tmp, max_failures=10**9), self.loop).result(30)

    def request(self, method: str, path: str, body: bytes | None, auth: bool = True) -> int:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.rig.url + path, data=body, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as rsp:  # noqa: S310 - loopback
                rsp.read()
                return int(rsp.status)
        except urllib.error.HTTPError as err:
            err.read()
            return int(err.code)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.rig.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_ApiThread]:
    rig = _ApiThread(tmp_path_factory.mktemp("api"))
    yield rig
    rig.close()


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=30,
)
ALERT = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved", "x"]),
     "labels": st.dictionaries(st.sampled_from(["alertname", "severity", "device", "site", "instance"]),
                               st.one_of(st.text(max_size=20), JSON), max_size=5)},
    optional={"annotations": JSON, "startsAt": st.one_of(st.text(max_size=30), JSON),
              "endsAt": st.sampled_from(["0001-01-01T00:00:00Z", "2026-13-45T99:00:00Z", ""]),
              "fingerprint": st.one_of(st.text(max_size=20), JSON)},
)
WEBHOOK = st.one_of(
    JSON,
    st.fixed_dictionaries({"version": st.sampled_from(["4", 4, "5"]), "status": st.sampled_from(["firing", "resolved"]),
                           "alerts": st.one_of(st.lists(ALERT, max_size=3), JSON)},
                          optional={"groupKey": JSON, "commonLabels": JSON, "receiver": JSON}),
)


def _body(value: Any, raw: bytes | None) -> bytes:
    return raw if raw is not None else json.dumps(value).encode()


@fuzz(200)
@given(payload=WEBHOOK, raw=st.one_of(st.none(), st.binary(max_size=100)))
def test_alertmanager_webhook_any_body(api: _ApiThread, payload: Any, raw: bytes | None) -> None:
    status = api.request("POST", "/api/v1/alertmanager", _body(payload, raw))
    assert status < 500, (status, payload, raw)


INCIDENT_PATHS = st.sampled_from([
    ("POST", "/api/v1/incidents/{id}/ack"), ("POST", "/api/v1/incidents/{id}/notes"),
    ("POST", "/api/v1/incidents/{id}/resolve"), ("POST", "/api/v1/maintenance"),
    ("DELETE", "/api/v1/maintenance/{id}"), ("GET", "/api/v1/incidents/{id}"),
])
IDS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), st.text(string.ascii_letters + "%.-_",
                                                                                 min_size=1, max_size=20))
QUERIES = st.dictionaries(st.sampled_from(["state", "site", "priority", "device", "limit", "since", "x"]),
                          st.text(string.printable.strip(), max_size=12), max_size=3)


@fuzz(200)
@given(route=INCIDENT_PATHS, ident=IDS, payload=JSON, raw=st.one_of(st.none(), st.binary(max_size=60)),
       query=QUERIES)
def test_incident_api_any_input(api: _ApiThread, route: tuple[str, str], ident: str, payload: Any,
                                raw: bytes | None, query: dict[str, str]) -> None:
    method, template = route
    path = template.replace("{id}", urllib.request.quote(ident, safe=""))
    status = api.request(method, path, None if method in ("GET", "DELETE") else _body(payload, raw))
    assert status < 500, (status, method, path, payload, raw)
    qs = urllib.parse.urlencode(query)
    assert api.request("GET", f"/api/v1/incidents?{qs}", None) < 500
    assert api.request("GET", f"/api/v1/maintenance?{qs}", None) < 500


# ------------------------------------------------------------------------------------------ regressions
# findings of the properties above, kept as plain examples


@pytest.mark.parametrize("payload", [b"inf", b"-inf", b"nan", b"1e400", "Infinity", 10**400])
def test_regression_non_finite_snmp_number_is_not_a_measurement(payload: Any) -> None:
    assert SnmpValue("octets", payload).number is None
    uptime = next(m for m in ALL_METRICS if m.name == "device_uptime_seconds")
    value, state, _ = evaluate_value(uptime, SnmpValue("octets", payload))
    assert value is None and state == Severity.UNKNOWN
    iface = next(m for m in ALL_METRICS if m.states and m.name == "interface_oper_up")
    value, state, _ = evaluate_value(iface, SnmpValue("octets", payload))  # used to raise OverflowError
    assert value is None and isinstance(state, Severity)


def test_regression_runaway_ssh_field_is_bounded() -> None:
    from callipso_agent.collect.ssh import parse_results
    from callipso_agent.transports.ssh import CommandResult

    otms = next(p for p in SSH_PROFILES if p.name == "otms")
    results = [CommandResult(c.command, "h" * 200_000 if c.name == "hostname" else "", 0.1, False)
               for c in otms.commands]
    out = parse_results("dev", otms, results, ManualClock(datetime(2026, 1, 5, tzinfo=UTC)))
    host = next(m for m in out if m.name == "host_info")
    assert host.text is not None and host.text.startswith("hhhh") and len(host.text) < RAW_KEEP + 64


def test_regression_scaled_past_float_range() -> None:
    low_batt = next(m for m in ALL_METRICS if m.name == "ups_config_low_battery_time_seconds")  # scale 60
    value, state, _ = evaluate_value(low_batt, SnmpValue("octets", b"1e308"))
    assert value is None and state == Severity.UNKNOWN
