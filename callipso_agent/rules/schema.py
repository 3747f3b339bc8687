"""Schema of the rule files (``checks/rules/*.yaml``).

A rule file is a mapping with one key, ``rules``, holding a list of rules. Every rule has a ``name``
(unique across files, it becomes the incident's rule id), a ``kind`` and the operator-facing parts: the
incident title in French and English (``text``), the ``impact`` (which feeds the contract's priority
matrix and the météo) and a ``runbook`` file under ``runbooks/``. Kinds:

``threshold``
    a numeric metric against ``warning``/``critical`` limits, ``above`` or ``below``, with hysteresis; a
    limit is a number or a reference to the inventory (``{ref: device.attributes.licensed_channels,
    factor: 0.8}``) so a rule can compare a value with what the device or site is sized for.
``state``
    a state metric (``Measurement.state`` from the profile's state map), optionally remapped by label.
``absence``
    a device that stops answering: ``intervals`` consecutive failed polls with one of the ``errors``
    kinds (``unreachable``, ``timeout``, ``auth_failed``, ``no_profile``, ``parse_error``...), and with
    ``silence: true`` also no poll result at all for that many intervals.
``change``
    a metric that decreases/increases/changes (a reboot is ``device_uptime_seconds`` decreasing) or a
    system-information field that changes (firmware); the incident clears ``clear_after`` later.
``event``
    traps and other events by name: ``events`` raise, ``clear_events`` (or an event flagged ``clear``)
    clear, ``clear_after`` clears an event that never sends its clear.
``site``
    the site correlation: when every device of a site (or every WAN router) is down through the
    ``children`` rules, one site incident carries the devices' incidents.

``for`` delays firing until the condition has held that long (threshold and state rules).
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from callipso_agent.config.models import Criticality, Device, Site, SiteKind, Wan

RULE_NAME = r"^[a-z][a-z0-9_]*$"
RUNBOOK_FILE = r"^[a-z0-9][a-z0-9-]*\.md$"
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# The fields an incident text may use, e.g. "Onduleur {device} sur batterie ({value:.0f} s restantes)".
TEXT_FIELDS = frozenset(
    {
        "device",
        "site",
        "site_name",
        "family",
        "role",
        "value",
        "threshold",
        "previous",
        "severity",
        "labels",
        "detail",
        "event",
        "for",
        "children",
        "count",
    }
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h`` or ``1d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("expected a duration such as 60s, 5m or 1h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---- references to the inventory ------------------------------------------------------------------------


def check_ref(ref: str) -> str:
    """Check ``device.<field>``, ``device.attributes.<name>``, ``site.<field>`` or ``site.attributes.<name>``.

    Returns the reference unchanged; raises ValueError naming the known fields.
    """
    parts = ref.split(".")
    if len(parts) < 2 or parts[0] not in ("device", "site"):
        raise ValueError(f"reference {ref!r} must start with 'device.' or 'site.'")
    model: type[BaseModel] = Device if parts[0] == "device" else Site
    if parts[1] == "attributes":
        if len(parts) != 3 or not parts[2]:
            raise ValueError(f"reference {ref!r}: write {parts[0]}.attributes.<name>")
        return ref
    if len(parts) != 2 or parts[1] not in model.model_fields:
        known = ", ".join(sorted(f for f in model.model_fields if f != "attributes"))
        raise ValueError(f"reference {ref!r}: unknown {parts[0]} field; known: attributes.<name>, {known}")
    return ref


class Ref(_Model):
    """A limit taken from the inventory: ``value(ref) * factor + offset``."""

    ref: str
    factor: float = 1.0
    offset: float = 0.0

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        return check_ref(v)


class LabelRef(_Model):
    """A label value taken from the inventory (e.g. the WAN interface name of a router)."""

    ref: str

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        return check_ref(v)


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else str(e["msg"])


def _limit(v: Any) -> float | Ref:
    if isinstance(v, Ref):
        return v
    if isinstance(v, dict):
        try:
            return Ref.model_validate(v)
        except ValidationError as err:
            raise ValueError(_first_error(err)) from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("expected a number or an inventory reference {ref: ..., factor: ...}")
    return float(v)


def _label_match(v: Any) -> str | list[str] | LabelRef:
    if isinstance(v, LabelRef):
        return v
    if isinstance(v, dict):
        try:
            return LabelRef.model_validate(v)
        except ValidationError as err:
            raise ValueError(_first_error(err)) from None
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return list(v)
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise ValueError("expected a label value, a list of values or an inventory reference {ref: ...}")


Limit = Annotated[float | Ref, PlainValidator(_limit)]
LabelMatch = Annotated[str | list[str] | LabelRef, PlainValidator(_label_match)]


class Threshold(_Model):
    direction: Literal["above", "below"]
    warning: Limit | None = None
    critical: Limit | None = None
    hysteresis: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _limits(self) -> Threshold:
        if self.warning is None and self.critical is None:
            raise ValueError("give a warning limit, a critical limit or both")
        if isinstance(self.warning, float) and isinstance(self.critical, float):
            if self.direction == "above" and self.warning > self.critical:
                raise ValueError("direction above: the warning limit must not exceed the critical limit")
            if self.direction == "below" and self.warning < self.critical:
                raise ValueError("direction below: the warning limit must not be under the critical limit")
        return self


# ---- impact: priority inputs and the météo's states ----------------------------------------------------


class Impact(_Model):
    """How a firing rule affects the service.

    ``outage`` feeds the contract's impact (``outage`` = total interruption, ``partial``, ``degraded``,
    ``backup`` = running on a backup path, ``acceptable``); ``users`` says whose users count as affected
    (the site's, the device's service lines', or nobody); ``user`` and ``technical`` are the météo's
    user state (none/degraded/outage) and technical state (minor = perturbé, major = inaccessible).
    """

    outage: Literal["outage", "partial", "degraded", "backup", "acceptable"]
    users: Literal["site", "services", "none"] = "site"
    user: Literal["none", "degraded", "outage"] = "none"
    technical: Literal["minor", "major"] = "minor"


class ImpactWhen(_Model):
    """An impact that replaces the rule's own when every given condition holds (first match wins)."""

    severity: Literal["warning", "critical"] | None = None
    site_wan: Wan | None = None
    site_kind: SiteKind | None = None
    site_criticality: Criticality | None = None
    device_family: list[str] | None = None
    device_role: str | None = None
    impact: Impact

    @model_validator(mode="after")
    def _some(self) -> ImpactWhen:
        if all(
            getattr(self, f) is None
            for f in ("severity", "site_wan", "site_kind", "site_criticality", "device_family", "device_role")
        ):
            raise ValueError(
                "give at least one condition (severity, site_wan, site_kind, site_criticality, "
                "device_family, device_role)"
            )
        return self


class Texts(_Model):
    fr: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]

    @field_validator("fr", "en")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            parsed = list(string.Formatter().parse(v))
        except ValueError as err:
            raise ValueError(f"invalid template: {err}") from None
        for _, name, _, _ in parsed:
            if name is None:
                continue
            root = re.split(r"[.\[]", name, maxsplit=1)[0]
            if root not in TEXT_FIELDS:
                raise ValueError(
                    f"unknown template field {{{name}}}; known: {', '.join(sorted(TEXT_FIELDS))}"
                )
        return v


class _RuleBase(_Model):
    name: Annotated[str, Field(pattern=RULE_NAME, max_length=100)]
    description: str = ""
    families: list[str] = Field(default_factory=list, description="device families; empty: every family")
    impact: Impact
    impact_when: list[ImpactWhen] = Field(default_factory=list)
    service_kind: str | None = Field(
        default=None, description="selects per-kind SLA durations (toip, network)"
    )
    runbook: Annotated[str, Field(pattern=RUNBOOK_FILE)]
    text: Texts
    hold: Duration | None = Field(
        default=None, description="clear this long before resolving; default: engine's"
    )
    flap_window: Duration | None = Field(
        default=None, description="reopen instead of opening anew within this"
    )
    correlate: Literal["site"] | None = None


class _SeriesRule(_RuleBase):
    metric: Annotated[str, Field(min_length=1)]
    labels: dict[str, LabelMatch] = Field(default_factory=dict, description="label filter")
    key_labels: list[Annotated[str, Field(pattern=LABEL_NAME)]] | None = Field(
        default=None, description="labels that tell problems apart; default: all labels of the series"
    )


class ThresholdRule(_SeriesRule):
    kind: Literal["threshold"] = "threshold"
    threshold: Threshold
    for_: Duration = Field(default=0.0, alias="for")


class StateRule(_SeriesRule):
    kind: Literal["state"] = "state"
    states: dict[str, Literal["ok", "warning", "critical"]] = Field(
        default_factory=dict, description="override the profile's severity by state label"
    )
    for_: Duration = Field(default=0.0, alias="for")


class AbsenceRule(_RuleBase):
    kind: Literal["absence"] = "absence"
    errors: Annotated[list[str], Field(min_length=1)]
    intervals: Annotated[int, Field(ge=1, le=100)] = 3
    silence: bool = False
    severity: Literal["warning", "critical"] = "critical"


class ChangeRule(_RuleBase):
    kind: Literal["change"] = "change"
    metric: str | None = None
    system: list[str] | None = None
    change: Literal["decrease", "increase", "any"] = "any"
    labels: dict[str, LabelMatch] = Field(default_factory=dict)
    key_labels: list[Annotated[str, Field(pattern=LABEL_NAME)]] | None = None
    clear_after: Duration = 1800.0
    severity: Literal["warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _what(self) -> ChangeRule:
        if (self.metric is None) == (self.system is None):
            raise ValueError("give either metric or system (the system-information fields to watch)")
        if self.system is not None and self.change != "any":
            raise ValueError("system fields are text: only change: any applies")
        if self.system is not None and not self.system:
            raise ValueError("system needs at least one field name")
        return self


class EventRule(_RuleBase):
    kind: Literal["event"] = "event"
    events: Annotated[list[str], Field(min_length=1)]
    clear_events: list[str] = Field(default_factory=list)
    labels: dict[str, LabelMatch] = Field(default_factory=dict)
    key_labels: list[Annotated[str, Field(pattern=LABEL_NAME)]] = Field(
        default_factory=list, description="labels that tell problems apart ('event' is the event name)"
    )
    clear_after: Duration | None = None
    severity: Literal["warning", "critical"] | None = Field(
        default=None, description="fixed severity; default: the event's own"
    )


class SiteRule(_RuleBase):
    kind: Literal["site"] = "site"
    children: Annotated[list[str], Field(min_length=1)]
    wan_families: list[str] = Field(default_factory=lambda: ["wan-router"])
    delay: Duration = Field(default=90.0, description="how long a child waits for the rest of its site")
    severity: Literal["warning", "critical"] = "critical"


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return str(v.get("kind", ""))
    return str(getattr(v, "kind", ""))


KINDS = ("threshold", "state", "absence", "change", "event", "site")

AnyRule = Annotated[
    Annotated[ThresholdRule, Tag("threshold")]
    | Annotated[StateRule, Tag("state")]
    | Annotated[AbsenceRule, Tag("absence")]
    | Annotated[ChangeRule, Tag("change")]
    | Annotated[EventRule, Tag("event")]
    | Annotated[SiteRule, Tag("site")],
    Discriminator(
        _kind,
        custom_error_type="rule_kind",
        custom_error_message=f"unknown or missing rule kind; expected one of {', '.join(KINDS)}",
    ),
]

Rule = ThresholdRule | StateRule | AbsenceRule | ChangeRule | EventRule | SiteRule


class RuleFile(_Model):
    rules: list[AnyRule] = Field(default_factory=list)
