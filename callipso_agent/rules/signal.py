"""What the rule engine tells the incident engine: a problem started, changed severity, or cleared."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from callipso_agent.model import Severity


def problem_key(rule: str, target: str, labels: Mapping[str, str] | None = None) -> str:
    """The stable name of a problem: ``rule:target`` plus the labels that tell problems apart.

    >>> problem_key("sbc_ip_group_down", "sbc-hd13", {"ip_group": "ITSP-1"})
    'sbc_ip_group_down:sbc-hd13{ip_group=ITSP-1}'
    """
    key = f"{rule}:{target}"
    if labels:
        key += "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
    return key


@dataclass(frozen=True, slots=True)
class Signal:
    """A firing (``active``) or cleared problem.

    ``severity`` is WARNING or CRITICAL while active. ``fields`` holds the values the rule's text
    template may use (value, threshold, previous, detail, event, for, labels).
    """

    rule: str
    key: str
    active: bool
    at: datetime
    severity: Severity = Severity.OK
    device: str | None = None
    site: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(sorted(self.labels.items()))))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
