"""Incident work before polls.

The agent runs on one event loop. When thousands of polls answer at once (after a start, a reload, or with
a short interval), every loop iteration is full of their decoding and each step of a trap's incident (a few
trips to the database thread) waits for a whole iteration: the incident is stored seconds late. While a
trap's event is being handled, new polls wait to start; the polls already in flight finish, the loop empties
and the incident is written at once. A poll waits ``max_wait`` seconds at most, so a storm of traps slows
polling down but never stops it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from callipso_agent.metrics_text import Families

P = ParamSpec("P")
R = TypeVar("R")


class UrgentWork:
    def __init__(self, max_wait: float = 2.0) -> None:
        self.max_wait = max_wait
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.polls_held = 0  # polls that waited for urgent work to finish
        self.polls_let_through = 0  # of those, the ones that stopped waiting after max_wait

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def wrap(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """``fn`` as urgent work: while it runs, polls wait to start."""

        @functools.wraps(fn)
        async def urgent(*args: P.args, **kwargs: P.kwargs) -> R:
            self._in_flight += 1
            self._idle.clear()
            try:
                return await fn(*args, **kwargs)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return urgent

    async def before_poll(self) -> None:
        """Return when no urgent work is in flight, or after ``max_wait`` seconds."""
        if self._in_flight == 0:
            return
        self.polls_held += 1
        try:
            await asyncio.wait_for(self._idle.wait(), self.max_wait)
        except TimeoutError:
            self.polls_let_through += 1

    def collect_into(self, families: Families) -> None:
        held = families.get("callipso_polls_held_total",
                            "Polls that waited to start while a trap's incident was being handled", "counter")
        through = families.get("callipso_polls_let_through_total",
                               "Held polls that started anyway after the longest wait (a storm of traps)",
                               "counter")
        if held is not None:
            held.add({}, self.polls_held)
        if through is not None:
            through.add({}, self.polls_let_through)
