"""Soak, CI smoke form: a minute of the lab agent with faults switched on and off, sampled every 3 s (the
runner is ``tests/reliability/soak.py``; ``make soak`` runs the hour-long form). File descriptors, threads,
asyncio tasks and memory must stay flat within tolerance: nothing grows sample after sample."""

from __future__ import annotations

import csv
import itertools
import statistics
from pathlib import Path

import pytest

from tests.reliability.soak import COLUMNS, WATCHED, run_soak, slope_per_hour, summarise

pytestmark = pytest.mark.slow

SITES = "HD13,AIX-MDS,GARDANNE-MDS"  # every target of the fault cycle, and a light lab


def _strictly_rising(values: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def test_slope_and_summary_arithmetic() -> None:
    rows = [{**dict.fromkeys(COLUMNS, 0.0), "t_s": float(t), "fds": 40.0 + t / 60, "tasks": 20.0}
            for t in range(0, 600, 60)]
    assert round(slope_per_hour([r["t_s"] for r in rows], [r["fds"] for r in rows]), 6) == 60.0
    s = summarise(rows, warmup=120)
    assert s["fds"].first == 42.0 and s["fds"].last == 49.0 and s["tasks"].slope_h == 0.0
    assert set(s) == set(WATCHED)


def test_soak_smoke_stays_flat(tmp_path: Path) -> None:
    rows, csv_path = run_soak(tmp_path / "soak", 60, 3.0, interval=10.0, sites=SITES, fault_period=30.0, warmup=0)
    assert len(rows) >= 15, rows
    with csv_path.open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    summary = (csv_path.parent / "summary.md").read_text(encoding="utf-8")
    assert "| fds |" in summary and "slope / h" in summary
    assert any(r["fault_on"] for r in rows) and not rows[0]["fault_on"]  # the faults did come and go

    third = max(1, len(rows) // 3)
    head, tail = rows[:third], rows[-third:]

    def col(part: list[dict[str, float]], name: str) -> list[float]:
        return [r[name] for r in part]

    fds = col(rows, "fds")
    assert max(col(tail, "fds")) <= max(col(head, "fds")) + 8, fds
    assert not _strictly_rising(fds), fds
    threads = col(rows, "threads")
    assert max(threads) <= threads[0] + 6, threads  # the default executor may start its few workers
    tasks = col(rows, "tasks")
    assert statistics.fmean(col(tail, "tasks")) <= statistics.fmean(col(head, "tasks")) * 1.5 + 10, tasks
    assert not _strictly_rising(tasks), tasks
    rss = col(rows, "rss_mib")
    assert rss[-1] <= rss[0] * 1.25 + 20, rss
    assert rows[-1]["polls_total"] > rows[0]["polls_total"]
    assert rows[-1]["devices_up"] >= 1
