"""The lab's network front (one UDP port per device, relayed to a real snmpsim) and snmpsim's stderr.

Modes: pass relays, drop silences, late answers after a delay, truncated cuts answers in half. Idle client
flows are closed (no descriptor growth). snmpsim's stderr goes to a file, so nothing it prints can block it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api

from callipso_agent.lab.probe import snmp_get_sync
from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.lab.udpfront import FrontProcess, Route, UdpFront
from tests.helpers.snmp import recording, serve

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SnmpSimulator]:
    with serve([("ups-a", recording("eatonups")), ("ups-b", recording("eatonups"))], tmp_path / "sim") as s:
        yield s


@pytest.fixture
def front(sim: SnmpSimulator, tmp_path: Path) -> Iterator[FrontProcess]:
    f = FrontProcess({"ups-a": (sim.host, sim.port), "ups-b": (sim.host, sim.port)}, log_file=tmp_path / "front.log")
    f.start()
    try:
        yield f
    finally:
        f.stop()


def _get_message(community: str) -> bytes:
    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = p.GetRequestPDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_varbinds(pdu, [(SYS_OBJECT_ID, p.Null(""))])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def _raw(port: int, community: str, timeout: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(_get_message(community), ("127.0.0.1", port))
        try:
            return s.recvfrom(65535)[0]
        except OSError:
            return None


def test_pass_drop_and_back(front: FrontProcess) -> None:
    a, b = front.ports["ups-a"], front.ports["ups-b"]
    assert a != b
    assert snmp_get_sync("127.0.0.1", a, "ups-a", SYS_OBJECT_ID, timeout=5) is not None
    front.set_mode("ups-a", "drop")
    assert _raw(a, "ups-a", 1.0) is None
    assert snmp_get_sync("127.0.0.1", b, "ups-b", SYS_OBJECT_ID, timeout=5) is not None  # the other one answers
    stats = front.stats()["devices"]
    assert stats["ups-a"]["mode"] == "drop" and stats["ups-a"]["dropped"] >= 1 and stats["ups-a"]["answers"] == 1
    assert stats["ups-b"]["dropped"] == 0 and stats["ups-b"]["answers"] == 1
    front.set_mode("ups-a", "pass")
    assert snmp_get_sync("127.0.0.1", a, "ups-a", SYS_OBJECT_ID, timeout=5) is not None


def test_late_answers_come_after_the_delay(front: FrontProcess) -> None:
    port = front.ports["ups-a"]
    front.set_mode("ups-a", "late", 1.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        t0 = time.monotonic()
        s.sendto(_get_message("ups-a"), ("127.0.0.1", port))
        with pytest.raises(OSError):
            s.recvfrom(65535)  # nothing within the first second
        s.settimeout(5.0)
        data, _ = s.recvfrom(65535)
        assert data and time.monotonic() - t0 >= 1.5


def test_truncated_answers_are_cut(front: FrontProcess, sim: SnmpSimulator) -> None:
    whole = _raw(sim.port, "ups-a", 5.0)
    front.set_mode("ups-a", "truncated")
    cut = _raw(front.ports["ups-a"], "ups-a", 5.0)
    assert whole is not None and cut is not None
    assert abs(len(cut) - len(whole) // 2) <= 1  # request ids differ by a byte at most
    spec = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C].Message()
    decoder.decode(whole, asn1Spec=spec)
    with pytest.raises(PyAsn1Error):
        decoder.decode(cut, asn1Spec=spec)


def test_bad_commands_are_refused_and_the_relay_stops_with_its_input(front: FrontProcess) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        front.set_mode("nope", "drop")
    with pytest.raises(ValueError, match="unknown mode"):
        front.set_mode("ups-a", "sideways")
    proc = front.proc
    assert proc is not None
    front.stop()
    assert proc.returncode == 0 and front.proc is None


def test_idle_flows_are_closed(sim: SnmpSimulator) -> None:
    """One upstream socket per client of a device; they are closed after ``idle`` seconds without traffic."""

    async def go() -> tuple[int, int, int]:
        now = [0.0]
        front = UdpFront([Route("ups-a", (sim.host, sim.port))], asyncio.get_running_loop(),
                         monotonic=lambda: now[0], idle=60.0)
        port = front.start()["ups-a"]
        try:
            for _ in range(3):  # three clients (three source ports)
                answer = await asyncio.to_thread(_raw, port, "ups-a", 5.0)
                assert answer is not None
            flows = len(front.flows)
            now[0] = 30.0
            kept = front.sweep()
            now[0] = 61.0
            closed = front.sweep()
            return flows, kept, closed
        finally:
            front.close()

    flows, kept, closed = asyncio.run(go())
    assert (flows, kept, closed) == (3, 0, 3)


def test_snmpsim_stderr_goes_to_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.snmprec").write_text("this is not a recording\n", encoding="utf-8")
    sim = SnmpSimulator(data, log_file=tmp_path / "sim.log")
    sim.start()
    try:
        assert sim.proc is not None and sim.proc.stderr is None  # no pipe that could fill up
        with pytest.raises((RuntimeError, TimeoutError)) as exc:
            sim.wait_ready("bad", timeout=10)
        if isinstance(exc.value, RuntimeError):  # snmpsim refused the file and exited: its words are kept
            assert "snmpsim exited" in str(exc.value)
    finally:
        sim.stop()
    assert sim.stderr_file.exists()


def test_a_lab_that_cannot_start_leaves_no_snmpsim_behind(tmp_path: Path) -> None:
    """The fault switch's port is taken: the lab fails after snmpsim and the front started, and stops them."""
    import subprocess
    import sys

    lab_dir = tmp_path / "lab"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "callipso_agent", "lab", "--dir", str(lab_dir), "--sites", "GARDANNE-MDS",
             "--control-port", str(port)],
            capture_output=True, text=True, timeout=120, check=False,
            cwd=Path(__file__).resolve().parents[2])
    assert run.returncode != 0 and "address already in use" in run.stderr.lower(), run.stderr[-2000:]

    def lab_processes() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(lab_dir) in cmd:
                found.append(cmd)
        return found

    deadline = time.monotonic() + 10
    while lab_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab_processes() == []
