"""Fan-out of incident changes to the outputs (ticketing, notifications)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from callipso_agent.ports import IncidentChange

log = structlog.get_logger()

Subscriber = Callable[[IncidentChange], Awaitable[Any]]


class OutputDispatcher:
    """``await dispatcher.on_change(change)`` after the engine committed a change.

    Every subscriber runs even if an earlier one fails; the first failure is raised afterwards so the
    caller knows an output could not record its work (each subscriber only enqueues to the outbox).
    """

    def __init__(self, *subscribers: Subscriber) -> None:
        self.subscribers = list(subscribers)

    async def on_change(self, change: IncidentChange) -> None:
        first: BaseException | None = None
        for sub in self.subscribers:
            try:
                await sub(change)
            except Exception as err:
                log.exception(
                    "output_subscriber_failed", incident=change.incident.id, change=change.kind.value
                )
                first = first or err
        if first is not None:
            raise first
