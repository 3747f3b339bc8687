"""One coordinator per device: polls through a fetcher, keeps edge-triggered up/down state, backs off.

Like an update coordinator: the fetcher is the single override point; errors are typed
(:class:`~callipso_agent.errors.TransportError`, :class:`~callipso_agent.errors.ParseError`,
:class:`~callipso_agent.errors.NoProfile`) and become the poll's error kind; anything else is a bug
and is logged loudly, yet never stops the other devices.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from callipso_agent.clock import Clock
from callipso_agent.errors import CallipsoError, ConfigError
from callipso_agent.model import Measurement, PollResult

log = structlog.get_logger()


@dataclass
class FetchOutput:
    measurements: list[Measurement]
    system: dict[str, str] = field(default_factory=dict)


class Fetcher(Protocol):
    async def fetch(self) -> FetchOutput: ...

    def close(self) -> None: ...


ResultSink = Callable[[PollResult], Awaitable[None]]
# errors of a device that answered (quickly, and without a login that could lock an account): no back-off
ANSWERED_ERRORS = frozenset({"parse_error", "no_profile"})


@dataclass
class PollerState:
    consecutive_failures: int = 0
    last_success: float | None = None  # monotonic
    last_error: str | None = None
    last_error_text: str | None = None
    not_before: float = 0.0
    polls: int = 0
    skipped: int = 0
    in_flight: bool = False


class DevicePoller:
    """Polls one device; ``poll()`` is called by the scheduler every interval."""

    def __init__(self, device: str, site: str, family: str, fetcher: Fetcher, clock: Clock, sink: ResultSink, *,
                 interval: float, timeout: float, backoff_max: float = 600.0, unreachable_after: int = 1,
                 rng: random.Random | None = None) -> None:
        self.device = device
        self.site = site
        self.family = family
        self.fetcher = fetcher
        self.clock = clock
        self.sink = sink
        self.interval = interval
        self.timeout = timeout
        self.backoff_max = backoff_max
        self.unreachable_after = unreachable_after
        self.state = PollerState()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self.log = log.bind(device=device, site=site, family=family)

    @property
    def up(self) -> bool:
        return self.state.consecutive_failures < self.unreachable_after and self.state.last_success is not None

    def backoff_delay(self) -> float:
        """Delay before the next attempt after ``n`` consecutive failures: interval * 2^(n-1), capped."""
        n = self.state.consecutive_failures
        if n <= 1:
            return 0.0
        base = min(self.interval * (2.0 ** (n - 1)), self.backoff_max)
        return float(base) * (0.9 + 0.2 * self.rng.random())

    async def poll(self) -> PollResult | None:
        now = self.clock.monotonic()
        if self.state.in_flight:
            self.state.skipped += 1
            self.log.warning("poll_overrun", interval=self.interval)
            return None
        if now < self.state.not_before:
            self.state.skipped += 1
            return None
        self.state.in_flight = True
        started = self.clock.now()
        t0 = self.clock.monotonic()
        error: str | None = None
        error_text: str | None = None
        output: FetchOutput | None = None
        try:
            async with asyncio.timeout(self.timeout):
                output = await self.fetcher.fetch()
        except TimeoutError:
            error, error_text = "timeout", f"no complete answer within {self.timeout:g}s"
        except ConfigError as err:
            error, error_text = err.kind, str(err)
        except CallipsoError as err:
            error, error_text = err.kind, str(err)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug: loud, but the other devices go on
            self.log.exception("poll_crashed")
            error, error_text = "internal_error", f"{type(err).__name__}: {err}"
        finally:
            self.state.in_flight = False
        duration = self.clock.monotonic() - t0
        self.state.polls += 1
        if error is None and output is not None:
            if self.state.consecutive_failures:
                self.log.info("device_recovered", after_failures=self.state.consecutive_failures)
            elif self.state.last_success is None:
                self.log.info("device_up", measurements=len(output.measurements), duration=round(duration, 3))
            self.state.consecutive_failures = 0
            self.state.last_success = self.clock.monotonic()
            self.state.last_error = None
            self.state.not_before = 0.0
            result = PollResult(device=self.device, started=started, duration=duration,
                                measurements=tuple(output.measurements), system=output.system)
            self.log.debug("poll_ok", measurements=len(output.measurements), duration=round(duration, 3))
        else:
            self.state.consecutive_failures += 1
            first = self.state.consecutive_failures == 1 or error != self.state.last_error
            self.state.last_error, self.state.last_error_text = error, error_text
            # back off from devices that do not answer; one that answers nonsense is polled on schedule (a back-off
            # there left the rules without a result for several intervals: "no poll result", device_unreachable)
            backoff = self.backoff_delay() if error not in ANSWERED_ERRORS else 0.0
            self.state.not_before = self.clock.monotonic() + backoff
            if first:
                self.log.error("poll_failed", error=error, detail=error_text)
            else:
                self.log.debug("poll_failed_again", error=error, failures=self.state.consecutive_failures)
            result = PollResult(device=self.device, started=started, duration=duration, error=error,
                                error_text=error_text)
        try:
            await self.sink(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("result_sink_failed")
        return result

    def close(self) -> None:
        self.fetcher.close()
