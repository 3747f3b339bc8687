"""The same work done by the tools a NOC would use instead: net-snmp and Prometheus' snmp_exporter.

"The same work" is the agent's own SNMP traffic of its measured cycle (``plan.json``, noted by
``bench.agent_side.RecordingClient``): for each device, the scalar OIDs that came back from GET (``gets``)
and the table columns that came back from walks (``walks``).

* net-snmp: per device, one ``snmpget`` of the scalars and one ``snmpbulkwalk`` per column, as many
  processes at once as there are cores; CPU is the children's rusage, varbinds are counted in the output.
  Each process pays its start-up; so that figure is also given for the practical limit, one
  ``snmpbulkwalk`` of the whole tree per device (one process for thousands of varbinds).
* snmp_exporter: one module per distinct (gets, walks) set with one metric per OID, typed from the
  recording; every device scraped once through ``/snmp?target=&module=``, 64 scrapes at once; CPU is the
  exporter process's (from /proc), varbinds its ``snmp_scrape_pdus_returned``.

Run as ``python -m bench.peers netsnmp|exporter ...`` so the CPU of each peer is counted in a process of its
own; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from bench.estate import BenchDevice, Estate
from bench.procstat import Usage, cpu_seconds, peak_rss_bytes

SNMP_EXPORTER = "prometheus-snmp-exporter"
_VB_LINE = re.compile(rb"^\.?[0-9]+(\.[0-9]+)+ ")


def load_plan(path: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def count_varbinds(output: bytes) -> int:
    """Varbind lines of net-snmp's ``-On -Oq`` output (a multi-line string value adds no line starting with an
    OID); 'No Such Object' answers are not varbinds with a value."""
    n = 0
    for line in output.split(b"\n"):
        if _VB_LINE.match(line) and b"No Such" not in line and b"No more variables" not in line:
            n += 1
    return n


# ------------------------------------------------------------------------------------------ net-snmp


def netsnmp_commands(dev: BenchDevice, community: str, plan: dict[str, Any], max_repetitions: int,
                     timeout: float, retries: int) -> list[list[str]]:
    common = ["-v2c", "-c", community, "-On", "-Oq", "-t", f"{timeout:g}", "-r", str(retries)]
    cmds: list[list[str]] = []
    gets = plan.get("gets") or []
    for i in range(0, len(gets), 32):  # the agent's GET chunk
        cmds.append(["snmpget", *common, dev.target, *gets[i : i + 32]])
    for root in plan.get("walks") or []:
        cmds.append(["snmpbulkwalk", *common, f"-Cr{max_repetitions}", dev.target, root])
    return cmds


async def run_netsnmp(estate: Estate, plan: dict[str, dict[str, Any]], *, parallel: int, max_repetitions: int,
                      snmp_timeout: float = 5.0, retries: int = 1) -> dict[str, Any]:
    env = dict(os.environ, MIBS="")  # numeric only: no MIB parsing in the measured work
    sem = asyncio.Semaphore(parallel)
    per_device: dict[str, int] = {}
    failures = 0
    procs = 0

    async def one(cmd: list[str]) -> int:
        nonlocal failures, procs
        async with sem:
            p = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.DEVNULL, env=env)
            out, _ = await p.communicate()
            procs += 1
            if p.returncode != 0:
                failures += 1
            return count_varbinds(out)

    async def device(dev: BenchDevice) -> None:
        cmds = netsnmp_commands(dev, dev.community, plan[dev.name], max_repetitions, snmp_timeout, retries)
        counts = await asyncio.gather(*(one(c) for c in cmds))
        per_device[dev.name] = sum(counts)

    devices = [d for d in estate.devices if d.name in plan]
    u0, w0 = Usage.children(), time.perf_counter()
    await asyncio.gather(*(device(d) for d in devices))
    wall, u1 = time.perf_counter() - w0, Usage.children()
    cpu, same_procs = u1.cpu - u0.cpu, procs
    # the practical limit: one snmpbulkwalk of the whole tree per device (start-up paid once per device)
    common = ["-v2c", "-On", "-Oq", "-t", f"{snmp_timeout:g}", "-r", str(retries), f"-Cr{max_repetitions}"]
    procs, failures_same = 0, failures
    u2, w2 = Usage.children(), time.perf_counter()
    whole = await asyncio.gather(*(one(["snmpbulkwalk", *common, "-c", d.community, d.target, "1.3.6.1"])
                                   for d in devices))
    wall_whole, u3 = time.perf_counter() - w2, Usage.children()
    return {"tool": "net-snmp snmpbulkwalk/snmpget", "devices": len(devices), "processes": same_procs,
            "failures": failures_same, "parallel": parallel, "wall_s": wall, "cpu_s": cpu,
            "varbinds": sum(per_device.values()), "per_device_varbinds": per_device,
            "whole_tree": {"devices": len(devices), "processes": procs, "failures": failures - failures_same,
                           "wall_s": wall_whole, "cpu_s": u3.cpu - u2.cpu, "varbinds": sum(whole)},
            "maxrss_bytes": u1.maxrss}


# ------------------------------------------------------------------------------------- snmp_exporter


_TYPE_OF_TAG = {"2": "gauge", "65": "counter", "66": "gauge", "67": "gauge", "70": "counter",
                "4": "DisplayString", "4x": "OctetString", "6": "DisplayString", "64": "DisplayString",
                "64x": "DisplayString", "5": "DisplayString"}


def read_recording(path: Path) -> list[tuple[str, str]]:
    """(oid, type tag) of each line of a .snmprec."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3:
            out.append((parts[0].strip("."), parts[1].split(":", 1)[0]))
    return out


def _metric_for(oid: str, rows: list[tuple[str, str]], *, scalar: bool) -> dict[str, Any]:
    """One exporter metric per OID the agent read: a scalar (``x.0`` or bare ``x``) without indexes, a column
    with one numeric index label per sub-identifier of its rows."""
    name = "bench_" + oid.replace(".", "_")
    if scalar:
        tag = next((t for o, t in rows if o == oid), "4")
        base = oid[:-2] if oid.endswith(".0") else oid
        return {"name": name, "oid": base, "type": _TYPE_OF_TAG.get(tag, "DisplayString"), "help": oid}
    under = [(o, t) for o, t in rows if o.startswith(oid + ".")]
    depth = max((len(o.split(".")) - len(oid.split(".")) for o, _ in under), default=1)
    tag = under[0][1] if under else "4"
    return {"name": name, "oid": oid, "type": _TYPE_OF_TAG.get(tag, "DisplayString"), "help": oid,
            "indexes": [{"labelname": f"i{k}", "type": "gauge"} for k in range(depth)]}


def exporter_config(estate: Estate, plan: dict[str, dict[str, Any]], *, max_repetitions: int,
                    timeout: float, retries: int) -> tuple[dict[str, Any], dict[str, str]]:
    """snmp_exporter 0.21 configuration (the pre-0.23 format: auth inside each module): one module per distinct
    set of OIDs. Returns the configuration and each device's module."""
    modules: dict[str, Any] = {}
    by_key: dict[tuple[tuple[str, ...], tuple[str, ...], str, str], str] = {}
    module_of: dict[str, str] = {}
    recordings: dict[str, list[tuple[str, str]]] = {}
    for dev in estate.devices:
        p = plan.get(dev.name)
        if p is None:
            continue
        key = (tuple(p.get("gets") or ()), tuple(p.get("walks") or ()), dev.recording, dev.community)
        name = by_key.get(key)
        if name is None:
            name = f"m{len(by_key):04d}"
            by_key[key] = name
            rows = recordings.setdefault(dev.recording, read_recording(estate.recording_path(dev)))
            metrics = [_metric_for(g, rows, scalar=True) for g in key[0]]
            metrics += [_metric_for(w, rows, scalar=False) for w in key[1]]
            module: dict[str, Any] = {"walk": list(key[1]), "metrics": metrics, "version": 2,
                                      "max_repetitions": max_repetitions, "retries": retries,
                                      "timeout": f"{timeout:g}s", "auth": {"community": dev.community}}
            if key[0]:
                module["get"] = list(key[0])
            modules[name] = module
        module_of[dev.name] = name
    return {"modules": modules}, module_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PDUS = re.compile(rb"^snmp_scrape_pdus_returned (\S+)$", re.M)


async def run_exporter(estate: Estate, plan: dict[str, dict[str, Any]], workdir: Path, *, concurrency: int,
                       max_repetitions: int, snmp_timeout: float = 5.0, retries: int = 1) -> dict[str, Any]:
    import aiohttp

    exe = shutil.which(SNMP_EXPORTER) or shutil.which("snmp_exporter")
    if exe is None:
        raise FileNotFoundError(f"{SNMP_EXPORTER} not found (apt-get install prometheus-snmp-exporter)")
    cfg, module_of = exporter_config(estate, plan, max_repetitions=max_repetitions, timeout=snmp_timeout,
                                     retries=retries)
    cfg_path = workdir / "snmp_exporter.yml"
    # 0.21 reads the modules at the top level of the file (the "modules:" key and "auths" came in 0.23)
    cfg_path.write_text(yaml.safe_dump(cfg["modules"], sort_keys=False), encoding="utf-8")
    port = _free_port()
    log = open(workdir / "snmp_exporter.log", "wb")  # noqa: ASYNC230 - set-up; closed below
    proc = subprocess.Popen([exe, f"--config.file={cfg_path}",  # noqa: ASYNC220 - set-up, before measuring
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(base + "/metrics") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"snmp_exporter did not start; see {workdir / 'snmp_exporter.log'}")
                await asyncio.sleep(0.2)
            sem = asyncio.Semaphore(concurrency)
            per_device: dict[str, int] = {}
            failures: dict[str, str] = {}

            async def scrape(dev: BenchDevice) -> None:
                async with sem:
                    url = f"{base}/snmp"
                    async with session.get(url, params={"target": dev.target,
                                                        "module": module_of[dev.name]}) as r:
                        body = await r.read()
                        if r.status != 200:
                            failures[dev.name] = f"HTTP {r.status}: {body[:200]!r}"
                            return
                m = _PDUS.search(body)
                per_device[dev.name] = int(float(m.group(1))) if m else 0
                if b"snmp_scrape_" not in body:
                    failures[dev.name] = "no scrape metrics"

            devices = [d for d in estate.devices if d.name in module_of]
            c0, w0 = cpu_seconds(proc.pid), time.perf_counter()
            await asyncio.gather(*(scrape(d) for d in devices))
            wall, cpu = time.perf_counter() - w0, cpu_seconds(proc.pid) - c0
        return {"tool": "snmp_exporter " + _exporter_version(exe), "devices": len(devices),
                "modules": len(cfg["modules"]), "concurrency": concurrency, "wall_s": wall, "cpu_s": cpu,
                "varbinds": sum(per_device.values()), "per_device_varbinds": per_device,
                "failures": len(failures), "failure_examples": dict(list(failures.items())[:3]),
                "maxrss_bytes": peak_rss_bytes(proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _exporter_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"version (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "?"


# ------------------------------------------------------------------------- the agent's SNMP client alone


async def run_client(estate: Estate, plan: dict[str, dict[str, Any]], *, concurrency: int, max_repetitions: int,
                     snmp_timeout: float = 5.0, retries: int = 1) -> dict[str, Any]:
    """The SNMP part of the agent's work, without the rest: the agent's own client (``FastSnmpClient``) runs
    each device's profile fetch (the same GETs and walks as a poll) and nothing else: no profile evaluation,
    no rules, no store. It tells how the agent's CPU splits between the wire and what it does with values."""
    from bench.agent_side import DeviceLog, RecordingClient
    from callipso_agent.config.models import SnmpV2Credential
    from callipso_agent.config.secrets import Secret, SecretRef
    from callipso_agent.paths import collectors_dir
    from callipso_agent.profiles import load_profiles
    from callipso_agent.profiles.engine import fetch
    from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine

    profiles = load_profiles(collectors_dir())
    engine = FastSnmpEngine(max_concurrency=concurrency)
    cred = SnmpV2Credential(version="2c", community=SecretRef(env="UNUSED"))  # type: ignore[arg-type]
    sem = asyncio.Semaphore(concurrency)
    per_device: dict[str, int] = {}
    failures: dict[str, str] = {}
    devices = [d for d in estate.devices if d.name in plan and plan[d.name].get("profile")]

    async def one(dev: BenchDevice) -> None:
        note = DeviceLog()  # counted as in the agent's run (the same wrapper)
        client = RecordingClient(FastSnmpClient(engine, dev.address, dev.port, cred,
                                                {"community": Secret(dev.community)}, timeout=snmp_timeout,
                                                retries=retries, max_repetitions=max_repetitions), note)
        async with sem:
            try:
                await fetch(client, profiles.get(plan[dev.name]["profile"]))
            except Exception as err:
                failures[dev.name] = f"{type(err).__name__}: {err}"
                return
        per_device[dev.name] = note.distinct()[0]

    try:
        t0, w0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(d) for d in devices))
        wall, cpu = time.perf_counter() - w0, time.process_time() - t0
    finally:
        engine.close()
    return {"tool": "the agent's SNMP client alone (profile fetch, nothing after)", "devices": len(devices),
            "concurrency": concurrency, "wall_s": wall, "cpu_s": cpu, "varbinds": sum(per_device.values()),
            "per_device_varbinds": per_device, "failures": len(failures),
            "failure_examples": dict(list(failures.items())[:3])}


def _only(estate: Estate, names: Iterable[str] | None) -> Estate:
    if names is None:
        return estate
    keep = set(names)
    return Estate(estate.workdir, [d for d in estate.devices if d.name in keep])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one peer on the bench estate (prints JSON)")
    p.add_argument("peer", choices=["netsnmp", "exporter", "client"])
    p.add_argument("--workdir", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-repetitions", type=int, default=25)
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    estate = Estate.load(workdir)
    plan = load_plan(Path(args.plan))
    if args.peer == "netsnmp":
        out = asyncio.run(run_netsnmp(estate, plan, parallel=args.parallel, max_repetitions=args.max_repetitions))
    elif args.peer == "client":
        out = asyncio.run(run_client(estate, plan, concurrency=args.concurrency,
                                     max_repetitions=args.max_repetitions))
    else:
        out = asyncio.run(run_exporter(estate, plan, workdir, concurrency=args.concurrency,
                                       max_repetitions=args.max_repetitions))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
