"""The schema of an SNMP device profile. ``collectors/schema.json`` is generated from these models.

A profile declares what to read (scalars by OID, table columns by column OID) and how to turn raw
values into measurements in base units: scale/offset (optionally chosen per row by a unit column),
sentinels, enum states with a generic severity, row filters and label lookups. Device knowledge
lives in the YAML files; the engine only interprets these declarations.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.model import MetricKind, Severity

OID = r"^\.?[0-2](\.\d+)+$"
SUFFIX = r"^\d+(\.\d+)*$"
METRIC_NAME = r"^[a-z_][a-z0-9_]*$"
SeverityName = Literal["ok", "warning", "critical", "unknown"]


def _norm_oid(v: str | None) -> str | None:
    return v.strip().lstrip(".") if v else v


def _check_regex(v: str | None, groups: int = 0) -> str | None:
    if v is None:
        return v
    try:
        compiled = re.compile(v)
    except re.error as err:
        raise ValueError(f"invalid regex {v!r}: {err}") from err
    if compiled.groups < groups:
        raise ValueError(f"regex {v!r} needs {groups} capturing group(s)")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSpec(_Model):
    label: Annotated[str, Field(min_length=1)]
    severity: SeverityName = "ok"
    value: float | None = Field(default=None, description="numeric value to emit instead of the raw one")

    @property
    def sev(self) -> Severity:
        return Severity.parse(self.severity)


class IndexPart(_Model):
    label: Annotated[str, Field(pattern=METRIC_NAME)]
    type: Literal["integer", "string", "ipaddress", "oid", "skip"] = Field(
        default="integer", description="skip: consume one index component without making a label"
    )
    offset: int = Field(default=0, description="added to integer indexes (e.g. 1 for 0-based port numbers)")


class _Source(_Model):
    """Where a companion value comes from: a scalar (``oid``) or a column read at the row's index."""

    oid: Annotated[str | None, Field(pattern=OID, description="scalar OID")] = None
    column: Annotated[str | None, Field(pattern=OID, description="column OID, read at the row's index")] = (
        None
    )
    suffix: Annotated[
        str | None,
        Field(
            pattern=SUFFIX,
            description=(
                "for tables whose column id comes after the row id (``base.<row>.<suffix>``): "
                "the trailing part"
            ),
        ),
    ] = None

    _n = field_validator("oid", "column")(_norm_oid)

    @model_validator(mode="after")
    def _one(self) -> _Source:
        if (self.oid is None) == (self.column is None):
            raise ValueError("give exactly one of 'oid' (scalar) or 'column' (table)")
        if self.suffix is not None and self.column is None:
            raise ValueError("'suffix' applies to a 'column'")
        return self


class Lookup(_Source):
    """A label whose value is read from another column at the same index (or from a scalar)."""

    label: Annotated[str, Field(pattern=METRIC_NAME)]
    states: dict[int, str] | None = Field(default=None, description="integer → text, for enum columns")
    map: dict[str, str] | None = Field(default=None, description="text → text (e.g. an alarm OID → its name)")
    regex: str | None = Field(default=None, description="keep the first capturing group of the text")

    _r = field_validator("regex")(lambda v: _check_regex(v, 1))

    @field_validator("map")
    @classmethod
    def _map_keys(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return (
            {k.strip().lstrip(".") if re.fullmatch(OID, k.strip()) else k: t for k, t in v.items()}
            if v
            else v
        )


class RowCondition(_Source):
    """A test on a companion value at the row's index. Without ``oid``/``column`` it tests the metric's
    own raw value (``column`` then defaults to the metric's)."""

    oid: Annotated[str | None, Field(pattern=OID)] = None
    column: Annotated[str | None, Field(pattern=OID)] = None
    values: list[int | float | str] = Field(default_factory=list, description="raw values (numbers or texts)")
    regex: str | None = Field(default=None, description="regular expression searched in the text")
    min_index: int | None = Field(
        default=None, description="the condition only holds for rows whose first index is at least this"
    )

    _r = field_validator("regex")(lambda v: _check_regex(v, 0))

    @model_validator(mode="after")
    def _one(self) -> RowCondition:
        if self.oid is not None and self.column is not None:
            raise ValueError("give at most one of 'oid' or 'column'")
        if not self.values and self.regex is None:
            raise ValueError("a condition needs 'values' or 'regex'")
        return self


class ScaleCase(_Model):
    scale: float = 1.0
    offset: float = 0.0


class ScaleBy(_Source):
    """Pick scale/offset from a unit selector (e.g. a per-row Celsius/Fahrenheit column)."""

    cases: dict[int | str, ScaleCase] = Field(
        min_length=1, description="selector value (integer or text) → scale"
    )
    otherwise: Literal["metric", "skip"] = Field(
        default="skip", description="selector missing or unknown: use the metric's own scale, or emit nothing"
    )


class Aggregate(_Model):
    """Reduce a table to one value per group of labels."""

    op: Literal["sum", "count"] = "sum"
    by: list[Annotated[str, Field(pattern=METRIC_NAME)]] = Field(default_factory=list)
    fill: dict[str, list[str]] = Field(
        default_factory=dict, description="label → values for which a 0 is emitted when no row has them"
    )


class MetricSpec(_Model):
    name: Annotated[str, Field(pattern=METRIC_NAME)]
    help: str = ""
    oid: Annotated[
        str | None, Field(pattern=OID, description="scalar OID (value at .0, or the OID itself)")
    ] = None
    column: Annotated[str | None, Field(pattern=OID, description="table column OID; one value per row")] = (
        None
    )
    suffix: Annotated[
        str | None,
        Field(
            pattern=SUFFIX,
            description=(
                "rows are ``column.<index>.<suffix>`` (row id before the column id, or a trailing .0)"
            ),
        ),
    ] = None
    type: MetricKind = MetricKind.GAUGE
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    scale_by: ScaleBy | None = None
    none_values: list[float] = Field(
        default_factory=list, description="sentinel raw values meaning 'no value'"
    )
    none_texts: list[str] = Field(default_factory=list, description="sentinel texts meaning 'no value'")
    min: float | None = Field(default=None, description="scaled values below are 'no value'")
    max: float | None = Field(default=None, description="scaled values above are 'no value'")
    value_map: dict[int, float] | None = Field(default=None, description="raw integer → emitted value")
    default: float | None = Field(default=None, description="emitted when the raw value is not in value_map")
    states: dict[int | str, StateSpec] | None = Field(
        default=None, description="raw integer (or text, e.g. an OID) → label, severity and optional value"
    )
    unknown_state: SeverityName = "unknown"
    text_map: dict[str, str] | None = Field(default=None, description="info metrics: text → text")
    regex: str | None = Field(default=None, description="extract a number (first group) from a text value")
    labels: dict[str, str] = Field(default_factory=dict)
    index: list[IndexPart] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    skip_if: RowCondition | list[RowCondition | list[RowCondition]] | None = Field(
        default=None,
        description="drop the row/value when any item holds (an item that is a list holds when "
        "all its conditions hold)",
    )
    keep_if: list[RowCondition] = Field(default_factory=list, description="keep the row only when all hold")
    rows_limit: list[Annotated[str, Field(pattern=OID)]] = Field(
        default_factory=list,
        description=(
            "scalar row counts (first one present wins, e.g. a number of phases): rows whose first index is "
            "greater are dropped"
        ),
    )
    sum_rows: bool = Field(default=False, description="emit one value: the sum over the table's rows")
    aggregate: Aggregate | None = None

    _n = field_validator("oid", "column")(_norm_oid)
    _nl = field_validator("rows_limit")(lambda v: [_norm_oid(x) for x in v])
    _r = field_validator("regex")(lambda v: _check_regex(v, 1))

    @field_validator("states")
    @classmethod
    def _state_keys(cls, v: dict[int | str, StateSpec] | None) -> dict[int | str, StateSpec] | None:
        if not v:
            return v
        out: dict[int | str, StateSpec] = {}
        for k, s in v.items():
            if isinstance(k, str) and re.fullmatch(r"-?\d+", k.strip()):
                out[int(k)] = s
            elif isinstance(k, str) and re.fullmatch(OID, k.strip()):
                out[k.strip().lstrip(".")] = s
            else:
                out[k] = s
        return out

    @field_validator("text_map")
    @classmethod
    def _text_keys(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return (
            {k.strip().lstrip(".") if re.fullmatch(OID, k.strip()) else k: t for k, t in v.items()}
            if v
            else v
        )

    @property
    def skip_groups(self) -> list[list[RowCondition]]:
        """skip_if as a list of AND-groups (the row is dropped when any group holds)."""
        if self.skip_if is None:
            return []
        items = self.skip_if if isinstance(self.skip_if, list) else [self.skip_if]
        return [item if isinstance(item, list) else [item] for item in items]

    @property
    def skip_conditions(self) -> list[RowCondition]:
        return [c for group in self.skip_groups for c in group]

    @model_validator(mode="after")
    def _source(self) -> MetricSpec:
        if (self.oid is None) == (self.column is None):
            raise ValueError("a metric needs exactly one of 'oid' (scalar) or 'column' (table)")
        if self.oid is not None:
            if self.index or self.sum_rows or self.aggregate or self.suffix or self.rows_limit:
                raise ValueError(
                    "index, suffix, rows_limit, sum_rows and aggregate apply to table columns only"
                )
            for c in (*self.lookups, *self.skip_conditions, *self.keep_if):
                if c.column is not None:
                    raise ValueError("a scalar metric's lookups and conditions read scalars ('oid')")
            if self.scale_by is not None and self.scale_by.column is not None:
                raise ValueError("a scalar metric's scale_by reads a scalar ('oid')")
        if self.sum_rows and self.aggregate:
            raise ValueError("give 'sum_rows' or 'aggregate', not both")
        if self.type == MetricKind.STATE and not self.states:
            raise ValueError("a state metric needs a 'states' map")
        if self.type == MetricKind.COUNTER and not self.name.endswith("_total"):
            raise ValueError("counter names end in _total (Prometheus convention)")
        if self.aggregate:
            labels = {ix.label for ix in self.index} | {lk.label for lk in self.lookups} | set(self.labels)
            missing = [b for b in self.aggregate.by if b not in labels]
            if missing:
                raise ValueError(f"aggregate.by names labels the metric does not make: {missing}")
        return self

    @property
    def source(self) -> str:
        return self.oid or self.column or ""


class SystemField(_Model):
    oid: Annotated[str, Field(pattern=OID)]
    regex: str | None = Field(default=None, description="keep the first capturing group (or the whole match)")
    none_texts: list[str] = Field(
        default_factory=list, description="texts meaning 'unknown' (factory defaults)"
    )

    _n = field_validator("oid")(_norm_oid)
    _r = field_validator("regex")(lambda v: _check_regex(v, 0))


class Detect(_Model):
    sys_object_id: list[Annotated[str, Field(pattern=OID)]] = Field(default_factory=list)
    sys_descr: list[str] = Field(
        default_factory=list, description="regular expressions (search, case-insensitive)"
    )
    requires: list[Annotated[str, Field(pattern=OID)]] = Field(
        default_factory=list, description="subtrees that must all exist (GETNEXT lands inside)"
    )
    requires_any: list[Annotated[str, Field(pattern=OID)]] = Field(
        default_factory=list, description="subtrees of which at least one must exist"
    )
    priority: int = 0

    _n = field_validator("sys_object_id", "requires", "requires_any")(lambda v: [_norm_oid(x) for x in v])

    @field_validator("sys_descr")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for r in v:
            _check_regex(r)
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
        if not self.abstract and not (d.sys_object_id or d.sys_descr or d.requires or d.requires_any):
            raise ValueError(
                "a non-abstract profile needs a detect block (sys_object_id, sys_descr or requires)"
            )
        if not self.abstract and not self.families:
            raise ValueError("a non-abstract profile lists the inventory families it serves")
        return self
