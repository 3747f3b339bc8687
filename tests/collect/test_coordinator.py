"""DevicePoller: edge-triggered state, explicit backoff on an injected clock, errors never escape."""

from __future__ import annotations

import asyncio
import random

import pytest
from structlog.testing import capture_logs

from callipso_agent.clock import ManualClock
from callipso_agent.collect.coordinator import DevicePoller, FetchOutput
from callipso_agent.errors import AuthFailed, ParseError, Timeout
from callipso_agent.model import Measurement, PollResult


class ScriptedFetcher:
    """A fetcher whose answers are given in advance: a FetchOutput, an exception, or 'hang'."""

    def __init__(self, clock: ManualClock, script: list[object]) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls = 0
        self.closed = False

    async def fetch(self) -> FetchOutput:
        self.calls += 1
        step = self.script.pop(0)
        if step == "hang":
            await asyncio.sleep(3600)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, FetchOutput)
        return step

    def close(self) -> None:
        self.closed = True


def ok(clock: ManualClock, value: float = 1.0) -> FetchOutput:
    return FetchOutput([Measurement("d1", "ups_on_battery", value, clock.now())])


def make(script: list[object], *, interval: float = 60.0, timeout: float = 5.0):
    clock = ManualClock()
    results: list[PollResult] = []

    async def sink(r: PollResult) -> None:
        results.append(r)

    fetcher = ScriptedFetcher(clock, [s(clock) if callable(s) else s for s in script])
    poller = DevicePoller("d1", "SITE", "ups-mib", fetcher, clock, sink, interval=interval, timeout=timeout,
                          backoff_max=600, rng=random.Random(1))
    return clock, poller, fetcher, results


async def test_success_then_failure_then_recovery_logs_each_edge_once() -> None:
    clock, poller, fetcher, results = make([ok, Timeout("x"), Timeout("x"), Timeout("x"), ok])
    with capture_logs() as logs:
        await poller.poll()
        for _ in range(3):
            clock.advance(poller.backoff_delay() + 60)
            await poller.poll()
        clock.advance(poller.backoff_delay() + 60)
        await poller.poll()
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert [r.error for r in results[1:4]] == ["timeout"] * 3
    events = [e["event"] for e in logs]
    assert events.count("poll_failed") == 1  # edge-triggered, not once per failed poll
    assert events.count("device_recovered") == 1
    assert poller.state.consecutive_failures == 0


async def test_backoff_skips_polls_until_delay_passed() -> None:
    clock, poller, fetcher, results = make([Timeout("x"), Timeout("x"), Timeout("x"), ok])
    await poller.poll()  # failure 1: no backoff yet
    assert poller.state.not_before <= clock.monotonic()
    clock.advance(60)
    await poller.poll()  # failure 2: back off ~ interval * 2
    delay = poller.state.not_before - clock.monotonic()
    assert 108 <= delay <= 132
    clock.advance(60)
    assert await poller.poll() is None  # skipped, device not hammered
    assert fetcher.calls == 2 and poller.state.skipped == 1
    clock.advance(delay)
    await poller.poll()  # failure 3: ~ interval * 4
    delay3 = poller.state.not_before - clock.monotonic()
    assert 216 <= delay3 <= 264


async def test_backoff_is_capped() -> None:
    clock, poller, _, _ = make([Timeout("x")] * 12)
    for _ in range(12):
        clock.advance(poller.state.not_before - clock.monotonic() + 1)
        await poller.poll()
    assert poller.state.not_before - clock.monotonic() <= 600 * 1.1


async def test_hung_fetch_times_out_cleanly() -> None:
    clock, poller, _, results = make(["hang"], timeout=0.05)
    r = await poller.poll()
    assert r is not None and r.error == "timeout"
    assert not poller.state.in_flight


async def test_bug_in_fetcher_is_contained() -> None:
    clock, poller, _, results = make([ZeroDivisionError("boom"), ok])
    with capture_logs() as logs:
        r = await poller.poll()
    assert r is not None and r.error == "internal_error" and "ZeroDivisionError" in (r.error_text or "")
    assert any(e["event"] == "poll_crashed" for e in logs)


async def test_auth_failure_has_its_own_kind() -> None:
    _, poller, _, results = make([AuthFailed("bad key")])
    await poller.poll()
    assert results[0].error == "auth_failed"


async def test_failing_sink_does_not_break_polling() -> None:
    clock = ManualClock()

    async def sink(_r: PollResult) -> None:
        raise RuntimeError("store down")

    fetcher = ScriptedFetcher(clock, [ok(clock), ok(clock)])
    poller = DevicePoller("d1", "S", "f", fetcher, clock, sink, interval=10, timeout=1)
    assert (await poller.poll()) is not None
    assert (await poller.poll()) is not None
    assert fetcher.calls == 2


@pytest.mark.parametrize("failures,expected_min", [(0, 0.0), (1, 0.0), (2, 108.0), (3, 216.0)])
def test_backoff_table(failures: int, expected_min: float) -> None:
    _, poller, _, _ = make([])
    poller.state.consecutive_failures = failures
    d = poller.backoff_delay()
    assert expected_min <= d <= expected_min * 1.23 + 1e-9


async def test_a_device_answering_nonsense_is_polled_on_schedule_without_back_off() -> None:
    """Regression (fault load, docs/reliability.md): a device answering genErr or truncated PDUs was backed off
    like a silent one, so the rules saw no result for several intervals and opened device_unreachable for a
    device that answers (its reason is parse_error)."""
    clock, poller, fetcher, results = make([ParseError("genErr")] * 4 + [Timeout("x")] * 3)
    for _ in range(4):
        await poller.poll()
        assert poller.state.not_before <= clock.monotonic()  # due again at the next interval
        clock.advance(60)
    assert [r.error for r in results] == ["parse_error"] * 4
    for _ in range(3):  # a silent device is still backed off from its second failure on
        clock.advance(max(0.0, poller.state.not_before - clock.monotonic()) + 60)
        await poller.poll()
    assert poller.state.not_before > clock.monotonic() + 60
