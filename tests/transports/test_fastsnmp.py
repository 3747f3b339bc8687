"""FastSnmpClient on protocol corner cases: timeouts, stray and late answers, malformed answers, error-status,
unreachable targets; with the pysnmp client as the reference wherever both can be compared."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.errors import ParseError, Timeout, Unreachable
from callipso_agent.transports import ber
from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine, SnmpValue
from tests.helpers.scripted_agent import Reply, ScriptedAgent, echo, response

pytestmark = pytest.mark.asyncio(loop_scope="module")

FIRST = SnmpValue("octets", b"first")
SYS_DESCR = "1.3.6.1.2.1.1.1.0"


def cred(version: str = "2c") -> SnmpV2Credential:
    return SnmpV2Credential(version=version, community=SecretRef(env="UNUSED_IN_TESTS"))  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pysnmp_engine() -> AsyncIterator[PysnmpEngine]:
    eng = PysnmpEngine()
    yield eng
    eng.close()


@pytest_asyncio.fixture(loop_scope="module")
async def engine() -> AsyncIterator[FastSnmpEngine]:
    eng = FastSnmpEngine()
    yield eng
    eng.close()


@pytest_asyncio.fixture(loop_scope="module")
async def agents() -> AsyncIterator[list[ScriptedAgent]]:
    started: list[ScriptedAgent] = []
    yield started
    for a in started:
        a.close()


async def agent(agents: list[ScriptedAgent], script: Any, host: str = "127.0.0.1") -> ScriptedAgent:
    a = await ScriptedAgent(script, host=host).start()
    agents.append(a)
    return a


def fast(engine: FastSnmpEngine, a: ScriptedAgent, version: str = "2c", **kw: Any) -> FastSnmpClient:
    kw.setdefault("timeout", 1.0)
    return FastSnmpClient(engine, a.host, a.port, cred(version), {"community": Secret("public")}, **kw)


def slow(engine: PysnmpEngine, a: ScriptedAgent, version: str = "2c", **kw: Any) -> PysnmpClient:
    kw.setdefault("timeout", 1.0)
    return PysnmpClient(engine, a.host, a.port, cred(version), {"community": Secret("public")}, **kw)


# ------------------------------------------------------------------------------------------- timeouts


async def test_timeout_after_the_retries_with_the_same_request_id(engine: FastSnmpEngine,
                                                                   agents: list[ScriptedAgent]) -> None:
    silent = await agent(agents, lambda req, a: [])
    with pytest.raises(Timeout, match="wrong community or unreachable"):
        await fast(engine, silent, timeout=0.1, retries=2).get([SYS_DESCR])
    assert len(silent.requests) == 3
    assert len({r.request_id for r in silent.requests}) == 1
    assert engine.stats.timeouts == 1 and engine.stats.retransmissions == 2


async def test_answer_to_a_retransmission_is_accepted(engine: FastSnmpEngine, agents: list[ScriptedAgent]) -> None:
    def second_only(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        return [(echo(req, FIRST), 0, None)] if len(a.requests) == 2 else []

    a = await agent(agents, second_only)
    assert await fast(engine, a, timeout=0.2, retries=1).get([SYS_DESCR]) == {SYS_DESCR: FIRST}


# ------------------------------------------------------------------------------------ stray answers


async def test_stray_answers_are_ignored_and_counted(engine: FastSnmpEngine, agents: list[ScriptedAgent]) -> None:
    wrong = SnmpValue("octets", b"wrong")

    def script(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        return [
            (echo(req, wrong, request_id=req.request_id ^ 0x5555), 0, None),  # another request-id
            (echo(req, wrong), 0, a.other_socket()),  # right id, from another port
            (echo(req, wrong, community=b"private"), 0, None),  # another community
            (b"\x00\x01garbage", 0, None),  # not SNMP at all
            (ber.encode_request(req.version, req.community, ber.GET, req.request_id, [SYS_DESCR]), 0, None),
            (echo(req, FIRST), 0.05, None),  # the real answer, last
        ]

    a = await agent(agents, script)
    assert await fast(engine, a).get([SYS_DESCR]) == {SYS_DESCR: FIRST}
    assert engine.stats.ignored == 5
    assert engine.stats.malformed == 1
    assert engine.stats.responses == 1


async def test_late_answer_of_one_device_never_lands_in_another_poll(engine: FastSnmpEngine,
                                                                     agents: list[ScriptedAgent]) -> None:
    late = SnmpValue("octets", b"late answer of device A")
    slow_a = await agent(agents, lambda req, a: [(echo(req, late), 0.3, None)])
    b_value = SnmpValue("octets", b"device B")
    # B answers after A's late answer has arrived, on the same engine socket
    dev_b = await agent(agents, lambda req, a: [(echo(req, b_value), 0.5, None)])
    with pytest.raises(Timeout):
        await fast(engine, slow_a, timeout=0.1, retries=0).get([SYS_DESCR])
    assert await fast(engine, dev_b, timeout=2.0).get([SYS_DESCR]) == {SYS_DESCR: b_value}
    assert engine.stats.ignored == 1


async def test_stale_answer_of_the_same_device_is_ignored(engine: FastSnmpEngine,
                                                          agents: list[ScriptedAgent]) -> None:
    def script(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        replies: list[Reply] = []
        if len(a.requests) > 1:  # first the answer to the previous request, then the right one
            replies.append((echo(req, SnmpValue("octets", b"stale"), request_id=a.requests[-2].request_id), 0, None))
        replies.append((echo(req, SnmpValue("integer", len(a.requests))), 0.02, None))
        return replies

    a = await agent(agents, script)
    client = fast(engine, a)
    for n in (1, 2, 3):
        assert await client.get([SYS_DESCR]) == {SYS_DESCR: SnmpValue("integer", n)}
    assert engine.stats.ignored == 2


async def test_malformed_answer_to_a_request_is_a_parse_error(engine: FastSnmpEngine,
                                                              agents: list[ScriptedAgent]) -> None:
    a = await agent(agents, lambda req, a: [(echo(req, FIRST)[:-3], 0, None)])
    with pytest.raises(ParseError, match="malformed SNMP response"):
        await fast(engine, a, timeout=30.0).get([SYS_DESCR])  # fails at once, not after 30 s


# ------------------------------------------------------------------- error-status, same as pysnmp


def _value_of(name: bytes) -> SnmpValue:
    return SnmpValue("integer", name[-1])


def _v1_agent(present: set[str]) -> Any:
    """A v1 agent: noSuchName for the whole PDU when one OID is absent (GET) or past the end (GETNEXT)."""
    def script(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        oids = [ber.oid_text(n) for n in req.names]
        if req.tag == ber.GET:
            for i, o in enumerate(oids, 1):
                if o not in present:
                    return [(echo(req, SnmpValue("null", None), status=2, index=i), 0, None)]
            return [(response(req, [(o, _value_of(n)) for o, n in zip(oids, req.names, strict=True)]), 0, None)]
        nexts = []
        for i, o in enumerate(oids, 1):
            after = sorted((p for p in present if ber.oid_key(ber.oid_content(p)) > ber.oid_key(ber.oid_content(o))),
                           key=lambda p: ber.oid_key(ber.oid_content(p)))
            if not after:
                return [(echo(req, SnmpValue("null", None), status=2, index=i), 0, None)]
            nexts.append((after[0], _value_of(ber.oid_content(after[0]))))
        return [(response(req, nexts), 0, None)]
    return script


PRESENT = {"1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.33.1.1.1.0", "1.3.6.1.2.1.33.1.1.2.0"}


async def _both(engine: FastSnmpEngine, pysnmp_engine: PysnmpEngine, a: ScriptedAgent, version: str,
                call: Any) -> tuple[Any, Any]:
    out = []
    for client in (fast(engine, a, version), slow(pysnmp_engine, a, version)):
        try:
            out.append(await call(client))
        except Exception as err:
            out.append((type(err), str(err)))
    return out[0], out[1]


@pytest.mark.parametrize("version", ["1", "2c"])
async def test_no_such_name_handling_matches_pysnmp(version: str, engine: FastSnmpEngine,
                                                    pysnmp_engine: PysnmpEngine,
                                                    agents: list[ScriptedAgent]) -> None:
    a = await agent(agents, _v1_agent(PRESENT))
    asked = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0"]
    got = await _both(engine, pysnmp_engine, a, version, lambda c: c.get(asked))
    assert got[0] == got[1]
    assert got[0] == ({"1.3.6.1.2.1.1.1.0": SnmpValue("integer", 0), "1.3.6.1.2.1.1.5.0": SnmpValue("integer", 0)}
                      if version == "1" else {})
    nexts = ["1.3.6.1.2.1.1", "1.3.6.1.2.1.33.1.1.2.0"]
    got = await _both(engine, pysnmp_engine, a, version, lambda c: c.next(nexts))
    assert got[0] == got[1]
    assert got[0][1] == ("1.3.6.1.2.1.33.1.1.2.0", SnmpValue("endofmibview", None))
    got = await _both(engine, pysnmp_engine, a, "1", lambda c: c.walk("1.3.6.1.2.1"))
    assert got[0] == got[1] and [o for o, _ in got[0]] == sorted(
        PRESENT, key=lambda p: ber.oid_key(ber.oid_content(p)))


@pytest.mark.parametrize("status", [1, 5, 6, 16])
async def test_other_error_status_is_a_parse_error_like_pysnmp(status: int, engine: FastSnmpEngine,
                                                               pysnmp_engine: PysnmpEngine,
                                                               agents: list[ScriptedAgent]) -> None:
    a = await agent(agents, lambda req, a: [(echo(req, SnmpValue("null", None), status=status, index=1), 0, None)])
    for call in (lambda c: c.get([SYS_DESCR]), lambda c: c.next([SYS_DESCR]), lambda c: c.walk("1.3.6.1.2.1.1")):
        fast_r, slow_r = await _both(engine, pysnmp_engine, a, "2c", call)
        assert fast_r == slow_r
        assert fast_r[0] is ParseError
        assert ber.error_status_name(status) in fast_r[1]


async def test_walk_stops_on_a_non_increasing_answer_like_pysnmp(engine: FastSnmpEngine,
                                                                  pysnmp_engine: PysnmpEngine,
                                                                  agents: list[ScriptedAgent]) -> None:
    loop_oids = ["1.3.6.1.2.1.2.2.1.2.1", "1.3.6.1.2.1.2.2.1.2.2", "1.3.6.1.2.1.2.2.1.2.1"]

    def script(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        return [(response(req, [(o, SnmpValue("octets", b"eth")) for o in loop_oids]), 0, None)]

    a = await agent(agents, script)
    fast_r, slow_r = await _both(engine, pysnmp_engine, a, "2c", lambda c: c.walk("1.3.6.1.2.1.2"))
    assert fast_r == slow_r
    assert [o for o, _ in fast_r] == loop_oids[:2]


async def test_walk_range_with_multi_octet_sub_identifiers(engine: FastSnmpEngine, pysnmp_engine: PysnmpEngine,
                                                           agents: list[ScriptedAgent]) -> None:
    table = [f"1.3.6.1.4.1.5003.{col}.{idx}" for col in (127, 128, 200, 16384) for idx in (1, 300, 70000)]

    def script(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        key = ber.oid_key(req.names[0])
        after = [o for o in table if ber.oid_key(ber.oid_content(o)) > key][:3]
        vbs = [(o, SnmpValue("gauge", len(o))) for o in after] or [(ber.oid_text(req.names[0]),
                                                                     SnmpValue("endofmibview", None))]
        return [(response(req, vbs), 0, None)]

    a = await agent(agents, script)
    for start, end in ((None, None), ("1.3.6.1.4.1.5003.128", "1.3.6.1.4.1.5003.200"),
                       ("1.3.6.1.4.1.5003.127.300", "1.3.6.1.4.1.5003.127")):
        fast_r, slow_r = await _both(engine, pysnmp_engine, a, "2c",
                                     lambda c, s=start, e=end: c.walk("1.3.6.1.4.1.5003", s, e))
        assert fast_r == slow_r and fast_r


# ---------------------------------------------------------------------------------------- unreachable


async def test_unresolvable_name_is_unreachable(engine: FastSnmpEngine) -> None:
    client = FastSnmpClient(engine, "no-such-device.invalid", 161, cred(), {"community": Secret("public")})
    with pytest.raises(Unreachable, match="cannot resolve"):
        await client.get([SYS_DESCR])


async def test_refused_send_is_unreachable(engine: FastSnmpEngine) -> None:
    client = FastSnmpClient(engine, "255.255.255.255", 161, cred(), {"community": Secret("public")})
    with pytest.raises(Unreachable, match="cannot send"):  # broadcast without SO_BROADCAST: EACCES
        await client.get([SYS_DESCR])


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6(engine: FastSnmpEngine, agents: list[ScriptedAgent]) -> None:
    a = await agent(agents, lambda req, a: [(echo(req, FIRST), 0, None)], host="::1")
    v4 = await agent(agents, lambda req, a: [(echo(req, SnmpValue("integer", 4)), 0, None)])
    got6, got4 = await asyncio.gather(fast(engine, a).get([SYS_DESCR]), fast(engine, v4).get([SYS_DESCR]))
    assert got6 == {SYS_DESCR: FIRST} and got4 == {SYS_DESCR: SnmpValue("integer", 4)}


# ---------------------------------------------------------------------------------------- concurrency


async def test_global_concurrency_limit(agents: list[ScriptedAgent]) -> None:
    in_flight = {"now": 0, "max": 0}

    def script(req: ber.Request, a: ScriptedAgent) -> list[Reply]:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: in_flight.__setitem__("now", in_flight["now"] - 1))
        return [(echo(req, FIRST), 0.05, None)]

    devices = [await agent(agents, script) for _ in range(3)]
    eng = FastSnmpEngine(max_concurrency=2)
    try:
        results = await asyncio.gather(*(fast(eng, devices[i % 3], timeout=5.0).get([SYS_DESCR]) for i in range(8)))
    finally:
        eng.close()
    assert results == [{SYS_DESCR: FIRST}] * 8
    assert in_flight["max"] <= 2
    assert sum(len(d.requests) for d in devices) == 8


async def test_silent_devices_give_their_slots_back_to_devices_that_answer(agents: list[ScriptedAgent]) -> None:
    """Regression (fault load, docs/reliability.md): requests to silent devices held their concurrency slot for
    their whole timeout and retries, so with enough silent devices the devices that answer waited behind them
    and their polls timed out. A request unanswered after ``slot_hold`` now gives its slot back."""
    silent = [await agent(agents, lambda req, a: []) for _ in range(2)]
    answering = await agent(agents, lambda req, a: [(echo(req, FIRST), 0, None)])
    eng = FastSnmpEngine(max_concurrency=2, slot_hold=0.2)
    try:
        waiting = [asyncio.ensure_future(fast(eng, s, timeout=3.0, retries=1).get([SYS_DESCR])) for s in silent]
        await asyncio.sleep(0)  # both silent requests take the two slots first
        got = await fast(eng, answering, timeout=3.0).get([SYS_DESCR])
        # answered while the silent requests are still waiting for their timeout (3 s, then a retry)
        still_waiting = [not w.done() for w in waiting]
        assert got == {SYS_DESCR: FIRST}
        assert still_waiting == [True, True]
        assert eng.stats.slots_given_back == 2
        for w in waiting:
            with pytest.raises(Timeout):
                await w
        assert [len(s.requests) for s in silent] == [2, 2]  # the retries still went out, without a slot
        assert eng.semaphore._value == 2  # every slot given back exactly once
    finally:
        eng.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ICMP errors are read with Linux's IP_RECVERR")
async def test_closed_port_is_unreachable_at_once(engine: FastSnmpEngine) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: the kernel answers ICMP port unreachable
    client = FastSnmpClient(engine, "127.0.0.1", port, cred(), {"community": Secret("public")}, timeout=30.0)
    with pytest.raises(Unreachable, match="ICMP"):
        await client.get([SYS_DESCR])  # at once, not after 30 s
    assert engine.stats.icmp_errors == 1 and engine.stats.timeouts == 0
