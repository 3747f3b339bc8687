"""Prometheus Alertmanager webhook receiver (payload version 4) → :class:`~callipso_agent.model.Event`.

Alertmanager re-sends a whole group at every ``group_interval`` and retries on 5xx, so the receiver is
idempotent on (groupKey, fingerprint, startsAt, status): each firing and each resolution of an alert
becomes one Event. A firing alert is an event opening a signal; a resolved one, ``clear=True``. When
the consumer fails, the request answers 503 and nothing is remembered, so Alertmanager's retry
delivers it again. The memory of what was seen is bounded and in-process: after a restart a re-sent
firing alert arrives once more, which the incident engine deduplicates on its open incident.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from callipso_agent.clock import Clock
from callipso_agent.model import Event, Severity

log = structlog.get_logger()

EventSink = Callable[[Event], Awaitable[None] | None]

SEVERITIES = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "high": Severity.CRITICAL,
    "major": Severity.CRITICAL,
    "disaster": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "minor": Severity.WARNING,
    "medium": Severity.WARNING,
    "average": Severity.WARNING,
    "info": Severity.OK,
    "informational": Severity.OK,
    "low": Severity.OK,
    "none": Severity.OK,
    "unknown": Severity.UNKNOWN,
}
ZERO_TIME_YEAR = 1  # endsAt is 0001-01-01T00:00:00Z while firing


class _Lenient(BaseModel):
    # Alertmanager may add fields in later versions: unknown keys are ignored, known ones are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=128)


class WebhookPayload(_Lenient):
    version: Literal["4"]
    groupKey: str = Field(max_length=4096)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(max_length=10_000)


def severity_of(labels: dict[str, str]) -> Severity:
    return SEVERITIES.get(labels.get("severity", "").strip().lower(), Severity.WARNING)


def to_event(alert: Alert, payload: WebhookPayload, now: datetime) -> Event:
    labels = alert.labels
    device = labels.get("device") or labels.get("instance") or labels.get("job") or "alertmanager"
    clear = alert.status == "resolved"
    at = alert.startsAt
    if clear:
        at = alert.endsAt if alert.endsAt is not None and alert.endsAt.year > ZERO_TIME_YEAR else now
    text = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    raw = {
        "fingerprint": alert.fingerprint,
        "groupKey": payload.groupKey,
        "receiver": payload.receiver,
        "startsAt": alert.startsAt.isoformat(),
        "endsAt": alert.endsAt.isoformat() if alert.endsAt else "",
        "generatorURL": alert.generatorURL,
        "externalURL": payload.externalURL,
        **{f"annotation.{k}": v for k, v in alert.annotations.items()},
    }
    return Event(
        device=device,
        name=labels.get("alertname", "alertmanager_alert"),
        severity=severity_of(labels),
        at=at,
        source="alertmanager",
        text=text,
        clear=clear,
        labels=labels,
        raw=raw,
    )


class AlertmanagerReceiver:
    def __init__(self, sink: EventSink, clock: Clock, *, remember: int = 20_000) -> None:
        self.sink = sink
        self.clock = clock
        self.remember = remember
        self._seen: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._lock = asyncio.Lock()

    @staticmethod
    def key(payload: WebhookPayload, alert: Alert) -> tuple[str, str, str, str]:
        return (payload.groupKey, alert.fingerprint, alert.startsAt.isoformat(), alert.status)

    async def receive(self, payload: WebhookPayload) -> tuple[int, int]:
        """Feed the new alerts to the sink; returns (accepted, duplicates). Raises what the sink raises."""
        accepted = duplicates = 0
        now = self.clock.now()
        async with self._lock:  # concurrent re-sends of one group are counted once
            for alert in payload.alerts:
                k = self.key(payload, alert)
                if k in self._seen:
                    duplicates += 1
                    self._seen.move_to_end(k)
                    continue
                result = self.sink(to_event(alert, payload, now))
                if asyncio.iscoroutine(result):
                    await result
                self._seen[k] = None
                while len(self._seen) > self.remember:
                    self._seen.popitem(last=False)
                accepted += 1
        if payload.truncatedAlerts:
            log.warning("alertmanager_truncated", group=payload.groupKey, truncated=payload.truncatedAlerts)
        return accepted, duplicates


def describe(payload: WebhookPayload) -> dict[str, Any]:
    return {
        "groupKey": payload.groupKey,
        "status": payload.status,
        "receiver": payload.receiver,
        "alerts": len(payload.alerts),
    }
