"""Who is told what, when: routing rules, time windows, quiet hours, rate limits, storms, escalation.

The router only decides and enqueues: every notification becomes an outbox job (one per channel, and
per phone number for SMS) whose idempotency key names the incident, the event, the channel and the
recipient, so a replayed change or a repeated escalation check never sends twice. A deferred
notification (quiet hours, a route's time window, a rate limit) is an outbox job with a later due
time, durable like the rest. Every decision is written on the incident's timeline; the outbox worker
then writes each delivery attempt's result there too.

Escalation is stateless: :meth:`NotificationRouter.tick` looks at the open, unacknowledged incidents
and enqueues each level whose delay has passed (the key makes it once only). Storm state (recent
incidents per site) is kept in memory: after a restart grouping starts afresh.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from callipso_agent.clock import Clock
from callipso_agent.incidents.business_hours import BusinessCalendar
from callipso_agent.model import IncidentState, IncidentView
from callipso_agent.notify.config import (
    EmailChannel,
    Event,
    NotificationsConfig,
    Route,
    SmsChannel,
    TeamsChannel,
    When,
)
from callipso_agent.notify.texts import Lang, Rendered, Texts
from callipso_agent.outbox.jobs import JobState
from callipso_agent.outbox.store import Outbox
from callipso_agent.ports import ChangeKind, IncidentChange, IncidentQuery, IncidentSource

log = structlog.get_logger()

SCAN_DAYS = 8  # how far ahead a deferred notification looks for its window

TEXTS = {
    "fr": {
        "planned": "Notification « {subject} » : {label}, règle {route}",
        "deferred": " ; différée au {when} ({reasons})",
        "grouped": "Notification regroupée : rafale d'incidents en cours sur le site {site}",
        "storm": "Message de rafale envoyé pour le site {site} ({count} incidents) : {label}",
        "not_sent": "Pas de notification « {event} » par {channel} : l'avis d'ouverture n'a pas été envoyé",
        "quiet_hours": "heures calmes",
        "rate_limit": "limite de débit du canal",
        "window": "hors plage de la règle",
        "sms": "SMS au {to} ({channel})",
        "email": "Courriel à {to} ({channel})",
        "teams": "Teams ({channel})",
        "webhook": "Webhook ({channel})",
    },
    "en": {
        "planned": "Notification '{subject}': {label}, rule {route}",
        "deferred": "; deferred to {when} ({reasons})",
        "grouped": "Notification grouped: incident storm on site {site}",
        "storm": "Storm message sent for site {site} ({count} incidents): {label}",
        "not_sent": "No '{event}' notification through {channel}: the opening notice was not sent",
        "quiet_hours": "quiet hours",
        "rate_limit": "channel rate limit",
        "window": "outside the rule's window",
        "sms": "SMS to {to} ({channel})",
        "email": "Email to {to} ({channel})",
        "teams": "Teams ({channel})",
        "webhook": "Webhook ({channel})",
    },
}


@dataclass(frozen=True, slots=True)
class Planned:
    """One notification the router decided on (and enqueued, unless ``created`` is False: already was)."""

    channel: str
    recipient: str | None
    event: str
    route: str | None
    key: str
    not_before: datetime | None
    reasons: tuple[str, ...]
    incident_id: int | None
    created: bool


@dataclass
class _Storm:
    site: str
    started: datetime
    last: datetime
    channels: tuple[str, ...]
    grouped: list[IncidentView] = field(default_factory=list)


class NotificationRouter:
    def __init__(
        self,
        config: NotificationsConfig,
        outbox: Outbox,
        incidents: IncidentSource,
        clock: Clock,
        *,
        calendar: BusinessCalendar | None = None,
    ) -> None:
        self.cfg = config
        self.outbox = outbox
        self.incidents = incidents
        self.clock = clock
        if calendar is None:
            calendar = (
                config.calendar.build()
                if config.calendar is not None
                else BusinessCalendar(timezone=config.timezone)
            )
        self.calendar = calendar
        self.tz = ZoneInfo(config.timezone)
        self._texts: dict[Lang, Texts] = {
            "fr": Texts("fr", config.timezone, config.link),
            "en": Texts("en", config.timezone, config.link),
        }
        self.t = TEXTS[config.language]
        self._sent: dict[str, list[datetime]] = {}  # planned send times per channel, sorted
        self._site_events: dict[str, deque[tuple[datetime, IncidentView]]] = {}
        self._storms: dict[str, _Storm] = {}
        self._grouped: set[int] = set()

    # ---- time windows -----------------------------------------------------------------------------
    def holds(self, when: When, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        if when is When.ALWAYS:
            return True
        if when is When.WORKING_HOURS:
            return self.calendar.is_open(at)
        if when is When.OUTSIDE_WORKING_HOURS:
            return not self.calendar.is_open(at)
        if when is When.NIGHTS:
            return self.cfg.nights.contains(local.time())
        if when is When.DAYS:
            return not self.cfg.nights.contains(local.time())
        if when is When.WEEKENDS:
            return local.weekday() >= 5
        if when is When.HOLIDAYS:
            return self.calendar.holiday_name(local.date()) is not None
        raise ValueError(when)  # pragma: no cover

    def window_open(self, whens: Sequence[When], at: datetime) -> bool:
        return any(self.holds(w, at) for w in whens)

    def next_open(self, whens: Sequence[When], at: datetime) -> datetime | None:
        """The first minute boundary from ``at`` at which one of ``whens`` holds (within SCAN_DAYS)."""
        cursor = at.astimezone(UTC).replace(second=0, microsecond=0)
        if cursor < at:
            cursor += timedelta(minutes=1)
        for _ in range(SCAN_DAYS * 24 * 60):
            if self.window_open(whens, cursor):
                return cursor
            cursor += timedelta(minutes=1)
        return None

    def quiet_until(self, at: datetime) -> datetime | None:
        q = self.cfg.quiet_hours
        if q is None:
            return None
        local = at.astimezone(self.tz)
        if not q.contains(local.time()):
            return None
        end = datetime.combine(local.date(), q.end, tzinfo=self.tz)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), q.end, tzinfo=self.tz)
        return end.astimezone(UTC)

    # ---- routing ----------------------------------------------------------------------------------
    def _matches(self, route: Route, incident: IncidentView) -> bool:
        m = route.match
        return (
            (not m.priorities or incident.priority in m.priorities)
            and (not m.sites or incident.site in m.sites)
            and (not m.services or bool(set(m.services) & set(incident.services)))
            and (not m.devices or incident.device in m.devices)
        )

    def routes_for(
        self, incident: IncidentView, event: str, at: datetime
    ) -> list[tuple[Route, datetime | None]]:
        """Routes that apply, each with the instant it is deferred to (None: now). First match wins unless
        a route says ``continue``."""
        out: list[tuple[Route, datetime | None]] = []
        for route in self.cfg.routes:
            if event != "escalated" and Event(event) not in route.events:
                continue
            if not self._matches(route, incident):
                continue
            if self.window_open(route.match.when, at):
                out.append((route, None))
            elif route.defer:
                later = self.next_open(route.match.when, at)
                if later is None:
                    continue
                out.append((route, later))
            else:
                continue
            if not route.continue_:
                break
        return out

    def _recipients(self, channel: str) -> list[str | None]:
        cfg = self.cfg.channels[channel]
        if isinstance(cfg, SmsChannel):
            return list(cfg.to)
        return [None]

    def _lang(self, channel: str) -> Lang:
        cfg = self.cfg.channels[channel]
        return cfg.language or self.cfg.language

    def _label(self, channel: str, recipient: str | None) -> str:
        cfg = self.cfg.channels[channel]
        t = self.t
        if isinstance(cfg, SmsChannel):
            return t["sms"].format(to=recipient, channel=channel)
        if isinstance(cfg, EmailChannel):
            return t["email"].format(to=", ".join(cfg.to), channel=channel)
        if isinstance(cfg, TeamsChannel):
            return t["teams"].format(channel=channel)
        return t["webhook"].format(channel=channel)

    def _when(self, at: datetime) -> str:
        local = at.astimezone(self.tz)
        return (
            local.strftime("%d/%m/%Y %H:%M")
            if self.cfg.language == "fr"
            else local.strftime("%Y-%m-%d %H:%M")
        )

    def _rate_limited_until(self, channel: str, at: datetime) -> datetime | None:
        """The first instant from ``at`` when the channel has room in its sliding hour (None: now)."""
        rl = self.cfg.rate_limit
        if rl is None:
            return None
        hour = timedelta(hours=1)
        sent = self._sent.setdefault(channel, [])
        while sent and sent[0] <= self.clock.now() - hour:
            sent.pop(0)
        candidate = at
        while True:
            in_window = [t for t in sent if candidate - hour < t <= candidate + hour]
            before = [t for t in in_window if t <= candidate]
            if len(before) < rl.max_per_hour:
                return None if candidate == at else candidate
            candidate = before[-rl.max_per_hour] + hour

    @staticmethod
    def _incident_meta(incident: IncidentView) -> dict[str, Any]:
        return {
            "id": incident.id,
            "key": incident.key,
            "title": incident.title,
            "state": incident.state.value,
            "priority": incident.priority,
            "severity": incident.severity.label,
            "site": incident.site,
            "device": incident.device,
            "services": list(incident.services),
            "opened_at": incident.opened_at.astimezone(UTC).isoformat(),
            "itsm_ref": incident.itsm_ref,
        }

    async def _plan(
        self,
        channel: str,
        *,
        incident: IncidentView,
        event: str,
        route: str | None,
        key_base: str,
        render: Mapping[Lang, Rendered],
        at: datetime,
        defer_until: datetime | None,
        skip_if: Sequence[str],
        timeline: bool = True,
        decision: Sequence[str] = (),
    ) -> list[Planned]:
        planned: list[Planned] = []
        for recipient in self._recipients(channel):
            key = f"{key_base}:{channel}:{recipient or '-'}"
            if await self.outbox.by_key(key) is not None:
                continue  # already decided (a replayed change, a repeated escalation check)
            reasons: list[str] = []
            due = at
            if defer_until is not None and defer_until > due:
                due, reasons = defer_until, [*reasons, "window"]
            q = self.cfg.quiet_hours
            if (
                q is not None
                and incident.priority not in q.allow
                and (q.channels is None or channel in q.channels)
            ):
                quiet = self.quiet_until(due)
                if quiet is not None:
                    due, reasons = quiet, [*reasons, "quiet_hours"]
            limited = self._rate_limited_until(channel, due)
            if limited is not None and limited > due:
                due, reasons = limited, [*reasons, "rate_limit"]
            message = render[self._lang(channel)]
            cfg = self.cfg.channels[channel]
            label = self._label(channel, recipient)
            payload = {
                "channel": channel,
                "event": event,
                "route": route,
                "label": label,
                "recipients": [recipient] if recipient else [],
                "message": message.as_dict(),
                "skip_if": list(skip_if),
                "meta": {
                    "event": event,
                    "incident_id": incident.id,
                    "priority": incident.priority,
                    "incident": self._incident_meta(incident),
                },
            }
            enq = await self.outbox.enqueue(
                f"notify.{cfg.type}",
                channel,
                payload,
                key=key,
                incident_id=incident.id,
                not_before=due if due > at else None,
            )
            bisect.insort(self._sent.setdefault(channel, []), due)
            p = Planned(
                channel,
                recipient,
                event,
                route,
                key,
                due if due > at else None,
                tuple(reasons),
                incident.id,
                enq.created,
            )
            planned.append(p)
            log.info(
                "notification_planned",
                incident=incident.id,
                channel=channel,
                change=event,
                route=route,
                deferred_to=p.not_before.isoformat() if p.not_before else None,
                reasons=list(reasons),
            )
            if timeline:
                text = self.t["planned"].format(subject=message.subject, label=label, route=route or "-")
                if p.not_before is not None:
                    text += self.t["deferred"].format(
                        when=self._when(p.not_before), reasons=", ".join(self.t[r] for r in reasons)
                    )
                await self._timeline(
                    incident.id,
                    "notification",
                    text,
                    {
                        "channel": channel,
                        "recipient": recipient,
                        "event": event,
                        "route": route,
                        "key": key,
                        "not_before": p.not_before.isoformat() if p.not_before else None,
                        "reasons": list(reasons),
                        **({"channels": list(decision)} if decision else {}),
                    },
                )
        return planned

    async def _timeline(self, incident_id: int, kind: str, text: str, data: Mapping[str, Any]) -> None:
        try:
            await self.incidents.add_timeline(incident_id, kind, text, data)
        except Exception:
            log.exception("timeline_write_failed", incident=incident_id)

    def _render(
        self,
        incident: IncidentView,
        event: str,
        *,
        actor: str | None = None,
        text: str | None = None,
        level: int | None = None,
    ) -> dict[Lang, Rendered]:
        return {
            lang: tx.incident(incident, event, actor=actor, text=text, level=level)
            for lang, tx in self._texts.items()
        }

    # ---- entry points -----------------------------------------------------------------------------
    async def _routing_left(self, change: IncidentChange) -> set[str] | None:
        """For a replayed change: None if nothing of it was routed yet; else the channels of its recorded
        decision still to plan (the agent stopped, or the store failed, while routing it). Their jobs already
        in the outbox are skipped by key; channels decided as not sent stay so. A decision recorded without
        its channel list (a storm, an older agent) counts as complete."""
        event = change.kind.value
        routed = False
        decided: list[str] = []
        not_sent: set[str] = set()
        for entry in await self.incidents.timeline(change.incident.id):
            if entry.kind != "notification":
                continue
            if change.kind is ChangeKind.OPENED or entry.data.get("event") == event:
                routed = True
            if entry.data.get("event") != event:
                continue
            decided = decided or [str(c) for c in entry.data.get("channels") or ()]
            if entry.data.get("channel") and not entry.data.get("key"):
                not_sent.add(str(entry.data["channel"]))
        if not routed:
            return None
        return {c for c in decided if c not in not_sent}

    async def on_change(self, change: IncidentChange) -> list[Planned]:
        only: set[str] | None = None  # a replay finishing an interrupted decision plans these channels only
        if change.replayed:
            only = await self._routing_left(change)
            if only is not None and not only:
                return []
        incident, event, at = change.incident, change.kind.value, change.at
        if change.kind is ChangeKind.OPENED and only is None:
            grouped = await self._storm_opened(incident, at)
            if grouped is not None:
                return grouped
        elif incident.id in self._grouped:
            return []  # covered by the storm messages
        routes = self.routes_for(incident, event, at)
        render = self._render(incident, event, actor=change.actor, text=change.text)
        stamp = "" if event in ("opened", "resolved") else f":{at.astimezone(UTC):%Y%m%dT%H%M%S.%f}"
        planned: list[Planned] = []
        # the whole decision goes with each of its timeline entries: a replay after an interruption finishes it
        decision = list(dict.fromkeys(c for route, _ in routes for c in route.notify))
        for route, defer_until in routes:
            for channel in route.notify:
                if only is not None and channel not in only:
                    continue
                if event != "opened" and not await self._opening_sent(incident.id, channel):
                    await self._timeline(
                        incident.id,
                        "notification",
                        self.t["not_sent"].format(event=event, channel=channel),
                        {"channel": channel, "event": event, "route": route.name, "channels": decision},
                    )
                    continue
                planned += await self._plan(
                    channel,
                    incident=incident,
                    event=event,
                    route=route.name,
                    key_base=f"notify:{incident.id}:{event}{stamp}",
                    render=render,
                    at=at,
                    defer_until=defer_until,
                    skip_if=("resolved",) if event == "opened" else (),
                    decision=decision,
                )
        return planned

    async def _opening_sent(self, incident_id: int, channel: str) -> bool:
        """Follow-ups (ack, note, resolved) go only where the opening notice went (or is going) out."""
        for recipient in self._recipients(channel):
            job = await self.outbox.by_key(f"notify:{incident_id}:opened:{channel}:{recipient or '-'}")
            if (
                job is not None
                and job.state in (JobState.DONE, JobState.IN_FLIGHT)
                and not (job.result or {}).get("skipped")
            ):
                return True
        return False

    async def tick(self) -> list[Planned]:
        """Periodic work: end calm storms (summary message), escalate unacknowledged incidents."""
        now = self.clock.now()
        planned: list[Planned] = []
        if self.cfg.storm is not None:
            window = timedelta(minutes=self.cfg.storm.window_minutes)
            for site, storm in list(self._storms.items()):
                if now - storm.last > window:
                    planned += await self._end_storm(site, now)
        planned += await self._escalate(now)
        return planned

    # ---- escalation -------------------------------------------------------------------------------
    async def _escalate(self, now: datetime) -> list[Planned]:
        if not any(r.escalation for r in self.cfg.routes):
            return []
        planned: list[Planned] = []
        opened = await self.incidents.list(IncidentQuery(states=(IncidentState.OPEN,), limit=100_000))
        for incident in opened:
            if incident.id in self._grouped:
                continue
            for route, defer_until in self.routes_for(incident, "opened", incident.opened_at):
                base = defer_until or incident.opened_at
                for level, step in enumerate(route.escalation, start=1):
                    if now < base + timedelta(minutes=step.after_minutes):
                        break
                    render = self._render(incident, "escalated", level=level)
                    for channel in step.notify:
                        planned += await self._plan(
                            channel,
                            incident=incident,
                            event="escalated",
                            route=route.name,
                            key_base=f"notify:{incident.id}:escalation{level}",
                            render=render,
                            at=now,
                            defer_until=None,
                            skip_if=("resolved", "acknowledged"),
                        )
        return planned

    # ---- storms -----------------------------------------------------------------------------------
    async def _storm_opened(self, incident: IncidentView, at: datetime) -> list[Planned] | None:
        st = self.cfg.storm
        if st is None or incident.site is None or incident.priority in st.bypass:
            return None
        site = incident.site
        window = timedelta(minutes=st.window_minutes)
        storm = self._storms.get(site)
        if storm is not None and at - storm.last > window:
            await self._end_storm(site, at)
            storm = None
        if storm is not None:
            storm.last = at
            storm.grouped.append(incident)
            self._grouped.add(incident.id)
            await self._timeline(
                incident.id,
                "notification",
                self.t["grouped"].format(site=site),
                {"storm": site, "started": storm.started.isoformat()},
            )
            return []
        events = self._site_events.setdefault(site, deque())
        while events and at - events[0][0] > window:
            events.popleft()
        events.append((at, incident))
        if len(events) <= st.threshold:
            return None
        members = [i for _, i in events]
        events.clear()
        channels = tuple(
            st.notify
            or dict.fromkeys(
                ch for route, _ in self.routes_for(incident, "opened", at) for ch in route.notify
            )
        )
        storm = _Storm(site, at, at, channels, [incident])
        self._storms[site] = storm
        self._grouped.add(incident.id)
        log.warning("notification_storm_started", site=site, incidents=len(members))
        render: dict[Lang, Rendered] = {
            lang: tx.storm(site, members, st.window_minutes) for lang, tx in self._texts.items()
        }
        planned: list[Planned] = []
        for channel in channels:
            planned += await self._plan(
                channel,
                incident=incident,
                event="storm",
                route=None,
                key_base=f"notify:storm:{site}:{at.astimezone(UTC):%Y%m%dT%H%M%S.%f}",
                render=render,
                at=at,
                defer_until=None,
                skip_if=(),
                timeline=False,
            )
        labels = ", ".join(dict.fromkeys(self._label(p.channel, p.recipient) for p in planned)) or "-"
        await self._timeline(
            incident.id,
            "notification",
            self.t["storm"].format(site=site, count=len(members), label=labels),
            {"storm": site, "incidents": [i.id for i in members], "channels": list(channels)},
        )
        return planned

    async def _end_storm(self, site: str, now: datetime) -> list[Planned]:
        storm = self._storms.pop(site)
        log.info("notification_storm_ended", site=site, grouped=len(storm.grouped))
        later = storm.grouped[1:]  # the first one was in the storm message itself
        if not later:
            return []
        current = []
        for inc in later:
            fresh = await self.incidents.get(inc.id)
            current.append(fresh or inc)
        st = self.cfg.storm
        assert st is not None
        render: dict[Lang, Rendered] = {
            lang: tx.storm(site, current, st.window_minutes, summary=True) for lang, tx in self._texts.items()
        }
        planned: list[Planned] = []
        last = current[-1]
        for channel in storm.channels:
            planned += await self._plan(
                channel,
                incident=last,
                event="storm_summary",
                route=None,
                key_base=f"notify:storm:{site}:{storm.started.astimezone(UTC):%Y%m%dT%H%M%S.%f}:summary",
                render=render,
                at=now,
                defer_until=None,
                skip_if=(),
                timeline=False,
            )
        return planned
