"""What ``/metrics`` and ``/readyz`` say about the agent's own dependencies: the store and the outbox.

:class:`StoreHealth` records the outcome of the agent's writes to its store (device states, incidents)
so a full disk or a restarted PostgreSQL shows as ``callipso_store_writable 0`` and in ``/readyz``
instead of only in the log. :class:`OutboxGauges` keeps a snapshot of the outbox backlog per target
(EasyVista, each notification channel), refreshed before each scrape: a peer that is down shows as a
growing ``callipso_outbox_pending{target}`` and ``callipso_outbox_oldest_pending_age_seconds{target}``.

Both follow the collector's rule: nothing is computed at scrape time beyond reading these snapshots.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from callipso_agent.metrics import label_value

log = structlog.get_logger()

MAX_ERROR_TEXT = 200


class Families(Protocol):
    def get(self, name: str, doc: str, typ: str) -> Any: ...


class StoreHealth:
    """Outcome of the store writes, by operation (``device_state``, ``incidents``...).

    ``failed`` logs the first failure of an operation with its error (then stays quiet until it
    recovers, which is logged too), so a full disk does not flood the log at every poll.
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.errors_total: dict[str, int] = {}
        self.failing: dict[str, str] = {}  # operation -> last error text
        self.last_error_at: float | None = None
        self.external: dict[str, Callable[[], bool]] = {}  # operation -> "is it failing now?"

    def watch(self, operation: str, failing: Callable[[], bool]) -> None:
        """Another part keeps its own failure state (the incident engine): read it at each check."""
        self.external[operation] = failing

    def failed(self, operation: str, err: BaseException) -> None:
        text = f"{type(err).__name__}: {err}"[:MAX_ERROR_TEXT]
        self.errors_total[operation] = self.errors_total.get(operation, 0) + 1
        self.last_error_at = self._now()
        if operation not in self.failing:
            log.error("store_write_failed", operation=operation, error=text)
        self.failing[operation] = text

    def ok(self, operation: str) -> None:
        if self.failing.pop(operation, None) is not None:
            log.info("store_write_recovered", operation=operation)

    def failing_now(self) -> dict[str, str]:
        out = dict(self.failing)
        for operation, check in self.external.items():
            try:
                if check():
                    out.setdefault(operation, "failing")
            except Exception:  # a probe reports, never raises
                out.setdefault(operation, "unknown")
        return out

    @property
    def writable(self) -> bool:
        return not self.failing_now()

    def collect_into(self, fams: Families) -> None:
        writable = fams.get(
            "callipso_store_writable", "1 when the agent's last writes to its store succeeded", "gauge"
        )
        errors = fams.get(
            "callipso_store_write_errors_total", "Failed writes to the agent's store, by operation", "counter"
        )
        last = fams.get(
            "callipso_store_last_error_timestamp_seconds", "Unix time of the last failed store write", "gauge"
        )
        failing = self.failing_now()
        writable.add({}, 0 if failing else 1)
        for operation, n in sorted(self.errors_total.items()):
            errors.add({"operation": label_value(operation)}, n)
        if self.last_error_at is not None:
            last.add({}, self.last_error_at)


@dataclass(frozen=True, slots=True)
class _Row:
    target: str
    pending: int
    dead: int
    oldest_due: datetime | None


class OutboxGauges:
    """A snapshot of the outbox, per target, refreshed before each scrape (``await refresh()``)."""

    def __init__(self, outbox: Any, now: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self.outbox = outbox
        self._now = now
        self.timeout = timeout
        self.rows: list[_Row] = []
        self.states: dict[str, int] = {}
        self.up = False

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                rows = await self.outbox.per_target()
                states = await self.outbox.backlog()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the store is down: say so in the scrape
            log.debug("outbox_metrics_unavailable", error=str(err))
            self.up = False
            return
        self.rows = [_Row(r.target, r.pending, r.dead, r.oldest_due) for r in rows]
        self.states = dict(states)
        self.up = True

    def collect_into(self, fams: Families) -> None:
        up = fams.get("callipso_outbox_up", "1 when the outbox could be read for this scrape", "gauge")
        up.add({}, 1 if self.up else 0)
        jobs = fams.get("callipso_outbox_jobs", "Outbox jobs by state (done and dead included)", "gauge")
        pending = fams.get(
            "callipso_outbox_pending",
            "Deliveries not done yet (waiting, in flight or waiting for a retry), by target",
            "gauge",
        )
        dead = fams.get("callipso_outbox_dead", "Deliveries given up, waiting for an operator, by target", "gauge")
        oldest = fams.get(
            "callipso_outbox_oldest_pending_age_seconds",
            "Age of the oldest delivery that is due or was already tried and is not done, by target",
            "gauge",
        )
        for state, n in sorted(self.states.items()):
            jobs.add({"state": label_value(state)}, n)
        now = self._now()
        for row in sorted(self.rows, key=lambda r: r.target):
            labels = {"target": label_value(row.target)}
            pending.add(labels, row.pending)
            dead.add(labels, row.dead)
            age = max(now - row.oldest_due.timestamp(), 0.0) if row.oldest_due is not None else 0.0
            oldest.add(labels, age if row.pending else 0.0)


class DeliveryCounters:
    """Attempts made by this process's outbox worker, by target and outcome (done, retry, dead).

    With ``notifications`` (the collector's :class:`~callipso_agent.metrics.NotificationStats`), each
    attempt also counts in ``callipso_notifications_sent_total`` / ``callipso_notification_failures_total``
    (``reason`` ``retry`` or ``dead``), which the shipped alert rules read.
    """

    def __init__(self, notifications: Any = None) -> None:
        self.attempts: dict[tuple[str, str], int] = {}
        self.notifications = notifications

    def __call__(self, target: str, outcome: str) -> None:
        key = (label_value(target), outcome)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.notifications is not None:
            if outcome == "done":
                self.notifications.sent(target)
            else:
                self.notifications.failed(target, outcome)

    def collect_into(self, fams: Families) -> None:
        fam = fams.get(
            "callipso_outbox_attempts_total", "Delivery attempts since the agent started, by target and outcome",
            "counter",
        )
        for (target, outcome), n in sorted(self.attempts.items()):
            fam.add({"target": target, "outcome": outcome}, n)
