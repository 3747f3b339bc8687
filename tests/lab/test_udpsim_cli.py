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
