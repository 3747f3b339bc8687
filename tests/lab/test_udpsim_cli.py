"""udpsim's command line, its recording errors and fault checks (no event loop of the test's own)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.lab.recordings import RecordingError
from callipso_agent.lab.udpsim import Faults, UdpSim
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine, SnmpValue
from tests.helpers.snmp import SNMP_FIXTURES

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
ROOT = Path(__file__).resolve().parents[2]


def cred() -> SnmpV2Credential:
    return SnmpV2Credential(version="2c", community=SecretRef(env="UNUSED_IN_TESTS"))


def test_faults_are_checked() -> None:
    for bad in ({"drop": 1.5}, {"delay": -1}, {"malformed": "odd"}, {"error_status": 42}):
        with pytest.raises(ValueError):
            Faults(**bad)



@pytest.mark.slow
def test_command_line(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    mapping = tmp_path / "devices.csv"
    proc = subprocess.Popen([sys.executable, "-m", "callipso_agent.lab.udpsim", "--recordings",
                             str(SNMP_FIXTURES / "mge"), "--devices", "25", "--port", "0", "--map", str(mapping)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("udpsim: 25 devices from 10 recordings"), line
        port = int(line.rsplit(" ", 1)[1])
        rows = [r.split(",") for r in mapping.read_text().splitlines()]
        assert len(rows) == 25 and {int(r[1]) for r in rows} == {port}
        community = rows[-1][0]
        assert community.endswith("-2")

        async def ask() -> dict[str, SnmpValue]:
            eng = PysnmpEngine()
            try:
                return await PysnmpClient(eng, "127.0.0.1", port, cred(), {"community": Secret(community)}).get(
                    [SYS_DESCR])
            finally:
                eng.close()

        assert asyncio.run(ask())[SYS_DESCR].type == "octets"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"responses=1" in out


def test_bad_recording_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.snmprec"
    bad.write_text("# SYNTHETIC\n1.3.6.1.2.1.1.1.0|4|ok\n1.3.6.1.2.1.1.2.0\n")
    with pytest.raises(RecordingError, match=r"bad.snmprec:3"):
        UdpSim().load(bad)


@pytest.mark.slow
def test_estate_file_and_control_channel(tmp_path: Path) -> None:
    from callipso_agent.lab.snmpsim import free_udp_port
    from tests.helpers.snmp import recording

    port = free_udp_port("127.0.0.3")
    estate = tmp_path / "estate.csv"
    ups = recording("dell-ups_tower1000w")
    estate.write_text(f"# SYNTHETIC estate\nups-a,public,127.0.0.3,{port},{ups}\nups-b,public,127.0.0.4,{port},{ups}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "callipso_agent.lab.udpsim", "--estate", str(estate), "--control"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None

    def command(text: str) -> str:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(text.encode() + b"\n")
        proc.stdin.flush()
        return proc.stdout.readline().decode()

    async def get(host: str, timeout: float = 2.0) -> dict[str, SnmpValue] | str:
        eng = PysnmpEngine()
        try:
            c = PysnmpClient(eng, host, port, cred(), {"community": Secret("public")}, timeout=timeout, retries=0)
            return await c.get([SYS_DESCR])
        except Exception as err:
            return type(err).__name__
        finally:
            eng.close()

    try:
        first = proc.stdout.readline().decode()
        assert first.startswith(f"udpsim: 2 devices from 1 recordings on 2 addresses port {port}"), first
        assert command('{"devices": ["ups-a"], "faults": {"drop": 1.0}}') == '{"ok": true}\n'
        assert asyncio.run(get("127.0.0.3", timeout=0.3)) == "Timeout"
        assert command('{"devices": ["ups-b"], "values": {"1.3.6.1.2.1.1.1.0": "4|changed"}}') == '{"ok": true}\n'
        assert asyncio.run(get("127.0.0.4")) == {SYS_DESCR: SnmpValue("octets", b"changed")}
        assert command('{"devices": ["ups-a"], "faults": {}}') == '{"ok": true}\n'
        got = asyncio.run(get("127.0.0.3"))
        assert isinstance(got, dict) and got[SYS_DESCR].value != b"changed"
        assert '"ok": false' in command('{"devices": ["ups-a"], "faults": {"drop": 7}}')
        assert '"ok": false' in command('{"devices": ["nobody"], "restart": true}')
        assert '"requests": {"ups-a": 2}' in command('{"devices": ["ups-a"], "stats": true}')
        proc.stdin.close()  # the end of the commands stops it
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
