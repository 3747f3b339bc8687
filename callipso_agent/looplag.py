"""Event-loop lag: how late the agent's asyncio loop wakes up a task that asked to sleep.

A task sleeps ``every`` seconds in a loop; the time it actually slept minus ``every`` is the lag, i.e. how
long something kept the loop from running callbacks (a blocking call, a CPU-bound parse, a flood of
callbacks). Samples feed a histogram (``callipso_event_loop_lag_seconds``) and a sliding-window maximum
(``callipso_event_loop_lag_max_seconds``), exported by :mod:`callipso_agent.metrics`.

The clock and the sleep are injected: tests drive the monitor without real time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger()

#: histogram bounds, seconds: a healthy loop sits in the first buckets, a blocked one in the last.
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class LagStats:
    """Samples seen so far: cumulative histogram counts plus a window of recent samples for the maximum."""

    buckets: tuple[float, ...] = LAG_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    last: float = 0.0
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # (monotonic time, lag)

    def __post_init__(self) -> None:
        self.buckets = tuple(sorted(self.buckets))
        self.counts = [0] * len(self.buckets)

    def observe(self, at: float, lag: float, window: float) -> None:
        self.total += lag
        self.count += 1
        self.last = lag
        for i, bound in enumerate(self.buckets):
            if lag <= bound:
                self.counts[i] += 1
        self.recent.append((at, lag))
        while self.recent and self.recent[0][0] < at - window:
            self.recent.popleft()

    def window_max(self) -> float:
        return max((lag for _, lag in self.recent), default=0.0)


class LoopLagMonitor:
    """Samples the running loop's lag every ``every`` seconds; ``start()`` in the loop, ``await stop()``."""

    def __init__(
        self,
        monotonic: Callable[[], float],
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        every: float = 0.5,
        window: float = 60.0,
        warn_above: float = 1.0,
        buckets: Sequence[float] = LAG_BUCKETS,
    ) -> None:
        if every <= 0 or window <= 0:
            raise ValueError("every and window must be positive")
        self.monotonic = monotonic
        self.sleep = sleep
        self.every = every
        self.window = window
        self.warn_above = warn_above
        self.stats = LagStats(tuple(buckets))
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> float:
        """Sleep once and record how late the wake-up was (never negative)."""
        t0 = self.monotonic()
        await self.sleep(self.every)
        t1 = self.monotonic()
        lag = max(0.0, t1 - t0 - self.every)
        self.stats.observe(t1, lag, self.window)
        if lag > self.warn_above:
            log.warning("event_loop_lag", lag_seconds=round(lag, 3))
        return lag

    async def run(self) -> None:
        while True:
            await self.sample()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="event-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
