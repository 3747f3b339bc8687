"""The check modes, declared as data: which measurements each mode evaluates, with which default thresholds.

A device mode reads one device from the agent's API (``/api/v1/devices/<name>``): STATE measurements matching
``states`` are evaluated by the severity their profile gave them; measurements matching a :class:`Threshold`
are evaluated against Nagios ranges (``--warning-<key>``/``--critical-<key>``, ``-w``/``-c`` for the mode's
primary threshold). ``incidents`` and ``meteo`` read ``/api/v1/incidents?state=open``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callipso_agent.model import Severity
from callipso_agent.plugins.agent import AgentClient
from callipso_agent.plugins.core import (
    CheckError,
    Metric,
    Outcome,
    Result,
    ScalarContext,
    StateContext,
    evaluate,
)
from callipso_agent.rules.ranges import Range

UOM = {"percent": "%", "seconds": "s", "bytes": "B"}


@dataclass(frozen=True)
class Threshold:
    key: str  # option suffix: --warning-<key>, --critical-<key>
    pattern: str  # measurement name (glob)
    help: str
    warning: str | None = None
    critical: str | None = None
    min: float | None = None
    max: float | None = None
    labels: tuple[tuple[str, str], ...] = ()  # the measurement must carry these labels

    def matches(self, m: Mapping[str, Any]) -> bool:
        if not fnmatch.fnmatchcase(str(m["name"]), self.pattern) or m.get("kind") not in ("gauge", "counter"):
            return False
        labels = m.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True)
class ModeSpec:
    name: str
    help: str
    families: tuple[str, ...] = ()  # empty: any family
    states: tuple[str, ...] = ()  # glob patterns of STATE measurements
    thresholds: tuple[Threshold, ...] = ()
    primary: str | None = None  # the threshold -w/-c set


DEVICE_MODES: dict[str, ModeSpec] = {
    m.name: m
    for m in (
        ModeSpec(
            "ups",
            "UPS: output source, battery status, charge, runtime, load, battery temperature",
            families=("eaton-ups", "ups-mib"),
            states=("ups_output_source", "ups_battery_status"),
            thresholds=(
                Threshold("charge", "ups_battery_charge_percent", "battery charge, %", "50:", "20:", 0, 100),
                Threshold(
                    "runtime", "ups_battery_runtime_seconds", "estimated runtime, seconds", "900:", "300:", 0
                ),
                Threshold("load", "ups_load_percent", "output load per phase, %", "80", "90", 0),
                Threshold(
                    "temperature", "ups_battery_temperature_celsius", "battery temperature, °C", "35", "40"
                ),
                Threshold("on-battery", "ups_seconds_on_battery", "time on battery, seconds"),
            ),
            primary="charge",
        ),
        ModeSpec(
            "sensors",
            "temperature and humidity sensors of a device (probes; UPS battery temperature)",
            states=("sensor_*",),
            thresholds=(
                Threshold("temperature", "*_temperature_celsius", "temperature, °C", "30", "35"),
                Threshold("humidity", "*_humidity_percent", "relative humidity, %", "20:80", "10:90", 0, 100),
            ),
            primary="temperature",
        ),
        ModeSpec(
            "sbc",
            "Audiocodes SBC: global alarm severity, HA state, SIP trunks, active calls",
            families=("audiocodes-sbc",),
            states=("sbc_*",),
            thresholds=(Threshold("calls", "sbc_active_calls", "active calls"),),
            primary="calls",
        ),
        ModeSpec(
            "gateway",
            "Audiocodes MP-11x analog gateway: alarm severity, analog ports",
            families=("audiocodes-mp11x",),
            states=("gateway_*",),
        ),
        ModeSpec(
            "pbx",
            "OmniPCX Enterprise: call server state, twin roles, trunks, sets, backups",
            families=("oxe",),
            states=("pbx_*",),
            thresholds=(
                Threshold("trunks-out-of-service", "pbx_trunk_channels",
                          "B-channels out of service per trunk group (default critical above 29: a whole T2)",
                          None, "29", 0, labels=(("state", "out_of_service"),)),
                Threshold("sets-out-of-service", "pbx_sets", "sets out of service", None, None, 0,
                          labels=(("state", "out_of_service"),)),
            ),
            primary="trunks-out-of-service",
        ),
    )
}


def _label(m: Mapping[str, Any]) -> str:
    labels = m.get("labels") or {}
    return str(m["name"]) + "".join(f"_{v}" for _, v in sorted(labels.items()))


def _fresh_device(client: AgentClient, name: str) -> dict[str, Any]:
    dev = client.device(name)
    if not dev.get("up"):
        if dev.get("last_success") is None and dev.get("last_error") is None:
            raise CheckError(f"{name}: not polled yet by the agent")
        raise CheckError(
            f"{name}: no fresh data, the device does not answer the agent "
            f"({dev.get('last_error')}: {dev.get('last_error_text')})"
        )
    return dev


def device_mode(
    spec: ModeSpec,
    client: AgentClient,
    device: str,
    ranges: Mapping[str, tuple[Range | None, Range | None]],
    lang: str,
) -> Outcome:
    dev = _fresh_device(client, device)
    if spec.families and dev.get("family") not in spec.families:
        raise CheckError(
            f"{device} is a {dev.get('family')} device; mode {spec.name} checks {', '.join(spec.families)}"
        )
    metrics: list[Metric] = []
    for m in dev.get("measurements", []):
        name = str(m.get("name", ""))
        if m.get("kind") == "state" and any(fnmatch.fnmatchcase(name, p) for p in spec.states):
            metrics.append(
                Metric(
                    _label(m),
                    m.get("value"),
                    context="state",
                    state=Severity.parse(str(m.get("state", "unknown"))),
                    state_text=m.get("text"),
                )
            )
            continue
        for t in spec.thresholds:
            if t.matches(m):
                uom = "c" if m.get("kind") == "counter" else UOM.get(str(m.get("unit", "")), "")
                metrics.append(
                    Metric(_label(m), m.get("value"), uom=uom, context=t.key, min=t.min, max=t.max)
                )
                break
    if not metrics:
        raise CheckError(f"{device}: no {spec.name} measurements (is its profile collecting them?)")
    contexts: list[Any] = [StateContext()]
    for t in spec.thresholds:
        warn, crit = ranges.get(t.key, (None, None))
        contexts.append(ScalarContext(t.key, warn, crit))
    return evaluate(f"CALLIPSO-{spec.name.upper()}", metrics, contexts, lang=lang, prefix=device)


def device_status(
    client: AgentClient, device: str, warning: Range | None, critical: Range | None, lang: str, now: datetime
) -> Outcome:
    """Reachability of a device as the agent sees it; -w/-c apply to the age of the last successful poll."""
    dev = client.device(device)
    extra: list[Result] = []
    metrics: list[Metric] = [
        Metric("consecutive_failures", float(dev.get("consecutive_failures", 0)), context="failures", min=0)
    ]
    last = dev.get("last_success")
    if last:
        age = (now - datetime.fromisoformat(last)).total_seconds()
        metrics.append(Metric("last_success_age", round(max(age, 0.0), 3), uom="s", context="age", min=0))
    if dev.get("last_poll") is None:
        extra.append(Result(Severity.UNKNOWN, "pas encore interrogé" if lang == "fr" else "not polled yet"))
    elif not dev.get("up"):
        what = "injoignable" if lang == "fr" else "unreachable"
        extra.append(
            Result(Severity.CRITICAL, f"{what} ({dev.get('last_error')}: {dev.get('last_error_text')})")
        )
    else:
        extra.append(Result(Severity.OK, "joignable" if lang == "fr" else "reachable"))
    return evaluate(
        "CALLIPSO-DEVICE",
        metrics,
        [ScalarContext("failures"), ScalarContext("age", warning, critical)],
        lang=lang,
        prefix=device,
        extra=extra,
    )


PRIORITIES = ("P1", "P2", "P3", "P4")


def _open(items: Iterable[Mapping[str, Any]], site: str | None) -> list[Mapping[str, Any]]:
    return [
        i for i in items if i.get("state", "open") != "resolved" and (site is None or i.get("site") == site)
    ]


def incidents_mode(
    client: AgentClient,
    ranges: Mapping[str, tuple[Range | None, Range | None]],
    site: str | None,
    lang: str,
    now: datetime,
) -> Outcome:
    items = _open(client.open_incidents(), site)
    metrics = [
        Metric(p.lower(), float(sum(1 for i in items if i.get("priority") == p)), context=p.lower(), min=0)
        for p in PRIORITIES
    ]
    remaining = []
    for i in items:
        for name, at in (i.get("deadlines") or {}).items():
            left = (datetime.fromisoformat(at) - now).total_seconds()
            remaining.append((left, f"{i.get('id')}/{name}"))
    if remaining:
        left, which = min(remaining)
        metrics.append(
            Metric(
                "next_deadline",
                round(left, 1),
                uom="s",
                context="deadline",
                display=f"{which} {left / 60:.0f} min",
            )
        )
    contexts = [ScalarContext(p.lower(), *ranges.get(p.lower(), (None, None))) for p in PRIORITIES]
    contexts.append(ScalarContext("deadline", *ranges.get("deadline", (None, None))))
    n = len(items)
    prefix = (f"{n} incident(s) ouvert(s)" if lang == "fr" else f"{n} open incident(s)") + (
        f" ({site})" if site else ""
    )
    out = evaluate("CALLIPSO-INCIDENTS", metrics, contexts, lang=lang, prefix=prefix)
    for i in sorted(items, key=lambda i: str(i.get("priority"))):
        out.results.append(
            Result(
                Severity.OK, f"[{i.get('priority')}] #{i.get('id')} {i.get('site') or '-'}: {i.get('title')}"
            )
        )
    return out


def meteo_mode(client: AgentClient, site: str | None, lang: str) -> Outcome:
    """The service weather per site: orage (outage or P1), perturbé (degraded, open incident, device down)."""
    items = _open(client.open_incidents(), site)
    devices = [d for d in client.devices() if site is None or d.get("site") == site]
    sites: dict[str, Severity] = {str(d.get("site")): Severity.OK for d in devices}
    why: dict[str, list[str]] = {}
    for d in devices:
        if d.get("last_poll") is not None and not d.get("up"):
            s = str(d.get("site"))
            sites[s] = Severity.worst([sites[s], Severity.WARNING])
            why.setdefault(s, []).append(
                f"{d.get('name')} injoignable" if lang == "fr" else f"{d.get('name')} down"
            )
    for i in items:
        s = str(i.get("site") or "-")
        storm = i.get("user_impact") == "outage" or i.get("priority") == "P1"
        sites[s] = Severity.worst(
            [sites.get(s, Severity.OK), Severity.CRITICAL if storm else Severity.WARNING]
        )
        why.setdefault(s, []).append(str(i.get("title")))
    words = {
        Severity.OK: ("beau", "fine"),
        Severity.WARNING: ("perturbé", "degraded"),
        Severity.CRITICAL: ("orage", "outage"),
    }
    k = 0 if lang == "fr" else 1
    results = [
        Result(st, f"{s} {words[st][k]}: {'; '.join(why.get(s, []))}")
        for s, st in sorted(sites.items())
        if st is not Severity.OK
    ]
    counts = {st: sum(1 for v in sites.values() if v is st) for st in words}
    metrics = [
        Metric("sites_outage", float(counts[Severity.CRITICAL]), context="count", min=0),
        Metric("sites_degraded", float(counts[Severity.WARNING]), context="count", min=0),
        Metric("sites_fine", float(counts[Severity.OK]), context="count", min=0),
    ]
    out = evaluate("CALLIPSO-METEO", metrics, [ScalarContext("count")], lang=lang, extra=results)
    if not results:
        out.results = [
            Result(
                Severity.OK,
                (f"beau temps sur {len(sites)} site(s)" if lang == "fr" else f"fine on {len(sites)} site(s)"),
            )
        ]
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)


Runner = Callable[..., Outcome]
