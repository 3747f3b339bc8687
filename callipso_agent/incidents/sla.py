"""SLA clocks: the contract's deadlines per priority, and whether each is on time, at risk or missed.

The deadlines themselves are data (``checks/contract.yaml``); by default they are

=================  ==========================  ==========  =====  =====
deadline           P1                          P2          P3     P4
=================  ==========================  ==========  =====  =====
taking charge      immediate, 24x7             30 min      -      -
first information  1 h                         2 h         -      -
restoration (GTR)  2 h ToIP/network, else 4 h  4 h         10 h   30 h
=================  ==========================  ==========  =====  =====

plus a 30-minute intervention (GTI) on a *Cercle 0* service and, for a major incident, a first
information within 15 minutes (which replaces the priority's own when it is due earlier).

Each deadline rule names its clock: ``24x7`` (wall time, always running), ``business`` (the contract's
business-hours calendar) or ``site`` (24x7 when the site/service is run 24x7, business hours
otherwise). ``compute_deadlines`` resolves ``site`` with the ``hours_mode`` it is given, so every
resulting deadline runs either 24x7 or on business hours.

The clock starts at the earliest of the alarm, the ticket creation and the failed daily check
(``clock_start``). Nothing here reads the current time: ``now`` is always given by the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from callipso_agent.config.models import Hours
from callipso_agent.incidents.business_hours import BusinessCalendar
from callipso_agent.incidents.priority import Lang, Priority


class DeadlineKind(enum.StrEnum):
    TAKING_CHARGE = "taking_charge"            # prise en charge
    FIRST_INFORMATION = "first_information"    # première information
    RESTORATION = "restoration"                # rétablissement (GTR)
    INTERVENTION = "intervention"              # intervention (GTI), Cercle 0 only


class ClockRule(enum.StrEnum):
    ALWAYS = "24x7"
    BUSINESS = "business"
    SITE = "site"


class DeadlineStatus(enum.StrEnum):
    OK = "ok"
    AT_RISK = "at_risk"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class DeadlineRule:
    minutes: int
    clock: ClockRule
    by_service_kind: Mapping[str, int] = field(default_factory=dict)

    def minutes_for(self, service_kind: str | None) -> tuple[int, str | None]:
        """Minutes allowed for ``service_kind`` and the kind that selected them (None: the default)."""
        if service_kind is not None:
            key = service_kind.lower()
            if key in self.by_service_kind:
                return self.by_service_kind[key], key
        return self.minutes, None


@dataclass(frozen=True, slots=True)
class SlaRules:
    """Deadline rules per priority, plus the Cercle 0 and major-incident rules."""

    priorities: Mapping[Priority, Mapping[DeadlineKind, DeadlineRule]]
    cercle0_intervention: DeadlineRule | None = None
    major_first_information: DeadlineRule | None = None
    at_risk_fraction: float = 0.8


_LABELS: dict[str, dict[DeadlineKind, str]] = {
    "fr": {
        DeadlineKind.TAKING_CHARGE: "Prise en charge",
        DeadlineKind.FIRST_INFORMATION: "Première information",
        DeadlineKind.RESTORATION: "Rétablissement (GTR)",
        DeadlineKind.INTERVENTION: "Intervention (GTI)",
    },
    "en": {
        DeadlineKind.TAKING_CHARGE: "Taking charge",
        DeadlineKind.FIRST_INFORMATION: "First information",
        DeadlineKind.RESTORATION: "Restoration (GTR)",
        DeadlineKind.INTERVENTION: "Intervention (GTI)",
    },
}


@dataclass(frozen=True, slots=True)
class Deadline:
    """One named deadline: due ``duration`` of ``clock`` time after ``start`` (both instants in UTC).

    ``basis`` tells which rule set it: ``priority``, ``service_kind:<kind>``, ``cercle0`` or ``major``.
    """

    kind: DeadlineKind
    start: datetime
    duration: timedelta
    due: datetime
    clock: Hours
    basis: str
    calendar: BusinessCalendar = field(compare=False, repr=False)

    def label(self, lang: Lang = "fr") -> str:
        return _LABELS[lang][self.kind]

    def elapsed(self, now: datetime) -> timedelta:
        """Clock time spent between the start and ``now`` (business time on a business clock)."""
        if self.clock is Hours.BUSINESS:
            return self.calendar.elapsed(self.start, now)
        return max(timedelta(0), now.astimezone(UTC) - self.start.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class Deadlines:
    priority: Priority
    start: datetime
    items: tuple[Deadline, ...]

    def __iter__(self) -> Iterator[Deadline]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, kind: DeadlineKind) -> Deadline | None:
        for d in self.items:
            if d.kind is kind:
                return d
        return None

    def __getitem__(self, kind: DeadlineKind) -> Deadline:
        found = self.get(kind)
        if found is None:
            raise KeyError(kind)
        return found


def _check_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def clock_start(*, alarm_at: datetime | None = None, ticket_created_at: datetime | None = None,
                daily_check_failed_at: datetime | None = None) -> datetime:
    """The SLA clock start: the earliest of the alarm, the ticket creation and the failed daily check."""
    given = [(n, v) for n, v in (("alarm_at", alarm_at), ("ticket_created_at", ticket_created_at),
                                 ("daily_check_failed_at", daily_check_failed_at)) if v is not None]
    if not given:
        raise ValueError("the SLA clock needs at least one of alarm_at, ticket_created_at, "
                         "daily_check_failed_at")
    for name, value in given:
        _check_aware(name, value)
    return min((v for _, v in given), key=lambda v: v.astimezone(UTC))


def _make(kind: DeadlineKind, rule: DeadlineRule, start: datetime, *, service_kind: str | None,
          hours_mode: Hours, calendar: BusinessCalendar, basis: str) -> Deadline:
    minutes, matched = rule.minutes_for(service_kind)
    if matched is not None:
        basis = f"service_kind:{matched}"
    if rule.clock is ClockRule.ALWAYS:
        clock = Hours.ALWAYS
    elif rule.clock is ClockRule.BUSINESS:
        clock = Hours.BUSINESS
    else:
        clock = hours_mode
    duration = timedelta(minutes=minutes)
    if clock is Hours.ALWAYS:
        due = start.astimezone(UTC) + duration
    else:
        due = calendar.add(start, duration)
    return Deadline(kind=kind, start=start, duration=duration, due=due, clock=clock, basis=basis,
                    calendar=calendar)


def compute_deadlines(priority: Priority, start: datetime, *, rules: SlaRules, calendar: BusinessCalendar,
                      service_kind: str | None = None, cercle0: bool = False, major: bool = False,
                      hours_mode: Hours = Hours.BUSINESS) -> Deadlines:
    """All deadlines that apply to an incident of ``priority`` whose clock started at ``start``.

    ``service_kind`` selects per-kind durations (e.g. ``toip``, ``network``), ``cercle0`` adds the
    intervention (GTI) deadline, ``major`` applies the major-incident first information, and
    ``hours_mode`` (the site's or service's hours) resolves the ``site`` clocks.
    """
    _check_aware("start", start)
    start = start.astimezone(UTC)

    def make(kind: DeadlineKind, rule: DeadlineRule, basis: str) -> Deadline:
        return _make(kind, rule, start, service_kind=service_kind, hours_mode=hours_mode, calendar=calendar,
                     basis=basis)

    items: dict[DeadlineKind, Deadline] = {}
    for kind, rule in rules.priorities.get(priority, {}).items():
        items[kind] = make(kind, rule, "priority")
    if major and rules.major_first_information is not None:
        mine = make(DeadlineKind.FIRST_INFORMATION, rules.major_first_information, "major")
        current = items.get(DeadlineKind.FIRST_INFORMATION)
        if current is None or mine.due < current.due:
            items[DeadlineKind.FIRST_INFORMATION] = mine
    if cercle0 and rules.cercle0_intervention is not None:
        items[DeadlineKind.INTERVENTION] = make(DeadlineKind.INTERVENTION, rules.cercle0_intervention,
                                                "cercle0")
    order = list(DeadlineKind)
    ordered = tuple(sorted(items.values(), key=lambda d: order.index(d.kind)))
    return Deadlines(priority=priority, start=start, items=ordered)


def deadline_status(deadline: Deadline, now: datetime, at_risk_fraction: float = 0.8) -> DeadlineStatus:
    """``missed`` once ``now`` is past the due time; ``at_risk`` once ``at_risk_fraction`` of the allowed
    clock time is spent (measured on the deadline's own clock); ``ok`` before.

    An immediate (zero-minute) deadline is at risk at its start and missed right after it.
    """
    _check_aware("now", now)
    if not 0.0 <= at_risk_fraction <= 1.0:
        raise ValueError("at_risk_fraction must be between 0 and 1")
    if now.astimezone(UTC) > deadline.due.astimezone(UTC):
        return DeadlineStatus.MISSED
    if deadline.elapsed(now) >= deadline.duration * at_risk_fraction:
        return DeadlineStatus.AT_RISK
    return DeadlineStatus.OK
