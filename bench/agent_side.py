"""The agent under measurement, in a process of its own: the real daemon (``App``) on the bench estate.

Everything a poll goes through in production runs here: configuration and profile loading, profile detection
and build (``collectors/*.yaml``), the SNMP client, ``DevicePoller`` and ``SnmpFetcher``, the result sink
(``LatestCache``, the device-state write to the SQLite store, the poll-duration observer, the rules and the
incident pipeline), the HTTP server with the real ``/metrics`` collector, and the real trap receiver.
Only the poll scheduling differs: instead of APScheduler's interval jobs, the bench polls every device
once per cycle with at most ``agent.snmp.max_concurrency`` devices in flight, so a cycle has a duration.

The process is driven by JSON lines on stdin (one command each) and answers one JSON line per command on
stdout; logs go to a file. Commands: ``cycle``, ``plan``, ``scrape``, ``threshold``, ``incidents``,
``usage``, ``stop``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from bench.procstat import Usage
from bench.report import quantiles
from callipso_agent import logs
from callipso_agent.collect.coordinator import DevicePoller
from callipso_agent.config.loader import LoadedConfig
from callipso_agent.daemon import App, Runtime
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.snmp import SnmpValue, Varbinds

log = structlog.get_logger()


# ------------------------------------------------------------------------------------------ recording


@dataclass
class DeviceLog:
    """What the profile engine asked one device for and got back in one poll."""

    varbinds: int = 0
    requests: int = 0
    gets: set[str] = field(default_factory=set)  # OIDs that came back with a value from GET / GETNEXT
    walks: set[str] = field(default_factory=set)  # column roots that came back from walks
    walk_varbinds: int = 0

    def distinct(self) -> tuple[int, list[str]]:
        """Distinct varbinds read (a GETNEXT landing inside a walked column is read twice by the agent) and
        the scalars that are not under a walked column."""
        roots = tuple(w + "." for w in self.walks)
        gets = sorted(g for g in self.gets if not g.startswith(roots))
        return self.walk_varbinds + len(gets), gets

    def reset(self) -> None:
        self.varbinds = self.requests = self.walk_varbinds = 0
        self.gets.clear()
        self.walks.clear()


class RecordingClient:
    """An SnmpClient that notes what goes through it (cheap: counters and OID sets)."""

    def __init__(self, inner: Any, note: DeviceLog) -> None:
        self.inner = inner
        self.note = note

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        got: dict[str, SnmpValue] = await self.inner.get(oids)
        self.note.requests += 1
        self.note.varbinds += len(got)
        self.note.gets.update(got)
        return got

    async def next(self, oids: Sequence[str]) -> Varbinds:
        got: Varbinds = await self.inner.next(oids)
        self.note.requests += 1
        for oid, v in got:
            if not v.is_empty:
                self.note.varbinds += 1
                self.note.gets.add(oid)
        return got

    async def walk(self, root: str, start: str | None = None, end: str | None = None) -> Varbinds:
        got: Varbinds = await self.inner.walk(root, start, end)
        self.note.requests += 1
        self.note.varbinds += len(got)
        self.note.walk_varbinds += len(got)
        if start is None:
            self.note.walks.add(root.strip("."))
        else:
            base = root.strip(".")
            for oid, _ in got:
                col = oid[len(base) + 1 :].split(".", 1)[0]
                self.note.walks.add(f"{base}.{col}")
        return got

    def close(self) -> None:
        self.inner.close()


class BenchClock:
    """The system clock, whose wall time can be moved forward (to let a rule's ``for`` delay elapse)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class BenchApp(App):
    """The daemon, with the bench driving the polls and noting each device's SNMP traffic."""

    def __init__(self, config: Path, clock: BenchClock) -> None:
        super().__init__(config, clock=clock)
        self.notes: dict[str, DeviceLog] = {}

    def _schedule(self, runtime: Runtime) -> None:
        return None  # the bench runs the cycles

    def _snmp_fetcher(self, dev: Any, loaded: LoadedConfig, profiles: ProfileSet) -> Any:
        fetcher = super()._snmp_fetcher(dev, loaded, profiles)
        if fetcher is not None:
            note = self.notes.setdefault(dev.name, DeviceLog())
            fetcher.client = RecordingClient(fetcher.client, note)
        return fetcher

    @property
    def pollers(self) -> dict[str, DevicePoller]:
        assert self.runtime is not None
        return self.runtime.pollers


# ------------------------------------------------------------------------------------------- measures


class LagMonitor:
    """Event-loop lag: how late a 10 ms sleep wakes up, sampled continuously."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period)
            self.samples.append(max(0.0, time.perf_counter() - t - self.period))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def take(self) -> list[float]:
        out, self.samples = self.samples, []
        return out

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


class GcPauses:
    """The garbage collector's pauses, by generation (``gc.callbacks``): a full collection walks every
    container object of the heap, and its pause shows as event-loop lag."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def take(self) -> dict[str, Any]:
        out, self.pauses = self.pauses, []
        full = [d for g, d in out if g == 2]
        return {"collections": len(out), "full_collections": len(full),
                "full_max_s": max(full, default=0.0), "all_s": sum(d for _, d in out)}


class Bench:
    def __init__(self, app: BenchApp, clock: BenchClock) -> None:
        self.app = app
        self.clock = clock
        self.lag = LagMonitor()
        self.gc = GcPauses()
        self.commits: dict[tuple[str, str], float] = {}  # (device, rule) -> monotonic time of the notice

    async def start(self) -> None:
        await self.app.start()
        self.app.pipeline.incidents.subscribe(self._on_notice)
        self.lag.start()
        self.gc.start()

    def _on_notice(self, notice: Any) -> None:
        if notice.kind in ("opened", "reopened"):
            view = notice.incident
            self.commits.setdefault((view.device or "", view.rule or ""), time.monotonic())

    async def cycle(self, devices: Sequence[str] | None = None, spread: float = 0.0) -> dict[str, Any]:
        """Poll every device (or the given ones) once, at most max_concurrency devices in flight; with
        ``spread``, the polls start evenly over that many seconds (as the scheduler spreads an interval's
        polls) rather than all at once."""
        pollers = self.app.pollers
        names = list(devices) if devices is not None else list(pollers)
        limit = asyncio.Semaphore(self.app.runtime.loaded.config.agent.snmp.max_concurrency)  # type: ignore[union-attr]
        for n in names:
            self.app.notes[n].reset()
        errors: dict[str, int] = {}

        start = time.monotonic()
        step = spread / max(len(names), 1)

        async def one(i: int, name: str) -> None:
            if step:
                await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
            async with limit:
                poller = pollers[name]
                poller.state.not_before = 0.0  # a device in back-off is still polled once per cycle
                await self.app._run_poll(poller)
                err = poller.state.last_error if poller.state.consecutive_failures else None
                if err:
                    errors[err] = errors.get(err, 0) + 1

        self.lag.take()
        self.gc.take()
        u0, w0 = Usage.self_(), time.perf_counter()
        await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
        wall, u1 = time.perf_counter() - w0, Usage.self_()
        lag = self.lag.take()
        gc_pauses = self.gc.take()
        notes = [self.app.notes[n] for n in names]
        return {"devices": len(names), "ok": len(names) - sum(errors.values()), "errors": errors,
                "wall_s": wall, "cpu_s": u1.cpu - u0.cpu, "varbinds": sum(n.distinct()[0] for n in notes),
                "varbinds_received": sum(n.varbinds for n in notes),
                "requests": sum(n.requests for n in notes), "event_loop_lag_s": quantiles(lag),
                "gc": gc_pauses, "maxrss_bytes": u1.maxrss}

    def plan(self, path: Path) -> dict[str, Any]:
        """What each device was asked in the last cycle, for the peers to do the same work."""
        data = {name: {"gets": n.distinct()[1], "walks": sorted(n.walks), "varbinds": n.distinct()[0],
                       "varbinds_received": n.varbinds, "walk_varbinds": n.walk_varbinds, "requests": n.requests,
                       "profile": (p.fetcher.profile.name if getattr(p.fetcher, "profile", None) else None)}
                for name, n in self.app.notes.items() for p in [self.app.pollers[name]]}
        path.write_text(json.dumps(data), encoding="utf-8")
        return {"path": str(path), "devices": len(data)}

    async def scrape(self, times: int) -> dict[str, Any]:
        import aiohttp

        port = self.app.http.bound_port
        url = f"http://127.0.0.1:{port}/metrics"
        walls: list[float] = []
        size = lines = 0
        u0 = Usage.self_()
        async with aiohttp.ClientSession() as session:
            for _ in range(times):
                t = time.perf_counter()
                async with session.get(url) as resp:
                    body = await resp.read()
                walls.append(time.perf_counter() - t)
                size = len(body)
                lines = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
        u1 = Usage.self_()
        return {"url": url, "wall_s": quantiles(walls), "bytes": size, "samples": lines,
                "cpu_s_per_scrape": (u1.cpu - u0.cpu) / max(times, 1)}

    async def threshold(self, devices: Sequence[str], rule: str, hold: float) -> dict[str, Any]:
        """The responder already plays the fault on ``devices``: a first poll sees the crossing (the rule's
        ``for`` delay starts), the wall clock moves past the delay, and the confirming poll opens the incident.
        Latency: from the start of the confirming poll to the incident's committed notice."""
        await self.cycle(devices)
        self.clock.offset += timedelta(seconds=hold + 1)
        starts: dict[str, float] = {}
        limit = asyncio.Semaphore(self.app.runtime.loaded.config.agent.snmp.max_concurrency)  # type: ignore[union-attr]

        async def one(name: str) -> None:
            async with limit:
                starts[name] = time.monotonic()
                await self.app._run_poll(self.app.pollers[name])

        await asyncio.gather(*(one(n) for n in devices))
        deadline = time.monotonic() + 15.0  # a loaded machine may commit late: wait, the latency says how late
        while time.monotonic() < deadline and any((d, rule) not in self.commits for d in devices):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        lat = [self.commits[(d, rule)] - starts[d] for d in devices if (d, rule) in self.commits]
        return {"rule": rule, "devices": len(devices), "incidents": len(lat), "latency_s": quantiles(lat)}


# ------------------------------------------------------------------------------------------- main loop


async def serve(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    with open(workdir / "agent.log", "w", encoding="utf-8") as logf:  # noqa: ASYNC230 - before the agent starts
        logs.configure("info", json=True, stream=logf)
        clock = BenchClock()
        app = BenchApp(Path(args.config), clock)
        bench = Bench(app, clock)
        await bench.start()
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        def answer(obj: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

        answer({"ready": True, "devices": len(app.pollers), "http_port": app.http.bound_port,
                "trap_port": app.traps.port if app.traps is not None else None})
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = json.loads(line)
                name = cmd.pop("cmd")
                if name == "cycle":
                    answer(await bench.cycle(cmd.get("devices"), float(cmd.get("spread", 0.0))))
                elif name == "plan":
                    answer(bench.plan(Path(cmd["path"])))
                elif name == "scrape":
                    answer(await bench.scrape(int(cmd.get("times", 5))))
                elif name == "threshold":
                    answer(await bench.threshold(cmd["devices"], cmd["rule"], float(cmd["hold"])))
                elif name == "incidents":
                    answer({"commits": [[d, r, t] for (d, r), t in bench.commits.items()]})
                elif name == "usage":
                    u = Usage.self_()
                    answer({"cpu_s": u.cpu, "maxrss_bytes": u.maxrss})
                elif name == "stop":
                    break
                else:
                    answer({"error": f"unknown command {name!r}"})
        finally:
            await bench.lag.stop()
            await app.stop()
            answer({"stopped": True})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", required=True)
    args = p.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
