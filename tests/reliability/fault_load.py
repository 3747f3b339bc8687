"""Fault suite under load: thousands of simulated devices on loopback, 30 % of them misbehaving.

    make fault-load                                          # 2,000 devices, 600 s, 60 s interval
    python -m tests.reliability.fault_load --devices 2000 --duration 600 --interval 60 [--out DIR]

The estate is the benchmark's (:mod:`bench.estate`: sites of a UPS, a temperature probe and an analog
gateway, every tenth site an SBC and an OXE too, each device serving a whole real recording on its own
loopback address), served by ``callipso_agent.lab.udpsim`` in a process of its own
(:mod:`bench.udpsim_front`). The real daemon runs it in another process with its own scheduler
(:mod:`tests.reliability.fault_load_agent`). Once every device has answered a first poll, a share of the
devices starts misbehaving, by class (:data:`FAULT_CLASSES`): whole sites silent, devices that never answer,
answer after the agent's timeout and retry, answer truncated PDUs or random bytes, answer another community
only, answer genErr, or whose SNMP agent restarts periodically (sysUpTime back to 0).

Then, over ``duration`` seconds, the run measures:

* per healthy device, each poll's start against the time the scheduler meant it to start (lateness), the
  gaps between consecutive starts, the polls refused because the previous one was still running, and any
  error;
* the agent's asyncio tasks, open fds, threads and RSS over time;
* each misbehaving device's state and reason (``/api/v1/devices``) against its class's expected reason;
* the incidents opened, per site: an all-down site must give one site incident and nothing else.

It writes ``fault-load.json`` and ``fault-load.md`` (figures and checks) and exits 1 if a check fails.
The reduced CI form is ``test_fault_load.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.estate import BenchDevice, Estate, build
from bench.procstat import machine_facts
from bench.run import AgentProcess
from bench.udpsim_front import UdpsimResponder
from callipso_agent.lab.snmpsim import free_tcp_port, free_udp_port

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "callipso-fault-load/1"
JITTER = 0.1  # the agent's default schedule jitter (agent.jitter), a fraction of the interval
SITE_DOWN = "site_down"
RESTART = "restart"
SYS_UPTIME_LINE = "1.3.6.1.2.1.1.3.0|"
# the incidents a device that stops answering, or answers nonsense, can open (checks/rules/devices.yaml, site.yaml)
REACHABILITY_RULES = frozenset({"site_unreachable", "device_unreachable", "device_parse_error", "device_auth_failed",
                                "device_no_profile", "device_rebooted"})


@dataclass(frozen=True)
class FaultClass:
    name: str
    faults: dict[str, Any]  # udpsim's Faults for the device (restart: none, the runner restarts it)
    reasons: frozenset[str]  # the error kinds the agent must report; empty: the device must be up
    what: str


def fault_classes(timeout: float, retries: int) -> dict[str, FaultClass]:
    """The misbehaviour classes and the reason the agent must give for each."""
    late = timeout * (retries + 1) + 1.0
    classes = [
        FaultClass(SITE_DOWN, {"drop": 1.0}, frozenset({"timeout"}),
                   "every device of the site silent (site cut off)"),
        FaultClass("no_answer", {"drop": 1.0}, frozenset({"timeout"}), "never answers"),
        FaultClass("late", {"delay": late}, frozenset({"timeout"}),
                   f"answers {late:g} s late, after the agent's timeout and retries"),
        FaultClass("truncated", {"malformed": "truncated"}, frozenset({"parse_error"}),
                   "answers cut short (3 bytes missing, header intact)"),
        FaultClass("garbage", {"malformed": "garbage"}, frozenset({"timeout"}),
                   "answers random bytes (no request id to match)"),
        FaultClass("wrong_community", {"wrong_community": "not-the-agents"}, frozenset({"timeout"}),
                   "answers another community only (v2c: silence to ours)"),
        FaultClass("error_status", {"error_status": 5}, frozenset({"parse_error"}), "answers genErr to everything"),
        FaultClass(RESTART, {}, frozenset(), "SNMP agent restarts periodically (sysUpTime back to 0)"),
    ]
    return {c.name: c for c in classes}


@dataclass
class Options:
    devices: int = 2000
    duration: float = 600.0  # seconds of misbehaviour measured
    interval: float = 60.0
    timeout: float = 5.0
    retries: int = 1
    share: float = 0.30  # misbehaving share of the estate
    down_sites: int = 0  # 0: about 2 % of the sites, at least 2
    restart_every: float = 0.0  # 0: every two intervals
    sample_every: float = 5.0
    # /metrics like a Prometheus scrape: rendering it at 2,000 devices takes ~1.5 s of the agent's event loop
    # (bench/README.md), so scraping every few seconds would measure the scrapes rather than the polls
    scrape_every: float = 30.0
    settle: float = 0.0  # after ``duration``, up to this long more until every cut-off site has its incident
    max_concurrency: int = 64
    port: int = 16161
    seed: int = 7
    workdir: Path | None = None

    @property
    def restart_period(self) -> float:
        return self.restart_every or 2 * self.interval


# ------------------------------------------------------------------------------------------------ plan


def has_uptime(estate: Estate, dev: BenchDevice) -> bool:
    text = estate.recording_path(dev).read_text(encoding="utf-8", errors="replace")
    return f"\n{SYS_UPTIME_LINE}" in text or text.startswith(SYS_UPTIME_LINE)


def plan_faults(estate: Estate, opts: Options) -> dict[str, str]:
    """Device name -> fault class for ``share`` of the estate: whole sites down first (the largest site and
    random ones), then the other classes in turn over the remaining sites, one device per site before a second
    one, never every device of a site (those sites must not look cut off)."""
    rng = random.Random(opts.seed)
    by_site: dict[str, list[BenchDevice]] = {}
    for d in estate.devices:
        by_site.setdefault(d.site, []).append(d)
    sites = sorted(by_site)
    n_down = opts.down_sites or max(2, round(len(sites) * 0.02))
    largest = max(sites, key=lambda s: (len(by_site[s]), s))
    others = [s for s in sites if s != largest]
    down = [largest, *rng.sample(others, min(n_down - 1, len(others) - 1))]
    plan = {d.name: SITE_DOWN for s in down for d in by_site[s]}
    wanted = round(opts.share * len(estate.devices)) - len(plan)
    rest = [s for s in sites if s not in down]
    rng.shuffle(rest)
    members = {s: rng.sample(by_site[s], len(by_site[s])) for s in rest}
    slots = [members[s][r] for r in range(max(len(m) for m in members.values()) - 1)
             for s in rest if r < len(members[s]) - 1]
    names = [c for c in fault_classes(opts.timeout, opts.retries) if c != SITE_DOWN]
    turn = 0
    for dev in slots[: max(wanted, 0)]:
        cls = names[turn % len(names)]
        if cls == RESTART and not has_uptime(estate, dev):
            cls = names[(turn + 1) % len(names)]  # no sysUpTime to reset: the next class instead
        else:
            turn += 1
        plan[dev.name] = cls
    return plan


# ------------------------------------------------------------------------------------------- processes


class AgentChild(AgentProcess):
    """``python -m tests.reliability.fault_load_agent`` driven by JSON lines, with its HTTP API."""

    def __init__(self, workdir: Path, config: Path, sample_every: float) -> None:
        super().__init__(workdir, config, "fault-load", module="tests.reliability.fault_load_agent",
                         args=["--sample-every", str(sample_every)], stderr_name="agent.stderr")
        self.base = f"http://127.0.0.1:{self.ready['http_port']}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=60) as resp:  # noqa: S310 - loopback
            body = resp.read()
        return body.decode() if path == "/metrics" else json.loads(body)

    def incidents(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/api/v1/incidents?state=open&limit=1000&offset={len(out)}")["incidents"]
            out += page
            if len(page) < 1000:
                return out


# -------------------------------------------------------------------------------------------- the run


_METRIC = re.compile(r"^(callipso_asyncio_tasks|callipso_event_loop_lag_max_seconds) (\S+)$", re.M)


@dataclass
class Observed:
    """What the run collected, before evaluation."""

    t_faults: float = 0.0
    t_end: float = 0.0
    warmup_s: float = 0.0
    restarts: list[float] = field(default_factory=list)
    scrapes: list[dict[str, float]] = field(default_factory=list)  # /metrics: tasks, loop lag max
    devices: list[dict[str, Any]] = field(default_factory=list)  # /api/v1/devices at the end
    incidents: list[dict[str, Any]] = field(default_factory=list)  # open incidents at the end
    probe: dict[str, Any] = field(default_factory=dict)  # the agent's schedule probe and samples
    responder: dict[str, Any] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    log_events: dict[str, int] = field(default_factory=dict)  # "level event" -> count, from the agent's log


def _wait_first_polls(agent: AgentChild, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        devs = agent.get("/api/v1/devices")["devices"]
        if all(d.get("last_success") for d in devs):
            return
        if time.monotonic() > deadline:
            missing = [d["name"] for d in devs if not d.get("last_success")]
            raise RuntimeError(f"{len(missing)} devices never answered a first poll: {missing[:10]}")
        time.sleep(2.0)


_STDLIB_LOG = re.compile(r"^(WARNING|ERROR|CRITICAL):([\w.]+):(.*)")


def log_events(path: Path, upto: int | None = None) -> dict[str, int]:
    """Warnings and errors of the agent's JSON log (the first ``upto`` bytes: what was logged before the
    agent was told to stop), counted by level and event; libraries' own log lines (``LEVEL:logger:text``)
    by level and logger."""
    counts: Counter[str] = Counter()
    with open(path, "rb") as f:
        text = f.read(upto if upto is not None else -1).decode("utf-8", errors="replace")
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            m = _STDLIB_LOG.match(line)
            if m:  # e.g. APScheduler skipping a run whose previous one still runs
                what = "skipped_max_instances" if "maximum number of running instances" in m[3] else "other"
                counts[f"{m[1].lower()} {m[2]}:{what}"] += 1
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            counts[f"{entry['level']} {entry.get('event')}"] += 1
    return dict(counts)


def _site_incidents_open(agent: AgentChild, sites: set[str]) -> bool:
    opened = {i.get("site") for i in agent.incidents() if i.get("rule") == "site_unreachable"}
    return sites <= opened


def execute(opts: Options, log: IO[str] = sys.stderr) -> tuple[Estate, dict[str, str], Observed]:
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="callipso-fault-load-"))
    estate = build(workdir, opts.devices, opts.port)
    plan = plan_faults(estate, opts)
    classes = fault_classes(opts.timeout, opts.retries)
    config = estate.write_config(http_port=free_tcp_port(), trap_port=free_udp_port(),
                                 max_concurrency=opts.max_concurrency, max_repetitions=25, interval=opts.interval,
                                 timeout=opts.timeout, retries=opts.retries)
    obs = Observed()
    responder = UdpsimResponder(estate)
    responder.start()
    agent: AgentChild | None = None
    log_size: int | None = None
    try:
        responder.wait_ready()
        t0 = time.time()
        agent = AgentChild(workdir, config, opts.sample_every)
        print(f"fault-load: {len(estate.devices)} devices, agent pid {agent.ready['pid']}, waiting for first polls",
              file=log, flush=True)
        _wait_first_polls(agent, 3 * opts.interval + 120)
        obs.warmup_s = time.time() - t0
        by_name = {d.name: d for d in estate.devices}
        for name, cls in classes.items():
            if cls.faults:
                responder.misbehave([by_name[n] for n, c in plan.items() if c == name], cls.faults)
        restarting = [by_name[n] for n, c in plan.items() if c == RESTART]
        obs.t_faults = time.time()
        print(f"fault-load: {len(plan)} devices misbehaving ({dict(Counter(plan.values()))}), "
              f"watching {opts.duration:g} s", file=log, flush=True)
        end = obs.t_faults + opts.duration
        next_restart = obs.t_faults
        next_scrape = obs.t_faults
        down_sites = {by_name[n].site for n, c in plan.items() if c == SITE_DOWN}
        while (now := time.time()) < end or (now < end + opts.settle and not _site_incidents_open(agent, down_sites)):
            if now >= next_restart and restarting:
                responder.restart(restarting)
                obs.restarts.append(now)
                next_restart = now + opts.restart_period
            if now >= next_scrape:
                text = agent.get("/metrics")
                values = {k: float(v) for k, v in _METRIC.findall(text)}
                obs.scrapes.append({"t": time.time(), **values})
                next_scrape = now + opts.scrape_every
            obs.load.append(os.getloadavg()[0])
            time.sleep(max(0.0, min(opts.sample_every, end - time.time())) if time.time() < end else 1.0)
        obs.t_end = time.time()
        log_size = (workdir / "agent.log").stat().st_size
        obs.devices = agent.get("/api/v1/devices")["devices"]
        obs.incidents = agent.incidents()
        report = workdir / "probe.json"
        agent.ask("report", path=str(report))
        obs.probe = json.loads(report.read_text(encoding="utf-8"))
        obs.responder = responder.stats()
    finally:
        if agent is not None:
            agent.stop()
        responder.stop()
    obs.log_events = log_events(workdir / "agent.log", log_size)
    return estate, plan, obs


# ------------------------------------------------------------------------------------------ evaluation


def quantiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    xs = sorted(values)

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    return {"n": len(xs), "p50": round(q(0.50), 3), "p99": round(q(0.99), 3), "max": round(xs[-1], 3)}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def schedule_figures(healthy: Iterable[str], probe: dict[str, Any], t_faults: float, t_end: float) -> dict[str, Any]:
    """Poll starts of the healthy devices from the moment the faults start: lateness against the scheduler's
    time, gaps between consecutive starts, the age of the last start at the end, refusals, errors."""
    lateness: list[float] = []
    durations: list[float] = []
    gaps: list[tuple[float, str]] = []
    ages: list[tuple[float, str]] = []
    errors: dict[str, list[str]] = {}
    counts: list[int] = []
    refused = {d: n for d, n in probe["refused"].items() if d in healthy}
    missed = {d: n for d, n in probe["missed"].items() if d in healthy}
    for name in healthy:
        polls = probe["polls"].get(name, [])
        starts = [p[1] for p in polls]
        window = [p for p in polls if p[1] >= t_faults]
        counts.append(len(window))
        for scheduled, started, ended, ran, error in window:
            if scheduled is not None:
                lateness.append(started - scheduled)
            if ran:
                durations.append(ended - started)
            if error:
                errors.setdefault(name, []).append(error)
        before = [s for s in starts if s < t_faults][-1:]
        seq = before + [p[1] for p in window]
        gaps += [(b - a, name) for a, b in itertools.pairwise(seq)]
        ages.append((t_end - (starts[-1] if starts else 0.0), name))
    worst_gap = max(gaps, default=(0.0, ""))
    worst_age = max(ages, default=(0.0, ""))
    return {"devices": len(counts), "polls": sum(counts), "polls_per_device_min": min(counts, default=0),
            "lateness_s": quantiles(lateness), "duration_s": quantiles(durations),
            "gap_s": {**quantiles([g for g, _ in gaps]), "worst_device": worst_gap[1]},
            "last_start_age_max_s": round(worst_age[0], 3), "last_start_age_device": worst_age[1],
            "refused": refused, "missed": missed, "errors": errors}


def resource_figures(samples: list[dict[str, float]], since: float) -> dict[str, Any]:
    """Tasks, fds, threads and RSS after ``since``: first third against last third (minimum and maximum:
    a leak lifts the floor, whatever the polls in flight at the moment of a sample)."""
    xs = [s for s in samples if s["t"] >= since] or samples
    third = max(1, len(xs) // 3)
    first, last = xs[:third], xs[-third:]
    out: dict[str, Any] = {"samples": len(xs)}
    for key in ("tasks", "fds", "threads", "rss_bytes"):
        out[key] = {"first_min": min(s[key] for s in first), "first_max": max(s[key] for s in first),
                    "last_min": min(s[key] for s in last), "last_max": max(s[key] for s in last),
                    "overall_max": max(s[key] for s in xs)}
    return out


def resource_check(res: dict[str, Any]) -> Check:
    tasks, fds, threads = res["tasks"], res["fds"], res["threads"]
    problems = []
    if tasks["last_min"] > tasks["first_min"] + 10:
        problems.append(f"asyncio tasks floor {tasks['first_min']:g} -> {tasks['last_min']:g}")
    if fds["last_min"] > fds["first_min"] + 8 or fds["last_max"] > fds["first_max"] + 8:
        problems.append(f"fds {fds['first_min']:g}-{fds['first_max']:g} -> {fds['last_min']:g}-{fds['last_max']:g}")
    if threads["last_max"] > threads["first_max"] + 4:
        problems.append(f"threads {threads['first_max']:g} -> {threads['last_max']:g}")
    detail = "; ".join(problems) or (
        f"tasks floor {tasks['first_min']:g} -> {tasks['last_min']:g}, fds {fds['first_max']:g} -> "
        f"{fds['last_max']:g}, threads {threads['first_max']:g} -> {threads['last_max']:g} "
        f"({res['samples']} samples)")
    return Check("no_growth", not problems, detail)


def evaluate(estate: Estate, plan: dict[str, str], obs: Observed, opts: Options) -> dict[str, Any]:
    classes = fault_classes(opts.timeout, opts.retries)
    names = [d.name for d in estate.devices]
    healthy = [n for n in names if n not in plan]
    checks: list[Check] = []

    sched = schedule_figures(healthy, obs.probe, obs.t_faults, obs.t_end)
    period = opts.interval * (1 + JITTER)  # the scheduler adds up to JITTER × interval to each period
    late_max = sched["lateness_s"]["max"] or 0.0
    gap_max = sched["gap_s"]["max"] or 0.0
    problems = []
    if late_max > opts.interval:
        problems.append(f"a poll started {late_max:.1f} s after its scheduled time")
    if gap_max > period + opts.interval:
        problems.append(f"{sched['gap_s']['worst_device']}: polls started {gap_max:.1f} s apart")
    if sched["last_start_age_max_s"] > period + opts.interval:
        problems.append(f"{sched['last_start_age_device']}: last poll started {sched['last_start_age_max_s']:.1f} s "
                        "before the end")
    if sched["refused"] or sched["missed"]:
        problems.append(f"runs refused (previous poll still running) on {len(sched['refused'])} devices "
                        f"{dict(list(sched['refused'].items())[:10])}, missed on {len(sched['missed'])}")
    checks.append(Check("healthy_on_schedule", not problems, "; ".join(problems) or (
        f"{sched['polls']} polls of {sched['devices']} healthy devices: lateness p99 {sched['lateness_s']['p99']} s, "
        f"max {late_max} s; gap max {gap_max} s (limit {period + opts.interval:g} s)")))
    checks.append(Check("healthy_without_error", not sched["errors"],
                        f"{len(sched['errors'])} healthy devices with failed polls: "
                        f"{dict(list(sched['errors'].items())[:10])}" if sched["errors"] else "no failed poll"))

    res = resource_figures(obs.probe.get("samples", []), obs.t_faults + opts.interval)
    checks.append(resource_check(res))

    state = {d["name"]: d for d in obs.devices}
    wrong: dict[str, str] = {}
    reasons: dict[str, Counter[str]] = {}
    for name, cls_name in plan.items():
        cls, dev = classes[cls_name], state.get(name, {})
        got = dev.get("last_error") if not dev.get("up") else None
        reasons.setdefault(cls_name, Counter())[got or "up"] += 1
        if cls.reasons and (dev.get("up") or got not in cls.reasons):
            wrong[name] = f"{cls_name}: up={dev.get('up')} last_error={got} (expected {sorted(cls.reasons)})"
        elif not cls.reasons and not dev.get("up"):
            wrong[name] = f"{cls_name}: down with {dev.get('last_error')} (expected up)"
    checks.append(Check("faulty_reasons", not wrong, f"{len(wrong)} wrong: {dict(list(wrong.items())[:10])}"
                        if wrong else f"{len(plan)} misbehaving devices, each with its class's reason"))

    incidents = obs.incidents
    site_of = {d.name: d.site for d in estate.devices}
    down_sites = sorted({site_of[n] for n, c in plan.items() if c == SITE_DOWN})
    per_site: dict[str, list[dict[str, Any]]] = {}
    for inc in incidents:
        if inc.get("rule") not in REACHABILITY_RULES:
            continue  # opened on the recorded values (a UPS recorded on bypass...), not by the faults
        site = inc.get("site") or site_of.get(inc.get("device") or "")
        if site:
            per_site.setdefault(site, []).append(inc)
    problems = []
    for site in down_sites:
        got = per_site.get(site, [])
        site_incs = [i for i in got if i.get("rule") == "site_unreachable"]
        if len(site_incs) != 1 or len(got) != 1:
            problems.append(f"{site}: {len(site_incs)} site incidents, {len(got)} incidents in all "
                            f"({sorted(str(i.get('key')) for i in got)[:6]})")
    false_sites = sorted(i["site"] for i in incidents if i.get("rule") == "site_unreachable"
                         and i.get("site") not in down_sites)
    if false_sites:
        problems.append(f"site incidents for sites not cut off: {false_sites[:10]}")
    checks.append(Check("site_correlation", not problems, "; ".join(problems) or (
        f"{len(down_sites)} sites cut off: one site incident each and nothing else; no other site incident")))

    opened = {(str(i.get("rule")), i.get("site") if i.get("rule") == "site_unreachable" else i.get("device")):
              datetime.fromisoformat(i["opened_at"]).timestamp() - obs.t_faults
              for i in incidents if i.get("opened_at")}
    site_delays = [opened[("site_unreachable", s)] for s in down_sites if ("site_unreachable", s) in opened]
    # a lone silent device opens its own incident once it failed 3 polls (the first up to an interval after the
    # fault, the third after a back-off of two intervals, then up to an interval more) and waited the site
    # rule's delay (90 s) for the rest of its site, at the next incident tick; a parse error after 3 polls
    lone = {n: c for n, c in plan.items() if c not in (SITE_DOWN, RESTART)}
    expected_rule = {n: "device_parse_error" if "parse_error" in classes[c].reasons else "device_unreachable"
                     for n, c in lone.items()}
    device_delays = [opened[(r, n)] for n, r in expected_rule.items() if (r, n) in opened]
    long_enough = obs.t_end - obs.t_faults >= 5 * opts.interval * (1 + JITTER) + 90 + 2 * 15 + 30
    if long_enough:
        absent = sorted(f"{n} ({r})" for n, r in expected_rule.items() if (r, n) not in opened)
        checks.append(Check("device_incidents", not absent, f"{len(absent)} misbehaving devices without their "
                            f"incident: {absent[:10]}" if absent else f"{len(lone)} misbehaving devices outside "
                            "the cut-off sites: their own incident each"))

    # the wrong incident: unreachable for a device that answers, anything about reachability for a healthy one
    answering = {n for n, c in plan.items() if c == RESTART or "parse_error" in classes[c].reasons}
    healthy_set = set(healthy)

    def wrong(i: dict[str, Any]) -> bool:
        rule, device = i.get("rule"), i.get("device")
        if rule == "device_unreachable" and device in answering:
            return True
        return device in healthy_set and rule in REACHABILITY_RULES and rule != "site_unreachable"

    wrong_incidents = sorted(str(i.get("key")) for i in incidents if wrong(i))
    checks.append(Check("no_wrong_incident", not wrong_incidents,
                        f"{len(wrong_incidents)} wrong incidents: {wrong_incidents[:10]}" if wrong_incidents else
                        "no device_unreachable for a device that answers, no reachability incident on a healthy one"))

    rebooted = {i.get("device") for i in incidents if i.get("rule") == "device_rebooted"}
    restarting = [n for n, c in plan.items() if c == RESTART]
    missing = sorted(set(restarting) - rebooted)
    if obs.restarts:
        checks.append(Check("restarts_seen", not missing, f"{len(missing)} restarted devices without a "
                            f"device_rebooted incident: {missing[:10]}" if missing else
                            f"{len(restarting)} devices restarted {len(obs.restarts)} times: a device_rebooted "
                            "incident each"))
    healthy_incidents = sorted({str(i.get("key")) for i in incidents
                                if i.get("device") in set(healthy) and i.get("rule") != "site_unreachable"})
    by_rule = Counter(str(i.get("rule")) for i in incidents)
    largest = max((len(v) for s, v in per_site.items() if s not in down_sites), default=0)

    # errors other than the misbehaving devices' failed polls: a store refusing writes, a crash...
    unexpected = {k: v for k, v in obs.log_events.items()
                  if not k.startswith("warning ") and k != "error poll_failed"}
    checks.append(Check("agent_log_clean", not unexpected, f"errors in the agent's log: {unexpected}" if unexpected
                        else "no error in the agent's log besides the misbehaving devices' failed polls"))

    stats = obs.responder
    played = bool(stats.get("dropped")) and bool(stats.get("unknown_community"))
    checks.append(Check("faults_played", played, f"responder: {stats.get('dropped')} requests dropped, "
                        f"{stats.get('unknown_community')} for an unknown community, {stats.get('requests')} in all"))

    lags = [s["callipso_event_loop_lag_max_seconds"] for s in obs.scrapes if "callipso_event_loop_lag_max_seconds" in s]
    return {
        "schema": SCHEMA,
        "date": datetime.fromtimestamp(obs.t_faults, UTC).isoformat(timespec="seconds"),
        "machine": {**machine_facts(), "load_avg_during": quantiles(obs.load)},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "estate": {"devices": len(names), "sites": len({d.site for d in estate.devices}),
                   "families": dict(Counter(d.family for d in estate.devices)),
                   "misbehaving": len(plan), "share": round(len(plan) / len(names), 3),
                   "classes": {c: {"devices": n, "what": classes[c].what, "expected": sorted(classes[c].reasons)
                                   or ["up"], "reported": dict(reasons.get(c, {}))}
                               for c, n in sorted(Counter(plan.values()).items())},
                   "down_sites": down_sites},
        "warmup_s": round(obs.warmup_s, 1),
        "measured_s": round(obs.t_end - obs.t_faults, 1),
        "restarts": len(obs.restarts),
        "schedule": sched,
        "resources": res,
        "event_loop_lag_max_60s": quantiles(lags),
        "incidents": {"open": len(incidents), "by_rule": dict(by_rule),
                      "site_incident_after_s": quantiles(site_delays),
                      "device_incident_after_s": quantiles(device_delays),
                      "largest_per_other_site": largest, "on_healthy_devices": healthy_incidents[:20]},
        "responder": obs.responder,
        "log_events": obs.log_events,
        "checks": [asdict(c) for c in checks],
        "ok": all(c.ok for c in checks),
    }


# ------------------------------------------------------------------------------------------------ report


def markdown(r: dict[str, Any]) -> str:
    s, res, est = r["schedule"], r["resources"], r["estate"]
    m = r["machine"]
    mb = 1024 * 1024
    lines = [
        f"# Fault load: {est['devices']} devices, {est['share']:.0%} misbehaving ({r['date']})",
        "",
        f"Machine: {m.get('cores')} CPUs, {m.get('kernel', '?')}, Python {m.get('python', '?')}; load average "
        f"during the run p50 {r['machine']['load_avg_during']['p50']}, max {r['machine']['load_avg_during']['max']}.",
        f"Interval {r['options']['interval']:g} s, timeout {r['options']['timeout']:g} s, retries "
        f"{r['options']['retries']}, max_concurrency {r['options']['max_concurrency']}; first polls took "
        f"{r['warmup_s']:g} s, then {r['measured_s']:g} s measured with the faults on; {r['restarts']} restarts.",
        "",
        "| Class | Devices | What it does | Expected | Reported |",
        "|---|---|---|---|---|",
    ]
    for name, c in est["classes"].items():
        rep = ", ".join(f"{k} {v}" for k, v in sorted(c["reported"].items()))
        lines.append(f"| `{name}` | {c['devices']} | {c['what']} | {', '.join(c['expected'])} | {rep} |")
    lag = r["event_loop_lag_max_60s"]
    lines += [
        "",
        "| Healthy devices | Figure |",
        "|---|---|",
        f"| devices, polls measured | {s['devices']}, {s['polls']} (at least {s['polls_per_device_min']} each) |",
        f"| poll start lateness vs schedule, s | p50 {s['lateness_s']['p50']}, p99 {s['lateness_s']['p99']}, "
        f"max {s['lateness_s']['max']} |",
        f"| gap between consecutive starts, s | p50 {s['gap_s']['p50']}, p99 {s['gap_s']['p99']}, max "
        f"{s['gap_s']['max']} |",
        f"| poll duration, s | p50 {s['duration_s']['p50']}, p99 {s['duration_s']['p99']}, "
        f"max {s['duration_s']['max']} |",
        f"| runs refused (poll still running) / missed | {sum(s['refused'].values())} / {sum(s['missed'].values())} |",
        f"| devices with a failed poll | {len(s['errors'])} |",
        f"| event-loop lag, max over 60 s (scrapes), s | p50 {lag['p50']}, p99 {lag['p99']}, max {lag['max']} |",
        "",
        "| Agent process | first third (min–max) | last third (min–max) |",
        "|---|---|---|",
    ]
    for key, label, scale in (("tasks", "asyncio tasks", 1), ("fds", "open fds", 1), ("threads", "threads", 1),
                              ("rss_bytes", "RSS, MiB", mb)):
        v = res[key]
        lines.append(f"| {label} | {v['first_min'] / scale:.0f}–{v['first_max'] / scale:.0f} | "
                     f"{v['last_min'] / scale:.0f}–{v['last_max'] / scale:.0f} |")
    inc = r["incidents"]
    rules = ", ".join(f"{k} {v}" for k, v in sorted(inc["by_rule"].items()))
    lines += ["", f"Open incidents at the end: {inc['open']} ({rules}); sites cut off: {len(est['down_sites'])}; "
              f"most incidents on another site: {inc['largest_per_other_site']}. "
              f"Opened after the faults started: site incidents p50 {inc['site_incident_after_s']['p50']} s, max "
              f"{inc['site_incident_after_s']['max']} s; incidents of the other misbehaving devices p50 "
              f"{inc['device_incident_after_s']['p50']} s, max {inc['device_incident_after_s']['max']} s.",
              "", "| Check | Result | Detail |", "|---|---|---|"]
    for c in r["checks"]:
        lines.append(f"| {c['name']} | {'pass' if c['ok'] else '**FAIL**'} | {c['detail']} |")
    return "\n".join(lines) + "\n"


def run(opts: Options, out: Path | None, log: IO[str] = sys.stderr) -> dict[str, Any]:
    estate, plan, obs = execute(opts, log)
    result = evaluate(estate, plan, obs, opts)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "fault-load.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        (out / "fault-load.md").write_text(markdown(result), encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.fault_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--duration", type=float, default=600.0, help="seconds measured with the faults on")
    p.add_argument("--interval", type=float, default=60.0, help="every device's poll interval, s")
    p.add_argument("--timeout", type=float, default=5.0, help="SNMP timeout per request, s")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--share", type=float, default=0.30, help="misbehaving share of the devices")
    p.add_argument("--down-sites", type=int, default=0, help="sites cut off (default: 2 %% of the sites, at least 2)")
    p.add_argument("--restart-every", type=float, default=0.0, help="restart period, s (default: two intervals)")
    p.add_argument("--sample-every", type=float, default=5.0, help="agent process samples (tasks, fds...), s")
    p.add_argument("--scrape-every", type=float, default=30.0, help="/metrics scrapes, s")
    p.add_argument("--settle", type=float, default=0.0,
                   help="after the duration, wait up to this long for every cut-off site's incident")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, default=None, help="keep the estate, config and logs here")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/fault-load-<time>)")
    a = p.parse_args(argv)
    opts = Options(devices=a.devices, duration=a.duration, interval=a.interval, timeout=a.timeout, retries=a.retries,
                   share=a.share, down_sites=a.down_sites, restart_every=a.restart_every,
                   sample_every=a.sample_every, scrape_every=a.scrape_every, settle=a.settle, seed=a.seed,
                   workdir=a.workdir)
    out = a.out or ROOT / "results" / f"fault-load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the agent and the responder on the way out
    result = run(opts, out)
    print(markdown(result))
    print(f"written: {out}/fault-load.json, fault-load.md", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
