"""CPU cost of the SNMP clients per million varbinds, and udpsim's, on the fixture recordings.

udpsim serves every recording under ``tests/fixtures/snmp`` (``--copies`` devices per recording) in a process
of its own; this process walks every device (``walk 1.3.6.1``, GETBULK with max-repetitions 25 in v2c,
GETNEXT in v1) through :class:`FastSnmpClient` and :class:`PysnmpClient`, at most ``--concurrency`` devices
at a time, and reports:

* the client's CPU-seconds per million varbinds (``time.process_time`` of this process, which runs only the
  client), and varbinds per CPU-second;
* udpsim's CPU-seconds per million varbinds and per thousand requests (``/proc/<pid>/stat``), hence what
  one core of udpsim answers per second.

Usage: ``.venv/bin/python bench/snmp_client_cpu.py [--rounds 3] [--pysnmp-rounds 1] [--version 2c|1]``.
A benchmark, not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callipso_agent.config.models import SnmpV2Credential  # noqa: E402
from callipso_agent.config.secrets import Secret, SecretRef  # noqa: E402
from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine  # noqa: E402
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine  # noqa: E402


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def syscall_floor(n: int = 2000) -> float:
    """CPU microseconds of one sendto + one recvfrom of a small datagram on loopback, on this machine: the
    part of a request no client can save (large in sandboxes, a few microseconds on a plain kernel)."""
    import socket

    rx, tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        addr, data, total = rx.getsockname(), b"x" * 60, 0.0
        for _ in range(n // 200):
            t0 = time.process_time()
            for _ in range(200):
                tx.sendto(data, addr)
            for _ in range(200):
                rx.recvfrom(65535)
            total += time.process_time() - t0
    return total / n * 1e6


def start_udpsim(recordings: Path, copies: int, mapping: Path) -> tuple[subprocess.Popen[bytes], int]:
    n = sum(1 for p in recordings.rglob("*") if p.suffix in (".snmprec", ".snmpwalk")) * copies
    proc = subprocess.Popen([sys.executable, "-m", "callipso_agent.lab.udpsim", "--recordings", str(recordings),
                             "--devices", str(n), "--port", "0", "--map", str(mapping)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("udpsim:"):
        proc.kill()
        raise RuntimeError(f"udpsim did not start: {line!r}")
    return proc, int(line.rsplit(" ", 1)[1])


async def walk_all(kind: str, port: int, communities: list[str], version: str, concurrency: int,
                   rounds: int, udpsim_pid: int) -> dict[str, Any]:
    cred = SnmpV2Credential(version=version, community=SecretRef(env="UNUSED"))  # type: ignore[arg-type]
    engine: Any = FastSnmpEngine(max_concurrency=concurrency) if kind == "fast" else PysnmpEngine(concurrency)
    make = FastSnmpClient if kind == "fast" else PysnmpClient
    clients = [make(engine, "127.0.0.1", port, cred, {"community": Secret(c)}, timeout=10.0, retries=2)
               for c in communities]
    await asyncio.gather(*(c.walk("1.3.6.1.2.1.1") for c in clients))  # warm up (pysnmp's first request)
    varbinds = requests = 0
    cpu0, wall0, sim0 = time.process_time(), time.perf_counter(), proc_cpu(udpsim_pid)
    for _ in range(rounds):
        walks = await asyncio.gather(*(c.walk("1.3.6.1") for c in clients))
        varbinds += sum(len(w) for w in walks)
    cpu, wall, sim = time.process_time() - cpu0, time.perf_counter() - wall0, proc_cpu(udpsim_pid) - sim0
    if kind == "fast":
        requests = engine.stats.requests
    engine.close()
    out = {"client": kind, "version": version, "rounds": rounds, "devices": len(clients), "varbinds": varbinds,
           "client_cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
           "client_cpu_s_per_million_varbinds": round(cpu / varbinds * 1e6, 2),
           "client_varbinds_per_cpu_s": round(varbinds / cpu),
           "udpsim_cpu_s": round(sim, 3), "udpsim_cpu_s_per_million_varbinds": round(sim / varbinds * 1e6, 2)}
    if requests:
        out["requests"] = requests
        out["udpsim_cpu_ms_per_thousand_requests"] = round(sim / requests * 1e6, 1)
        out["udpsim_requests_per_cpu_s"] = round(requests / sim) if sim else None
        out["udpsim_varbinds_per_cpu_s"] = round(varbinds / sim) if sim else None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recordings", type=Path, default=ROOT / "tests" / "fixtures" / "snmp")
    p.add_argument("--copies", type=int, default=3, help="devices per recording (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="walks of every device by the fast client")
    p.add_argument("--pysnmp-rounds", type=int, default=1, help="walks of every device by pysnmp (0: skip)")
    p.add_argument("--version", choices=["2c", "1"], default="2c")
    p.add_argument("--concurrency", type=int, default=64, help="devices walked at once (agent default 64)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = p.parse_args()
    from callipso_agent.logs import configure

    configure("error")  # the unsorted recordings' "walk not increasing" warnings are expected
    tmp = tempfile.TemporaryDirectory(prefix="udpsim-bench-")
    mapping = Path(tmp.name) / "devices.csv"
    sim, port = start_udpsim(args.recordings, args.copies, mapping)
    try:
        communities = [line.split(",", 1)[0] for line in mapping.read_text().splitlines()]
        results = []
        for kind, rounds in (("fast", args.rounds), ("pysnmp", args.pysnmp_rounds)):
            if rounds:
                results.append(asyncio.run(walk_all(kind, port, communities, args.version, args.concurrency,
                                                    rounds, sim.pid)))
    finally:
        sim.terminate()
        sim.wait(10)
        tmp.cleanup()
    floor = syscall_floor()
    if args.json:
        for r in results:
            print(json.dumps({**r, "syscall_floor_us_per_request": round(floor, 1)}))
        return 0
    print(f"{len(communities)} devices, SNMP v{args.version}, {args.concurrency} at a time, udpsim in its own process")
    print(f"{'client':8} {'varbinds':>9} {'CPU s':>7} {'CPU s/M vb':>11} {'vb/CPU s':>9} {'wall s':>7} "
          f"{'udpsim CPU s/M vb':>18}")
    for r in results:
        print(f"{r['client']:8} {r['varbinds']:>9} {r['client_cpu_s']:>7} {r['client_cpu_s_per_million_varbinds']:>11} "
              f"{r['client_varbinds_per_cpu_s']:>9} {r['wall_s']:>7} {r['udpsim_cpu_s_per_million_varbinds']:>18}")
    print(f"loopback sendto + recvfrom on this machine: {floor:.1f} CPU us per request (included above)")
    fast = next((r for r in results if r["client"] == "fast"), None)
    if fast and "udpsim_requests_per_cpu_s" in fast:
        print(f"udpsim: {fast['udpsim_cpu_ms_per_thousand_requests']} CPU ms per 1000 requests, "
              f"{fast['udpsim_requests_per_cpu_s']} requests and {fast['udpsim_varbinds_per_cpu_s']} varbinds "
              "per CPU second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
