"""The bench's estate served by ``callipso_agent.lab.udpsim`` in a process of its own.

Every device listens on its own loopback address (the ``address`` layout of :func:`bench.estate.build`), so
net-snmp and snmp_exporter reach it with one community, and traps leave from the device's own address. The
lab's faults (``lab.yaml``) are played with the lab's own edit rules (:func:`apply_edits`: ``set`` where the
recording has the OID, ``insert`` where it lacks it), sent to udpsim as value changes over its ``--control``
channel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.estate import BenchDevice, Estate
from bench.responder import wait_answering
from callipso_agent.lab.estate import apply_edits, load_lab_spec

ROOT = Path(__file__).resolve().parents[1]


def _records(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        oid, sep, rest = line.partition("|")
        if sep and oid and not line.startswith("#"):
            out[oid] = rest
    return out


class UdpsimResponder:
    name = "udpsim"

    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        self.proc: subprocess.Popen[bytes] | None = None
        self._faults = load_lab_spec().faults

    def start(self) -> None:
        table = self.estate.workdir / "udpsim-estate.csv"
        table.write_text("".join(
            f"{d.name},{d.community},{d.address},{d.port},{self.estate.recording_path(d)}\n"
            for d in self.estate.devices), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callipso_agent.lab.udpsim", "--estate", str(table), "--control"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT)

    def _read(self) -> dict[str, object]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"udpsim stopped (exit {self.proc.wait()})")
        try:
            data: dict[str, object] = json.loads(line)
        except json.JSONDecodeError:
            return {"ok": True, "text": line.decode(errors="replace").strip()}
        return data

    def _send(self, cmd: dict[str, object]) -> dict[str, object]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._read()
        if answer.get("ok") is False:
            raise RuntimeError(f"udpsim refused {cmd}: {answer.get('error')}")
        return answer

    def wait_ready(self, timeout: float = 120.0) -> None:
        self._read()  # the first line says where the devices listen
        wait_answering([self.estate.devices[0], self.estate.devices[-1]], timeout)

    def set_fault(self, devices: list[BenchDevice], fault: str | None) -> None:
        for dev in devices:
            if fault is None:
                self._send({"devices": [dev.name], "reset_values": True})
                continue
            spec = self._faults[fault]
            lines = self.estate.recording_path(dev).read_text(encoding="utf-8", errors="replace").splitlines()
            before = _records(lines)
            edited, _ = apply_edits(lines, spec.set, spec.insert)
            changes = {oid: v for oid, v in _records(edited).items() if before.get(oid) != v}
            self._send({"devices": [dev.name], "values": changes})

    def misbehave(self, devices: list[BenchDevice], faults: dict[str, object]) -> None:
        """Replace the devices' protocol faults (udpsim's ``Faults``: ``drop``, ``delay``, ``malformed``,
        ``wrong_community``, ``error_status``; ``{}`` clears them), in one command."""
        if devices:
            self._send({"devices": [d.name for d in devices], "faults": faults})

    def restart(self, devices: list[BenchDevice]) -> None:
        """The devices' SNMP agents restart: their sysUpTime starts again from 0."""
        if devices:
            self._send({"devices": [d.name for d in devices], "restart": True})

    def stats(self) -> dict[str, object]:
        """The responder's counters (requests, responses, dropped, unknown community...)."""
        stats = self._send({"stats": True}).get("stats")
        return stats if isinstance(stats, dict) else {}

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.terminate()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
