"""kill -9 loop on the real daemon: the lab agent is SIGKILLed at random moments while faults open
incidents, then restarted on the same directory (same store). At the end the SQLite store holds no
duplicate unresolved incident, every incident of the scenario exactly once, and unique outbox jobs.

CI runs 8 kills; ``CALLIPSO_KILLS=100`` runs the full loop.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.lab_agent import LabAgent, wait_for

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("CALLIPSO_KILLS", "8"))
SITES = "HD13,AUBAGNE-MDS,GARDANNE-MDS"
EXPECTED_KEYS = ("site_unreachable:GARDANNE-MDS",)
UNRESOLVED = ("open", "acknowledged", "suppressed")


def _lab_children(lab_dir: Path) -> list[int]:
    """Processes (snmpsim shards) started in their own session by the lab under ``lab_dir``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(b"--data-dir") for arg in cmd) and str(lab_dir).encode() in b" ".join(cmd):
            pids.append(int(entry.name))
    return pids


def _reap(lab_dir: Path) -> None:
    for pid in _lab_children(lab_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not _lab_children(lab_dir), 20, "lab children gone")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=2.0, sites=SITES)
    try:
        yield agent
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(10)
        _reap(tmp_path / "lab")


def _start_with_faults(lab: LabAgent) -> None:
    lab.start()
    wait_for(lambda: lab.api("/healthz")["status"] == "ok", 90, "/healthz")
    # the lab's fault switch lives in the killed process: set the faults again after every start
    wait_for(lambda: lab.lab("fault", "unreachable", "GARDANNE-MDS").returncode == 0, 30, "fault applied")


def test_kill9_loop_loses_and_duplicates_nothing(lab: LabAgent, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CALLIPSO_KILL_SEED", "13")))
    lab_dir = tmp_path / "lab"
    kills = 0
    for _ in range(KILLS):
        _start_with_faults(lab)
        time.sleep(rng.uniform(0.5, 8.0))  # during polling, rule evaluation, incident writes, outbox work
        assert lab.proc is not None and lab.proc.poll() is None, lab.log.read_text()[-2000:]
        lab.proc.send_signal(signal.SIGKILL)
        lab.proc.wait(10)
        kills += 1
        _reap(lab_dir)

    # the last run is left alone until the scenario's incident is there, then stopped cleanly
    _start_with_faults(lab)
    wait_for(lambda: any(i["key"] in EXPECTED_KEYS for i in lab.api("/api/v1/incidents?state=open")["incidents"]),
             150, "site incident after the kills")
    lab.stop()
    _reap(lab_dir)

    dbs = sorted(lab_dir.rglob("*.sqlite"))
    assert len(dbs) == 1, dbs
    con = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(UNRESOLVED))
        dup = con.execute(f"SELECT key, COUNT(*) FROM incidents WHERE state IN ({marks}) GROUP BY key "  # noqa: S608
                          "HAVING COUNT(*) > 1", UNRESOLVED).fetchall()
        assert dup == [], dup
        for key in EXPECTED_KEYS:
            n = con.execute("SELECT COUNT(*) FROM incidents WHERE key = ?", (key,)).fetchone()[0]
            assert n == 1, (key, n)  # the site stayed cut off across every restart: one incident, never two
        total = con.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        outbox = con.execute("SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM outbox").fetchone() \
            if con.execute("SELECT 1 FROM sqlite_master WHERE name='outbox'").fetchone() else (0, 0)
        assert outbox[0] == outbox[1], outbox
    finally:
        con.close()
    print(f"\nFIGURES kills={kills} incidents={total} outbox_jobs={outbox[0]} duplicates=0")
