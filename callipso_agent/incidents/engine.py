"""The incident engine: signals in, incidents out.

One incident per problem key. A firing signal opens the incident (or finds the unresolved one with the
same key: the store's unique index makes that true across restarts and replicas), with the contract's
priority (``priority.decide_priority``, its explanation kept on the incident) and SLA deadlines
(``sla.compute_deadlines``). A clear signal starts the hold time; the incident is resolved when the
problem has stayed away that long, and a problem coming back within the flapping window reopens the same
incident instead of opening a new one.

Site correlation: signals of rules declaring ``correlate: site`` (a device unreachable, a WAN link down)
wait a short delay for the rest of their site; when every device of the site, or every WAN router of it,
is down, one site incident opens and the devices' incidents are attached to it (children), not opened
separately. Maintenance windows suppress opening but keep the record. ``tick()`` runs the timers: hold
times, correlation delays, the end of maintenance windows, and the deadlines at risk or missed (each
written once to the timeline).

Reads return :class:`~callipso_agent.model.IncidentView`; subscribers (an outbox) get an
:class:`IncidentNotice` after each committed change. The timeline is durable and ordered by id, so a
subscriber that missed notices (crash) can catch up with ``IncidentRepository.timeline_after``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import IntegrityError

from callipso_agent.clock import Clock
from callipso_agent.config.models import Criticality, Device, Hours, Site, Vip
from callipso_agent.errors import CallipsoError
from callipso_agent.incidents.contract import Contract
from callipso_agent.incidents.maintenance import MaintenanceBook, MaintenanceWindow, unknown_targets
from callipso_agent.incidents.priority import OutageKind, Priority, PriorityInputs, Reason, decide_priority
from callipso_agent.incidents.sla import (
    Deadline,
    DeadlineKind,
    DeadlineStatus,
    clock_start,
    compute_deadlines,
    deadline_status,
)
from callipso_agent.incidents.texts import both
from callipso_agent.model import IncidentState, IncidentView, Severity
from callipso_agent.rules.inventory import Inventory
from callipso_agent.rules.loader import RuleSet
from callipso_agent.rules.schema import Impact, Rule, SiteRule
from callipso_agent.rules.signal import Signal, problem_key
from callipso_agent.rules.texts import human_duration, render
from callipso_agent.store.incidents import (
    UNRESOLVED,
    IncidentRecord,
    IncidentRepository,
    TimelineEntry,
    TimelineRecord,
)
from callipso_agent.store.tables import incidents as T

log = structlog.get_logger()

Lang = Literal["fr", "en"]
NoticeKind = Literal["opened", "reopened", "updated", "resolved", "deadline", "note", "acknowledged"]
OUTAGE = {
    "outage": OutageKind.TOTAL,
    "partial": OutageKind.PARTIAL,
    "degraded": OutageKind.DEGRADED,
    "backup": OutageKind.BACKUP,
    "acceptable": OutageKind.ACCEPTABLE,
}
_STATE = {
    "open": IncidentState.OPEN,
    "acknowledged": IncidentState.ACKNOWLEDGED,
    "resolved": IncidentState.RESOLVED,
    "suppressed": IncidentState.SUPPRESSED,
}
_MEETS = {
    DeadlineKind.TAKING_CHARGE.value: "acknowledged_at",
    DeadlineKind.FIRST_INFORMATION.value: "first_information_at",
    DeadlineKind.INTERVENTION.value: "intervention_at",
}


class IncidentNotFound(CallipsoError):
    kind = "incident_not_found"


class IncidentStateError(CallipsoError):
    kind = "incident_state"


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    hold: float = 300.0  # seconds a problem must stay away before its incident is resolved
    flap_window: float = 3600.0  # a problem back within this after resolution reopens the same incident
    lang: Lang = "fr"  # language of IncidentView.title and of notices
    actor: str = "callipso-agent"


@dataclass(frozen=True, slots=True)
class IncidentNotice:
    """A committed change an outbox may turn into a notification."""

    kind: NoticeKind
    incident: IncidentView
    entry: TimelineRecord | None = None
    text: str = ""
    replayed: bool = False  # handed over again after a restart or a failed hand-over (see replay_notices)


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    """An incident with everything an operator (or the report) needs beyond the view."""

    view: IncidentView
    record: IncidentRecord
    timeline: tuple[TimelineRecord, ...]
    children: tuple[IncidentView, ...]
    explanation: tuple[str, ...]
    deadline_status: Mapping[str, str] = field(default_factory=dict)
    child_records: tuple[IncidentRecord, ...] = ()

    @property
    def suppressed_by(self) -> str | None:
        return self.record.suppressed_by if self.record.suppressed else None


Hook = Callable[[IncidentNotice], Awaitable[None] | None]


class IncidentEngine:
    def __init__(
        self,
        repo: IncidentRepository,
        rules: RuleSet,
        inventory: Inventory,
        contract: Contract,
        clock: Clock,
        *,
        maintenance: MaintenanceBook | None = None,
        settings: IncidentSettings | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.repo = repo
        self.rules = rules
        self.inventory = inventory
        self.contract = contract
        self.clock = clock
        self.maintenance = maintenance or MaintenanceBook(repo.store, clock)
        self.settings = settings or IncidentSettings()
        self._calendar = contract.business_calendar()
        self._priority_rules = contract.priority_rules()
        self._sla_rules = contract.sla_rules()
        self._tz = ZoneInfo(contract.calendar.timezone)
        self._lock = asyncio.Lock()
        self._open: dict[str, IncidentRecord] = {}  # unresolved incidents by key
        self._active: dict[str, Signal] = {}  # problems firing now, as the rules last said
        self._pending: dict[str, Signal] = {}  # correlated problems waiting for their site
        self._retry: list[Signal] = []  # signals whose handling failed (store down)
        self._emitted: set[tuple[int, str]] = set()  # deadline entries already written
        self._hooks: list[Hook] = []
        self._replay_hooks: set[int] = set()  # ids of the hooks that take replayed notices
        self._store_failing = False
        self._replay_due = False  # an output hook failed: replay_notices() on the next tick
        self.owns: Callable[[str], bool] = owns or (lambda _device: True)

    @property
    def store_failing(self) -> bool:
        """True while incident changes cannot be written (they wait in memory and are retried on tick)."""
        return self._store_failing

    @property
    def deferred_signals(self) -> int:
        """Rule signals waiting for the store to come back."""
        return len(self._retry)

    def deferred(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` whose latest signal waits for the store (held in memory only)."""
        waiting = {s.key for s in self._retry}
        return {k for k in keys if k in waiting}

    # ---- lifecycle --------------------------------------------------------------------------------------
    async def load(self) -> list[IncidentRecord]:
        """Read the unresolved incidents (after a start or a takeover); returns them."""
        async with self._lock:
            await self._reload()
            for key in [k for k, sg in self._active.items() if not self._mine(sg.device, sg.site)]:
                del self._active[key]  # problems of devices this agent no longer handles
            for rec in self._open.values():
                if (
                    rec.cleared_at is None
                    and rec.key not in self._active
                    and self._mine(rec.device, rec.site)
                ):
                    self._active[rec.key] = Signal(
                        rule=rec.rule,
                        key=rec.key,
                        active=True,
                        at=rec.last_signal_at,
                        severity=rec.severity,
                        device=rec.device,
                        site=rec.site,
                        labels=rec.labels,
                    )
            self._emitted |= await self.repo.dedup_keys(r.id for r in self._open.values())
            await self.maintenance.refresh()
            return list(self._open.values())

    def _mine(self, device: str | None, site: str | None) -> bool:
        """Whether this agent handles a device's problem, or a site's (through any of its devices)."""
        if device is not None:
            return self.owns(device)
        return site is not None and any(self.owns(d.name) for d in self.inventory.devices_of_site(site))

    @property
    def timezone(self) -> ZoneInfo:
        """The contract's time zone, in which operator texts show instants."""
        return self._tz

    async def _reload(self) -> None:
        self._open = {r.key: r for r in await self.repo.unresolved()}

    def set_inventory(self, inventory: Inventory) -> None:
        self.inventory = inventory

    # ---- notifications ----------------------------------------------------------------------------------
    def subscribe(self, hook: Hook, *, replays: bool = False) -> Callable[[], None]:
        """Call ``hook`` (sync or async) after each committed change; returns an unsubscribe function.

        ``replays``: also receive the notices :meth:`replay_notices` hands over again (``notice.replayed``);
        only idempotent consumers (the outputs, keyed in the outbox) should ask for them."""
        self._hooks.append(hook)
        if replays:
            self._replay_hooks.add(id(hook))

        def unsubscribe() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)
            self._replay_hooks.discard(id(hook))

        return unsubscribe

    def queue(self, maxsize: int = 0) -> asyncio.Queue[IncidentNotice]:
        """An asyncio queue receiving every notice (dropped with a log line when full)."""
        q: asyncio.Queue[IncidentNotice] = asyncio.Queue(maxsize)

        def put(notice: IncidentNotice) -> None:
            try:
                q.put_nowait(notice)
            except asyncio.QueueFull:
                log.warning("incident_notice_dropped", incident=notice.incident.id, kind=notice.kind)

        self.subscribe(put)
        return q

    async def _notify(
        self, kind: NoticeKind, rec: IncidentRecord, entry: TimelineRecord | None = None, *, replayed: bool = False
    ) -> None:
        if rec.parent_id is not None or rec.suppressed:
            return  # attached alarms and suppressed incidents are carried by their parent / the maintenance
        view = self.view(rec)
        notice = IncidentNotice(kind, view, entry, entry.render(self.settings.lang) if entry else view.title,
                                replayed=replayed)
        for hook in list(self._hooks):
            if replayed and id(hook) not in self._replay_hooks:
                continue
            try:
                out = hook(notice)
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("incident_hook_failed", incident=rec.id, kind=kind)
                self._replay_due = True  # the change is committed but an output missed it: hand it over again

    def schedule_replay(self) -> None:
        """Run :meth:`replay_notices` at the next tick."""
        self._replay_due = True

    async def replay_notices(self, resolved_within: float = 86400.0) -> int:
        """Hand the openings of unresolved incidents, and the resolutions of recent ones, to the outputs
        again. The outputs are idempotent (outbox keys), so what they already recorded is not repeated;
        what they missed (the agent stopped, or the store failed, between committing an incident change
        and recording its ticket or notification jobs) is recorded now. Returns the notices handed over."""
        since = self.clock.now() - timedelta(seconds=resolved_within)
        handed = 0
        for rec in await self.repo.search(states=("open", "acknowledged"), top_level=True):
            if self._mine(rec.device, rec.site):
                entry = next((e for e in await self.repo.timeline(rec.id) if e.kind in ("opened", "reopened")), None)
                await self._notify("opened", rec, entry, replayed=True)
                handed += 1
        for rec in await self.repo.search(states=("resolved",), top_level=True, newest_first=True, limit=500):
            if rec.resolved_at is not None and rec.resolved_at >= since and self._mine(rec.device, rec.site):
                entry = next((e for e in reversed(await self.repo.timeline(rec.id)) if e.kind == "resolved"), None)
                await self._notify("resolved", rec, entry, replayed=True)
                handed += 1
        log.info("incident_notices_replayed", notices=handed)
        return handed

    # ---- signals ----------------------------------------------------------------------------------------
    async def handle(self, signals: Iterable[Signal]) -> None:
        """Apply the rule engine's signals, in order. A signal that cannot be stored is retried on tick."""
        signals = list(signals)
        if not signals:
            return
        async with self._lock:
            for s in signals:
                # a newer signal supersedes one of the same problem still waiting to be retried
                self._retry = [r for r in self._retry if r.key != s.key]
                await self._safe(s)

    async def _safe(self, s: Signal) -> None:
        try:
            await self._handle(s)
        except Exception as err:
            if not self._store_failing:  # edge-triggered: the first failure with its traceback, then quiet
                log.exception("incident_store_failed", key=s.key, active=s.active)
            else:
                log.debug("incident_signal_deferred", key=s.key, error=str(err))
            self._store_failing = True
            self._retry.append(s)
        else:
            if self._store_failing:
                log.info("incident_store_recovered")
                # a write the store reported as failed may have been committed all the same (a full disk at
                # COMMIT, a connection lost before the answer): its incident is then found, not created, and
                # its opening never reached the outputs. Hand the changes over again (idempotent).
                self._replay_due = True
            self._store_failing = False

    async def _handle(self, s: Signal) -> None:
        rule = self.rules.get(s.rule)
        if rule is None:
            return
        if s.active:
            self._active[s.key] = s
            existing = self._open.get(s.key)
            site_rule = self.rules.site_rule_for(rule.name) if rule.correlate == "site" else None
            if existing is not None:
                await self._still_active(existing, s, rule)
            elif site_rule is not None and s.site is not None:
                await self._correlate(site_rule, s, rule)
            else:
                await self._open_incident(s, rule)
            return
        self._active.pop(s.key, None)
        self._pending.pop(s.key, None)
        existing = self._open.get(s.key)
        if existing is not None:
            await self._clear(existing, s.at)
        if rule.correlate == "site" and s.site is not None:
            site_rule = self.rules.site_rule_for(rule.name)
            if site_rule is not None:
                await self._site_check(site_rule, s.site, s.at)

    # ---- correlation ------------------------------------------------------------------------------------
    def _down_devices(self, site_rule: SiteRule, site: str) -> set[str]:
        down: set[str] = set()
        for s in (*self._active.values(), *self._pending.values()):
            if s.site == site and s.rule in site_rule.children and s.device is not None:
                down.add(s.device)
        return down

    def _site_down(self, site_rule: SiteRule, site: str) -> tuple[bool, set[str]]:
        devices = self.inventory.devices_of_site(site)
        down = self._down_devices(site_rule, site)
        names = {d.name for d in devices}
        wan = {d.name for d in devices if d.family in site_rule.wan_families}
        every = len(names) >= 2 and names <= down
        wan_down = bool(wan) and wan <= down
        return every or wan_down, down & names

    async def _correlate(self, site_rule: SiteRule, s: Signal, rule: Rule) -> None:
        assert s.site is not None
        site_key = problem_key(site_rule.name, s.site)
        parent = self._open.get(site_key)
        self._pending[s.key] = s
        is_down, _ = self._site_down(site_rule, s.site)
        if parent is not None and parent.cleared_at is None and not parent.suppressed:
            self._pending.pop(s.key, None)
            await self._open_incident(s, rule, parent=parent)
        elif is_down:
            await self._site_check(site_rule, s.site, s.at)
        # else: wait for the rest of the site (tick opens it on its own after the delay)

    async def _site_check(self, site_rule: SiteRule, site: str, at: datetime) -> None:
        """Open, refresh or clear the site incident from the devices now down."""
        key = problem_key(site_rule.name, site)
        is_down, down = self._site_down(site_rule, site)
        current = self._open.get(key)
        if not is_down:
            self._active.pop(key, None)
            if current is not None and current.cleared_at is None:
                await self._clear(current, at)
            return
        sig = Signal(
            rule=site_rule.name,
            key=key,
            active=True,
            at=at,
            severity=Severity.CRITICAL if site_rule.severity == "critical" else Severity.WARNING,
            site=site,
            fields={"count": len(down)},
        )
        self._active[key] = sig
        if current is None:
            current = await self._open_incident(sig, site_rule)
        else:
            await self._still_active(current, sig, site_rule)
            current = self._open.get(key, current)
        if current is None or current.suppressed:
            return
        # attach: open device incidents of the site, and problems still waiting for their site
        for child_key in sorted(
            k for k, sg in self._active.items() if sg.site == site and sg.rule in site_rule.children
        ):
            rec = self._open.get(child_key)
            if rec is not None and rec.parent_id is None:
                await self._attach(rec, current)
        for child_key, sg in sorted(self._pending.items()):
            if sg.site == site and sg.rule in site_rule.children:
                del self._pending[child_key]
                child_rule = self.rules.get(sg.rule)
                if child_rule is not None:
                    await self._open_incident(sg, child_rule, parent=current)

    async def _attach(self, child: IncidentRecord, parent: IncidentRecord) -> None:
        now = self.clock.now()
        fr, en = both("attached", {"parent": parent.id}, self._tz)
        w = await self.repo.update(
            child.id,
            {"parent_id": parent.id, "updated_at": now},
            [TimelineEntry(now, "attached", fr, en, data={"parent": parent.id})],
            where=[T.c.parent_id.is_(None)],
        )
        if w is not None:
            self._open[w.record.key] = w.record
            await self._note_child(parent, w.record)

    async def _note_child(self, parent: IncidentRecord, child: IncidentRecord) -> None:
        fr, en = both(
            "child_attached",
            {"child": child.id, "title": {"fr": child.title_fr, "en": child.title_en}},
            self._tz,
        )
        await self.repo.add_timeline(
            parent.id,
            TimelineEntry(
                self.clock.now(), "child_attached", fr, en, data={"child": child.id, "key": child.key}
            ),
        )

    # ---- opening ----------------------------------------------------------------------------------------
    async def _open_incident(
        self, s: Signal, rule: Rule, *, parent: IncidentRecord | None = None
    ) -> IncidentRecord | None:
        now = self.clock.now()
        device = self.inventory.device(s.device)
        site = self.inventory.site(s.site or (device.site if device else None))
        services = self._services(rule, device, site)
        window = None
        if parent is None:
            window = self.maintenance.active_for(
                site=site.code if site else None, device=s.device, services=services, at=now
            )
        state = "suppressed" if window is not None else "open"
        values = self._values(s, rule, device, site, services, now)
        fr_title, en_title = values["title_fr"], values["title_en"]
        if window is not None:
            values["suppressed_by"] = window.label()
        if parent is not None:
            values["parent_id"] = parent.id
        recent = await self.repo.last_resolved(s.key, now - timedelta(seconds=self._flap(rule)))
        if recent is not None:
            rec = await self._reopen(recent, s, state, window, parent, now)
            if rec is not None:
                return rec
        entries = [self._opened_entry(now, values, window)]
        if parent is not None:
            fr, en = both("attached", {"parent": parent.id}, self._tz)
            entries.append(TimelineEntry(now, "attached", fr, en, data={"parent": parent.id}))
        values["state"] = state
        w = await self.repo.create(values, entries)
        rec = w.record
        self._open[rec.key] = rec
        if w.created:
            log.info(
                "incident_opened",
                incident=rec.id,
                key=rec.key,
                priority=rec.priority,
                state=rec.state,
                parent=rec.parent_id,
                title=fr_title if self.settings.lang == "fr" else en_title,
            )
            if parent is not None:
                await self._note_child(parent, rec)
            await self._notify("opened", rec, w.entry)
        else:
            await self._still_active(rec, s, rule)
        return self._open.get(rec.key, rec)

    def _opened_entry(
        self, now: datetime, values: Mapping[str, Any], window: MaintenanceWindow | None
    ) -> TimelineEntry:
        title = {"fr": values["title_fr"], "en": values["title_en"]}
        data = {
            "priority": values["priority"],
            "urgency": values["urgency"],
            "impact": values["impact"],
            "reasons": values["priority_reasons"],
            "severity": Severity(values["severity"]).label,
            "deadlines": values["deadlines"],
        }
        if window is not None:
            fr, en = both("suppressed", {"window": window.label(), "title": title}, self._tz)
            return TimelineEntry(now, "suppressed", fr, en, data={**data, "maintenance": window.id})
        fr, en = both(
            "opened",
            {"title": title, "priority": values["priority"], "severity": Severity(values["severity"]).label},
            self._tz,
        )
        return TimelineEntry(now, "opened", fr, en, data=data)

    async def _reopen(
        self,
        recent: IncidentRecord,
        s: Signal,
        state: str,
        window: MaintenanceWindow | None,
        parent: IncidentRecord | None,
        now: datetime,
    ) -> IncidentRecord | None:
        assert recent.resolved_at is not None
        ago = (now - recent.resolved_at).total_seconds()
        fr, en = both("reopened", {"ago": ago, "count": recent.reopen_count + 1}, self._tz)
        values: dict[str, Any] = {
            "state": state,
            "resolved_at": None,
            "resolved_by": None,
            "cleared_at": None,
            "updated_at": now,
            "last_signal_at": s.at,
            "reopen_count": recent.reopen_count + 1,
            "occurrences": recent.occurrences + 1,
            "severity": int(max(recent.severity, s.severity)),
            "parent_id": parent.id if parent is not None else None,
            "suppressed_by": window.label() if window is not None else None,
            "acknowledged_at": None if recent.state != "acknowledged" else recent.acknowledged_at,
        }
        try:
            w = await self.repo.update(
                recent.id,
                values,
                [TimelineEntry(now, "reopened", fr, en, data={"ago_s": ago})],
                where=[T.c.state == "resolved"],
            )
        except IntegrityError:
            return None  # another unresolved incident holds the key: the caller's insert-or-get finds it
        if w is None:
            return None
        rec = w.record
        self._open[rec.key] = rec
        log.info("incident_reopened", incident=rec.id, key=rec.key, reopen_count=rec.reopen_count)
        if parent is not None:
            await self._note_child(parent, rec)
        await self._notify("reopened", rec, w.entry)
        return rec

    def _services(self, rule: Rule, device: Device | None, site: Site | None) -> list[str]:
        if device is not None:
            return list(device.services)
        if isinstance(rule, SiteRule) and site is not None:
            return sorted({svc for d in self.inventory.devices_of_site(site.code) for svc in d.services})
        return []

    def _impact(self, rule: Rule, severity: Severity, device: Device | None, site: Site | None) -> Impact:
        sev = severity.label
        for case in rule.impact_when:
            if case.severity is not None and case.severity != sev:
                continue
            if case.site_wan is not None and (site is None or site.wan != case.site_wan):
                continue
            if case.site_kind is not None and (site is None or site.kind != case.site_kind):
                continue
            if case.site_criticality is not None and (
                site is None or site.criticality != case.site_criticality
            ):
                continue
            if case.device_family is not None and (device is None or device.family not in case.device_family):
                continue
            if case.device_role is not None and (device is None or device.role != case.device_role):
                continue
            return case.impact
        return rule.impact

    def _values(
        self,
        s: Signal,
        rule: Rule,
        device: Device | None,
        site: Site | None,
        services: list[str],
        now: datetime,
    ) -> dict[str, Any]:
        impact = self._impact(rule, s.severity, device, site)
        decision, cercle0 = self._decide(impact, site, services, now)
        start = clock_start(alarm_at=s.at)
        fr, en = self._titles(rule, s, device, site)
        return {
            "key": s.key,
            "rule": rule.name,
            "scope": "site" if isinstance(rule, SiteRule) else "device",
            "site": site.code if site else s.site,
            "device": s.device,
            "labels": dict(s.labels),
            "services": services,
            "parent_id": None,
            "state": "open",
            "severity": int(s.severity),
            "priority": decision.priority.value,
            "urgency": decision.urgency.value,
            "impact": int(decision.impact),
            "priority_reasons": [{"code": r.code, "params": dict(r.params)} for r in decision.reasons],
            "outage": impact.outage,
            "user_impact": impact.user,
            "technical_impact": impact.technical,
            "title_fr": fr,
            "title_en": en,
            "detail": str(s.fields.get("detail") or "") or None,
            "runbook": rule.runbook,
            "service_kind": rule.service_kind,
            "major": decision.priority is Priority.P1,
            "opened_at": now,
            "updated_at": now,
            "alarm_at": s.at,
            "clock_start": start,
            "deadlines": self._deadlines(decision.priority, start, rule, site, cercle0),
            "last_signal_at": s.at,
            "occurrences": 1,
            "reopen_count": 0,
        }

    def _decide(
        self, impact: Impact, site: Site | None, services: list[str], now: datetime
    ) -> tuple[Any, bool]:
        lines = [self.inventory.services[k] for k in services if k in self.inventory.services]
        cercle0 = any(svc.cercle0 for svc in lines)
        if impact.users == "site":
            users = site.users if site else 0
            external = bool(site and site.external_users)
        elif impact.users == "services":
            users = max((svc.users for svc in lines), default=0)
            external = any(svc.external_users for svc in lines)
        else:
            users, external = 0, False
        inputs = PriorityInputs(
            now=now,
            outage=OUTAGE[impact.outage],
            service_cercle0=cercle0,
            site_criticality=site.criticality if site else Criticality.STANDARD,
            vip=site.vip if site else Vip.NONE,
            users_affected=users,
            external_users=external,
            detected_by_supervision=True,
        )
        return decide_priority(inputs, self._priority_rules), cercle0

    def _deadlines(
        self, priority: Priority, start: datetime, rule: Rule, site: Site | None, cercle0: bool
    ) -> dict[str, dict[str, Any]]:
        found = compute_deadlines(
            priority,
            start,
            rules=self._sla_rules,
            calendar=self._calendar,
            service_kind=rule.service_kind,
            cercle0=cercle0,
            major=priority is Priority.P1,
            hours_mode=site.hours if site else Hours.BUSINESS,
        )
        return {
            d.kind.value: {
                "due": d.due.isoformat(),
                "start": d.start.isoformat(),
                "seconds": d.duration.total_seconds(),
                "clock": d.clock.value,
                "basis": d.basis,
            }
            for d in found
        }

    def _titles(self, rule: Rule, s: Signal, device: Device | None, site: Site | None) -> tuple[str, str]:
        fields: dict[str, Any] = {
            "device": s.device or "",
            "site": site.code if site else (s.site or ""),
            "site_name": site.name if site else (s.site or ""),
            "family": device.family if device else "",
            "role": device.role if device else "",
            "labels": dict(s.labels),
            "severity": s.severity.label,
        }
        fields.update(s.fields)
        if "for" not in fields:
            fields["for"] = human_duration(float(getattr(rule, "for_", 0) or 0))
        return render(rule.text.fr, fields), render(rule.text.en, fields)

    # ---- updates while active ---------------------------------------------------------------------------
    async def _still_active(self, rec: IncidentRecord, s: Signal, rule: Rule) -> None:
        now = self.clock.now()
        entries: list[TimelineEntry] = []
        values: dict[str, Any] = {"last_signal_at": s.at, "updated_at": now}
        if rec.cleared_at is not None:
            values["cleared_at"] = None
            values["occurrences"] = rec.occurrences + 1
            fr, en = both("recurred", {"count": rec.occurrences + 1}, self._tz)
            entries.append(TimelineEntry(now, "recurred", fr, en))
        elif s.severity == rec.severity and not isinstance(rule, SiteRule):
            values["occurrences"] = rec.occurrences + 1
            device = self.inventory.device(s.device)
            title = dict(
                zip(("fr", "en"), self._titles(rule, s, device, self.inventory.site(rec.site)), strict=True)
            )
            fr, en = both("occurrence", {"count": rec.occurrences + 1, "title": title}, self._tz)
            entries.append(TimelineEntry(now, "occurrence", fr, en))
        kind: NoticeKind | None = None
        if s.severity != rec.severity and s.severity in (Severity.WARNING, Severity.CRITICAL):
            values["severity"] = int(s.severity)
            fr, en = both(
                "severity_changed", {"before": rec.severity.label, "after": s.severity.label}, self._tz
            )
            entries.append(
                TimelineEntry(
                    now,
                    "severity_changed",
                    fr,
                    en,
                    data={"before": rec.severity.label, "after": s.severity.label},
                )
            )
            kind = "updated"
            device = self.inventory.device(rec.device)
            site = self.inventory.site(rec.site)
            impact = self._impact(rule, s.severity, device, site)
            decision, cercle0 = self._decide(impact, site, list(rec.services), now)
            if Priority(decision.priority).rank < Priority(rec.priority).rank:  # raised, never lowered here
                values.update(
                    {
                        "priority": decision.priority.value,
                        "urgency": decision.urgency.value,
                        "impact": int(decision.impact),
                        "outage": impact.outage,
                        "user_impact": impact.user,
                        "technical_impact": impact.technical,
                        "major": decision.priority is Priority.P1,
                        "priority_reasons": [
                            {"code": r.code, "params": dict(r.params)} for r in decision.reasons
                        ],
                        "deadlines": self._deadlines(decision.priority, rec.clock_start, rule, site, cercle0),
                    }
                )
                fr, en = both(
                    "priority_changed", {"before": rec.priority, "after": decision.priority.value}, self._tz
                )
                entries.append(
                    TimelineEntry(
                        now,
                        "priority_changed",
                        fr,
                        en,
                        data={
                            "before": rec.priority,
                            "after": decision.priority.value,
                            "reasons": values["priority_reasons"],
                        },
                    )
                )
            fr_t, en_t = self._titles(rule, s, device, site)
            values.update({"title_fr": fr_t, "title_en": en_t})
        w = await self.repo.update(rec.id, values, entries, where=[T.c.state.in_(UNRESOLVED)])
        if w is not None:
            self._open[w.record.key] = w.record
            if kind is not None or rec.cleared_at is not None:
                await self._notify("updated", w.record, w.entry)

    async def _clear(self, rec: IncidentRecord, at: datetime) -> None:
        now = self.clock.now()
        if rec.suppressed:
            fr, en = both("resolved_maintenance", {"window": rec.suppressed_by or ""}, self._tz)
            w = await self.repo.update(
                rec.id,
                {
                    "state": "resolved",
                    "resolved_at": now,
                    "resolved_by": "auto",
                    "cleared_at": at,
                    "updated_at": now,
                },
                [TimelineEntry(now, "resolved", fr, en, data={"how": "maintenance"})],
                where=[T.c.state == "suppressed"],
            )
            if w is not None:
                self._open.pop(rec.key, None)
            return
        if rec.cleared_at is not None:
            return
        rule = self.rules.get(rec.rule)
        hold = self._hold(rule)
        fr, en = both("cleared", {"hold": hold}, self._tz)
        w = await self.repo.update(
            rec.id,
            {"cleared_at": at, "updated_at": now},
            [TimelineEntry(now, "cleared", fr, en, data={"hold_s": hold})],
            where=[T.c.state.in_(UNRESOLVED), T.c.cleared_at.is_(None)],
        )
        if w is not None:
            self._open[w.record.key] = w.record

    def _hold(self, rule: Rule | None) -> float:
        return rule.hold if rule is not None and rule.hold is not None else self.settings.hold

    def _flap(self, rule: Rule | None) -> float:
        return (
            rule.flap_window
            if rule is not None and rule.flap_window is not None
            else self.settings.flap_window
        )

    # ---- timers -----------------------------------------------------------------------------------------
    async def tick(self) -> None:
        """Run the timers; call it every 10-30 seconds."""
        async with self._lock:
            retry, self._retry = self._retry, []
            for s in retry:
                await self._safe(s)
            try:
                await self._reload()
                await self.maintenance.refresh()
            except Exception as err:
                if not self._store_failing:
                    log.exception("incident_store_failed")
                else:
                    log.debug("incident_tick_deferred", error=str(err))
                self._store_failing = True
                return
            if self._store_failing:
                log.info("incident_store_recovered")
                self._store_failing = False
                self._replay_due = True
            if self._replay_due:
                self._replay_due = False
                try:
                    await self.replay_notices()
                except Exception:
                    self._replay_due = True
                    log.exception("incident_replay_failed")
            now = self.clock.now()
            await self._tick_pending(now)
            for rec in list(self._open.values()):
                if not self._mine(rec.device, rec.site):
                    continue  # another agent's (high availability)
                try:
                    await self._tick_one(rec, now)
                except Exception:
                    log.exception("incident_tick_failed", incident=rec.id)

    async def _tick_pending(self, now: datetime) -> None:
        for key, s in sorted(self._pending.items()):
            if key not in self._pending:
                continue  # opened with its site meanwhile
            site_rule = self.rules.site_rule_for(s.rule)
            rule = self.rules.get(s.rule)
            if site_rule is None or rule is None or s.site is None:
                self._pending.pop(key, None)
                continue
            if (now - s.at).total_seconds() < site_rule.delay:
                continue
            is_down, _ = self._site_down(site_rule, s.site)
            if is_down:
                await self._site_check(site_rule, s.site, now)
                if key not in self._pending:
                    continue
            self._pending.pop(key, None)
            await self._open_incident(s, rule)

    async def _tick_one(self, rec: IncidentRecord, now: datetime) -> None:
        rec = self._open.get(rec.key, rec)
        if rec.resolved:
            return
        rule = self.rules.get(rec.rule)
        if rec.cleared_at is not None and (now - rec.cleared_at).total_seconds() >= self._hold(rule):
            await self._resolve_auto(rec, now)
            return
        if rec.suppressed:
            window = self.maintenance.active_for(
                site=rec.site, device=rec.device, services=rec.services, at=now
            )
            if window is None and rec.cleared_at is None:
                fr, en = both("maintenance_ended", {"window": rec.suppressed_by or ""}, self._tz)
                # the SLA clock starts now: the alarm during the window was expected
                values: dict[str, Any] = {
                    "state": "open",
                    "suppressed_by": None,
                    "updated_at": now,
                    "opened_at": now,
                    "alarm_at": now,
                }
                if rule is not None:
                    site = self.inventory.site(rec.site)
                    lines = [self.inventory.services[k] for k in rec.services if k in self.inventory.services]
                    values["clock_start"] = now
                    values["deadlines"] = self._deadlines(
                        Priority(rec.priority), now, rule, site, any(s.cercle0 for s in lines)
                    )
                w = await self.repo.update(
                    rec.id,
                    values,
                    [TimelineEntry(now, "maintenance_ended", fr, en)],
                    where=[T.c.state == "suppressed"],
                )
                if w is not None:
                    self._open[w.record.key] = w.record
                    await self._notify("opened", w.record, w.entry)
            return
        if rec.parent_id is None:
            await self._check_deadlines(rec, now)

    async def _resolve_auto(self, rec: IncidentRecord, now: datetime) -> None:
        hold = self._hold(self.rules.get(rec.rule))
        fr, en = both("resolved_auto", {"hold": hold}, self._tz)
        w = await self.repo.update(
            rec.id,
            {"state": "resolved", "resolved_at": now, "resolved_by": "auto", "updated_at": now},
            [TimelineEntry(now, "resolved", fr, en, data={"how": "auto"})],
            where=[T.c.state.in_(UNRESOLVED), T.c.cleared_at.is_not(None)],
        )
        if w is None:
            return
        self._open.pop(rec.key, None)
        log.info("incident_resolved", incident=rec.id, key=rec.key, how="auto")
        await self._notify("resolved", w.record, w.entry)
        if w.record.scope == "site":
            await self._detach_children(w.record, now)

    async def _detach_children(self, parent: IncidentRecord, now: datetime) -> None:
        """A resolved site incident lets its still-active children live on as incidents of their own."""
        for child in await self.repo.search(states=UNRESOLVED, parent_id=parent.id):
            if child.cleared_at is not None:
                continue  # gone too: it resolves quietly, still attached
            fr, en = both("detached", {"parent": parent.id}, self._tz)
            w = await self.repo.update(
                child.id,
                {"parent_id": None, "updated_at": now},
                [TimelineEntry(now, "detached", fr, en, data={"parent": parent.id})],
                where=[T.c.parent_id == parent.id],
            )
            if w is not None:
                self._open[w.record.key] = w.record
                await self._notify("opened", w.record, w.entry)

    async def _check_deadlines(self, rec: IncidentRecord, now: datetime) -> None:
        for kind, status in self._deadline_statuses(rec, now).items():
            if status not in (DeadlineStatus.AT_RISK.value, DeadlineStatus.MISSED.value):
                continue
            dedup = f"deadline:{kind}:{status}"
            if (rec.id, dedup) in self._emitted:
                continue
            deadline = self._deadline(rec, kind)
            label = {"fr": deadline.label("fr"), "en": deadline.label("en")}
            code = "deadline_at_risk" if status == DeadlineStatus.AT_RISK.value else "deadline_missed"
            fr, en = both(code, {"label": label, "due": deadline.due}, self._tz)
            entry = await self.repo.add_timeline(
                rec.id,
                TimelineEntry(
                    now, code, fr, en, dedup=dedup, data={"deadline": kind, "due": deadline.due.isoformat()}
                ),
            )
            self._emitted.add((rec.id, dedup))
            if entry is not None:
                log.warning("incident_deadline", incident=rec.id, deadline=kind, status=status)
                await self._notify("deadline", rec, entry)

    def _deadline(self, rec: IncidentRecord, kind: str) -> Deadline:
        d = rec.deadlines[kind]
        return Deadline(
            kind=DeadlineKind(kind),
            start=datetime.fromisoformat(d["start"]),
            duration=timedelta(seconds=d["seconds"]),
            due=datetime.fromisoformat(d["due"]),
            clock=Hours(d["clock"]),
            basis=d["basis"],
            calendar=self._calendar,
        )

    def _deadline_statuses(self, rec: IncidentRecord, now: datetime) -> dict[str, str]:
        """Per deadline: ok, at_risk or missed while it runs; met or missed once its event happened;
        not_applicable when the incident was resolved before it fell due without it being met."""
        out: dict[str, str] = {}
        for kind in rec.deadlines:
            deadline = self._deadline(rec, kind)
            if kind == DeadlineKind.RESTORATION.value:
                met_at = rec.resolved_at
            else:
                met_at = getattr(rec, _MEETS[kind]) if kind in _MEETS else None
            if met_at is not None:
                out[kind] = "met" if met_at <= deadline.due else "missed"
            elif rec.resolved_at is not None:
                out[kind] = "missed" if rec.resolved_at > deadline.due else "not_applicable"
            else:
                out[kind] = deadline_status(deadline, now, self._sla_rules.at_risk_fraction).value
        return out

    # ---- reads ------------------------------------------------------------------------------------------
    def view(self, rec: IncidentRecord) -> IncidentView:
        return IncidentView(
            id=rec.id,
            key=rec.key,
            title=rec.title(self.settings.lang),
            state=_STATE[rec.state],
            priority=rec.priority,
            severity=rec.severity,
            opened_at=rec.opened_at,
            site=rec.site,
            device=rec.device,
            services=rec.services,
            rule=rec.rule,
            itsm_ref=rec.itsm_ref,
            resolved_at=rec.resolved_at,
            user_impact=rec.user_impact,
            technical_impact=rec.technical_impact,
            deadlines={k: datetime.fromisoformat(v["due"]) for k, v in rec.deadlines.items()},
            runbook=rec.runbook,
        )

    def explanation(self, rec: IncidentRecord, lang: Lang | None = None) -> tuple[str, ...]:
        lang = lang or self.settings.lang
        out = []
        for r in rec.priority_reasons:
            reason = Reason(
                str(r["code"]), tuple((str(k), str(v)) for k, v in dict(r.get("params", {})).items())
            )
            out.append(reason.render(lang))
        return tuple(out)

    async def open_incidents(
        self,
        *,
        site: str | None = None,
        device: str | None = None,
        service: str | None = None,
        include_children: bool = False,
    ) -> list[IncidentView]:
        """Open and acknowledged incidents (not the ones held by a maintenance window), oldest first."""
        rows = await self.repo.search(
            states=("open", "acknowledged"), site=site, device=device, top_level=not include_children
        )
        return [self.view(r) for r in rows if service is None or service in r.services]

    async def incidents(
        self,
        *,
        states: Iterable[str] | None = None,
        site: str | None = None,
        device: str | None = None,
        service: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[IncidentView]:
        """Any incidents (history included), newest first."""
        rows = await self.repo.search(
            states=states,
            site=site,
            device=device,
            opened_since=since,
            limit=limit if service is None else None,
            newest_first=True,
        )
        rows = [r for r in rows if service is None or service in r.services]
        return [self.view(r) for r in rows[:limit]]

    async def suppressed_incidents(self) -> list[IncidentView]:
        return [self.view(r) for r in await self.repo.search(states=("suppressed",))]

    async def get(self, incident_id: int) -> IncidentDetail | None:
        rec = await self.repo.get(incident_id)
        if rec is None:
            return None
        timeline = await self.repo.timeline(rec.id)
        children = await self.repo.search(parent_id=rec.id)
        return IncidentDetail(
            view=self.view(rec),
            record=rec,
            timeline=tuple(timeline),
            children=tuple(self.view(c) for c in children),
            explanation=self.explanation(rec),
            deadline_status=self._deadline_statuses(rec, self.clock.now()),
            child_records=tuple(children),
        )

    async def timeline(self, incident_id: int) -> list[TimelineRecord]:
        return await self.repo.timeline(incident_id)

    # ---- writes (API, CLI, other components) ------------------------------------------------------------
    async def _require(self, incident_id: int) -> IncidentRecord:
        rec = await self.repo.get(incident_id)
        if rec is None:
            raise IncidentNotFound(f"no incident {incident_id}")
        return rec

    async def acknowledge(self, incident_id: int, by: str, note: str | None = None) -> IncidentView:
        """Take the incident in charge (meets the taking-charge deadline)."""
        async with self._lock:
            rec = await self._require(incident_id)
            if rec.state != "open":
                raise IncidentStateError(
                    f"incident {incident_id} is {rec.state}: only an open incident can be acknowledged"
                )
            now = self.clock.now()
            fr, en = both("acknowledged", {"actor": by}, self._tz)
            entries = [TimelineEntry(now, "acknowledged", fr, en, actor=by)]
            if note:
                entries.append(TimelineEntry(now, "note", note, actor=by))
            w = await self.repo.update(
                rec.id,
                {"state": "acknowledged", "acknowledged_at": now, "acknowledged_by": by, "updated_at": now},
                entries,
                where=[T.c.state == "open"],
            )
            if w is None:
                raise IncidentStateError(f"incident {incident_id} changed meanwhile; read it again")
            self._open[w.record.key] = w.record
            await self._notify("acknowledged", w.record, w.entry)
            return self.view(w.record)

    async def add_note(self, incident_id: int, by: str, text: str) -> TimelineRecord:
        return await self._entry(incident_id, "note", text, None, by, {}, None, notice="note")

    async def add_timeline(
        self,
        incident_id: int,
        kind: str,
        text: str,
        data: Mapping[str, Any] | None = None,
        *,
        text_en: str | None = None,
        actor: str | None = None,
        dedup: str | None = None,
    ) -> TimelineRecord | None:
        """Record something about an incident (a notification sent, an exchange, an escalation...).

        Kinds with a meaning: ``notification`` / ``first_information`` (meet the first-information
        deadline), ``intervention`` (meets the Cercle 0 intervention deadline), ``exchange``, ``escalation``,
        ``action``, ``note``. With ``dedup``, an entry with the same key is written only once (returns None).
        """
        return await self._entry(
            incident_id, kind, text, text_en, actor, dict(data or {}), dedup, notice=None
        )

    async def _entry(
        self,
        incident_id: int,
        kind: str,
        text: str,
        text_en: str | None,
        actor: str | None,
        data: dict[str, Any],
        dedup: str | None,
        *,
        notice: NoticeKind | None,
    ) -> TimelineRecord:
        rec = await self._require(incident_id)
        entry = await self.repo.add_timeline(
            rec.id, TimelineEntry(self.clock.now(), kind, text, text_en, actor, data, dedup)
        )
        if entry is not None and notice is not None:
            await self._notify(notice, rec, entry)
        return entry  # type: ignore[return-value]

    async def resolve(self, incident_id: int, by: str, reason: str) -> IncidentView:
        """Resolve by hand (the problem is over, or it is not one)."""
        async with self._lock:
            rec = await self._require(incident_id)
            if rec.resolved:
                raise IncidentStateError(f"incident {incident_id} is already resolved")
            now = self.clock.now()
            fr, en = both("resolved_manual", {"actor": by, "reason": reason}, self._tz)
            w = await self.repo.update(
                rec.id,
                {"state": "resolved", "resolved_at": now, "resolved_by": by, "updated_at": now},
                [TimelineEntry(now, "resolved", fr, en, actor=by, data={"how": "manual", "reason": reason})],
                where=[T.c.state.in_(UNRESOLVED)],
            )
            if w is None:
                raise IncidentStateError(f"incident {incident_id} changed meanwhile; read it again")
            self._open.pop(rec.key, None)
            self._active.pop(rec.key, None)
            await self._notify("resolved", w.record, w.entry)
            if w.record.scope == "site":
                await self._detach_children(w.record, now)
            return self.view(w.record)

    async def set_itsm_ref(self, incident_id: int, ref: str, created_at: datetime) -> IncidentView:
        """Record the ticket number; a ticket created before the alarm moves the SLA clock start back."""
        return await self._clock_input(incident_id, "ticket_created_at", created_at, itsm_ref=ref)

    async def daily_check_failed(self, incident_id: int, at: datetime) -> IncidentView:
        """A failed daily check saw the problem at ``at``; an earlier time moves the SLA clock start back."""
        return await self._clock_input(incident_id, "daily_check_failed_at", at)

    async def _clock_input(
        self, incident_id: int, column: str, at: datetime, itsm_ref: str | None = None
    ) -> IncidentView:
        async with self._lock:
            rec = await self._require(incident_id)
            now = self.clock.now()
            values: dict[str, Any] = {column: at, "updated_at": now}
            entries: list[TimelineEntry] = []
            if itsm_ref is not None:
                values["itsm_ref"] = itsm_ref
                fr, en = both("itsm", {"ref": itsm_ref, "created": at}, self._tz)
                entries.append(TimelineEntry(now, "itsm", fr, en, data={"ref": itsm_ref}))
            else:
                fr, en = both("daily_check", {"at": at}, self._tz)
                entries.append(TimelineEntry(now, "daily_check", fr, en))
            inputs = {
                "alarm_at": rec.alarm_at,
                "ticket_created_at": rec.ticket_created_at,
                "daily_check_failed_at": rec.daily_check_failed_at,
                column: at,
            }
            start = clock_start(**inputs)
            rule = self.rules.get(rec.rule)
            if start < rec.clock_start and rule is not None:
                site = self.inventory.site(rec.site)
                lines = [self.inventory.services[k] for k in rec.services if k in self.inventory.services]
                values["clock_start"] = start
                values["deadlines"] = self._deadlines(
                    Priority(rec.priority), start, rule, site, any(s.cercle0 for s in lines)
                )
                fr, en = both("clock_start", {"start": start}, self._tz)
                entries.append(TimelineEntry(now, "clock_start", fr, en))
            w = await self.repo.update(rec.id, values, entries)
            assert w is not None
            if w.record.key in self._open:
                self._open[w.record.key] = w.record
            await self._notify("updated", w.record, w.entry)
            return self.view(w.record)

    # ---- maintenance (API) ------------------------------------------------------------------------------
    async def add_maintenance(self, window: MaintenanceWindow) -> MaintenanceWindow:
        unknown = unknown_targets(window, self.inventory)
        if unknown:
            raise IncidentStateError(
                f"unknown {window.scope}(s) for a maintenance window: {', '.join(unknown)}"
            )
        return await self.maintenance.add(window)

    def list_maintenance(
        self, *, at: datetime | None = None, include_past: bool = True
    ) -> list[MaintenanceWindow]:
        return self.maintenance.windows(at=at, include_past=include_past)

    async def remove_maintenance(self, window_id: str) -> bool:
        return await self.maintenance.remove(window_id)


__all__ = [
    "IncidentDetail",
    "IncidentEngine",
    "IncidentNotFound",
    "IncidentNotice",
    "IncidentSettings",
    "IncidentStateError",
]
