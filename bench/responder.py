"""The devices of the estate, answering SNMP on their own loopback addresses, in processes of their own.

Two back-ends:

* ``udpsim`` (``callipso_agent.lab.udpsim``, see :mod:`bench.udpsim_front`): pre-encoded answers, fast enough
  for 10,000 devices;
* ``snmpsim``: the reference SNMP agent, slow, for small estates only; devices share 127.0.0.1 and answer
  to their own name as community (the ``community`` layout of :func:`bench.estate.plan`).

Both serve each device's whole recording and play the lab's faults (``lab.yaml``) on chosen devices. The
responders' CPU time is read from ``/proc`` so it can be reported apart from the agent's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Protocol

from bench.estate import BenchDevice, Estate
from bench.procstat import cpu_seconds
from callipso_agent.lab.estate import apply_edits, load_lab_spec
from callipso_agent.lab.probe import snmp_get_sync
from callipso_agent.lab.snmpsim import responder_command, touch_later

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"


class Responder(Protocol):
    name: str

    def start(self) -> None: ...

    def wait_ready(self, timeout: float = 60.0) -> None: ...

    def set_fault(self, devices: list[BenchDevice], fault: str | None) -> None: ...

    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


def wait_answering(devices: list[BenchDevice], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for dev in devices:
        while snmp_get_sync(dev.address, dev.port, dev.community, SYS_OBJECT_ID, timeout=0.5) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dev.name} ({dev.target}) not answering after {timeout:g}s")
            time.sleep(0.2)


def responder_cpu(r: Responder) -> float:
    return sum(cpu_seconds(pid) for pid in r.pids())


class SnmpsimResponder:
    """One snmpsim process per port of a ``community`` layout estate (snmpsim keeps at most 31 recordings
    open: 24 devices a port)."""

    name = "snmpsim"

    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        self.root = estate.workdir / "snmpsim"
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: dict[str, Path] = {}
        self._faults = load_lab_spec().faults

    def _shards(self) -> list[list[BenchDevice]]:
        by_port: dict[int, list[BenchDevice]] = {}
        for d in self.estate.devices:
            by_port.setdefault(d.port, []).append(d)
        return list(by_port.values())

    def start(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for k, shard in enumerate(self._shards()):
            data = self.root / str(k) / "data"
            data.mkdir(parents=True)
            cmd = [*responder_command(), f"--data-dir={data}", f"--cache-dir={self.root / str(k) / 'cache'}",
                   f"--logging-method=file:{self.root / str(k) / 'snmpsim.log'}",
                   f"--agent-udpv4-endpoint={shard[0].target}"]
            for dev in shard:
                f = data / f"{dev.community}.snmprec"
                shutil.copyfile(self.estate.recording_path(dev), f)
                self._files[dev.name] = f
            env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True))

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_answering([s[0] for s in self._shards()] + [s[-1] for s in self._shards()], timeout)

    def set_fault(self, devices: list[BenchDevice], fault: str | None) -> None:
        for dev in devices:
            lines = self.estate.recording_path(dev).read_text(encoding="utf-8",
                                                              errors="surrogateescape").splitlines()
            if fault is not None:
                spec = self._faults[fault]
                lines, _ = apply_edits(lines, spec.set, spec.insert)
            f = self._files[dev.name]
            tmp = f.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
            os.replace(tmp, f)
            touch_later(f)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = []
