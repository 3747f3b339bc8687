"""kill -9 at random moments while incidents are written: after each restart nothing is lost or duplicated.

A subprocess runs tests/incidents/killrun.py against a SQLite file (WAL, synchronous=FULL) and is killed
with SIGKILL, then restarted; it resumes after its last recorded step, so the step it was in is replayed.
Kill points are drawn (seeded) among the steps where the uninterrupted reference run wrote something,
plus a random few milliseconds, so that kills land inside incident writes. The final incidents must be
exactly those of the reference run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url
from callipso_agent.store.tables import incident_timeline, incidents
from tests.incidents import killrun

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

Outcome = Counter[tuple[str, str, str | None]]


@dataclass(frozen=True)
class Result:
    incidents: Outcome  # (key, state, parent key) of every incident
    openings: tuple[int, ...]  # opening timeline entries per incident
    write_steps: tuple[int, ...]  # steps at which timeline entries were written


async def _read(db: Path) -> Result:
    store = Store(sqlite_url(db))
    try:
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(incidents.c.id, incidents.c.key, incidents.c.state, incidents.c.parent_id)
                )
            ).all()
            entries = (
                await conn.execute(
                    select(incident_timeline.c.incident_id, incident_timeline.c.kind, incident_timeline.c.at)
                )
            ).all()
    finally:
        await store.close()
    key_of = {r.id: r.key for r in rows}
    opened = Counter(e.incident_id for e in entries if e.kind in ("opened", "suppressed"))
    steps = sorted({int((e.at - killrun.T0).total_seconds()) // killrun.STEP_S for e in entries})
    return Result(
        Counter((r.key, r.state, key_of.get(r.parent_id)) for r in rows),
        tuple(opened[r.id] for r in rows),
        tuple(steps),
    )


def read(db: Path) -> Result:
    return asyncio.run(_read(db))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Result:
    folder = tmp_path_factory.mktemp("reference")
    asyncio.run(killrun.run(folder / "reference.sqlite", folder / "reference.progress"))
    return read(folder / "reference.sqlite")


def _first_step(progress: Path) -> int:
    try:
        return int(progress.read_text()) + 1
    except FileNotFoundError:
        return 0


def run_with_kills(
    db: Path, progress: Path, rng: random.Random, write_steps: tuple[int, ...], kills: int
) -> int:
    done = 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    while True:
        first = _first_step(progress)
        ahead = [s for s in write_steps if s > first]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.incidents.killrun", str(db), str(progress)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        if done >= kills or not ahead:
            assert proc.wait(timeout=600) == 0
            proc.stdout.close()
            return done
        target = rng.choice(ahead[:4])  # kill during (or just after) a step that writes
        for line in proc.stdout:
            if line.strip() == f"STEP {target - 1}":
                break
        time.sleep(rng.uniform(0, 0.012))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        done += 1


def test_reference_scenario_is_worth_killing(reference: Result) -> None:
    assert sum(reference.incidents.values()) >= 8 and set(reference.openings) == {1}
    assert any(state == "open" for _, state, _ in reference.incidents)  # the last outage is still going on
    assert any(parent is not None for _, _, parent in reference.incidents)  # the site outage carried children
    assert reference.incidents[("ups_on_battery:ups-aubagne", "resolved", None)] == 2  # two separate outages
    assert len(reference.write_steps) >= 15


@pytest.mark.parametrize("seed", [11, 42])
def test_kill9_loses_and_duplicates_nothing(tmp_path: Path, reference: Result, seed: int) -> None:
    db = tmp_path / "killed.sqlite"
    rng = random.Random(seed)
    kills = run_with_kills(db, tmp_path / "killed.progress", rng, reference.write_steps, kills=8)
    assert kills == 8
    found = read(db)
    assert found.incidents == reference.incidents
    assert set(found.openings) == {1}  # every incident was opened exactly once
