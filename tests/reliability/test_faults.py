"""Fault suite, reduced CI form: the lab with part of its devices misbehaving (remote sites cut off, one SSH
server hanging after login). Healthy devices keep their schedule from the moment the faults start, the
faulty ones carry the right error kind, the agent's file descriptors and threads do not grow, and site
correlation holds (one site incident per cut-off site).

A cut-off site is silenced by the lab's network front (its traffic is dropped); snmpsim never sees it. The
test also checks that snmpsim wrote nothing to its standard error: an unread stderr pipe once filled up
with tracebacks and froze the whole lab (docs/reliability.md, finding 4).

The full form (2,000 devices) is not automated yet: see docs/reliability.md.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.lab_agent import TEST_SITES, LabAgent, wait_for

pytestmark = pytest.mark.slow

# An Eaton UPS poll is ~35 GETBULKs; on a 2-core machine at load 6-9 it takes 5-11 s (the agent's pysnmp
# stack is CPU-bound, docs/reliability.md, finding 4): a 10 s interval keeps most polls inside their interval.
INTERVAL = 10.0
JITTER = 0.1  # the agent's default schedule jitter, as a fraction of the interval
# A healthy device misses its schedule by more than one interval when two of its consecutive polls start
# more than two intervals apart (plus the jitter, plus a second of sampling slack) ...
GAP_LIMIT = 2 * INTERVAL * (1 + JITTER) + 1.0
# ... or when its last poll started longer ago than that plus one interval for the poll in flight.
AGE_LIMIT = GAP_LIMIT + INTERVAL
# CI cuts one site off (with the SSH hang: 4 of 25 devices misbehaving); the long form cuts two (7 of 25):
# CALLIPSO_FAULT_SITES=GARDANNE-MDS,SALON-MDS
CUT_SITES = tuple(os.environ.get("CALLIPSO_FAULT_SITES", "GARDANNE-MDS").split(","))
SAMPLES = int(os.environ.get("CALLIPSO_FAULT_SAMPLES", "3"))  # intervals watched once the incidents are open


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=INTERVAL, sites=TEST_SITES)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def _proc_counts(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return fds, threads


_SERIES = re.compile(r'^(callipso_polls_total|callipso_last_poll_timestamp_seconds)\{device="([^"]+)"\} (\S+)$', re.M)


@dataclass
class ScheduleWatch:
    """Samples the agent and fails at once when a healthy device is late or in error.

    Poll starts come from ``/metrics`` (``callipso_last_poll_timestamp_seconds`` with ``callipso_polls_total``
    in the same scrape): a gap between two starts is only measured when exactly one poll completed between two
    samples, so a sample that misses a poll can never make a device look late."""

    lab: LabAgent
    healthy: set[str]
    worst_gap: float = 0.0
    worst_age: float = 0.0
    worst_device: str = ""
    samples: int = 0
    gaps: int = 0
    devices: list[dict[str, Any]] = field(default_factory=list)
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)  # device -> (polls, start time)

    def polls(self) -> dict[str, tuple[float, float]]:
        out: dict[str, dict[str, float]] = {}
        for name, device, value in _SERIES.findall(self.lab.metrics_text()):
            out.setdefault(device, {})[name] = float(value)
        return {d: (v["callipso_polls_total"], v["callipso_last_poll_timestamp_seconds"])
                for d, v in out.items() if len(v) == 2}

    def sample(self, check: bool = True) -> list[dict[str, Any]]:
        now = time.time()
        polls = self.polls()
        self.devices = self.lab.api("/api/v1/devices")["devices"]
        self.samples += 1
        late: dict[str, str] = {}
        for name in self.healthy:
            if name not in polls:
                late[name] = "never polled"
                continue
            n, started = polls[name]
            before = self._last.get(name)
            if before is not None and n == before[0] + 1:
                gap = started - before[1]
                self.gaps += 1
                if gap > self.worst_gap:
                    self.worst_gap, self.worst_device = gap, name
                if gap > GAP_LIMIT:
                    late[name] = f"polls started {gap:.1f} s apart"
            age = now - started
            self.worst_age = max(self.worst_age, age)
            if age > AGE_LIMIT:
                late[name] = f"last poll started {age:.1f} s ago"
            self._last[name] = (n, started)
        if check:
            assert not late, f"healthy devices behind schedule (interval {INTERVAL:g} s): {late}"
            failing = {d["name"]: d.get("last_error") for d in self.devices
                       if d["name"] in self.healthy and d.get("last_error")}
            assert not failing, f"healthy devices in error: {failing}"
        return self.devices

    def settled(self) -> bool:
        """Every healthy device polled at least three times and on schedule (no check failure raised)."""
        try:
            self.sample()
        except AssertionError:
            self._last.clear()
            return False
        return all(self._last.get(n, (0.0, 0.0))[0] >= 3 for n in self.healthy)

    def until(self, pred: Callable[[list[dict[str, Any]]], Any], timeout: float, what: str) -> None:
        """Sample every ~2 s until ``pred(devices)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.sample()):
                return
            time.sleep(2.0)
        raise AssertionError(f"timed out waiting for {what}")

    def watch(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(2.0)


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_healthy_devices_keep_schedule_while_part_of_the_lab_misbehaves(lab: LabAgent, tmp_path: Path) -> None:
    lab.wait_all_up(150)
    devices = {d["name"]: d for d in lab.api("/api/v1/devices")["devices"]}
    cut = {n for n, d in devices.items() if d.get("site") in CUT_SITES}
    ssh = sorted(p.name.removesuffix(".ssh-password") for p in (tmp_path / "lab").rglob("*.ssh-password"))
    hung = next(n for n in ssh if n not in cut)
    faulty = cut | {hung}
    healthy = set(devices) - faulty
    assert cut and healthy
    share = len(faulty) / len(devices)
    watch = ScheduleWatch(lab, healthy)
    # the first polls (every device identified at once) run late on a loaded machine: start from a lab where
    # every healthy device has polled three times and is on schedule
    wait_for(watch.settled, 240, "every device on schedule", every=2.0)
    watch.samples = watch.gaps = 0
    watch.worst_gap = watch.worst_age = 0.0

    for site in CUT_SITES:
        lab.fault("unreachable", site)
    lab.fault("ssh_hang", hung)

    def errors(devs: list[dict[str, Any]]) -> dict[str, str | None]:
        return {d["name"]: d.get("last_error") for d in devs}

    # from here on every sample also checks that the healthy devices keep their schedule
    watch.until(lambda ds: all(errors(ds)[n] == "timeout" for n in cut), 90, "cut-off devices time out")
    watch.until(lambda ds: errors(ds)[hung] in ("timeout", "unreachable"), 150, f"{hung} hangs")

    def site_incidents() -> dict[str, int]:
        opened = lab.api("/api/v1/incidents?state=open")["incidents"]
        return {s: sum(1 for i in opened if i.get("key") == f"site_unreachable:{s}") for s in CUT_SITES}

    watch.until(lambda _: all(site_incidents().values()), 240, "one site incident per cut-off site")

    assert lab.proc is not None
    pid = lab.proc.pid
    counts = [_proc_counts(pid)]
    for _ in range(SAMPLES):
        watch.watch(INTERVAL)
        now_devices = watch.devices
        assert {d["name"]: d["last_error"] for d in now_devices if d["name"] in cut} == dict.fromkeys(cut, "timeout")
        assert site_incidents() == dict.fromkeys(CUT_SITES, 1)
        # no incident storm: device incidents of a cut-off site hang under its site incident
        opened = lab.api("/api/v1/incidents?state=open")["incidents"]
        per_site = [i for i in opened if i.get("site") in CUT_SITES and not i.get("parent_id")]
        assert len(per_site) == len(CUT_SITES), per_site
        counts.append(_proc_counts(pid))

    first_fds, first_threads = counts[0]
    last_fds, last_threads = counts[-1]
    assert last_fds <= first_fds + 8, counts
    assert last_threads <= first_threads + 4, counts

    # the cut was played on the wire: requests of cut devices dropped, nothing of the healthy ones
    net = lab.control_api("/lab/network")["devices"]
    assert all(net[n]["dropped"] > 0 and net[n]["mode"] == "drop" for n in cut), {n: net[n] for n in cut}
    assert not {n: net[n]["dropped"] for n in healthy if n in net and net[n]["dropped"]}
    # and snmpsim never choked on anything (its stderr is a file; it used to be an unread pipe)
    stderr = {p.name: p.read_text(errors="replace")[-500:] for p in (tmp_path / "lab").glob("snmpsim-*.stderr")}
    assert stderr and not any(stderr.values()), stderr

    metrics = lab.metrics_text()
    lag_max = _metric(metrics, "callipso_event_loop_lag_max_seconds")
    tasks = _metric(metrics, "callipso_asyncio_tasks")
    figures = (f"devices={len(devices)} faulty={len(faulty)} share={share:.2f} cut_sites={','.join(CUT_SITES)} "
               f"samples={watch.samples} gaps={watch.gaps} worst_gap={watch.worst_gap:.1f}s ({watch.worst_device}) "
               f"worst_age={watch.worst_age:.1f}s gap_limit={GAP_LIMIT:g}s age_limit={AGE_LIMIT:g}s "
               f"loop_lag_max_60s={lag_max} asyncio_tasks={tasks} "
               f"fds={[c[0] for c in counts]} threads={[c[1] for c in counts]}")
    (tmp_path / "figures.txt").write_text(figures + "\n", encoding="utf-8")
    print("\nFIGURES " + figures)
