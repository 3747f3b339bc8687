"""Soak: the lab agent (``callipso-agent demo``: lab + daemon in one process) runs for a long time while faults
come and go; its resident memory, open file descriptors, threads, asyncio tasks and event-loop lag are
sampled into a CSV, and a Markdown summary gives first/last/max and the slope of each series.

    make soak                                    # 1 h (CALLIPSO_SOAK_SECONDS), results under results/soak-*/
    python -m tests.reliability.soak --seconds 1800 --every 10 --out results/soak

The process measured is the demo process: it hosts the agent and the lab's SSH emulators and fault switch
(snmpsim and the lab's network front are separate processes, sampled too). The slow test
``test_soak.py`` runs a 60 s form and asserts the series stay flat.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers.lab_agent import TEST_SITES, LabAgent

COLUMNS = ("t_s", "rss_mib", "fds", "threads", "tasks", "loop_lag_max_s", "loop_lag_mean_s", "devices_up",
           "polls_total", "lab_rss_mib", "fault_on")
#: series whose growth would be a leak
WATCHED = ("rss_mib", "fds", "threads", "tasks", "loop_lag_max_s", "lab_rss_mib")
# faults switched on and off in turn during the soak: a site cut off (SNMP drops, SSH hangs, site incident),
# an SSH server dropping connections mid-command, answers after the timeout
FAULT_CYCLE: tuple[tuple[str, str], ...] = (
    ("unreachable", "GARDANNE-MDS"),
    ("ssh_drop", "ov8770-hd13"),
    ("snmp_late", "probe-aix-mds"),
)


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def _sum_metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


@dataclass
class Sampler:
    """One row per call from the demo process and its children (snmpsim shards, network front)."""

    lab: LabAgent
    pid: int
    started: float = field(default_factory=time.monotonic)
    _lag: tuple[float, float] = (0.0, 0.0)  # (sum, count) of the lag histogram at the previous sample

    def row(self, fault_on: bool) -> dict[str, float]:
        text = self.lab.metrics_text()
        lag_sum = _metric(text, "callipso_event_loop_lag_seconds_sum") or 0.0
        lag_count = _metric(text, "callipso_event_loop_lag_seconds_count") or 0.0
        d_sum, d_count = lag_sum - self._lag[0], lag_count - self._lag[1]
        self._lag = (lag_sum, lag_count)
        lab_rss = 0.0
        for child in _children(self.pid):
            try:
                lab_rss += _rss_mib(child)
            except OSError:
                continue
        return {
            "t_s": round(time.monotonic() - self.started, 1),
            "rss_mib": round(_rss_mib(self.pid), 2),
            "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
            "threads": len(os.listdir(f"/proc/{self.pid}/task")),
            "tasks": _metric(text, "callipso_asyncio_tasks") or 0.0,
            "loop_lag_max_s": round(_metric(text, "callipso_event_loop_lag_max_seconds") or 0.0, 4),
            "loop_lag_mean_s": round(d_sum / d_count, 4) if d_count > 0 else 0.0,
            "devices_up": _sum_metric(text, "callipso_device_up"),
            "polls_total": _sum_metric(text, "callipso_polls_total"),
            "lab_rss_mib": round(lab_rss, 2),
            "fault_on": 1.0 if fault_on else 0.0,
        }


def slope_per_hour(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per hour; 0 for fewer than two points."""
    if len(ts) < 2 or len(set(ts)) < 2:
        return 0.0
    return statistics.linear_regression(ts, ys).slope * 3600.0


@dataclass(frozen=True)
class SeriesSummary:
    name: str
    first: float
    last: float
    low: float
    high: float
    slope_h: float
    mean_first_half: float
    mean_second_half: float


def summarise(rows: Sequence[dict[str, float]], warmup: float) -> dict[str, SeriesSummary]:
    """Per watched series, over the rows after ``warmup`` seconds (all rows if none is after it)."""
    kept = [r for r in rows if r["t_s"] >= warmup] or list(rows)
    out = {}
    for name in WATCHED:
        ts = [r["t_s"] for r in kept]
        ys = [r[name] for r in kept]
        half = max(1, len(ys) // 2)
        out[name] = SeriesSummary(name, ys[0], ys[-1], min(ys), max(ys), slope_per_hour(ts, ys),
                                  statistics.fmean(ys[:half]), statistics.fmean(ys[half:] or ys[:half]))
    return out


def run_soak(workdir: Path, seconds: float, every: float, *, interval: float = 10.0, sites: str = TEST_SITES,
             fault_period: float = 300.0, warmup: float = 120.0,
             progress: Callable[[dict[str, float]], None] | None = None) -> tuple[list[dict[str, float]], Path]:
    """Run the lab agent for ``seconds`` (after it is up), sampling every ``every`` s; returns rows and the CSV."""
    workdir.mkdir(parents=True, exist_ok=True)
    lab = LabAgent(workdir, interval=interval, sites=sites)
    lab.start()
    rows: list[dict[str, float]] = []
    csv_path = workdir / "soak.csv"
    try:
        lab.wait_all_up(240)
        assert lab.proc is not None
        sampler = Sampler(lab, lab.proc.pid)
        faults_on = False
        next_toggle = time.monotonic() + fault_period / 2
        end = time.monotonic() + seconds
        with csv_path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            while True:
                row = sampler.row(faults_on)
                rows.append(row)
                writer.writerow(row)
                f.flush()
                if progress is not None:
                    progress(row)
                now = time.monotonic()
                if now >= end:
                    break
                if fault_period > 0 and now >= next_toggle:
                    for fault, target in FAULT_CYCLE:
                        (lab.clear(target, fault) if faults_on else lab.fault(fault, target))
                    faults_on = not faults_on
                    next_toggle = now + fault_period / 2
                time.sleep(max(0.0, min(every, end - time.monotonic())))
    finally:
        lab.stop()
    write_summary(workdir, rows, warmup=warmup, every=every, interval=interval, sites=sites,
                  fault_period=fault_period)
    return rows, csv_path


def _machine() -> str:
    load = os.getloadavg()
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return (f"{platform.node() or 'host'}: {os.cpu_count()} CPUs, {mem}, kernel {platform.release()}, "
            f"Python {platform.python_version()}, load average at the end {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f}")


def write_summary(workdir: Path, rows: Sequence[dict[str, float]], *, warmup: float, every: float,
                  interval: float, sites: str, fault_period: float) -> Path:
    out = workdir / "summary.md"
    if not rows:
        out.write_text("# Soak\n\nNo sample taken (the lab agent did not come up).\n", encoding="utf-8")
        return out
    s = summarise(rows, warmup)
    duration = rows[-1]["t_s"]
    lines = [
        f"# Soak of the lab agent, {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"- duration {duration / 60:.1f} min, {len(rows)} samples every {every:g} s; series summarised after a "
        f"{warmup:g} s warm-up",
        f"- lab: sites {sites}, poll interval {interval:g} s; faults {', '.join(f'{f} {t}' for f, t in FAULT_CYCLE)} "
        f"switched on and off every {fault_period / 2:g} s" if fault_period > 0 else "- no faults",
        f"- machine: {_machine()}",
        f"- devices up at the end: {rows[-1]['devices_up']:.0f}; polls completed: {rows[-1]['polls_total']:.0f}",
        "",
        "| series | first | last | min | max | mean 1st half | mean 2nd half | slope / h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in WATCHED:
        x = s[name]
        lines.append(f"| {name} | {x.first:g} | {x.last:g} | {x.low:g} | {x.high:g} | {x.mean_first_half:.2f} | "
                     f"{x.mean_second_half:.2f} | {x.slope_h:+.3f} |")
    lines += ["", "`rss_mib`, `fds`, `threads`, `tasks`: the demo process (agent + SSH emulators + fault switch); "
              "`lab_rss_mib`: its children (snmpsim shards, network front). `loop_lag_max_s`: largest event-loop "
              "lag over the agent's last 60 s. Raw samples: `soak.csv`.", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CALLIPSO_SOAK_SECONDS", "3600")))
    parser.add_argument("--every", type=float, default=float(os.environ.get("CALLIPSO_SOAK_EVERY", "10")))
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval of the lab devices")
    parser.add_argument("--fault-period", type=float, default=300.0, help="faults on then off over this period")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/soak-<time>)")
    args = parser.parse_args(argv)
    out = args.out or Path("results") / f"soak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    def show(row: dict[str, float]) -> None:
        print(" ".join(f"{k}={row[k]:g}" for k in COLUMNS), flush=True)

    rows, csv_path = run_soak(out.resolve(), args.seconds, args.every, interval=args.interval,
                              fault_period=args.fault_period, progress=show)
    print(f"\n{len(rows)} samples in {csv_path}; summary in {csv_path.parent / 'summary.md'}")
    print((csv_path.parent / "summary.md").read_text(encoding="utf-8"))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
