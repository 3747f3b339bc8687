"""SYNTHETIC fixtures for the météo tests: the example estate (config/) with made-up statuses, measurements
and incidents, built in code. Nothing here comes from a real device or a real ticket."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from callipso_agent.config.loader import load_config
from callipso_agent.config.models import AgentConfig
from callipso_agent.meteo.builder import Meteo, compute_meteo
from callipso_agent.meteo.changes import ChangesView
from callipso_agent.meteo.checks import CheckRun, evaluate_checks
from callipso_agent.meteo.snapshot import EstateSnapshot, build_snapshot
from callipso_agent.meteo.spec import MeteoSpec, load_meteo_spec
from callipso_agent.model import IncidentState, IncidentView, Measurement, MetricKind, Severity

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "config"

# Tuesday 24 November 2026, 07:30 UTC = 08:30 in Paris: a météo morning.
AT = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
DAY = date(2026, 11, 24)


@functools.cache
def example_config() -> AgentConfig:
    """The example inventory (frozen models: safe to share between tests)."""
    return load_config(EXAMPLE_CONFIG).config


@functools.cache
def shipped_spec() -> MeteoSpec:
    """The shipped checklist (frozen: safe to share between tests)."""
    return load_meteo_spec()


def m(
    device: str,
    name: str,
    value: float | None,
    *,
    labels: Mapping[str, str] | None = None,
    state: Severity = Severity.OK,
    text: str | None = None,
    at: datetime = AT,
) -> Measurement:
    kind = MetricKind.STATE if text is not None else MetricKind.GAUGE
    return Measurement(
        device=device,
        name=name,
        value=value,
        at=at,
        labels=dict(labels or {}),
        kind=kind,
        state=state,
        text=text,
    )


def incident(
    id: int,
    key: str,
    title: str,
    *,
    services: Iterable[str] = (),
    site: str | None = None,
    device: str | None = None,
    user_impact: str = "none",
    technical_impact: str = "minor",
    itsm_ref: str | None = None,
    state: IncidentState = IncidentState.OPEN,
    rule: str | None = None,
    opened_at: datetime | None = None,
) -> IncidentView:
    return IncidentView(
        id=id,
        key=key,
        title=title,
        state=state,
        priority="P2",
        severity=Severity.CRITICAL,
        opened_at=opened_at or AT - timedelta(hours=2),
        site=site,
        device=device,
        services=tuple(services),
        rule=rule,
        itsm_ref=itsm_ref,
        user_impact=user_impact,
        technical_impact=technical_impact,
    )


def healthy_measurements(config: AgentConfig) -> list[Measurement]:
    """A quiet morning: every backup and sync fine, twin synchronised, UPSes on mains and charged."""
    out: list[Measurement] = []
    night = (AT - timedelta(hours=6)).timestamp()
    for d in config.devices:
        if d.family == "oxe":
            out += [
                m(d.name, "pbx_backup_ok", 1, text="ok"),
                m(d.name, "pbx_backup_last_success_timestamp_seconds", night),
                m(
                    d.name,
                    "pbx_cpu_role",
                    1 if d.role == "main" else 0,
                    text="main" if d.role == "main" else "standby",
                ),
                m(d.name, "pbx_twin_switchover", 0, text="synchronised"),
                m(
                    d.name,
                    "pbx_trunk_channels",
                    0,
                    labels={"trunk_group": "T2-SFR", "state": "out_of_service"},
                ),
                m(d.name, "pbx_trunk_channels", 12, labels={"trunk_group": "T2-SFR", "state": "busy"}),
            ]
        elif d.family == "omnivista-8770":
            out += [
                m(d.name, "ov_directory_sync_ok", 1, text="success"),
                m(d.name, "ov_directory_sync_anomalies", 0),
                m(d.name, "ov_directory_sync_last_timestamp_seconds", night),
                m(d.name, "ov_backup_ok", 1, labels={"job": "nightly"}, text="success"),
            ]
        elif d.family == "audiocodes-sbc":
            out += [
                m(d.name, "sbc_alarms_active", 0, labels={"severity": s})
                for s in ("critical", "major", "minor")
            ]
            out += [
                m(d.name, "sbc_calls_active", 40),
                m(d.name, "sbc_ip_group_up", 1, labels={"ip_group": "ITSP-OPERATEUR"}, text="up"),
                m(d.name, "sbc_ip_group_up", 1, labels={"ip_group": "OXE-HD13"}, text="up"),
            ]
        elif d.family == "hypervisor":
            out.append(m(d.name, "hypervisor_backup_ok", 1))
        elif d.family in ("eaton-ups", "ups-mib"):
            out += [
                m(d.name, "ups_on_battery", 0),
                m(d.name, "ups_battery_charge_percent", 100),
                m(d.name, "ups_self_test_result", 1, text="passed"),
                m(d.name, "ups_battery_status", 2, text="normal"),
                m(d.name, "ups_battery_temperature_celsius", 24),
            ]
        elif d.family == "temperature-probe":
            out.append(m(d.name, "sensor_temperature_celsius", 22.5))
    return out


@dataclass
class Scenario:
    """Changes to the quiet morning: replaced measurements, devices down, incidents."""

    measurements: list[Measurement] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    down_sites: set[str] = field(default_factory=set)
    incidents: list[IncidentView] = field(default_factory=list)
    drop: set[tuple[str, str]] = field(default_factory=set)  # (device, metric) series removed

    def snapshot(self, config: AgentConfig, at: datetime = AT) -> EstateSnapshot:
        replaced = {(x.device, x.name, tuple(sorted(x.labels.items()))) for x in self.measurements}
        base = [
            x
            for x in healthy_measurements(config)
            if (x.device, x.name, tuple(sorted(x.labels.items()))) not in replaced
            and (x.device, x.name) not in self.drop
        ]
        down = set(self.down) | {d.name for d in config.devices if d.site in self.down_sites}
        up = {d.name: d.name not in down for d in config.devices}
        return build_snapshot(
            config, at=at, up=up, measurements=[*base, *self.measurements], incidents=self.incidents
        )


def meteo_for(
    scenario: Scenario,
    *,
    config: AgentConfig | None = None,
    spec: MeteoSpec | None = None,
    lang: str = "fr",
    changes: ChangesView | None = None,
    **kw: Any,
) -> tuple[Meteo, CheckRun]:
    config = config or example_config()
    spec = spec or shipped_spec()
    snap = scenario.snapshot(config)
    run = evaluate_checks(spec.checks, snap)
    return compute_meteo(
        spec, snap, run, day=DAY, lang=lang, changes=changes, agent="callipso-test", **kw
    ), run


def states(meteo: Meteo) -> dict[str, tuple[str, str]]:
    return {line.key: (line.user.value, line.technical.value) for line in meteo.lines}
