"""The agent under the fault load, in a process of its own: the real daemon (``App``) with its own scheduler.

Unlike the benchmark's agent (``bench/agent_side.py``, which drives poll cycles itself), nothing is changed
in how the daemon runs: APScheduler's interval jobs start the polls. Two probes only watch:

* the scheduler's events give, for each poll job, the time it was scheduled to run
  (``JobSubmissionEvent.scheduled_run_times``), and the runs it refused because the previous poll of the
  device was still running (``EVENT_JOB_MAX_INSTANCES``) or that it missed (``EVENT_JOB_MISSED``);
* ``App._run_poll`` notes, per device, when the poll started against that schedule, when it ended, whether
  it ran (a device in back-off is skipped) and its error kind.

A sampler notes every few seconds the process's asyncio tasks, open file descriptors, threads and RSS.

Driven by JSON lines on stdin, one answer line each on stdout (logs go to ``agent.log``): ``{"cmd": "report",
"path": ...}`` writes what the probes saw as JSON; ``{"cmd": "stop"}`` stops the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobEvent

from callipso_agent import logs
from callipso_agent.collect.coordinator import DevicePoller
from callipso_agent.daemon import POLL_JOB, App


@dataclass
class Poll:
    scheduled: float | None  # Unix time the scheduler meant the poll to start (None: not known)
    started: float  # Unix time the poll job started running
    ended: float
    ran: bool  # False: skipped by the poller (back-off after failures, or still in flight)
    error: str | None


@dataclass
class ScheduleProbe:
    """What the scheduler meant to run and what ran, per device."""

    scheduled: dict[str, float] = field(default_factory=dict)  # device -> scheduled time of the submitted run
    polls: dict[str, list[Poll]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # previous poll still running (max_instances)
    missed: dict[str, int] = field(default_factory=dict)

    def on_event(self, event: JobEvent) -> None:
        if not event.job_id.startswith(POLL_JOB):
            return
        device = event.job_id[len(POLL_JOB):]
        if event.code == EVENT_JOB_SUBMITTED:
            times = getattr(event, "scheduled_run_times", None) or []
            if times:
                self.scheduled[device] = min(t.timestamp() for t in times)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.refused[device] = self.refused.get(device, 0) + 1
        elif event.code == EVENT_JOB_MISSED:
            self.missed[device] = self.missed.get(device, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return {"polls": {d: [[p.scheduled, p.started, p.ended, p.ran, p.error] for p in ps]
                          for d, ps in self.polls.items()},
                "refused": self.refused, "missed": self.missed}


class FaultLoadApp(App):
    """The daemon, unchanged, with the schedule probe attached."""

    def __init__(self, config: Path) -> None:
        super().__init__(config)
        self.probe = ScheduleProbe()

    async def start(self) -> None:
        await super().start()
        assert self.scheduler is not None
        self.scheduler.add_listener(self.probe.on_event,
                                    EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    async def _run_poll(self, poller: DevicePoller) -> None:
        scheduled = self.probe.scheduled.pop(poller.device, None)
        started = time.time()
        before = poller.state.polls
        await super()._run_poll(poller)
        ran = poller.state.polls > before
        error = poller.state.last_error if ran and poller.state.consecutive_failures else None
        self.probe.polls.setdefault(poller.device, []).append(Poll(scheduled, started, time.time(), ran, error))


@dataclass
class Sampler:
    """The process's asyncio tasks, fds, threads and RSS every ``every`` seconds."""

    every: float
    samples: list[dict[str, float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def sample(self) -> dict[str, float]:
        rss = 0
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return {"t": time.time(), "tasks": len(asyncio.all_tasks()), "fds": len(os.listdir("/proc/self/fd")),
                "threads": len(os.listdir("/proc/self/task")), "rss_bytes": rss}

    async def _run(self) -> None:
        while True:
            self.samples.append(self.sample())
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


async def serve(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    with open(workdir / "agent.log", "w", encoding="utf-8") as logf:  # noqa: ASYNC230 - before the agent starts
        logs.configure("info", json=True, stream=logf)
        app = FaultLoadApp(Path(args.config))
        sampler = Sampler(args.sample_every)
        await app.start()
        sampler.start()
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        def answer(obj: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

        assert app.runtime is not None
        answer({"ready": True, "pid": os.getpid(), "devices": len(app.runtime.pollers),
                "http_port": app.http.bound_port})
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "report":
                    data = {**app.probe.as_json(), "samples": sampler.samples,
                            "skipped": {n: p.state.skipped for n, p in app.runtime.pollers.items()}}
                    Path(cmd["path"]).write_text(json.dumps(data), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
                    answer({"ok": True, "path": cmd["path"]})
                elif cmd["cmd"] == "stop":
                    break
                else:
                    answer({"error": f"unknown command {cmd['cmd']!r}"})
        finally:
            await sampler.stop()
            await app.stop()
            answer({"stopped": True})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--sample-every", type=float, default=5.0)
    asyncio.run(serve(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
