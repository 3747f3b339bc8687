"""A deterministic incident scenario that survives being killed.

Run as ``python -m tests.incidents.killrun DB PROGRESS``.

The estate of tests/helpers/estate.py is polled every 10 simulated seconds for ``STEPS`` steps; the faults
follow a fixed plan (UPS on battery, a site cut off, a WAN link down, an SBC near capacity). After each
step the runner records the step in PROGRESS and prints ``STEP n``; started again, it resumes after the
last recorded step, as a restarted agent whose devices kept their state. A step can thus be replayed
after a kill: the store must absorb that without losing or duplicating incidents.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from callipso_agent.clock import ManualClock
from callipso_agent.incidents.engine import IncidentSettings
from callipso_agent.incidents.maintenance import MaintenanceBook
from callipso_agent.incidents.pipeline import IncidentPipeline
from callipso_agent.model import PollResult
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url
from tests.helpers.estate import DEVICES, failed, m, poll
from tests.incidents.harness import CONFIG, CONTRACT, RULES

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STEP_S = 10
STEPS = 720
SETTINGS = IncidentSettings(hold=300, flap_window=1800)

ON_BATTERY = {
    "ups-aubagne": [(30, 60), (72, 100), (500, 540)],
    "ups-aix": [(50, 200)],
    "ups-hd13": [(600, 10_000)],
}
CUT_OFF = {d: [(250, 330)] for d in ("ups-aubagne", "probe-aubagne", "gw-aubagne")}
WAN_DOWN = {"wan1-aix": [(120, 180)]}
BUSY = {"sbc-hd13": [(400, 460)]}


def _in(plan: dict[str, list[tuple[int, int]]], device: str, step: int) -> bool:
    return any(a <= step < b for a, b in plan.get(device, []))


def result(device: str, step: int) -> PollResult:
    at = T0 + timedelta(seconds=step * STEP_S)
    if _in(CUT_OFF, device, step):
        return failed(device, at)
    if device.startswith("ups-"):
        return poll(
            device, at, m(device, "ups_on_battery", 1.0 if _in(ON_BATTERY, device, step) else 0.0, at)
        )
    if device.startswith("wan"):
        iface = "Gi0/0" if device == "wan1-aix" else "Gi0/1"
        up = 0.0 if _in(WAN_DOWN, device, step) else 1.0
        return poll(device, at, m(device, "interface_oper_up", up, at, {"ifindex": "1", "interface": iface}))
    if device.startswith("sbc-"):
        return poll(device, at, m(device, "sbc_calls_active", 350.0 if _in(BUSY, device, step) else 40.0, at))
    return poll(device, at)


def _progress(path: Path) -> int:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return -1


def _record(path: Path, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(step))
    os.replace(tmp, path)


async def run(db: Path, progress: Path, *, announce: bool = False) -> None:
    store = Store(sqlite_url(db))
    await store.migrate()
    first = _progress(progress) + 1
    clock = ManualClock(T0 + timedelta(seconds=first * STEP_S))
    pipeline = IncidentPipeline(
        store,
        CONFIG,
        clock,
        rules=RULES,
        contract=CONTRACT,
        maintenance=MaintenanceBook(store, clock),
        settings=SETTINGS,
    )
    try:
        await pipeline.start()
        for step in range(first, STEPS):
            clock.set(T0 + timedelta(seconds=step * STEP_S))
            for device in DEVICES:
                await pipeline.on_poll(result(device.name, step))
            await pipeline.tick()
            _record(progress, step)
            if announce:
                print(f"STEP {step}", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(run(Path(sys.argv[1]), Path(sys.argv[2]), announce=True))
