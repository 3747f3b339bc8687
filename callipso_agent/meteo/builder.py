"""Build the météo (data only): each service line's and each site's user and technical state, with reasons.

``compute_meteo`` is a pure function of the checklist, a snapshot of the estate, the evaluated daily
checks and the planned changes. A line's state is the worst of its findings:

* an open incident matched to the line: user state from ``user_impact`` (none/degraded/outage), technical
  state from ``technical_impact`` (minor/major), and never less than the user state's level;
* a failed daily check the line lists: the check's declared effect (an open incident with the same
  problem key lends it its number);
* a supervised device group: every device down is the group's ``all_down`` effect (total outage by
  default), some down its ``some_down`` effect (perturbé by default).

The remote sites are aggregated into one line: each site takes the first category it qualifies for
(unreachable, on UPS, degraded...), and the line counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal

from callipso_agent.meteo.changes import ChangesView
from callipso_agent.meteo.checks import CheckRun, FailedCheck
from callipso_agent.meteo.i18n import message
from callipso_agent.meteo.snapshot import EstateSnapshot
from callipso_agent.meteo.spec import (
    DeviceGroup,
    Effect,
    IncidentSelector,
    MeteoSpec,
    RemoteItem,
    ServiceItem,
    SiteItem,
    tr,
)
from callipso_agent.meteo.states import TechState, UserState, technical_from_impact, user_from_impact
from callipso_agent.model import IncidentView

LineKind = Literal["service", "site", "remote"]
Source = Literal["incident", "check", "device"]


def incident_number(incident: IncidentView, prefix: str = "CAL") -> str:
    """The ticket number when known, else the internal id (``CAL-000123``)."""
    return incident.itsm_ref or f"{prefix}-{incident.id:06d}"


@dataclass(frozen=True, slots=True)
class Finding:
    key: str  # identity across days (incident problem key, check key, group key)
    summary: str
    user: UserState
    technical: TechState
    source: Source
    refs: tuple[str, ...] = ()  # incident numbers
    since: datetime | None = None
    new: bool = False  # not in yesterday's météo

    def merged(self, other: Finding) -> Finding:
        """One finding from two of the same key; an incident's title (what its ticket says) wins."""
        lead = other if other.source == "incident" and self.source != "incident" else self
        return replace(
            lead,
            user=UserState.worst([self.user, other.user]),
            technical=TechState.worst([self.technical, other.technical]),
            refs=tuple(dict.fromkeys((*self.refs, *other.refs))),
            since=min((t for t in (self.since, other.since) if t), default=None),
        )


@dataclass(frozen=True, slots=True)
class RemoteCount:
    category: str  # "nominal" or a category id
    label: str
    count: int


@dataclass(frozen=True, slots=True)
class RemoteSiteRow:
    code: str
    name: str
    category: str
    category_label: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class LineChange:
    """A line whose states differ from yesterday's."""

    key: str
    label: str
    user_before: UserState
    technical_before: TechState
    user_now: UserState
    technical_now: TechState


@dataclass(frozen=True, slots=True)
class DiffItem:
    key: str
    lines: tuple[str, ...]  # labels of the lines it appears on
    summary: str
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeteoDiff:
    previous_day: date
    new: tuple[DiffItem, ...] = ()
    resolved: tuple[DiffItem, ...] = ()
    changed: tuple[LineChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.new or self.resolved or self.changed)


@dataclass(frozen=True)
class MeteoLine:
    key: str
    kind: LineKind
    label: str
    description: str
    user: UserState
    technical: TechState
    findings: tuple[Finding, ...] = ()
    counts: tuple[RemoteCount, ...] = ()
    total_sites: int = 0
    remote_rows: tuple[RemoteSiteRow, ...] = ()

    @property
    def nominal(self) -> bool:
        return self.user is UserState.NOMINAL and self.technical is TechState.RAS

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for f in self.findings for r in f.refs))


@dataclass(frozen=True)
class CheckSummary:
    total: int
    passed: int
    failed_checks: int  # checks with a failure listed (a check failing on three devices counts once)
    covered: int  # checks failing only where a check that supersedes them failed too (not listed)
    no_data: tuple[str, ...]
    failed: tuple[FailedCheckRow, ...]  # one row per failure


@dataclass(frozen=True, slots=True)
class FailedCheckRow:
    check_id: str
    category: str
    title: str
    summary: str
    refs: tuple[str, ...]


@dataclass(frozen=True)
class Meteo:
    day: date
    generated_at: datetime
    lang: str
    title: str
    services: tuple[MeteoLine, ...]
    sites: tuple[MeteoLine, ...]
    changes: ChangesView
    checks: CheckSummary
    timezone: str = "Europe/Paris"
    agent: str = ""
    diff: MeteoDiff | None = None

    @property
    def lines(self) -> tuple[MeteoLine, ...]:
        return self.services + self.sites

    @property
    def user(self) -> UserState:
        return UserState.worst(line.user for line in self.lines)

    @property
    def technical(self) -> TechState:
        return TechState.worst(line.technical for line in self.lines)


# ---- helpers --------------------------------------------------------------------------------------------


def _incident_finding(i: IncidentView, prefix: str) -> Finding:
    user = user_from_impact(i.user_impact)
    tech = TechState.worst([technical_from_impact(i.technical_impact), TechState.at_level(user.level)])
    return Finding(
        key=i.key,
        summary=i.title,
        user=user,
        technical=tech,
        source="incident",
        refs=(incident_number(i, prefix),),
        since=i.opened_at,
    )


def _check_finding(f: FailedCheck, lang: str, effect: Effect | None = None) -> Finding:
    e = effect or f.effect
    return Finding(
        key=f.key,
        summary=f.summary(lang),
        user=e.user,
        technical=TechState.worst([e.technical, TechState.at_level(e.user.level)]),
        source="check",
    )


def _cap(f: Finding, cap: Effect) -> Finding:
    return replace(
        f,
        user=UserState.at_level(min(f.user.level, cap.user.level)),
        technical=TechState.at_level(min(f.technical.level, cap.technical.level)),
    )


def _incident_matches(
    sel: IncidentSelector, default_services: Sequence[str], i: IncidentView, snap: EstateSnapshot
) -> bool:
    services = sel.services if sel.services is not None else list(default_services)
    if services and not set(services) & set(i.services):
        return False
    if sel.sites is not None and i.site not in sel.sites:
        return False
    if sel.site_kinds is not None and i.site is not None and snap.site_kind(i.site) not in sel.site_kinds:
        return False
    return not (sel.rules is not None and i.rule not in sel.rules)


class _Findings:
    """Findings of one line, merged by key (a check and its incident become one finding)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Finding] = {}

    def add(self, f: Finding) -> None:
        prev = self._by_key.get(f.key)
        self._by_key[f.key] = f if prev is None else prev.merged(f)

    def __iter__(self) -> Any:
        return iter(self._by_key.values())

    def sorted(self) -> tuple[Finding, ...]:
        return tuple(
            sorted(
                self._by_key.values(),
                key=lambda f: (
                    -max(f.user.level, f.technical.level),
                    -f.user.level,
                    f.refs or ("~",),
                    f.summary,
                ),
            )
        )


def _group_findings(
    line_key: str, groups: Sequence[DeviceGroup], snap: EstateSnapshot, lang: str, site: str | None = None
) -> list[Finding]:
    out = []
    for n, g in enumerate(groups):
        members = [d for d in snap.select(g.devices) if site is None or d.site == site]
        if not members:
            continue
        down = sorted(d.name for d in members if d.up is False)
        if not down:
            continue
        name = tr(g.name, lang)
        if len(down) == len(members):
            effect, msg = g.all_down, "group_all_down"
        else:
            effect, msg = g.some_down, "group_some_down"
        summary = message(lang, msg, group=name, down=len(down), total=len(members), devices=", ".join(down))
        out.append(
            Finding(
                key=f"group:{line_key}:{n}",
                summary=summary,
                user=effect.user,
                technical=TechState.worst([effect.technical, TechState.at_level(effect.user.level)]),
                source="device",
            )
        )
    return out


def incident_for_check(f: FailedCheck, incidents: Sequence[IncidentView]) -> IncidentView | None:
    """The open incident that stands for a failed check: the one opened under the check's problem key, else
    one of the check's ``incident_rules`` on the same device (or, for a site-wide check, the same site)."""
    for i in incidents:
        if i.key == f.key:
            return i
    rules = set(f.check.incident_rules)
    if not rules:
        return None
    for i in incidents:
        rule = i.rule or i.key.split(":", 1)[0]
        if rule not in rules:
            continue
        if (i.device is not None and i.device in f.devices) or (
            i.device is None and i.site and i.site == f.site
        ):
            return i
    return None


def _with_incident_refs(f: Finding, check_incidents: Mapping[str, IncidentView], prefix: str) -> Finding:
    """A failed check whose incident is open (same problem key) becomes that incident's finding."""
    i = check_incidents.get(f.key)
    if i is None:
        return f
    return f.merged(_incident_finding(i, prefix))


def _line(
    key: str, kind: LineKind, label: str, description: str, findings: _Findings, **kw: Any
) -> MeteoLine:
    fs = findings.sorted()
    return MeteoLine(
        key=key,
        kind=kind,
        label=label,
        description=description,
        user=UserState.worst(f.user for f in fs),
        technical=TechState.worst(f.technical for f in fs),
        findings=fs,
        **kw,
    )


def _device_sites(f: FailedCheck, snap: EstateSnapshot) -> set[str]:
    sites = {snap.devices[d].site for d in f.devices if d in snap.devices}
    if f.site:
        sites.add(f.site)
    return sites


# ---- the lines ------------------------------------------------------------------------------------------


def _service_line(
    item: ServiceItem,
    snap: EstateSnapshot,
    failed: Sequence[FailedCheck],
    check_incidents: Mapping[str, IncidentView],
    lang: str,
    prefix: str,
) -> MeteoLine:
    fs = _Findings()
    for i in snap.open_incidents():
        if _incident_matches(item.incidents, [item.key], i, snap):
            fs.add(_incident_finding(i, prefix))
    for f in failed:
        if f.check_id in item.checks:
            fs.add(_with_incident_refs(_check_finding(f, lang), check_incidents, prefix))
    for g in _group_findings(item.key, item.groups, snap, lang):
        fs.add(g)
    svc = snap.services.get(item.key)
    label = tr(item.label, lang) if item.label is not None else (svc.name if svc else item.key)
    return _line(item.key, "service", label, tr(item.description, lang), fs)


def _site_line(
    item: SiteItem,
    snap: EstateSnapshot,
    failed: Sequence[FailedCheck],
    check_incidents: Mapping[str, IncidentView],
    lang: str,
    prefix: str,
) -> MeteoLine:
    fs = _Findings()
    for i in snap.open_incidents():
        if i.site == item.site:
            fs.add(_incident_finding(i, prefix))
    for f in failed:
        if ("*" in item.checks or f.check_id in item.checks) and item.site in _device_sites(f, snap):
            fs.add(_with_incident_refs(_check_finding(f, lang), check_incidents, prefix))
    for g in _group_findings(f"site-{item.site}", item.groups, snap, lang, site=item.site):
        fs.add(g)
    site = snap.sites.get(item.site)
    label = tr(item.label, lang) if item.label is not None else item.site
    description = tr(item.description, lang) if item.description is not None else (site.name if site else "")
    return _line(item.site, "site", label, description, fs)


def _remote_line(
    item: RemoteItem,
    snap: EstateSnapshot,
    failed: Sequence[FailedCheck],
    check_incidents: Mapping[str, IncidentView],
    lang: str,
    prefix: str,
) -> MeteoLine:
    codes = sorted(code for code, s in snap.sites.items() if item.sites.matches(code, s.kind.value))
    incidents = snap.open_incidents()
    rows: list[RemoteSiteRow] = []
    counts: dict[str, int] = {"nominal": 0, **{c.id: 0 for c in item.categories}}
    site_effects: list[Effect] = []
    all_findings = _Findings()
    for code in codes:
        site_failed = [f for f in failed if code in _device_sites(f, snap)]
        site_incidents = [i for i in incidents if i.site == code]
        category = None
        for cat in item.categories:
            hit_checks = [f for f in site_failed if "*" in cat.checks or f.check_id in cat.checks]
            if hit_checks or (cat.incidents and site_incidents):
                category = cat
                break
        if category is None:
            counts["nominal"] += 1
            continue
        counts[category.id] += 1
        name = snap.sites[code].name
        fs = _Findings()
        for f in site_failed:
            found = _with_incident_refs(_check_finding(f, lang, category.effect), check_incidents, prefix)
            fs.add(_cap(found, item.incident_cap) if found.source == "incident" else found)
        for i in site_incidents:
            fs.add(_cap(_incident_finding(i, prefix), item.incident_cap))
        row_findings = fs.sorted()
        rows.append(
            RemoteSiteRow(
                code=code,
                name=name,
                category=category.id,
                category_label=tr(category.label, lang),
                findings=row_findings,
            )
        )
        site_effects.append(
            Effect(
                user=UserState.worst([category.effect.user, *(f.user for f in row_findings)]),
                technical=TechState.worst([category.effect.technical, *(f.technical for f in row_findings)]),
            )
        )
        for rf in row_findings:
            all_findings.add(replace(rf, summary=f"{code} — {rf.summary}"))
    user = UserState.worst(e.user for e in site_effects)
    tech = TechState.worst(e.technical for e in site_effects)
    for cat in item.categories:
        if cat.all_effect is not None and codes and counts[cat.id] == len(codes):
            user = UserState.worst([user, cat.all_effect.user])
            tech = TechState.worst([tech, cat.all_effect.technical])
    count_rows = [RemoteCount("nominal", tr(item.nominal_label, lang), counts["nominal"])]
    count_rows += [RemoteCount(c.id, tr(c.label, lang), counts[c.id]) for c in item.categories]
    order = {c.id: n for n, c in enumerate(item.categories)}
    rows.sort(key=lambda r: (order.get(r.category, 99), r.code))
    return MeteoLine(
        key=item.key,
        kind="remote",
        label=tr(item.label, lang),
        description=tr(item.description, lang),
        user=user,
        technical=TechState.worst([tech, TechState.at_level(user.level)]),
        findings=all_findings.sorted(),
        counts=tuple(count_rows),
        total_sites=len(codes),
        remote_rows=tuple(rows),
    )


def compute_meteo(
    spec: MeteoSpec,
    snap: EstateSnapshot,
    checks: CheckRun,
    *,
    day: date,
    changes: ChangesView | None = None,
    lang: str = "fr",
    incident_prefix: str = "CAL",
    timezone: str = "Europe/Paris",
    agent: str = "",
) -> Meteo:
    """The météo of ``day`` (pure: same inputs, same météo)."""
    failed = list(checks.failed)
    open_incidents = snap.open_incidents()
    by_key = {
        k: i for k, i in ((f.key, incident_for_check(f, open_incidents)) for f in failed) if i is not None
    }
    services = tuple(
        _service_line(item, snap, failed, by_key, lang, incident_prefix) for item in spec.services
    )
    sites = [_site_line(item, snap, failed, by_key, lang, incident_prefix) for item in spec.sites]
    if spec.remote is not None:
        sites.append(_remote_line(spec.remote, snap, failed, by_key, lang, incident_prefix))
    failed_rows = []
    for f in failed:
        i = by_key.get(f.key)
        failed_rows.append(
            FailedCheckRow(
                check_id=f.check_id,
                category=f.category,
                title=f.title(lang),
                summary=f.summary(lang),
                refs=(incident_number(i, incident_prefix),) if i else (),
            )
        )
    summary = CheckSummary(
        total=checks.total,
        passed=len(checks.passed),
        failed_checks=len({f.check_id for f in checks.failed}),
        covered=len(checks.covered),
        no_data=checks.no_data,
        failed=tuple(failed_rows),
    )
    return Meteo(
        day=day,
        generated_at=snap.at,
        lang=lang,
        title=tr(spec.title, lang),
        services=services,
        sites=tuple(sites),
        changes=changes or ChangesView((), (), ()),
        checks=summary,
        timezone=timezone,
        agent=agent,
    )


# ---- comparison with yesterday --------------------------------------------------------------------------


def _diff_items(entries: Iterable[tuple[str, str, str, tuple[str, ...]]]) -> tuple[DiffItem, ...]:
    """(key, line label, summary, refs) -> one item per key, listing every line it appears on."""
    items: dict[str, DiffItem] = {}
    for key, line, summary, refs in entries:
        prev = items.get(key)
        if prev is None:
            items[key] = DiffItem(key, (line,), summary, refs)
        elif line not in prev.lines:
            items[key] = replace(prev, lines=(*prev.lines, line))
    return tuple(items.values())


def diff_meteo(meteo: Meteo, previous: Mapping[str, Any] | None) -> Meteo:
    """Compare with the previous météo (its archived dict form).

    A problem (a finding's key) is new when yesterday's météo did not show it on any line, and resolved
    when today's shows it nowhere; each is listed once, with the lines it is (or was) on. Lines whose
    user or technical state moved are listed with both states.
    """
    if not previous:
        return meteo
    prev_lines: dict[str, Mapping[str, Any]] = {}
    for line in [*previous.get("services", []), *previous.get("sites", [])]:
        prev_lines[line["key"]] = line
    before_keys = {f["key"] for line in prev_lines.values() for f in line.get("findings", [])}
    now_keys = {f.key for line in meteo.lines for f in line.findings}
    new_entries: list[tuple[str, str, str, tuple[str, ...]]] = []
    resolved_entries: list[tuple[str, str, str, tuple[str, ...]]] = []
    changed: list[LineChange] = []

    def mark(line: MeteoLine) -> MeteoLine:
        findings = []
        for f in line.findings:
            is_new = f.key not in before_keys
            if is_new:
                new_entries.append((f.key, line.label, f.summary, f.refs))
            findings.append(replace(f, new=is_new))
        rows = tuple(
            replace(r, findings=tuple(replace(f, new=f.key not in before_keys) for f in r.findings))
            for r in line.remote_rows
        )
        before = prev_lines.get(line.key)
        if before:
            for pf in before.get("findings", []):
                if pf["key"] not in now_keys:
                    resolved_entries.append(
                        (pf["key"], line.label, str(pf.get("summary", "")), tuple(pf.get("refs", ())))
                    )
            try:
                ub, tb = UserState(before["user"]), TechState(before["technical"])
            except (KeyError, ValueError):
                ub, tb = line.user, line.technical
            if (ub, tb) != (line.user, line.technical):
                changed.append(LineChange(line.key, line.label, ub, tb, line.user, line.technical))
        return replace(line, findings=tuple(findings), remote_rows=rows)

    services = tuple(mark(line) for line in meteo.services)
    sites = tuple(mark(line) for line in meteo.sites)
    try:
        prev_day = date.fromisoformat(str(previous.get("day")))
    except ValueError:
        prev_day = meteo.day
    return replace(
        meteo,
        services=services,
        sites=sites,
        diff=MeteoDiff(prev_day, _diff_items(new_entries), _diff_items(resolved_entries), tuple(changed)),
    )


# ---- archive form ---------------------------------------------------------------------------------------


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "key": f.key,
        "summary": f.summary,
        "user": f.user.value,
        "technical": f.technical.value,
        "source": f.source,
        "refs": list(f.refs),
        "since": f.since.isoformat() if f.since else None,
        "new": f.new,
    }


def _line_dict(line: MeteoLine) -> dict[str, Any]:
    d: dict[str, Any] = {
        "key": line.key,
        "kind": line.kind,
        "label": line.label,
        "description": line.description,
        "user": line.user.value,
        "technical": line.technical.value,
        "findings": [_finding_dict(f) for f in line.findings],
    }
    if line.kind == "remote":
        d["total_sites"] = line.total_sites
        d["counts"] = [{"category": c.category, "label": c.label, "count": c.count} for c in line.counts]
        d["sites"] = [
            {
                "code": r.code,
                "name": r.name,
                "category": r.category,
                "category_label": r.category_label,
                "findings": [_finding_dict(f) for f in r.findings],
            }
            for r in line.remote_rows
        ]
    return d


def meteo_to_dict(meteo: Meteo) -> dict[str, Any]:
    """A JSON-ready form: what the archive keeps and what the next day's diff reads."""

    def change(c: Any) -> dict[str, Any]:
        return {
            "start": c.start.isoformat() if c.start else None,
            "end": c.end.isoformat() if c.end else None,
            "title": c.title,
            "sites": list(c.sites),
            "services": list(c.services),
            "ref": c.ref,
            "kind": c.kind,
        }

    out: dict[str, Any] = {
        "day": meteo.day.isoformat(),
        "generated_at": meteo.generated_at.isoformat(),
        "lang": meteo.lang,
        "title": meteo.title,
        "user": meteo.user.value,
        "technical": meteo.technical.value,
        "services": [_line_dict(line) for line in meteo.services],
        "sites": [_line_dict(line) for line in meteo.sites],
        "changes": {
            "today": [change(c) for c in meteo.changes.today],
            "coming": [change(c) for c in meteo.changes.coming],
            "open": [change(c) for c in meteo.changes.open],
        },
        "checks": {
            "total": meteo.checks.total,
            "passed": meteo.checks.passed,
            "failed_checks": meteo.checks.failed_checks,
            "covered": meteo.checks.covered,
            "no_data": list(meteo.checks.no_data),
            "failed": [
                {
                    "check": f.check_id,
                    "category": f.category,
                    "title": f.title,
                    "summary": f.summary,
                    "refs": list(f.refs),
                }
                for f in meteo.checks.failed
            ],
        },
    }
    if meteo.diff is not None:
        out["diff"] = {
            "previous_day": meteo.diff.previous_day.isoformat(),
            "new": [
                {"key": d.key, "lines": list(d.lines), "summary": d.summary, "refs": list(d.refs)}
                for d in meteo.diff.new
            ],
            "resolved": [
                {"key": d.key, "lines": list(d.lines), "summary": d.summary, "refs": list(d.refs)}
                for d in meteo.diff.resolved
            ],
            "changed": [
                {
                    "key": c.key,
                    "label": c.label,
                    "before": [c.user_before.value, c.technical_before.value],
                    "now": [c.user_now.value, c.technical_now.value],
                }
                for c in meteo.diff.changed
            ],
        }
    return out


__all__ = [
    "CheckSummary",
    "DiffItem",
    "FailedCheckRow",
    "Finding",
    "LineChange",
    "Meteo",
    "MeteoDiff",
    "MeteoLine",
    "RemoteCount",
    "RemoteSiteRow",
    "compute_meteo",
    "diff_meteo",
    "incident_number",
    "meteo_to_dict",
]
