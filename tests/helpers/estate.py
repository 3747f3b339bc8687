"""A small SYNTHETIC estate for rule and incident tests, built in code (no shared data is read)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from callipso_agent.config.models import Device, ServiceLine, Site
from callipso_agent.model import Event, Measurement, MetricKind, PollResult, Severity
from callipso_agent.rules.inventory import Inventory

SITES = [
    # standard site, single WAN, 60 users, business hours
    Site(
        code="AUBAGNE",
        name="MDS Aubagne",
        criticality="standard",
        wan="single",
        users=60,
        hours="business",
        required_autonomy_minutes=10,
    ),
    # sensitive site, dual WAN, 180 users
    Site(
        code="AIX",
        name="MDS Aix",
        criticality="sensitive",
        wan="dual",
        users=180,
        hours="business",
        required_autonomy_minutes=20,
    ),
    # Cercle 0 data centre, 24x7, 900 users, VVIP, external users
    Site(
        code="HD13",
        name="Data centre HD13",
        kind="datacenter",
        criticality="cercle0",
        wan="dual",
        users=900,
        vip="vvip",
        hours="24x7",
        external_users=True,
        required_autonomy_minutes=30,
    ),
]

SERVICES = [
    ServiceLine(key="toip", name="ToIP", cercle0=True, users=4500, external_users=True),
    ServiceLine(key="fax", name="Fax", users=20),
]


def _dev(name: str, site: str, family: str, **kw: Any) -> Device:
    return Device(name=name, site=site, family=family, address=f"{name}.example", snmp="c", **kw)


DEVICES = [
    _dev("ups-aubagne", "AUBAGNE", "eaton-ups"),
    _dev("probe-aubagne", "AUBAGNE", "temperature-probe", interval=120),
    _dev("gw-aubagne", "AUBAGNE", "audiocodes-mp11x", services=["fax"]),
    _dev("ups-aix", "AIX", "eaton-ups", services=["toip"]),
    _dev("gw-aix", "AIX", "audiocodes-mp11x", services=["toip"]),
    _dev("wan1-aix", "AIX", "wan-router", role="primary", attributes={"wan_interface": "Gi0/0"}),
    _dev("wan2-aix", "AIX", "wan-router", role="secondary", attributes={"wan_interface": "Gi0/1"}),
    _dev(
        "sbc-hd13",
        "HD13",
        "audiocodes-sbc",
        services=["toip"],
        interval=30,
        attributes={"licensed_channels": 400},
    ),
    _dev("sbc-nolicence", "HD13", "audiocodes-sbc", services=["toip"]),
    _dev("oxe-hd13", "HD13", "oxe", services=["toip"], role="main"),
    _dev("ups-hd13", "HD13", "eaton-ups", services=["toip"]),
]


def inventory(devices: list[Device] | None = None) -> Inventory:
    return Inventory(SITES, DEVICES if devices is None else devices, SERVICES)


def m(
    device: str,
    name: str,
    value: float | None,
    at: datetime,
    labels: Mapping[str, str] | None = None,
    *,
    state: Severity = Severity.OK,
    text: str | None = None,
) -> Measurement:
    kind = MetricKind.STATE if text is not None else MetricKind.GAUGE
    return Measurement(
        device=device, name=name, value=value, at=at, labels=labels or {}, kind=kind, state=state, text=text
    )


def poll(
    device: str, at: datetime, *measurements: Measurement, system: Mapping[str, str] | None = None
) -> PollResult:
    return PollResult(
        device=device, started=at, duration=0.1, measurements=tuple(measurements), system=system or {}
    )


def failed(device: str, at: datetime, error: str = "timeout") -> PollResult:
    return PollResult(device=device, started=at, duration=5.0, error=error, error_text=f"{error} (test)")


def event(
    device: str,
    name: str,
    at: datetime,
    severity: Severity = Severity.CRITICAL,
    *,
    clear: bool = False,
    labels: Mapping[str, str] | None = None,
    text: str = "",
) -> Event:
    return Event(
        device=device, name=name, severity=severity, at=at, clear=clear, labels=labels or {}, text=text
    )
