"""Run the benchmark: ``python -m bench.run --devices 2000`` (or ``make bench N=2000``).

Builds the estate, starts the responder, runs the agent (each SNMP client in turn) in its own process through
its cycles, its ``/metrics`` scrapes, traps and a polled threshold crossing, then the peers on the same
devices and OIDs; prints the table and writes ``bench/results/<date>-n<N>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench import report
from bench.estate import COMMUNITY, UPS_FAMILIES, Estate, build
from bench.procstat import machine_facts, peak_rss_bytes
from bench.responder import Responder, SnmpsimResponder, responder_cpu
from bench.traps import TrapSender
from bench.udpsim_front import UdpsimResponder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
THRESHOLD_RULE = "ups_on_battery"
THRESHOLD_FAULT = "on_battery"
TRAP_RULE = "ups_trap_alarm"  # shipped rule (checks/rules/ups.yaml)


def fast_client_available() -> bool:
    if importlib.util.find_spec("callipso_agent.transports.fastsnmp") is None:
        return False
    from callipso_agent.config.models import SnmpSettings

    return "client" in SnmpSettings.model_fields


def plays_threshold_fault(estate: Estate, dev: Any) -> bool:
    """The on_battery fault moves ups_on_battery only where the recording has an output-source OID, and is the
    only change only where that source is normal(3) (a UPS recorded on bypass already has another problem)."""
    text = estate.recording_path(dev).read_text(encoding="utf-8", errors="replace")
    return (any(f"\n{oid}|2|3\n" in text for oid in ("1.3.6.1.2.1.33.1.4.1.0", "1.3.6.1.4.1.534.1.4.5.0"))
            or "\n1.3.6.1.4.1.705.1.7.3.0|2|2\n" in text)  # MGE: upsmgOutputOnBattery no(2)


def make_responder(kind: str, estate: Estate) -> Responder:
    if kind == "udpsim":
        return UdpsimResponder(estate)
    return SnmpsimResponder(estate)


class AgentProcess:
    """``python -m bench.agent_side`` (or another ``module`` speaking the same protocol) driven by JSON lines:
    one command per line on its stdin, one answer per line on its stdout."""

    def __init__(self, workdir: Path, config: Path, tag: str, *, module: str = "bench.agent_side",
                 args: Sequence[str] = (), stderr_name: str | None = None) -> None:
        self.err: IO[bytes] = open(workdir / (stderr_name or f"agent-{tag}.stderr"), "wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--workdir", str(workdir),
                                      "--config", str(config), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, env=env, cwd=ROOT)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the agent process stopped (exit {self.proc.wait()}); see {self.err.name}")
        data: dict[str, Any] = json.loads(line)
        return data

    def ask(self, cmd: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **kw}) + "\n").encode())
        self.proc.stdin.flush()
        return self._read()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.ask("stop")
                self.proc.wait(30)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        self.err.close()


def profile_cycle(agent: AgentProcess, out: Path) -> dict[str, Any]:
    """One more cycle under py-spy (sampling from outside); the folded stacks and the top frames."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists() and shutil.which(spy) is None:
        return {"skipped": "py-spy not installed (pip install py-spy)"}
    proc = subprocess.Popen([spy, "record", "-p", str(agent.pid), "-f", "raw", "-o", str(out), "-r", "200",
                             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    cycle = agent.ask("cycle")
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    return {"folded": str(out), "cycle_wall_s": cycle["wall_s"], "top_self": report.top_frames(out, 15),
            "top_inclusive": report.top_frames(out, 25, inclusive=True)}


def bench_client(client: str | None, estate: Estate, responder: Responder, args: argparse.Namespace,
                 trap_devices: Sequence[Any], threshold_devices: Sequence[Any]) -> dict[str, Any]:
    from callipso_agent.lab.snmpsim import free_tcp_port, free_udp_port

    tag = client or "pysnmp"
    cfg = estate.write_config(http_port=free_tcp_port(), trap_port=free_udp_port(),
                              max_concurrency=args.max_concurrency, max_repetitions=args.max_repetitions,
                              client=client)
    t0 = time.perf_counter()
    agent = AgentProcess(estate.workdir, cfg, tag)
    out: dict[str, Any] = {"client": tag, "startup_s": time.perf_counter() - t0, "devices": agent.ready["devices"]}
    try:
        out["first_cycle"] = agent.ask("cycle")  # includes profile detection
        # traps in two waves: during a cycle run flat out (every device polled as fast as the machine goes: the
        # worst case), then during a cycle spread over a minute (the scheduler's steady state, 5x the polling
        # rate of a 5-minute interval)
        waves = {"flat_out": list(trap_devices[0::2]), "paced": list(trap_devices[1::2])}
        out["paced_spread_s"] = args.paced_spread
        for wave, devices in waves.items():
            spread = 0.0 if wave == "flat_out" else args.paced_spread
            expected = out["first_cycle"]["wall_s"] if wave == "flat_out" else spread
            sender = None
            if devices and agent.ready.get("trap_port"):
                period = max(expected, 1.0) / max(len(devices), 1) * 0.5
                sender = TrapSender(devices, COMMUNITY, ("127.0.0.1", agent.ready["trap_port"]), period)
                sender.start()
            r0 = responder_cpu(responder)
            key = "cycle" if wave == "flat_out" else "paced_cycle"
            out[key] = agent.ask("cycle", spread=spread)
            if wave == "flat_out":
                out["responder_cpu_s"] = responder_cpu(responder) - r0
            if sender is not None:
                sender.join(120)
                time.sleep(2.0)
                commits = {(d, r): t for d, r, t in agent.ask("incidents")["commits"]}
                lat = [commits[(n, TRAP_RULE)] - t for n, t in sender.sent.items() if (n, TRAP_RULE) in commits]
                out.setdefault("trap_to_incident", {})[wave] = {
                    "sent": len(sender.sent), "incidents": len(lat), "latency_s": report.quantiles(lat)}
        plan_path = estate.workdir / f"plan-{tag}.json"
        agent.ask("plan", path=str(plan_path))
        out["plan"] = str(plan_path)
        out["metrics_scrape"] = agent.ask("scrape", times=5)
        if threshold_devices:
            responder.set_fault(list(threshold_devices), THRESHOLD_FAULT)
            try:
                out["threshold_to_incident"] = agent.ask("threshold", devices=[d.name for d in threshold_devices],
                                                         rule=THRESHOLD_RULE, hold=60)
            finally:
                responder.set_fault(list(threshold_devices), None)
        if args.profile:
            out["profile"] = profile_cycle(agent, estate.workdir / f"profile-{tag}.txt")
        usage = agent.ask("usage")
        out["maxrss_bytes"] = max(usage["maxrss_bytes"], peak_rss_bytes(agent.pid))
    finally:
        agent.stop()
    return out


def run_peer(peer: str, estate: Estate, plan: str, args: argparse.Namespace) -> dict[str, Any]:
    if peer == "netsnmp" and len(estate.devices) > args.netsnmp_devices:
        data = json.loads(Path(plan).read_text(encoding="utf-8"))
        step = len(estate.devices) / args.netsnmp_devices
        keep = {estate.devices[int(i * step)].name for i in range(args.netsnmp_devices)}
        plan = str(Path(plan).with_suffix(".netsnmp.json"))
        Path(plan).write_text(json.dumps({k: v for k, v in data.items() if k in keep}), encoding="utf-8")
    cmd = [sys.executable, "-m", "bench.peers", peer, "--workdir", str(estate.workdir), "--plan", plan,
           "--parallel", str(os.cpu_count() or 2), "--concurrency", str(args.max_concurrency),
           "--max-repetitions", str(args.max_repetitions)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         check=False)
    if res.returncode != 0:
        return {"error": res.stderr[-2000:]}
    data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", "-n", type=int, default=2000)
    p.add_argument("--clients", default="auto", help="fast,pysnmp | pysnmp | fast | auto (every client available)")
    p.add_argument("--responder", choices=["auto", "udpsim", "snmpsim"], default="auto",
                   help="udpsim (callipso_agent.lab.udpsim, the default) or snmpsim (small estates)")
    p.add_argument("--peers", default="client,netsnmp,exporter",
                   help="comma-separated: client (the agent's SNMP client alone), netsnmp, exporter (or none)")
    p.add_argument("--max-concurrency", type=int, default=64, help="agent.snmp.max_concurrency")
    p.add_argument("--max-repetitions", type=int, default=25, help="agent.snmp.max_repetitions")
    p.add_argument("--trap-samples", type=int, default=200, help="UPS traps, half during a cycle run flat out, "
                   "half during a paced cycle")
    p.add_argument("--paced-spread", type=float, default=60.0,
                   help="seconds over which the paced cycle spreads its polls")
    p.add_argument("--threshold-samples", type=int, default=50)
    p.add_argument("--netsnmp-devices", type=int, default=400,
                   help="net-snmp runs one process per column: on at most this many devices (a sample)")
    p.add_argument("--profile", action="store_true", help="one more cycle under py-spy; top frames in the results")
    p.add_argument("--workdir", help="keep the estate, logs and plans here (default: a temporary folder)")
    p.add_argument("--out", default=str(RESULTS), help="results folder ('-' to write nothing)")
    p.add_argument("--port", type=int, default=16100, help="the devices' UDP port (first port for snmpsim)")
    args = p.parse_args(argv)

    kind = args.responder
    if kind == "auto":
        kind = "udpsim"
    if kind == "snmpsim" and args.devices > 300:
        p.error("snmpsim serves small estates only (it is slow and keeps 31 recordings open): use udpsim")
    clients: list[str | None]
    if args.clients == "auto":
        clients = ["fast", "pysnmp"] if fast_client_available() else [None]
    else:
        clients = [None if c == "pysnmp" and not fast_client_available() else c for c in args.clients.split(",")]

    tmp = None
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        if workdir.exists():
            shutil.rmtree(workdir)
    else:
        tmp = tempfile.mkdtemp(prefix="callipso-bench-")
        workdir = Path(tmp)
    estate = build(workdir, args.devices, args.port, layout="community" if kind == "snmpsim" else "address")
    responder = make_responder(kind, estate)
    started = datetime.now(UTC)
    result: dict[str, Any] = {"schema": report.SCHEMA, "date": started.isoformat(timespec="seconds"),
                              "machine": machine_facts(), "devices": len(estate.devices), "responder": kind,
                              "settings": {"max_concurrency": args.max_concurrency,
                                           "max_repetitions": args.max_repetitions, "interval_s": 300},
                              "families": report.count_by(d.family for d in estate.devices),
                              "agent": [], "peers": {}}
    try:
        responder.start()
        responder.wait_ready()
        ups = [d for d in estate.devices if d.family in UPS_FAMILIES]
        unique = len({d.address for d in estate.devices}) == len(estate.devices)
        trap_devices = ups[: min(args.trap_samples, len(ups) // 2)] if unique else []
        rest = [d for d in ups[len(trap_devices) :] if plays_threshold_fault(estate, d)]
        threshold_devices = rest[: args.threshold_samples]
        for client in clients:
            print(f"agent ({client or 'pysnmp'}) on {len(estate.devices)} devices...", file=sys.stderr, flush=True)
            result["agent"].append(bench_client(client, estate, responder, args, trap_devices, threshold_devices))
        plan = result["agent"][0]["plan"]
        for peer in [x for x in args.peers.split(",") if x and x != "none"]:
            print(f"{peer} on the same devices and OIDs...", file=sys.stderr, flush=True)
            res = run_peer(peer, estate, plan, args)
            if "error" not in res:
                full = json.loads(Path(plan).read_text(encoding="utf-8"))
                done = res.get("per_device_varbinds", {})
                mismatched = report.compare_devices({k: v for k, v in full.items() if k in done}, done)
                res["sampled"] = len(done) < len(full)
                res["mismatched_devices"] = mismatched[:20]
                res["mismatched_count"] = len(mismatched)
            result["peers"][peer] = res
    finally:
        responder.stop()
    result["duration_s"] = (datetime.now(UTC) - started).total_seconds()
    result["checks"] = report.checks(result)
    text = report.markdown(result)
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{started:%Y-%m-%d}-n{len(estate.devices)}"
        (out / f"{stem}.json").write_text(json.dumps(report.strip(result), indent=1), encoding="utf-8")
        (out / f"{stem}.md").write_text(text, encoding="utf-8")
        print(f"written: {out / stem}.json, .md", file=sys.stderr)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
