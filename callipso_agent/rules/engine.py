"""The rule engine: turns poll results and events into edge-triggered :class:`Signal`s.

It keeps, per rule and series, the level that fired, the start of a pending ``for`` delay, the last value
(for hysteresis, change detection and ``for`` delays checked between polls) and per device the run of
failed polls. It emits a signal only on a transition (a problem fires, changes severity, or clears), plus
a new ``active`` signal for each new change or event occurrence. It is synchronous, pure in-memory and
reads time only from the injected clock (poll and event timestamps come with the data).

After a restart, :meth:`restore` gives back the state of problems that are still open in the store, so
their clearing is noticed and their ``clear_after`` timers run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from callipso_agent.clock import Clock
from callipso_agent.config.models import Device, Site
from callipso_agent.model import Event, Measurement, PollResult, Severity
from callipso_agent.rules.inventory import Inventory
from callipso_agent.rules.loader import RuleSet
from callipso_agent.rules.schema import (
    AbsenceRule,
    ChangeRule,
    EventRule,
    LabelMatch,
    LabelRef,
    Ref,
    Rule,
    StateRule,
    Threshold,
    ThresholdRule,
)
from callipso_agent.rules.signal import Signal, problem_key
from callipso_agent.rules.texts import human_duration

log = structlog.get_logger()

_SEVERITY = {"ok": Severity.OK, "warning": Severity.WARNING, "critical": Severity.CRITICAL}
STALE_INTERVALS = 2.0  # a value older than this many poll intervals no longer completes a ``for`` delay


# ---- pure helpers (table-tested) ------------------------------------------------------------------------


def threshold_level(
    value: float,
    threshold: Threshold,
    warning: float | None,
    critical: float | None,
    current: Severity = Severity.OK,
) -> Severity:
    """Level of ``value`` against resolved limits, with hysteresis.

    A level is entered when the value goes beyond its limit (strictly) and kept while the value stays
    beyond the limit moved back by ``hysteresis``.
    """

    def level(shift: float) -> Severity:
        def beyond(limit: float | None) -> bool:
            if limit is None:
                return False
            if threshold.direction == "above":
                return value > limit - shift
            return value < limit + shift

        if beyond(critical):
            return Severity.CRITICAL
        if beyond(warning):
            return Severity.WARNING
        return Severity.OK

    return max(level(0.0), min(current, level(threshold.hysteresis)))


def resolve_limit(limit: float | Ref | None, device: Device | None, site: Site | None) -> float | None:
    if limit is None or isinstance(limit, float):
        return limit
    raw = Inventory.resolve(limit.ref, device, site)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    return float(raw) * limit.factor + limit.offset


def label_matches(
    labels: Mapping[str, str], wanted: Mapping[str, LabelMatch], device: Device | None, site: Site | None
) -> bool | None:
    """True/False; None when a referenced inventory value is missing (the rule does not apply)."""
    for name, match in wanted.items():
        have = labels.get(name)
        if isinstance(match, LabelRef):
            ref = Inventory.resolve(match.ref, device, site)
            if ref is None:
                return None
            if have != str(ref):
                return False
        elif isinstance(match, list):
            if have not in match:
                return False
        elif have != match:
            return False
    return True


def key_labels(labels: Mapping[str, str], keep: list[str] | None) -> dict[str, str]:
    if keep is None:
        return dict(labels)
    return {k: labels[k] for k in keep if k in labels}


def changed(kind: str, previous: Any, value: Any) -> bool:
    if previous is None or value is None:
        return False
    if kind == "decrease":
        return bool(value < previous)
    if kind == "increase":
        return bool(value > previous)
    return bool(value != previous)


# ---- state ----------------------------------------------------------------------------------------------


@dataclass
class _Series:
    rule: str
    key: str
    device: str
    site: str | None
    labels: dict[str, str]
    fired: Severity = Severity.OK
    pending_since: datetime | None = None
    last_value: Any = None
    last_at: datetime | None = None
    last_state: Severity = Severity.OK
    limits: tuple[float | None, float | None] = (None, None)
    fired_at: datetime | None = None  # last change/event occurrence, for clear_after
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Absence:
    failures: int = 0
    fired: bool = False
    last_result_at: datetime | None = None
    last_error: str | None = None


class RuleEngine:
    def __init__(self, rules: RuleSet, inventory: Inventory, clock: Clock) -> None:
        self.rules = rules
        self.inventory = inventory
        self.clock = clock
        self._series: dict[tuple[str, str], _Series] = {}
        self._absence: dict[tuple[str, str], _Absence] = {}
        self._previous: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}

    # ---- inventory ------------------------------------------------------------------------------------
    def set_inventory(self, inventory: Inventory) -> None:
        """Swap the inventory (configuration reload); state of devices that left is dropped."""
        self.inventory = inventory
        self.forget(lambda device: device not in inventory.devices)

    def forget(self, drop: Callable[[str], bool]) -> None:
        """Drop the state of devices for which ``drop(name)`` is true (removed, or leased elsewhere)."""
        for k in [k for k, s in self._series.items() if drop(s.device)]:
            del self._series[k]
        for k in [k for k in self._absence if drop(k[1])]:
            del self._absence[k]
        for p in [p for p in self._previous if drop(p[1])]:
            del self._previous[p]

    # ---- inputs ---------------------------------------------------------------------------------------
    def on_poll(self, result: PollResult) -> list[Signal]:
        device = self.inventory.device(result.device)
        if device is None:
            return []
        site = self.inventory.site(device.site)
        out: list[Signal] = []
        by_name: dict[str, list[Measurement]] = {}
        for m in result.measurements:
            by_name.setdefault(m.name, []).append(m)
        for rule in self.rules.for_family(device.family):
            if isinstance(rule, AbsenceRule):
                self._absence_poll(rule, device, site, result, out)
            elif not result.ok:
                continue
            elif isinstance(rule, (ThresholdRule, StateRule)):
                for labels, group in self._groups(rule, device, site, by_name.get(rule.metric, ())).items():
                    self._measure(rule, device, site, dict(labels), group, out)
            elif isinstance(rule, ChangeRule):
                if rule.metric is not None:
                    for labels, group in self._groups(
                        rule, device, site, by_name.get(rule.metric, ())
                    ).items():
                        self._change_metric(rule, device, site, dict(labels), group, out)
                else:
                    self._change_system(rule, device, site, result, out)
        return out

    def _event_matches(
        self, event: Event
    ) -> Iterator[tuple[EventRule, Device, Site | None, dict[str, str], bool]]:
        """The event rules an event raises or clears: (rule, device, site, key labels, is a clear event)."""
        device = self.inventory.device(event.device)
        if device is None:
            return
        site = self.inventory.site(device.site)
        for rule in self.rules.for_family(device.family):
            if not isinstance(rule, EventRule):
                continue
            raises = event.name in rule.events
            clears = event.name in rule.clear_events
            if not (raises or clears):
                continue
            if label_matches(event.labels, rule.labels, device, site) is not True:
                continue
            # the event's name and source (e.g. an AudioCodes "Board#1/EthernetLink#0", a UPS-MIB alarm name)
            # may key the incident, so that a raise and its clear meet
            named = {**event.labels, "event": event.name, **({"source": event.source} if event.source else {})}
            yield rule, device, site, key_labels(named, rule.key_labels), clears

    def on_event(self, event: Event) -> list[Signal]:
        out: list[Signal] = []
        for rule, device, site, labels, clears in self._event_matches(event):
            if clears or event.clear:
                self._event_clear(rule, device, labels, event.at, out, exact=not clears)
                continue
            severity = _SEVERITY[rule.severity] if rule.severity else event.severity
            if severity not in (Severity.WARNING, Severity.CRITICAL):
                severity = Severity.WARNING
            s = self._get(rule, device, site, labels)
            s.fired_at = event.at
            fields = {"event": event.name, "detail": event.text, "labels": dict(event.labels)}
            if s.fired != severity:
                s.fired = severity
                s.fields = fields
                out.append(self._signal(s, True, event.at, fields))
        return out

    def event_keys(self, event: Event) -> set[str]:
        """The problem keys an event raises or clears, whether or not it changes anything now (a repeated
        alert changes nothing: its signal went out the first time). Changes no state."""
        keys: set[str] = set()
        for rule, device, _site, labels, clears in self._event_matches(event):
            if not clears:
                keys.add(problem_key(rule.name, device.name, labels))
            if clears or event.clear:
                for s in self._series.values():
                    if s.rule == rule.name and s.device == device.name and _same_problem(
                        s.labels, labels, exact=not clears
                    ):
                        keys.add(s.key)
        return keys

    def tick(self) -> list[Signal]:
        """Timers: ``for`` delays between polls, silent devices, ``clear_after`` of changes and events."""
        now = self.clock.now()
        out: list[Signal] = []
        for s in list(self._series.values()):
            rule = self.rules.get(s.rule)
            if rule is None:
                continue
            if isinstance(rule, (ThresholdRule, StateRule)):
                if s.pending_since is None or s.last_at is None:
                    continue
                device = self.inventory.device(s.device)
                interval = device.interval if device is not None else 60.0
                if (now - s.last_at).total_seconds() > STALE_INTERVALS * interval:
                    continue
                target = self._target(rule, s, s.last_value, s.last_state)
                self._advance(rule, s, target, now, out)
            elif isinstance(rule, (ChangeRule, EventRule)):
                after = rule.clear_after
                if (
                    after is not None
                    and s.fired is not Severity.OK
                    and s.fired_at is not None
                    and (now - s.fired_at).total_seconds() >= after
                ):
                    s.fired = Severity.OK
                    out.append(self._signal(s, False, now, s.fields))
        for (rule_name, device_name), st in self._absence.items():
            rule = self.rules.get(rule_name)
            if not isinstance(rule, AbsenceRule) or not rule.silence or st.fired or st.last_result_at is None:
                continue
            device = self.inventory.device(device_name)
            if device is None:
                continue
            silent = (now - st.last_result_at).total_seconds()
            if silent >= rule.intervals * device.interval:
                st.fired = True
                st.last_error = "silence"
                out.append(
                    self._absence_signal(
                        rule,
                        device,
                        True,
                        now,
                        {"detail": f"no poll result for {human_duration(silent)}", "count": st.failures},
                    )
                )
        return out

    def restore(
        self,
        rule_name: str,
        device: str | None,
        labels: Mapping[str, str],
        severity: Severity,
        since: datetime,
    ) -> bool:
        """Take back the state of a problem still open in the store (after a restart or a takeover)."""
        rule = self.rules.get(rule_name)
        dev = self.inventory.device(device)
        if rule is None or dev is None or severity not in (Severity.WARNING, Severity.CRITICAL):
            return False
        if isinstance(rule, AbsenceRule):
            st = self._absence.setdefault((rule.name, dev.name), _Absence())
            if st.fired or st.last_result_at is not None:
                return False
            st.fired, st.failures = True, rule.intervals
            return True
        if isinstance(rule, (ThresholdRule, StateRule, ChangeRule, EventRule)):
            key = problem_key(rule.name, dev.name, labels)
            if (rule.name, key) in self._series:
                return False
            s = self._get(rule, dev, self.inventory.site(dev.site), dict(labels))
            s.fired, s.fired_at = severity, since
            return True
        return False

    # ---- series rules ---------------------------------------------------------------------------------
    def _get(self, rule: Rule, device: Device, site: Site | None, labels: dict[str, str]) -> _Series:
        key = problem_key(rule.name, device.name, labels)
        s = self._series.get((rule.name, key))
        if s is None:
            s = _Series(
                rule=rule.name, key=key, device=device.name, site=site.code if site else None, labels=labels
            )
            self._series[(rule.name, key)] = s
        return s

    @staticmethod
    def _groups(
        rule: ThresholdRule | StateRule | ChangeRule,
        device: Device,
        site: Site | None,
        measurements: Iterable[Measurement],
    ) -> dict[tuple[tuple[str, str], ...], list[Measurement]]:
        """Matching measurements grouped by the labels that make the problem key."""
        groups: dict[tuple[tuple[str, str], ...], list[Measurement]] = {}
        for m in measurements:
            if label_matches(m.labels, rule.labels, device, site) is True:
                k = tuple(sorted(key_labels(m.labels, rule.key_labels).items()))
                groups.setdefault(k, []).append(m)
        return groups

    def _measure(
        self,
        rule: ThresholdRule | StateRule,
        device: Device,
        site: Site | None,
        labels: dict[str, str],
        group: list[Measurement],
        out: list[Signal],
    ) -> None:
        """Evaluate one problem key; when several series share it, the worst one counts."""
        if isinstance(rule, ThresholdRule):
            valued = [m for m in group if m.value is not None]
            if not valued:
                return
            pick = max if rule.threshold.direction == "above" else min
            m = pick(valued, key=lambda x: float(x.value))  # type: ignore[arg-type]
            limits = (
                resolve_limit(rule.threshold.warning, device, site),
                resolve_limit(rule.threshold.critical, device, site),
            )
            if limits == (None, None):
                return
            s = self._get(rule, device, site, labels)
            s.limits = limits
        else:
            rated = [(self._state_of(rule, x), x) for x in group]
            rated = [(st, x) for st, x in rated if st is not Severity.UNKNOWN]
            if not rated:
                return
            state, m = max(rated, key=lambda r: int(r[0]))
            s = self._get(rule, device, site, labels)
            s.last_state = state
        s.last_value, s.last_at = m.value, m.at
        s.fields = {"value": m.value, "detail": m.text or "", "labels": dict(m.labels)}
        target = self._target(rule, s, m.value, s.last_state)
        self._advance(rule, s, target, m.at, out)

    @staticmethod
    def _state_of(rule: StateRule, m: Measurement) -> Severity:
        if m.text is not None and m.text in rule.states:
            return _SEVERITY[rule.states[m.text]]
        return m.state

    def _target(self, rule: ThresholdRule | StateRule, s: _Series, value: Any, state: Severity) -> Severity:
        if isinstance(rule, ThresholdRule):
            if value is None:
                return s.fired
            return threshold_level(float(value), rule.threshold, s.limits[0], s.limits[1], s.fired)
        return state

    def _advance(
        self, rule: ThresholdRule | StateRule, s: _Series, target: Severity, now: datetime, out: list[Signal]
    ) -> None:
        """Apply ``for``: a higher level must hold ``rule.for_`` seconds; a lower one applies at once."""
        if target > s.fired:
            if s.pending_since is None:
                s.pending_since = now
            if (now - s.pending_since).total_seconds() >= rule.for_:
                s.fired, s.pending_since = target, None
                out.append(self._signal(s, True, now, self._fields(rule, s)))
            return
        s.pending_since = None
        if target < s.fired:
            s.fired = target
            out.append(self._signal(s, target is not Severity.OK, now, self._fields(rule, s)))

    def _fields(self, rule: ThresholdRule | StateRule, s: _Series) -> dict[str, Any]:
        fields = dict(s.fields)
        fields["for"] = human_duration(rule.for_) if rule.for_ else ""
        if isinstance(rule, ThresholdRule):
            warning, critical = s.limits
            fields["threshold"] = (
                critical
                if s.fired is Severity.CRITICAL and critical is not None
                else (warning if warning is not None else critical)
            )
        return fields

    # ---- change rules ---------------------------------------------------------------------------------
    def _change_metric(
        self,
        rule: ChangeRule,
        device: Device,
        site: Site | None,
        labels: dict[str, str],
        group: list[Measurement],
        out: list[Signal],
    ) -> None:
        """Each series is compared with its own previous value; one signal per problem key and poll."""
        fired: dict[str, Any] | None = None
        for m in group:
            if m.value is None:
                continue
            series = (rule.name, device.name, tuple(m.labels.items()))
            previous = self._previous.get(series)
            self._previous[series] = m.value
            if fired is None and changed(rule.change, previous, m.value):
                fired = {
                    "value": m.value,
                    "previous": previous,
                    "labels": dict(m.labels),
                    "detail": m.text or "",
                    "at": m.at,
                }
        if fired is not None:
            s = self._get(rule, device, site, labels)
            self._change_fire(rule, s, fired.pop("at"), fired, out)

    def _change_system(
        self, rule: ChangeRule, device: Device, site: Site | None, result: PollResult, out: list[Signal]
    ) -> None:
        assert rule.system is not None
        current = {k: result.system[k] for k in rule.system if k in result.system}
        if not current:
            return
        s = self._get(rule, device, site, {})
        previous: dict[str, str] | None = s.last_value
        s.last_value, s.last_at = current, result.started
        if previous is None:
            return
        diffs = {k: (previous[k], v) for k, v in current.items() if k in previous and previous[k] != v}
        if diffs:
            before = ", ".join(f"{k} {a}" for k, (a, _) in diffs.items())
            after = ", ".join(f"{k} {b}" for k, (_, b) in diffs.items())
            self._change_fire(
                rule,
                s,
                result.started,
                {"value": after, "previous": before, "detail": f"{before} -> {after}"},
                out,
            )

    def _change_fire(
        self, rule: ChangeRule, s: _Series, at: datetime, fields: dict[str, Any], out: list[Signal]
    ) -> None:
        s.fired, s.fired_at, s.fields = _SEVERITY[rule.severity], at, fields
        out.append(self._signal(s, True, at, fields))

    # ---- events ---------------------------------------------------------------------------------------
    def _event_clear(
        self,
        rule: EventRule,
        device: Device,
        labels: dict[str, str],
        at: datetime,
        out: list[Signal],
        *,
        exact: bool,
    ) -> None:
        """Clear the matching fired series; a clear event of another name ignores the 'event' label."""
        for s in self._series.values():
            if s.rule != rule.name or s.device != device.name or s.fired is Severity.OK:
                continue
            if _same_problem(s.labels, labels, exact=exact):
                s.fired = Severity.OK
                out.append(self._signal(s, False, at, s.fields))

    # ---- absence --------------------------------------------------------------------------------------
    def _absence_poll(
        self, rule: AbsenceRule, device: Device, site: Site | None, result: PollResult, out: list[Signal]
    ) -> None:
        st = self._absence.setdefault((rule.name, device.name), _Absence())
        st.last_result_at = result.started
        if result.ok:
            st.failures = 0
            if st.fired:
                st.fired = False
                out.append(self._absence_signal(rule, device, False, result.started, {}))
            return
        if result.error not in rule.errors:
            return
        st.failures += 1
        st.last_error = result.error
        if not st.fired and st.failures >= rule.intervals:
            st.fired = True
            out.append(
                self._absence_signal(
                    rule,
                    device,
                    True,
                    result.started,
                    {
                        "detail": result.error_text or result.error or "",
                        "count": st.failures,
                        "event": result.error,
                    },
                )
            )

    def _absence_signal(
        self, rule: AbsenceRule, device: Device, active: bool, at: datetime, fields: dict[str, Any]
    ) -> Signal:
        return Signal(
            rule=rule.name,
            key=problem_key(rule.name, device.name),
            active=active,
            at=at,
            severity=_SEVERITY[rule.severity] if active else Severity.OK,
            device=device.name,
            site=device.site,
            fields=fields,
        )

    @staticmethod
    def _signal(s: _Series, active: bool, at: datetime, fields: Mapping[str, Any]) -> Signal:
        return Signal(
            rule=s.rule,
            key=s.key,
            active=active,
            at=at,
            severity=s.fired if active else Severity.OK,
            device=s.device,
            site=s.site,
            labels=s.labels,
            fields=fields,
        )


def _same_problem(ours: Mapping[str, str], theirs: Mapping[str, str], *, exact: bool) -> bool:
    """Whether a clear event's labels name a series' problem (a clear of another name ignores 'event')."""
    if exact:
        return dict(ours) == dict(theirs)
    return {k: v for k, v in ours.items() if k != "event"} == {k: v for k, v in theirs.items() if k != "event"}
