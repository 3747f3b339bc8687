"""How the daemon schedules the polls: a first poll within seconds, then each device at a phase of its own.

Regression (fault load, docs/reliability.md): every device's first poll was placed in the first 5 s after a
start and the next ones followed at exact intervals from it, so a 2,000-device estate was polled in one
burst of a few seconds every interval (event-loop lag of 3–8 s and SQLite writers timing out on a 2-core
machine), however long the interval; and those 2,000 first polls, started within 5 s, outlasted the 45 s
poll timeout on a loaded machine and all failed.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from callipso_agent.daemon import FIRST_POLL_JOB, FIRST_POLLS_PER_SECOND, POLL_JOB, App, poll_phase

INTERVAL = 60.0
DEVICES = [f"ups-{i:05d}" for i in range(2000)] + ["oxe-hd13", "sbc-arenc"]
SITE = {name: f"S{i // 3:04d}" for i, name in enumerate(DEVICES)}  # sites of three devices


def test_phase_is_the_sites_own_and_leaves_room_after_the_first_poll() -> None:
    for name in sorted(set(SITE.values()))[:200]:
        for first in (0.0, 3.0, 5.0):
            at = poll_phase(name, INTERVAL, first)
            assert first + INTERVAL / 2 <= at < first + 1.5 * INTERVAL
            assert at == poll_phase(name, INTERVAL, first)  # the same at every start, on every agent
            assert at % INTERVAL == pytest.approx(poll_phase(name, INTERVAL, 0.0) % INTERVAL)


@pytest.mark.asyncio
async def test_polls_of_a_large_estate_are_spread_over_the_interval(example_config: Path) -> None:
    app = App(example_config)
    app.scheduler = AsyncIOScheduler()
    app.scheduler.start(paused=True)
    try:
        pollers = {name: SimpleNamespace(device=name, site=SITE[name], interval=INTERVAL) for name in DEVICES}
        runtime = SimpleNamespace(pollers=pollers,
                                  loaded=SimpleNamespace(config=SimpleNamespace(agent=SimpleNamespace(jitter=0.1))))
        before = datetime.now().astimezone()
        app._schedule(runtime)  # type: ignore[arg-type]
        took = (datetime.now().astimezone() - before).total_seconds()  # scheduling 4,000 jobs on a loaded machine
        jobs = {j.id: j for j in app.scheduler.get_jobs()}
    finally:
        app.scheduler.shutdown(wait=False)
    assert len(jobs) == 2 * len(DEVICES)
    first = [(jobs[f"{FIRST_POLL_JOB}{n}"].next_run_time - before).total_seconds() for n in DEVICES]
    regular = [(jobs[f"{POLL_JOB}{n}"].next_run_time - before).total_seconds() for n in DEVICES]
    # everything polled soon after a start, at FIRST_POLLS_PER_SECOND at most (2,002 devices: within 20 s)
    spread = len(DEVICES) / FIRST_POLLS_PER_SECOND
    assert all(0 <= t <= spread + took for t in first), (min(first), max(first))
    per_second = Counter(int(t) for t in first)
    assert max(per_second.values()) <= 2 * FIRST_POLLS_PER_SECOND, per_second
    assert all(f + INTERVAL / 2 - 0.5 <= t <= f + 1.5 * INTERVAL + 0.5 for f, t in zip(first, regular, strict=True))
    # the devices of a site share its phase: a site cut off fails on all its devices at once
    by_site: dict[str, set[float]] = {}
    for n, t in zip(DEVICES, regular, strict=True):
        by_site.setdefault(SITE[n], set()).add(round(t % INTERVAL, 3))
    assert all(len(phases) == 1 for phases in by_site.values())
    # then spread over the interval: no 5-second window holds more than twice its share of the devices
    windows = Counter(int((t % INTERVAL) // 5) for t in regular)
    assert len(windows) == INTERVAL // 5
    assert max(windows.values()) <= 2 * len(DEVICES) / (INTERVAL // 5), windows


def test_a_small_estate_is_polled_within_seconds_of_a_start(example_config: Path) -> None:
    app = App(example_config)
    for interval, limit in ((60.0, 5.0), (300.0, 5.0), (10.0, 1.0)):
        before = datetime.now().astimezone()
        at = app._first_run(interval, 0.1, estate=25 / FIRST_POLLS_PER_SECOND)
        assert 0 <= (at - before).total_seconds() <= limit + 0.5
