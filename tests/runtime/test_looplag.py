"""Event-loop lag monitor: lag arithmetic on an injected clock, histogram and window maximum, the metrics
it exports, and a real loop blocked on purpose."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.exposition import generate_latest

from callipso_agent.collect.cache import LatestCache
from callipso_agent.looplag import LagStats, LoopLagMonitor
from callipso_agent.metrics import CallipsoCollector, build_registry
from tests.metrics.test_collector import find


class FakeTime:
    """A monotonic clock and a sleep that moves it by the requested time plus a scripted lag."""

    def __init__(self, lags: list[float]) -> None:
        self.now = 100.0
        self.lags = list(lags)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + (self.lags.pop(0) if self.lags else 0.0)


def test_lag_is_oversleep_and_never_negative() -> None:
    ft = FakeTime([0.0, 0.3, -0.2, 2.0])
    mon = LoopLagMonitor(ft.monotonic, sleep=ft.sleep, every=0.5, window=10.0)

    async def go() -> list[float]:
        return [await mon.sample() for _ in range(4)]

    lags = asyncio.run(go())
    assert [round(x, 6) for x in lags] == [0.0, 0.3, 0.0, 2.0]
    s = mon.stats
    assert s.count == 4 and round(s.total, 6) == 2.3 and s.last == 2.0
    # cumulative buckets: 0 and 0 under 1 ms, 0.3 under 0.5 s, 2.0 under 2.5 s
    by_bound = dict(zip(s.buckets, s.counts, strict=True))
    assert by_bound[0.001] == 2 and by_bound[0.25] == 2 and by_bound[0.5] == 3 and by_bound[2.5] == 4
    assert s.window_max() == 2.0


def test_window_maximum_forgets_old_samples() -> None:
    s = LagStats()
    s.observe(0.0, 3.0, window=60.0)
    s.observe(30.0, 0.2, window=60.0)
    assert s.window_max() == 3.0
    s.observe(61.0, 0.1, window=60.0)
    assert s.window_max() == 0.2
    assert s.count == 3  # the histogram keeps everything


def test_exported_as_histogram_max_and_task_count() -> None:
    s = LagStats()
    for at, lag in ((1.0, 0.002), (2.0, 0.04), (3.0, 1.2)):
        s.observe(at, lag, window=60.0)
    collector = CallipsoCollector(LatestCache(), lambda: {}, loop_lag=lambda: s, tasks=lambda: 17)
    text = generate_latest(build_registry(collector, process=False)).decode()
    assert find(text, "callipso_event_loop_lag_seconds_bucket", le="0.005") == [1.0]
    assert find(text, "callipso_event_loop_lag_seconds_bucket", le="0.05") == [2.0]
    assert find(text, "callipso_event_loop_lag_seconds_bucket", le="+Inf") == [3.0]
    assert find(text, "callipso_event_loop_lag_seconds_count") == [3.0]
    assert find(text, "callipso_event_loop_lag_max_seconds") == [1.2]
    assert find(text, "callipso_asyncio_tasks") == [17.0]


def test_a_blocked_real_loop_shows_up_as_lag() -> None:
    async def go() -> float:
        mon = LoopLagMonitor(time.monotonic, every=0.05)
        mon.start()
        await asyncio.sleep(0.12)
        time.sleep(0.4)  # block the loop on purpose  # noqa: ASYNC251
        await asyncio.sleep(0.12)
        await mon.stop()
        assert mon._task is None
        return mon.stats.window_max()

    assert asyncio.run(go()) >= 0.3
