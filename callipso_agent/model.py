"""Typed value objects that flow through the pipeline.

collection -> Measurement / Event -> rules -> Signal -> incidents -> outputs.
Values are stored in base units (seconds, volts, degrees Celsius, percent, hertz, amperes, watts);
formatting happens only when rendering.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any


class Severity(enum.IntEnum):
    """Generic severity; the value is the Monitoring Plugins exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}; expected one of ok, warning, critical, unknown") from None

    @staticmethod
    def worst(states: Iterable[Severity]) -> Severity:
        """Worst state; CRITICAL beats UNKNOWN beats WARNING beats OK (Nagios ordering for aggregation)."""
        order = {Severity.OK: 0, Severity.WARNING: 1, Severity.UNKNOWN: 2, Severity.CRITICAL: 3}
        result = Severity.OK
        for state in states:
            if order[state] > order[result]:
                result = state
        return result


class MetricKind(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    STATE = "state"  # vendor enum normalised to a value + label + severity
    INFO = "info"  # a text value (firmware, model); value is 1


def _freeze(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted((labels or {}).items())))


@dataclass(frozen=True, slots=True)
class Measurement:
    """One polled value of one device."""

    device: str
    name: str
    value: float | None
    at: datetime
    unit: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: MetricKind = MetricKind.GAUGE
    state: Severity = Severity.OK
    text: str | None = None
    help: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _freeze(self.labels))

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Identity of the series: device, name and labels."""
        return (self.device, self.name, tuple(self.labels.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": dict(self.labels),
            "value": self.value,
            "unit": self.unit,
            "kind": self.kind.value,
            "state": self.state.label,
            "text": self.text,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Event:
    """Something a device told us without being asked (trap, syslog) or a collector noticed once."""

    device: str
    name: str
    severity: Severity
    at: datetime
    source: str = ""
    text: str = ""
    clear: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _freeze(self.labels))
        object.__setattr__(self, "raw", MappingProxyType(dict(self.raw)))


@dataclass(frozen=True, slots=True)
class PollResult:
    """The outcome of one poll of one device."""

    device: str
    started: datetime
    duration: float
    measurements: tuple[Measurement, ...] = ()
    error: str | None = None  # error kind: unreachable, timeout, auth_failed, parse_error, ...
    error_text: str | None = None
    system: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class IncidentState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SUPPRESSED = "suppressed"  # held by a maintenance window: recorded, not worked on, not notified
    RESOLVED = "resolved"

    @property
    def active(self) -> bool:
        """Open or acknowledged: an incident someone has to work on."""
        return self in (IncidentState.OPEN, IncidentState.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class IncidentView:
    """What outputs (météo, metrics, API, plugins) read of an incident; the incident engine produces it."""

    id: int
    key: str  # stable problem key, e.g. "ups_on_battery:ups-aubagne-mds"
    title: str  # one-line summary in the operators' language
    state: IncidentState
    priority: str  # "P1".."P4"
    severity: Severity
    opened_at: datetime
    site: str | None = None
    device: str | None = None
    services: tuple[str, ...] = ()
    rule: str | None = None
    itsm_ref: str | None = None  # ticket number once known
    resolved_at: datetime | None = None
    user_impact: str = "none"  # none | degraded | outage (the météo's user state)
    technical_impact: str = "minor"  # minor | major (perturbé / inaccessible)
    deadlines: Mapping[str, datetime] = field(default_factory=dict)
    runbook: str | None = None
