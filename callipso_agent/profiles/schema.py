"""The schema of an SNMP device profile. ``collectors/schema.json`` is generated from these models."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.model import MetricKind, Severity

OID = r"^\.?[0-2](\.\d+)+$"
METRIC_NAME = r"^[a-z_][a-z0-9_]*$"


def _norm_oid(v: str) -> str:
    return v.strip().lstrip(".")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSpec(_Model):
    label: Annotated[str, Field(min_length=1)]
    severity: Literal["ok", "warning", "critical", "unknown"] = "ok"
    value: float | None = Field(default=None, description="numeric value to emit instead of the raw one")

    @property
    def sev(self) -> Severity:
        return Severity.parse(self.severity)


class IndexPart(_Model):
    label: Annotated[str, Field(pattern=METRIC_NAME)]
    type: Literal["integer", "string", "ipaddress", "oid"] = "integer"
    offset: int = Field(default=0, description="added to integer indexes (e.g. 1 for 0-based port numbers)")


class Lookup(_Model):
    label: Annotated[str, Field(pattern=METRIC_NAME)]
    column: Annotated[str, Field(pattern=OID)]
    states: dict[int, str] | None = Field(default=None, description="integer → text, for enum columns")

    _n = field_validator("column")(_norm_oid)


class SkipIf(_Model):
    column: Annotated[str, Field(pattern=OID)] | None = Field(
        default=None, description="column read at the same index; default: the metric's own value")
    values: list[int | float | str]

    _n = field_validator("column")(lambda v: _norm_oid(v) if v else v)


class MetricSpec(_Model):
    name: Annotated[str, Field(pattern=METRIC_NAME)]
    help: str = ""
    oid: Annotated[str | None, Field(pattern=OID, description="scalar OID (value at .0, or the OID itself)")] = None
    column: Annotated[str | None, Field(pattern=OID, description="table column OID; one value per row")] = None
    type: MetricKind = MetricKind.GAUGE
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    none_values: list[float] = Field(default_factory=list, description="sentinel raw values meaning 'no value'")
    min: float | None = Field(default=None, description="scaled values below are 'no value'")
    max: float | None = Field(default=None, description="scaled values above are 'no value'")
    value_map: dict[int, float] | None = Field(default=None, description="raw integer → emitted value")
    default: float | None = Field(default=None, description="emitted when the raw value is not in value_map")
    states: dict[int, StateSpec] | None = None
    unknown_state: Literal["ok", "warning", "critical", "unknown"] = "unknown"
    regex: str | None = Field(default=None, description="extract a number (first group) from a text value")
    labels: dict[str, str] = Field(default_factory=dict)
    index: list[IndexPart] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    skip_if: SkipIf | None = None
    sum_rows: bool = Field(default=False, description="emit one value: the sum over the table's rows")

    _n = field_validator("oid", "column")(lambda v: _norm_oid(v) if v else v)

    @model_validator(mode="after")
    def _source(self) -> MetricSpec:
        if (self.oid is None) == (self.column is None):
            raise ValueError("a metric needs exactly one of 'oid' (scalar) or 'column' (table)")
        if self.oid is not None and (self.index or self.lookups or self.skip_if or self.sum_rows):
            raise ValueError("index, lookups, skip_if and sum_rows apply to table columns only")
        if self.regex is not None:
            try:
                if re.compile(self.regex).groups < 1:
                    raise ValueError("regex needs one capturing group")
            except re.error as err:
                raise ValueError(f"invalid regex: {err}") from err
        if self.type == MetricKind.STATE and not self.states:
            raise ValueError("a state metric needs a 'states' map")
        if self.type == MetricKind.COUNTER and not self.name.endswith("_total"):
            raise ValueError("counter names end in _total (Prometheus convention)")
        return self

    @property
    def source(self) -> str:
        return self.oid or self.column or ""


class SystemField(_Model):
    oid: Annotated[str, Field(pattern=OID)]
    regex: str | None = None

    _n = field_validator("oid")(_norm_oid)


class Detect(_Model):
    sys_object_id: list[Annotated[str, Field(pattern=OID)]] = Field(default_factory=list)
    sys_descr: list[str] = Field(default_factory=list, description="regular expressions (search, case-insensitive)")
    requires: list[Annotated[str, Field(pattern=OID)]] = Field(
        default_factory=list, description="subtrees that must exist (GETNEXT lands inside)")
    priority: int = 0

    _n = field_validator("sys_object_id", "requires")(lambda v: [_norm_oid(x) for x in v])

    @field_validator("sys_descr")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for r in v:
            try:
                re.compile(r)
            except re.error as err:
                raise ValueError(f"invalid regex {r!r}: {err}") from err
        return v


class Profile(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    description: str = ""
    families: list[str] = Field(default_factory=list, description="inventory families this profile serves")
    abstract: bool = Field(default=False, description="only included by others, never detected")
    include: list[str] = Field(default_factory=list)
    detect: Detect = Field(default_factory=Detect)
    system: dict[str, SystemField] = Field(default_factory=dict)
    metrics: list[MetricSpec] = Field(default_factory=list)
    mibs: list[str] = Field(default_factory=list, description="MIBs the OIDs come from (documentation)")

    @model_validator(mode="after")
    def _detectable(self) -> Profile:
        d = self.detect
        if not self.abstract and not (d.sys_object_id or d.sys_descr or d.requires):
            raise ValueError("a non-abstract profile needs a detect block (sys_object_id, sys_descr or requires)")
        if not self.abstract and not self.families:
            raise ValueError("a non-abstract profile lists the inventory families it serves")
        return self
