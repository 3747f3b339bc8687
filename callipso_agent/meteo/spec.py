"""Schema and loader of the météo checklist: ``checks/meteo.yaml`` and the daily ``checks/daily/*.yaml``.

The checklist is data: which devices, checks and incidents decide each service line's and each site's
user and technical state, and the conditions over measurements that make a daily check fail. Unknown
keys are errors; every error names the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.config.models import NAME, AgentConfig, SiteKind
from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.meteo.states import TechState, UserState
from callipso_agent.paths import checks_dir
from callipso_agent.yamlload import LineDict, LineList, load_yaml, parse_model

Lang = Literal["fr", "en"]
LANGS: tuple[Lang, ...] = ("fr", "en")

# A text shown to operators: one string for every language, or {fr: ..., en: ...} (fr is required).
LText = str | dict[Lang, str]


def tr(text: LText | None, lang: str) -> str:
    """The text in ``lang`` (French when that language is not given)."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    return text.get(lang) or text.get("fr") or next(iter(text.values()), "")  # type: ignore[call-overload]


def _check_ltext(v: Any) -> Any:
    if isinstance(v, dict) and v and "fr" not in v:
        raise ValueError("a translated text needs at least its French version (key 'fr')")
    return v


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, (str, int, float)) else v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Effect(_Model):
    """What a finding does to a line: the user state and the technical state it implies (at least)."""

    user: UserState = UserState.NOMINAL
    technical: TechState = TechState.PERTURBE


class DeviceSelector(_Model):
    """Devices matching every given field (a list field matches any of its values)."""

    service: list[str] | None = None
    family: list[str] | None = None
    site: list[str] | None = None
    site_kind: list[SiteKind] | None = None
    role: list[str] | None = None
    name: list[str] | None = None

    _lists = field_validator("service", "family", "site", "site_kind", "role", "name", mode="before")(
        classmethod(lambda cls, v: _as_list(v))
    )

    def matches(
        self,
        *,
        name: str,
        site: str,
        family: str,
        services: Iterable[str],
        role: str | None,
        site_kind: str | None,
    ) -> bool:
        if self.name is not None and name not in self.name:
            return False
        if self.family is not None and family not in self.family:
            return False
        if self.site is not None and site not in self.site:
            return False
        if self.site_kind is not None and site_kind not in self.site_kind:
            return False
        if self.role is not None and role not in self.role:
            return False
        return not (self.service is not None and not set(self.service) & set(services))


class SiteSelector(_Model):
    kind: list[SiteKind] | None = None
    code: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)

    _lists = field_validator("kind", "code", "exclude", mode="before")(
        classmethod(lambda cls, v: _as_list(v))
    )

    def matches(self, code: str, kind: str) -> bool:
        if code in self.exclude:
            return False
        if self.kind is not None and kind not in self.kind:
            return False
        return self.code is None or code in self.code


class Condition(_Model):
    """When one series fails: a comparison of its value, its normalised state or state label, or its age.

    ``state`` is the severity the collector profile gave the value (ok, warning, critical, unknown);
    ``label`` is the state's label (e.g. a self-test ``error`` but not ``aborted``). ``older_than`` reads
    the value as a Unix timestamp and fails when it is more than that many seconds before the evaluation
    time (e.g. the last successful backup).
    """

    op: Literal["==", "!=", "<", "<=", ">", ">="] | None = None
    value: float | None = None
    state: list[Literal["ok", "warning", "critical", "unknown"]] | None = None
    label: list[str] | None = None
    older_than: Annotated[float | None, Field(gt=0)] = None

    _lists = field_validator("state", "label", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [
            self.op is not None or self.value is not None,
            self.state is not None,
            self.label is not None,
            self.older_than is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of: op and value, state, label, older_than")
        if (self.op is None) != (self.value is None):
            raise ValueError("op and value go together")
        return self


class CheckSpec(_Model):
    """A daily check: a condition over one metric of a set of devices.

    Series are grouped (per device, per site, or all together); a group fails when ``require`` of its
    series fail (``any`` or ``all``). The pseudo-metric ``up`` is 1 when the device answered its last
    poll, 0 when it did not (no value when it was never polled).
    """

    id: Annotated[str, Field(pattern=NAME)]
    category: Annotated[str, Field(pattern=NAME)]
    title: LText
    devices: Annotated[list[DeviceSelector], Field(min_length=1)]
    metric: str
    labels: dict[str, list[str]] = Field(default_factory=dict)
    fail_when: Condition
    ratio_to_attribute: str | None = Field(
        default=None, description="compare 100 * value / the device attribute of that name (a capacity)"
    )
    group_by: Literal["device", "site", "all"] = "device"
    require: Literal["any", "all"] = "any"
    missing: Literal["ignore", "fail"] = "ignore"
    effect: Effect = Field(default_factory=Effect)
    services: list[str] | None = Field(
        default=None, description="service lines concerned (default: the devices')"
    )
    incident_rules: list[str] = Field(
        default_factory=list,
        description="open incidents of these rules on the same device (or site) are this check's incident",
    )
    suppressed_by: list[str] = Field(
        default_factory=list,
        description="drop a failure when one of these checks also fails on the same device or site",
    )
    summary: LText
    runbook: str | None = None

    _lt = field_validator("title", "summary", mode="before")(classmethod(lambda cls, v: _check_ltext(v)))

    @field_validator("labels", mode="before")
    @classmethod
    def _label_lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: _as_list(x) for k, x in v.items()}
        return v


class DailyChecksFile(_Model):
    checks: list[CheckSpec] = Field(default_factory=list)


class DeviceGroup(_Model):
    """A supervised group: all of its devices down is a total outage; some down is a perturbation."""

    name: LText
    devices: Annotated[list[DeviceSelector], Field(min_length=1)]
    all_down: Effect = Field(
        default_factory=lambda: Effect(user=UserState.INACCESSIBLE, technical=TechState.INACCESSIBLE)
    )
    some_down: Effect = Field(
        default_factory=lambda: Effect(user=UserState.NOMINAL, technical=TechState.PERTURBE)
    )

    _lt = field_validator("name", mode="before")(classmethod(lambda cls, v: _check_ltext(v)))


class IncidentSelector(_Model):
    """Which open incidents count for a line. An incident counts when it matches every given field."""

    services: list[str] | None = Field(
        default=None, description="any of these services (default: the line's key)"
    )
    sites: list[str] | None = None
    site_kinds: list[SiteKind] | None = Field(
        default=None, description="site kinds; incidents without a site match"
    )
    rules: list[str] | None = None

    _lists = field_validator("services", "sites", "site_kinds", "rules", mode="before")(
        classmethod(lambda cls, v: _as_list(v))
    )


class ServiceItem(_Model):
    key: Annotated[str, Field(pattern=NAME)]
    label: LText | None = Field(default=None, description="default: the service line's name in the inventory")
    description: LText = ""
    incidents: IncidentSelector = Field(default_factory=IncidentSelector)
    checks: list[str] = Field(default_factory=list)
    groups: list[DeviceGroup] = Field(default_factory=list)

    _lt = field_validator("label", "description", mode="before")(classmethod(lambda cls, v: _check_ltext(v)))


class SiteItem(_Model):
    site: str
    label: LText | None = Field(default=None, description="default: the site code")
    description: LText | None = Field(default=None, description="default: the site's name in the inventory")
    checks: list[str] = Field(
        default_factory=lambda: ["*"], description="check ids, '*' = any check failing here"
    )
    groups: list[DeviceGroup] = Field(default_factory=list)

    _lt = field_validator("label", "description", mode="before")(classmethod(lambda cls, v: _check_ltext(v)))


class RemoteCategory(_Model):
    """A status of one remote site; a site takes the first category it qualifies for."""

    id: Annotated[str, Field(pattern=NAME)]
    label: LText
    checks: list[str] = Field(
        default_factory=list, description="failed check ids that put a site here ('*' = any)"
    )
    incidents: bool = Field(default=False, description="an open incident at the site puts it here")
    effect: Effect = Field(default_factory=Effect)
    all_effect: Effect | None = Field(default=None, description="effect when every remote site is here")

    _lt = field_validator("label", mode="before")(classmethod(lambda cls, v: _check_ltext(v)))


class RemoteItem(_Model):
    key: Annotated[str, Field(pattern=NAME)] = "remote"
    label: LText = "SITES DISTANTS"
    description: LText = ""
    sites: SiteSelector = Field(default_factory=lambda: SiteSelector(kind=[SiteKind.REMOTE]))
    nominal_label: LText = "nominal"
    categories: list[RemoteCategory] = Field(default_factory=list)
    incident_cap: Effect = Field(
        default_factory=lambda: Effect(user=UserState.PERTURBATIONS, technical=TechState.PERTURBE),
        description="the most one remote site's incident does to the aggregate line",
    )

    _lt = field_validator("label", "description", "nominal_label", mode="before")(
        classmethod(lambda cls, v: _check_ltext(v))
    )


class MeteoSpecFile(_Model):
    title: LText = "Météo Callipso"
    include_checks: list[str] = Field(
        default_factory=lambda: ["daily/*.yaml"],
        description="glob patterns, relative to this file, of daily check files",
    )
    checks: list[CheckSpec] = Field(default_factory=list, description="checks declared inline")
    services: Annotated[list[ServiceItem], Field(min_length=1)]
    sites: list[SiteItem] = Field(default_factory=list)
    remote: RemoteItem | None = None

    _lt = field_validator("title", mode="before")(classmethod(lambda cls, v: _check_ltext(v)))


@dataclass(frozen=True)
class MeteoSpec:
    """The loaded checklist: the météo file plus every daily check it includes."""

    file: str
    title: LText
    services: tuple[ServiceItem, ...]
    sites: tuple[SiteItem, ...]
    remote: RemoteItem | None
    checks: tuple[CheckSpec, ...]
    # where things were declared, for errors found later (cross-checks against an inventory)
    origins: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)

    def check(self, check_id: str) -> CheckSpec:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)


def default_meteo_path() -> Path:
    return checks_dir() / "meteo.yaml"


def _line(node: Any, *path: str | int) -> int | None:
    line = getattr(node, "line", None)
    for p in path:
        if isinstance(node, LineDict) and str(p) in node.key_lines:
            line = node.key_lines[str(p)]
            node = node.get(str(p))
        elif isinstance(node, LineList) and isinstance(p, int) and 0 <= p < len(node):
            line = node.item_lines[p]
            node = node[p]
        else:
            break
    return line


def load_daily_checks(path: Path) -> tuple[list[CheckSpec], dict[str, tuple[str, int | None]]]:
    data = load_yaml(path)
    if data is None:
        return [], {}
    parsed = parse_model(DailyChecksFile, data, str(path))
    origins = {f"check:{c.id}": (str(path), _line(data, "checks", i)) for i, c in enumerate(parsed.checks)}
    return parsed.checks, origins


def load_meteo_spec(path: str | Path | None = None) -> MeteoSpec:
    """Load and validate the checklist (the shipped ``checks/meteo.yaml`` by default) and its daily checks.

    Raises ``ConfigError`` / ``ConfigErrors`` naming the file, line and field of every problem found.
    """
    file = Path(path) if path is not None else default_meteo_path()
    data = load_yaml(file)
    parsed = parse_model(MeteoSpecFile, data, str(file))
    errors: list[ConfigError] = []
    checks: list[CheckSpec] = []
    origins: dict[str, tuple[str, int | None]] = {}
    for i, c in enumerate(parsed.checks):
        checks.append(c)
        origins.setdefault(f"check:{c.id}", (str(file), _line(data, "checks", i)))
    seen: dict[str, tuple[str, int | None]] = {}
    daily_files: list[Path] = []
    for pattern in parsed.include_checks:
        daily_files += sorted(p for p in file.parent.glob(pattern) if p.is_file())
    for c in checks:
        seen[c.id] = origins[f"check:{c.id}"]
    dup_inline = [c.id for c in checks]
    for cid in {x for x in dup_inline if dup_inline.count(x) > 1}:
        errors.append(ConfigError(f"check {cid!r} declared twice", file=str(file), field="checks"))
    for f in daily_files:
        try:
            more, where = load_daily_checks(f)
        except ConfigErrors as errs:
            errors += errs.errors
            continue
        except ConfigError as err:
            errors.append(err)
            continue
        for c in more:
            origin = where[f"check:{c.id}"]
            if c.id in seen:
                prev = seen[c.id]
                errors.append(
                    ConfigError(
                        f"check {c.id!r} already declared in {prev[0]}:{prev[1]}",
                        file=origin[0],
                        line=origin[1],
                        field="checks.id",
                    )
                )
                continue
            seen[c.id] = origin
            origins[f"check:{c.id}"] = origin
            checks.append(c)
    known = {c.id for c in checks}
    for c in checks:
        for other in c.suppressed_by:
            if other not in known:
                file_, line_ = origins.get(f"check:{c.id}", (str(file), None))
                errors.append(
                    ConfigError(
                        f"unknown check {other!r}", file=file_, line=line_, field=f"{c.id}.suppressed_by"
                    )
                )
    for i, item in enumerate(parsed.services):
        origins[f"service:{item.key}"] = (str(file), _line(data, "services", i))
        for j, cid in enumerate(item.checks):
            if cid not in known:
                errors.append(
                    ConfigError(
                        f"unknown check {cid!r}",
                        file=str(file),
                        line=_line(data, "services", i, "checks", j),
                        field=f"services[{i}].checks[{j}]",
                    )
                )
    keys = [s.key for s in parsed.services]
    for k in {k for k in keys if keys.count(k) > 1}:
        errors.append(ConfigError(f"service line {k!r} listed twice", file=str(file), field="services"))
    for i, site_item in enumerate(parsed.sites):
        origins[f"site:{site_item.site}"] = (str(file), _line(data, "sites", i))
        for j, cid in enumerate(site_item.checks):
            if cid != "*" and cid not in known:
                errors.append(
                    ConfigError(
                        f"unknown check {cid!r}",
                        file=str(file),
                        line=_line(data, "sites", i, "checks", j),
                        field=f"sites[{i}].checks[{j}]",
                    )
                )
    if parsed.remote is not None:
        origins["remote"] = (str(file), _line(data, "remote"))
        for i, cat in enumerate(parsed.remote.categories):
            for j, cid in enumerate(cat.checks):
                if cid != "*" and cid not in known:
                    errors.append(
                        ConfigError(
                            f"unknown check {cid!r}",
                            file=str(file),
                            line=_line(data, "remote", "categories", i, "checks", j),
                            field=f"remote.categories[{i}].checks[{j}]",
                        )
                    )
    if errors:
        raise ConfigErrors(errors)
    return MeteoSpec(
        file=str(file),
        title=parsed.title,
        services=tuple(parsed.services),
        sites=tuple(parsed.sites),
        remote=parsed.remote,
        checks=tuple(checks),
        origins=origins,
    )


def cross_check(
    spec: MeteoSpec, config: AgentConfig, *, families: Iterable[str] | None = None
) -> list[ConfigError]:
    """Service keys, site codes and device selectors of the checklist against an inventory.

    ``families`` are the known device families (collectors/_families.yaml): a family outside them is a
    typo. A known family with no device in this inventory is fine (a smaller estate, the lab).
    """
    errors: list[ConfigError] = []
    services = {s.key for s in config.services}
    sites = {s.code for s in config.sites}
    known_families = set(families) if families is not None else None

    def err(origin_key: str, field_: str, msg: str) -> None:
        file, line = spec.origins.get(origin_key, (spec.file, None))
        errors.append(ConfigError(msg, file=file, line=line, field=field_))

    def selectors(origin_key: str, where: str, sels: Iterable[DeviceSelector]) -> None:
        for k, sel in enumerate(sels):
            for svc in sel.service or ():
                if svc not in services:
                    err(origin_key, f"{where}[{k}].service", f"unknown service line {svc!r}")
            for code in sel.site or ():
                if code not in sites:
                    err(origin_key, f"{where}[{k}].site", f"unknown site {code!r}")
            for fam in sel.family or ():
                if known_families is not None and fam not in known_families:
                    err(
                        origin_key,
                        f"{where}[{k}].family",
                        f"unknown device family {fam!r}; known: {', '.join(sorted(known_families))}",
                    )

    for item in spec.services:
        if item.key not in services:
            err(
                f"service:{item.key}",
                "key",
                f"unknown service line {item.key!r}; known: {', '.join(sorted(services))}",
            )
        for svc in item.incidents.services or ():
            if svc not in services:
                err(f"service:{item.key}", "incidents.services", f"unknown service line {svc!r}")
        for g in item.groups:
            selectors(f"service:{item.key}", "groups.devices", g.devices)
    for site_item in spec.sites:
        code = site_item.site
        if code not in sites:
            err(f"site:{code}", "site", f"unknown site {code!r}; known: {', '.join(sorted(sites))}")
        for g in site_item.groups:
            selectors(f"site:{code}", "groups.devices", g.devices)
    for c in spec.checks:
        selectors(f"check:{c.id}", "devices", c.devices)
    return errors
