"""Default thresholds per metric name (``checks/thresholds.yaml``), as Nagios range strings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callipso_agent.errors import ConfigError
from callipso_agent.model import Severity
from callipso_agent.rules.ranges import Range, RangeError
from callipso_agent.yamlload import load_yaml, parse_model

METRIC_NAME = r"^[a-z_][a-z0-9_]*$"


def _range(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        Range.parse(str(v))
    except RangeError as err:
        raise ValueError(str(err)) from None
    return str(v)


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warning: str | None = Field(
        default=None, description="Nagios range; outside it (or inside with @) → warning"
    )
    critical: str | None = Field(default=None, description="Nagios range; → critical")
    labels: dict[str, str] = Field(default_factory=dict, description="only series carrying these labels")
    description: str = ""

    _r = field_validator("warning", "critical", mode="before")(_range)

    def state(self, value: float | None, labels: Mapping[str, str] | None = None) -> Severity:
        if value is None:
            return Severity.OK
        if self.labels and any((labels or {}).get(k) != v for k, v in self.labels.items()):
            return Severity.OK
        if self.critical is not None and Range.parse(self.critical).alerts(value):
            return Severity.CRITICAL
        if self.warning is not None and Range.parse(self.warning).alerts(value):
            return Severity.WARNING
        return Severity.OK


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: dict[str, Threshold | list[Threshold]] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _names(cls, v: dict[str, Threshold | list[Threshold]]) -> dict[str, Threshold | list[Threshold]]:
        import re

        for name in v:
            if not re.fullmatch(METRIC_NAME, name):
                raise ValueError(f"invalid metric name {name!r}")
        return v

    def state(self, name: str, value: float | None, labels: Mapping[str, str] | None = None) -> Severity:
        entry = self.thresholds.get(name)
        if entry is None:
            return Severity.OK
        entries = entry if isinstance(entry, list) else [entry]
        return Severity.worst(t.state(value, labels) for t in entries)


def load_thresholds(path: Path) -> Thresholds:
    data = load_yaml(path)
    if data is None:
        return Thresholds()
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a 'thresholds' key", file=str(path))
    return parse_model(Thresholds, data, str(path))
