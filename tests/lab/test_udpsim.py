"""udpsim: faults switched at run time, value edits, restarts, the numeric variation, 10,000 devices in one
process, and snmpsim's answers on a recording made of corner cases."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.errors import ParseError, Timeout
from callipso_agent.lab.udpsim import UdpSim, populate, recordings_in
from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine, SnmpValue
from tests.helpers.snmp import SNMP_FIXTURES, recording, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"  # upsOutputSource
UPS = recording("dell-ups_tower1000w")


class ManualClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cred(version: str = "2c") -> SnmpV2Credential:
    return SnmpV2Credential(version=version, community=SecretRef(env="UNUSED_IN_TESTS"))  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="module")
async def engine() -> AsyncIterator[FastSnmpEngine]:
    eng = FastSnmpEngine()
    yield eng
    eng.close()


def client(engine: FastSnmpEngine, sim: UdpSim, name: str, community: str | None = None,
           version: str = "2c", **kw: Any) -> FastSnmpClient:
    host, port = sim.endpoint(name)
    kw.setdefault("timeout", 2.0)
    return FastSnmpClient(engine, host, port, cred(version), {"community": Secret(community or name)}, **kw)


@pytest_asyncio.fixture(loop_scope="module")
async def sim() -> AsyncIterator[UdpSim]:
    s = UdpSim(clock=ManualClock(), rng=__import__("random").Random(7))
    s.add_device("ups-a", UPS, port=0)
    s.add_device("ups-b", UPS, port=s.ports[0])
    await s.start()
    yield s
    await s.stop()


# ------------------------------------------------------------------------------------------- faults


async def test_drop_then_clear(sim: UdpSim, engine: FastSnmpEngine) -> None:
    sim.set_faults("ups-a", drop=1.0)
    with pytest.raises(Timeout):
        await client(engine, sim, "ups-a", timeout=0.1, retries=2).get([SYS_DESCR])
    assert sim.device("ups-a").requests == 3 and sim.stats.dropped == 3
    assert await client(engine, sim, "ups-b").get([SYS_DESCR])  # the other device on the port answers
    sim.clear_faults("ups-a")
    assert (await client(engine, sim, "ups-a").get([SYS_DESCR]))[SYS_DESCR].type == "octets"


async def test_partial_loss_is_survived_by_retries(sim: UdpSim, engine: FastSnmpEngine) -> None:
    sim.set_faults("ups-a", drop=0.3)
    walk = await client(engine, sim, "ups-a", timeout=0.05, retries=10).walk("1.3.6.1")
    sim.clear_faults("ups-a")
    assert walk == await client(engine, sim, "ups-a").walk("1.3.6.1")
    assert sim.stats.dropped > 0


async def test_delay(sim: UdpSim, engine: FastSnmpEngine) -> None:
    sim.set_faults("ups-a", delay=0.3)
    with pytest.raises(Timeout):
        await client(engine, sim, "ups-a", timeout=0.1, retries=0).get([SYS_DESCR])
    got = await client(engine, sim, "ups-a", timeout=5.0, retries=0).get([SYS_DESCR])
    sim.clear_faults("ups-a")
    assert got == await client(engine, sim, "ups-a").get([SYS_DESCR])
    assert engine.stats.ignored >= 1  # the late answer to the request that timed out


async def test_malformed_answers(sim: UdpSim, engine: FastSnmpEngine) -> None:
    sim.set_faults("ups-a", malformed="truncated")
    with pytest.raises(ParseError, match="malformed"):
        await client(engine, sim, "ups-a", timeout=5.0).get([SYS_DESCR])
    sim.set_faults("ups-a", malformed="garbage")
    with pytest.raises(Timeout):
        await client(engine, sim, "ups-a", timeout=0.1, retries=1).get([SYS_DESCR])
    sim.clear_faults("ups-a")
    assert engine.stats.malformed >= 3


async def test_wrong_community(sim: UdpSim, engine: FastSnmpEngine) -> None:
    sim.set_faults("ups-a", wrong_community="other")
    with pytest.raises(Timeout, match="wrong community"):
        await client(engine, sim, "ups-a", timeout=0.1, retries=0).get([SYS_DESCR])
    assert await client(engine, sim, "ups-a", community="other").get([SYS_DESCR])
    with pytest.raises(ValueError, match="already used"):
        sim.set_faults("ups-b", wrong_community="other")
    sim.clear_faults("ups-a")
    assert await client(engine, sim, "ups-a").get([SYS_DESCR])
    assert sim.stats.unknown_community >= 1


@pytest.mark.parametrize("version", ["2c", "1"])
async def test_error_status(sim: UdpSim, engine: FastSnmpEngine, version: str) -> None:
    sim.set_faults("ups-a", error_status=5)
    try:
        with pytest.raises(ParseError, match="genErr at index 1"):
            await client(engine, sim, "ups-a", version=version).walk("1.3.6.1")
    finally:
        sim.clear_faults("ups-a")


async def test_restart_and_live_uptime(engine: FastSnmpEngine) -> None:
    clock = ManualClock(50.0)
    s = UdpSim(clock=clock, live_uptime=False)
    s.add_device("fixed", UPS, port=0)
    s.add_device("restarted", UPS, port=s.ports[0])
    live = UdpSim(clock=clock, live_uptime=True)
    live.add_device("live", UPS, port=0)
    await s.start()
    await live.start()
    try:
        recorded = (await client(engine, s, "fixed").get([SYS_UPTIME]))[SYS_UPTIME]
        assert recorded.type == "timeticks"
        s.restart("restarted")
        clock.t += 2.5
        assert (await client(engine, s, "restarted").get([SYS_UPTIME]))[SYS_UPTIME] == SnmpValue("timeticks", 250)
        assert (await client(engine, live, "live").get([SYS_UPTIME]))[SYS_UPTIME] == SnmpValue(
            "timeticks", int(recorded.value) + 250)  # type: ignore[arg-type]
        clock.t += 1.0
        walk = await client(engine, s, "restarted").walk("1.3.6.1.2.1.1")
        assert dict(walk)[SYS_UPTIME] == SnmpValue("timeticks", 350)
        assert (await client(engine, s, "fixed").get([SYS_UPTIME]))[SYS_UPTIME] == recorded
    finally:
        await s.stop()
        await live.stop()


async def test_value_edits_like_the_lab_faults(sim: UdpSim, engine: FastSnmpEngine) -> None:
    c = client(engine, sim, "ups-a")
    before = await c.walk("1.3.6.1.2.1.33.1")
    assert dict(before)[OUTPUT_SOURCE] == SnmpValue("integer", 3)
    inserted = "1.3.6.1.2.1.33.1.2.2.5"  # lacking in the recording: lands between its neighbours
    sim.set_values("ups-a", {OUTPUT_SOURCE: "2|5", inserted: SnmpValue("gauge", 7), SYS_DESCR: None})
    after = await c.walk("1.3.6.1.2.1.33.1")
    assert dict(after)[OUTPUT_SOURCE] == SnmpValue("integer", 5)
    assert [o for o, _ in after] == sorted([o for o, _ in before] + [inserted],
                                           key=lambda o: tuple(map(int, o.split("."))))
    assert await c.get([SYS_DESCR]) == {}
    assert dict(await client(engine, sim, "ups-b").walk("1.3.6.1.2.1.33.1")) == dict(before)  # shared, untouched
    with pytest.raises(ValueError):
        sim.set_values("ups-a", {OUTPUT_SOURCE: "5"})
    sim.reset_values("ups-a")
    assert await c.walk("1.3.6.1.2.1.33.1") == before


async def test_numeric_variation_follows_the_clock(engine: FastSnmpEngine) -> None:
    clock = ManualClock(0.0)
    s = UdpSim(clock=clock)
    s.add_device("geist", recording("geist-temperature-sensor"), port=0)
    await s.start()
    oid = "1.3.6.1.4.1.21239.5.1.2.1.5.1"  # 2:numeric|scale=5,wrap=1,min=100,max=300,initial=154
    try:
        clock.t = 10.0
        assert (await client(engine, s, "geist").get([oid]))[oid] == SnmpValue("integer", 10 * 5 + 154)
        clock.t = 40.0  # 354 wraps: 354 % 300 + 100
        assert (await client(engine, s, "geist").get([oid]))[oid] == SnmpValue("integer", 154)
    finally:
        await s.stop()


# ------------------------------------------------------------------------------------------------ scale


async def test_ten_thousand_devices_in_one_process(engine: FastSnmpEngine) -> None:
    s = UdpSim()
    paths = recordings_in(SNMP_FIXTURES)
    for p in paths:
        s.load(p)
    tracemalloc.start()
    devices = populate(s, paths, 10_000, 0)
    per_device = tracemalloc.get_traced_memory()[0] / len(devices)
    tracemalloc.stop()
    assert len(s.ports) == 1 and len(devices) == 10_000
    assert per_device < 2048, f"{per_device:.0f} bytes per device"  # the recordings are shared
    own = s.add_device("own-address", paths[0], host="127.0.0.2", port=s.ports[0])
    await s.start()
    try:
        sample = [*devices[:: len(devices) // 40], devices[-1], own]
        got = await asyncio.gather(*(client(engine, s, d.name).walk("1.3.6.1") for d in sample))
        first = {d.recording.name: d for d in devices[: len(paths)]}
        for d, walk in zip(sample, got, strict=True):
            assert walk, d.name
            assert walk == await client(engine, s, first[d.recording.name].name).walk("1.3.6.1"), d.name
            assert walk[0] == (".".join(map(str, d.recording.keys[0])), d.recording.values[0]), d.name
    finally:
        await s.stop()


# ------------------------------------------------------------------------- corner cases, against snmpsim

# SYNTHETIC recording of what real ones sometimes hold: a broken value, duplicated and unsorted OIDs, recorded
# exceptions, Counter64 (invisible to v1), hex and escaped values, spaces around values, IpAddress, Opaque.
CORNERS = """# SYNTHETIC recording for the udpsim/snmpsim comparison (tests/lab/test_udpsim.py)
1.3.6.1.2.1.1.1.0|4| padded description \t
1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99999.1
1.3.6.1.2.1.1.3.0|67|123456
1.3.6.1.2.1.1.4.0|4x|636f6e74616374
1.3.6.1.2.1.1.5.0|2|not-a-number
1.3.6.1.2.1.1.6.0|4e|line\\x41\\n
1.3.6.1.2.1.1.7.0|2|72
1.3.6.1.2.1.1.7.0|2|73
1.3.6.1.2.1.2.1.0|2|2
1.3.6.1.2.1.2.2.1.10.1|65|4294967295
1.3.6.1.2.1.2.2.1.10.2|65|12
1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551615
1.3.6.1.2.1.31.1.1.1.6.2|70|5
1.3.6.1.2.1.31.1.1.1.7.1|65|9
1.3.6.1.2.1.4.20.1.1.10.0.0.1|64|10.0.0.1
1.3.6.1.2.1.4.20.1.2.10.0.0.1|2|1
1.3.6.1.4.1.99999.1.1.0|128|
1.3.6.1.4.1.99999.1.2.0|68x|9f780442c80000
1.3.6.1.4.1.99999.1.3.0|66|4294967296
1.3.6.1.4.1.99999.1.4.0|130|
1.3.6.1.4.1.99999.1.5.0|66|17
"""


@pytest.mark.system
@pytest.mark.slow
async def test_corner_cases_answered_like_snmpsim(tmp_path: Path) -> None:
    rec = tmp_path / "corners.snmprec"
    rec.write_bytes(CORNERS.encode())
    s = UdpSim()
    s.add_device("corners", rec, port=0)
    await s.start()
    eng = PysnmpEngine()
    gets = ["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.7.0", "1.3.6.1.2.1.31.1.1.1.6.1", "1.3.6.1.4.1.99999.1.1.0",
            "1.3.6.1.4.1.99999.1.3.0", "1.3.6.1.4.1.99999.1.4.0", "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.99.0"]
    nexts = ["1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.6", "1.3.6.1.2.1.31.1.1.1.5", "1.3.6.1.4.1.99999.1.3",
             "1.3.6.1.4.1.99999.1.4.0", "1.3.6.1.4.1.99999.1.5.0"]

    async def read(host: str, port: int) -> list[Any]:
        out: list[Any] = []
        for version in ("2c", "1"):
            c = PysnmpClient(eng, host, port, cred(version), {"community": Secret("corners")}, timeout=5.0)
            out += [await c.walk("1.3.6.1"), await c.walk("1.3.6.1.2.1.1.6"), await c.walk("1.3.6.1.4.1")]
            out += [await c.get(gets)] + [await c.get([o]) for o in gets] + [await c.next(nexts)]
            out += [await c.next([o]) for o in nexts]
        return out

    try:
        ours = await read(*s.endpoint("corners"))
        with serve([rec], tmp_path / "snmpsim", log_level="error") as snmpsim:
            theirs = await read(snmpsim.host, snmpsim.port)
    finally:
        await s.stop()
        eng.close()
    assert ours == theirs
    v2c, v1 = ours[: len(ours) // 2], ours[len(ours) // 2 :]
    assert [o for o, _ in v2c[0]][-1] == "1.3.6.1.2.1.1.4.0"  # a walk ends on the broken value, as snmpsim's
    assert v2c[3]["1.3.6.1.2.1.31.1.1.1.6.1"].type == "counter64" and "1.3.6.1.2.1.1.7.0" in v2c[3]
    assert "1.3.6.1.2.1.31.1.1.1.6.1" not in v1[3] and v1[3]
