"""The daily checks: conditions over measurements, evaluated on a snapshot, and the failed-check hook.

Evaluation is pure: ``evaluate_checks(checks, snapshot)`` returns a :class:`CheckRun` listing what
passed, failed, or had no data. :func:`run_daily_checks` also calls an injected
``on_failed_check(failed, at)`` for each failure so the incident engine can open a technical incident
(unless one is already open for the same ``failed.key``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import operator
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from callipso_agent.meteo.i18n import state_word
from callipso_agent.meteo.snapshot import DeviceInfo, EstateSnapshot
from callipso_agent.meteo.spec import LANGS, CheckSpec, Effect, tr
from callipso_agent.meteo.states import TechState, UserState

log = structlog.get_logger()

_OPS: Mapping[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """One evaluated series (or one device without data when ``value`` is None and ``missing``)."""

    device: str
    labels: Mapping[str, str]
    value: float | None
    failed: bool
    text: str | None = None
    missing: bool = False


@dataclass(frozen=True)
class FailedCheck:
    """A check that failed for one group (a device, a site, or the whole selection)."""

    check: CheckSpec
    key: str  # stable problem key: "check:<id>[:<device or site>]", the incident engine's dedup key
    site: str | None
    device: str | None
    devices: tuple[str, ...]
    services: tuple[str, ...]
    series: tuple[SeriesResult, ...]
    summaries: Mapping[str, str] = field(default_factory=dict)  # per language

    @property
    def check_id(self) -> str:
        return self.check.id

    @property
    def category(self) -> str:
        return self.check.category

    @property
    def effect(self) -> Effect:
        return self.check.effect

    @property
    def user_impact(self) -> str:
        """The effect in IncidentView's words: none | degraded | outage."""
        return {UserState.NOMINAL: "none", UserState.PERTURBATIONS: "degraded"}.get(
            self.effect.user, "outage"
        )

    @property
    def technical_impact(self) -> str:
        """The effect in IncidentView's words: minor | major."""
        major = self.effect.technical is TechState.INACCESSIBLE or self.effect.user is UserState.INACCESSIBLE
        return "major" if major else "minor"

    def title(self, lang: str = "fr") -> str:
        return tr(self.check.title, lang)

    def summary(self, lang: str = "fr") -> str:
        return self.summaries.get(lang) or self.summaries.get("fr") or self.title(lang)


@dataclass(frozen=True)
class CheckRun:
    at: datetime
    passed: tuple[str, ...]
    failed: tuple[FailedCheck, ...]
    no_data: tuple[str, ...]
    covered: tuple[str, ...] = ()  # failed, but only where a check that supersedes them failed too

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Ids of the checks that failed (once each)."""
        return tuple(dict.fromkeys([*(f.check_id for f in self.failed), *self.covered]))

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed_checks) + len(self.no_data)


OnFailedCheck = Callable[[FailedCheck, datetime], Awaitable[Any]]


def _labels_match(labels: Mapping[str, str], wanted: Mapping[str, list[str]]) -> bool:
    """Every wanted label present with one of the values (shell-style patterns: ``ITSP-*``)."""
    for k, patterns in wanted.items():
        v = labels.get(k)
        if v is None or not any(fnmatch.fnmatchcase(v, p) for p in patterns):
            return False
    return True


def _fmt(v: float | None) -> str:
    if v is None:
        return "?"
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _series_failed(
    check: CheckSpec, value: float | None, state: str, label: str | None, at: datetime
) -> bool | None:
    """True/False, or None when the series has no usable value."""
    cond = check.fail_when
    if cond.state is not None:
        return state in cond.state
    if cond.label is not None:
        return None if label is None else label in cond.label
    if value is None:
        return None
    if cond.older_than is not None:
        return at.timestamp() - value > cond.older_than
    assert cond.op is not None and cond.value is not None
    return _OPS[cond.op](value, cond.value)


def _evaluate_device(check: CheckSpec, dev: DeviceInfo, snap: EstateSnapshot) -> list[SeriesResult]:
    if check.metric == "up":
        if dev.up is None:
            return []
        up_value = 1.0 if dev.up else 0.0
        failed = _series_failed(check, up_value, "ok" if dev.up else "critical", None, snap.at)
        return [SeriesResult(dev.name, {}, up_value, bool(failed), dev.last_error)]
    if dev.up is False:
        return []  # what a device that stopped answering last said is not today's state
    out: list[SeriesResult] = []
    for m in snap.series(dev.name, check.metric):
        if not _labels_match(m.labels, check.labels):
            continue
        value: float | None = m.value
        if check.ratio_to_attribute is not None and value is not None:
            cap = dev.attributes.get(check.ratio_to_attribute)
            if not isinstance(cap, (int, float)) or isinstance(cap, bool) or cap <= 0:
                continue
            value = 100.0 * value / float(cap)
        failed = _series_failed(check, value, m.state.label, m.text, snap.at)
        if failed is None:
            continue
        out.append(SeriesResult(dev.name, dict(m.labels), value, failed, m.text))
    return out


def _group_key(check: CheckSpec, dev: DeviceInfo) -> str:
    if check.group_by == "device":
        return dev.name
    if check.group_by == "site":
        return dev.site
    return ""


def _state_text(s: SeriesResult, lang: str) -> str:
    """A state label in the operators' language (the collector's label when the catalogue lacks it)."""
    if s.text:
        return state_word(s.text, lang)
    return _fmt(s.value)


def _summaries(
    check: CheckSpec,
    snap: EstateSnapshot,
    site: str | None,
    device: str | None,
    devices: list[str],
    failing: list[SeriesResult],
) -> dict[str, str]:
    first = failing[0] if failing else None
    site_obj = snap.sites.get(site) if site else None
    values: dict[str, Any] = {
        "check": check.id,
        "device": device or (devices[0] if len(devices) == 1 else ", ".join(devices)),
        "devices": ", ".join(devices),
        "site": site or "",
        "site_name": site_obj.name if site_obj else (site or ""),
        "value": _fmt(first.value) if first else "?",
        "count": len(failing),
    }
    out: dict[str, str] = {}
    for lang in LANGS:
        template = tr(check.summary, lang)
        values["state"] = _state_text(first, lang) if first else "?"
        values["series"] = ", ".join(
            " ".join([s.device, *(f"{k}={v}" for k, v in s.labels.items())]) + f" = {_state_text(s, lang)}"
            for s in failing[:5]
        )
        try:
            out[lang] = template.format_map(values)
        except (KeyError, ValueError, IndexError):
            out[lang] = template
    return out


def evaluate_check(check: CheckSpec, snap: EstateSnapshot) -> tuple[str, list[FailedCheck]]:
    """Evaluate one check: ('passed' | 'failed' | 'no_data', failures)."""
    devices = snap.select(check.devices)
    groups: dict[str, list[tuple[DeviceInfo, list[SeriesResult]]]] = {}
    for dev in sorted(devices, key=lambda d: d.name):
        groups.setdefault(_group_key(check, dev), []).append((dev, _evaluate_device(check, dev, snap)))
    failures: list[FailedCheck] = []
    any_data = False
    for gkey, members in sorted(groups.items()):
        results = [r for _, rs in members for r in rs]
        missing = [dev for dev, rs in members if not rs]
        if check.missing == "fail":
            results += [SeriesResult(d.name, {}, None, True, None, missing=True) for d in missing]
        if not results:
            continue
        any_data = True
        failing = [r for r in results if r.failed]
        group_failed = bool(failing) if check.require == "any" else len(failing) == len(results)
        if not group_failed:
            continue
        devs = sorted({r.device for r in failing})
        site = None
        sites = {snap.devices[d].site for d in devs if d in snap.devices}
        if len(sites) == 1:
            site = next(iter(sites))
        device = gkey if check.group_by == "device" else (devs[0] if len(devs) == 1 else None)
        services = (
            tuple(check.services)
            if check.services is not None
            else tuple(sorted({s for d in devs if d in snap.devices for s in snap.devices[d].services}))
        )
        key = f"check:{check.id}" + (f":{gkey}" if gkey else "")
        failures.append(
            FailedCheck(
                check=check,
                key=key,
                site=site,
                device=device,
                devices=tuple(devs),
                services=services,
                series=tuple(failing),
                summaries=_summaries(check, snap, site, device, devs, failing),
            )
        )
    if failures:
        return "failed", failures
    return ("passed" if any_data else "no_data"), []


def _places(f: FailedCheck) -> set[str]:
    return {*(f"device:{d}" for d in f.devices), *((f"site:{f.site}",) if f.site else ())}


def _suppress(failed: list[FailedCheck]) -> list[FailedCheck]:
    """Drop failures covered by a failure of a check in their ``suppressed_by`` (same device or site)."""
    by_check: dict[str, set[str]] = {}
    for f in failed:
        by_check.setdefault(f.check_id, set()).update(_places(f))
    out = []
    for f in failed:
        covering: set[str] = set()
        for other in f.check.suppressed_by:
            covering |= by_check.get(other, set())
        if _places(f) & covering:
            continue
        out.append(f)
    return out


def evaluate_checks(checks: Iterable[CheckSpec], snap: EstateSnapshot) -> CheckRun:
    passed: list[str] = []
    no_data: list[str] = []
    failed: list[FailedCheck] = []
    for check in checks:
        outcome, fails = evaluate_check(check, snap)
        if outcome == "passed":
            passed.append(check.id)
        elif outcome == "no_data":
            no_data.append(check.id)
        failed += fails
    kept = _suppress(failed)
    still = {f.check_id for f in kept}
    covered = tuple(cid for cid in dict.fromkeys(f.check_id for f in failed) if cid not in still)
    return CheckRun(
        at=snap.at, passed=tuple(passed), failed=tuple(kept), no_data=tuple(no_data), covered=covered
    )


async def run_daily_checks(
    checks: Iterable[CheckSpec], snap: EstateSnapshot, *, on_failed_check: OnFailedCheck | None = None
) -> CheckRun:
    """Evaluate, then hand every failure to ``on_failed_check(failed, at)``; a failing hook is logged only."""
    run = evaluate_checks(checks, snap)
    log.info(
        "daily_checks_evaluated", passed=len(run.passed), failed=len(run.failed), no_data=len(run.no_data)
    )
    if on_failed_check is None:
        return run
    for f in run.failed:
        try:
            await on_failed_check(f, run.at)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("failed_check_hook_error", check=f.check_id, key=f.key)
    return run
