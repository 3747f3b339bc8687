"""Figures, ratios and consistency checks of a bench run; the Markdown table; py-spy summaries."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

SCHEMA = "callipso-bench/1"
CYCLE_S = 300.0  # the 5-minute cycle of the targets
TARGET_DEVICES = 10_000


def quantiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]

    return {"n": len(s), "p50": q(0.5), "p99": q(0.99), "max": s[-1], "mean": statistics.fmean(s)}


def count_by(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------- derived


def agent_figures(a: dict[str, Any], cores: int) -> dict[str, Any]:
    c = a["cycle"]
    polls = max(c["devices"], 1)
    cpu = max(c["cpu_s"], 1e-9)
    per_poll = c["cpu_s"] / polls
    return {
        "cycle_wall_s": c["wall_s"],
        "cycle_cpu_s": c["cpu_s"],
        "cpu_s_per_device_poll": per_poll,
        "varbinds": c["varbinds"],
        "varbinds_per_s_per_core": c["varbinds"] / cpu,
        "cpu_share_5min_cycle_at_10k": per_poll * TARGET_DEVICES / (CYCLE_S * cores),
        "maxrss_bytes": a.get("maxrss_bytes"),
    }


def peer_figures(p: dict[str, Any], cpu_key: str = "cpu_s") -> dict[str, Any]:
    cpu = max(p.get(cpu_key, 0.0), 1e-9)
    return {"wall_s": p.get("wall_s"), "cpu_s": p.get(cpu_key), "varbinds": p.get("varbinds"),
            "varbinds_per_s_per_core": (p.get("varbinds") or 0) / cpu,
            "cpu_s_per_device_poll": p.get(cpu_key, 0.0) / max(p.get("devices") or 1, 1)}


def checks(result: dict[str, Any]) -> dict[str, bool]:
    """What a run must show to be a valid measurement (not a speed judgement)."""
    out: dict[str, bool] = {}
    n = result["devices"]
    for a in result["agent"]:
        tag = a["client"]
        out[f"{tag}: every device polled once, without error"] = (a["cycle"]["devices"] == n
                                                                   and a["cycle"]["ok"] == n)
        for wave, t in a.get("trap_to_incident", {}).items():
            out[f"{tag}: every trap opened its incident ({wave.replace('_', ' ')})"] = (
                t["sent"] > 0 and t["incidents"] == t["sent"])
        if "threshold_to_incident" in a:
            t = a["threshold_to_incident"]
            out[f"{tag}: every threshold crossing opened its incident"] = (t["devices"] > 0
                                                                           and t["incidents"] == t["devices"])
    if len(result["agent"]) > 1:
        vbs = {a["client"]: a["cycle"]["varbinds"] for a in result["agent"]}
        out["clients read the same varbinds"] = len(set(vbs.values())) == 1
    for name, p in result["peers"].items():
        if "error" in p:
            out[f"{name}: ran"] = False
            continue
        out[f"{name}: no failure"] = not p.get("failures")
        out[f"{name}: same varbinds as the agent, device by device"] = p.get("mismatched_devices") == []
    return out


def compare_devices(plan: dict[str, dict[str, Any]], per_device: dict[str, int]) -> list[str]:
    return sorted(d for d, p in plan.items() if per_device.get(d) != p["varbinds"])


def strip(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the per-device lists (kept in the work folder)."""
    out = dict(result)
    out["peers"] = {k: {kk: vv for kk, vv in v.items() if kk != "per_device_varbinds"}
                    for k, v in result["peers"].items()}
    return out


# ----------------------------------------------------------------------------------------- Markdown


def _ms(x: float | None) -> str:
    return "–" if x is None else (f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s")


def _s(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} s"


def _n(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}".replace(",", " ")


def _mib(b: int | None) -> str:
    return "–" if not b else f"{b / 2**20:.0f} MiB"


def _ratio(a: float, b: float) -> str:
    return "–" if not b else f"{a / b:.2f}×"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    cores = int(m.get("cores") or 1)
    lines = [f"## Benchmark: {result['devices']} devices ({result['date']})", "",
             f"Machine: {m.get('cpu_model')}, {cores} cores, {(m.get('memory_bytes') or 0) / 2**30:.0f} GiB, "
             f"Linux {m.get('kernel')}, Python {m.get('python')}. Responder: {result['responder']} (its CPU is "
             f"not counted). Concurrency {result['settings']['max_concurrency']}, max-repetitions "
             f"{result['settings']['max_repetitions']}.", ""]
    peers = {k: v for k, v in result["peers"].items() if "error" not in v}
    head = "| figure | " + " | ".join(f"agent ({a['client']})" for a in result["agent"]) + " |"
    lines += [head, "|---|" + "---|" * len(result["agent"])]
    figs = [(a, agent_figures(a, cores)) for a in result["agent"]]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(a, f) for a, f in figs) + " |")

    row("full poll cycle (wall)", lambda a, f: _s(f["cycle_wall_s"]))
    row("first cycle, with profile detection", lambda a, f: _s(a["first_cycle"]["wall_s"]))
    row("CPU per cycle", lambda a, f: _s(f["cycle_cpu_s"]))
    row("CPU per device-poll", lambda a, f: _ms(f["cpu_s_per_device_poll"]))
    row("varbinds per cycle", lambda a, f: _n(f["varbinds"]))
    row("varbinds/s per core", lambda a, f: _n(f["varbinds_per_s_per_core"]))
    row("CPU share, 10,000 devices / 5 min", lambda a, f: f"{f['cpu_share_5min_cycle_at_10k'] * 100:.0f} %")
    row("peak RSS", lambda a, f: _mib(f["maxrss_bytes"]))
    row("event-loop lag p50 / p99 / max", lambda a, f: " / ".join(
        _ms(a["cycle"]["event_loop_lag_s"].get(k)) for k in ("p50", "p99", "max")))
    row("garbage collector during the cycle: full collections, longest", lambda a, f: (
        f"{a['cycle']['gc']['full_collections']}, {_ms(a['cycle']['gc']['full_max_s'])}"
        if "gc" in a["cycle"] else "–"))
    row(f"/metrics scrape at {result['devices']} devices (p50 / max)", lambda a, f: " / ".join(
        _ms(a["metrics_scrape"]["wall_s"].get(k)) for k in ("p50", "max"))
        + f", {_n(a['metrics_scrape']['samples'])} samples")
    def traps(wave: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
        def cell(a: dict[str, Any], f: dict[str, Any]) -> str:
            q = a.get("trap_to_incident", {}).get(wave, {}).get("latency_s", {})
            return " / ".join(_ms(q.get(k)) for k in ("p50", "p99"))
        return cell

    spread = (result["agent"] or [{}])[0].get("paced_spread_s", 0)
    row("trap → incident stored p50 / p99, during a cycle run flat out", traps("flat_out"))
    row(f"trap → incident stored p50 / p99, polls spread over {spread:.0f} s", traps("paced"))
    row("polled threshold crossing → incident p50 / p99", lambda a, f: " / ".join(
        _ms(a.get("threshold_to_incident", {}).get("latency_s", {}).get(k)) for k in ("p50", "p99")))
    for name, p in peers.items():
        pf = peer_figures(p)
        row("varbinds/s/core ratio agent / its SNMP client alone" if name == "client"
            else f"varbinds/s/core ratio agent / {name}",
            lambda a, f, pf=pf: _ratio(f["varbinds_per_s_per_core"], pf["varbinds_per_s_per_core"]))
        if name == "netsnmp" and "whole_tree" in p:
            wf = peer_figures(p["whole_tree"])
            row("varbinds/s/core ratio agent / snmpbulkwalk of the whole tree",
                lambda a, f, wf=wf: _ratio(f["varbinds_per_s_per_core"], wf["varbinds_per_s_per_core"]))
    lines.append("")
    if peers:
        lines += ["| peer, same devices and OIDs | wall | CPU | CPU per device-poll | varbinds | varbinds/s per core "
                  "| peak RSS |", "|---|---|---|---|---|---|---|"]
        for name, p in peers.items():
            pf = peer_figures(p)
            lines.append(f"| {p.get('tool', name)} | {_s(pf['wall_s'])} | {_s(pf['cpu_s'])} | "
                         f"{_ms(pf['cpu_s_per_device_poll'])} | {_n(pf['varbinds'])} | "
                         f"{_n(pf['varbinds_per_s_per_core'])} | {_mib(p.get('maxrss_bytes'))} |")
            if name == "netsnmp" and "whole_tree" in p:
                wt = p["whole_tree"]
                wf = peer_figures(wt)
                lines.append(f"| net-snmp, one snmpbulkwalk of the whole tree per device ({wt['processes']} "
                             f"processes, other OIDs) | {_s(wf['wall_s'])} | {_s(wf['cpu_s'])} | "
                             f"{_ms(wf['cpu_s_per_device_poll'])} | {_n(wf['varbinds'])} | "
                             f"{_n(wf['varbinds_per_s_per_core'])} | |")
        lines.append("")
    bad = [k for k, v in result.get("checks", {}).items() if not v]
    lines.append("Checks: " + ("all passed" if not bad else "FAILED: " + "; ".join(bad)) + ".")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- py-spy


def top_frames(folded: Path, n: int, *, inclusive: bool = False) -> list[tuple[str, float]]:
    """The ``n`` heaviest frames of a py-spy ``raw`` (folded stacks) file, as shares of all samples: by self
    time (the leaf frame), or inclusive (any frame of the stack, counted once per stack)."""
    if not folded.exists():
        return []
    counts: dict[str, int] = {}
    total = 0
    for line in folded.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack or not num.isdigit():
            continue
        k = int(num)
        total += k
        frames = stack.split(";")
        keys = set(frames) if inclusive else {frames[-1]}
        for f in keys:
            counts[f] = counts.get(f, 0) + k
    if not total:
        return []
    return [(f, c / total) for f, c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]
