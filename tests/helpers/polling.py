"""Poll fixture recordings served by snmpsim through the real network path (poll_snmp)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.poll import poll_snmp
from callipso_agent.profiles.loader import ProfileSet, load_profiles
from callipso_agent.transports.snmp import PysnmpEngine
from tests.helpers.snmp import SNMP_FIXTURES

COLLECTORS = Path(__file__).resolve().parents[2] / "collectors"
V2C = SnmpV2Credential(version="2c", community=SecretRef(env="UNUSED_IN_TESTS"))


def all_recordings() -> list[Path]:
    return sorted(p for p in SNMP_FIXTURES.rglob("*") if p.suffix in (".snmprec", ".snmpwalk"))


def shipped_profiles() -> ProfileSet:
    return load_profiles(COLLECTORS)


async def poll(
    sim: SnmpSimulator,
    community: str,
    profiles: ProfileSet,
    *,
    profile: str = "auto",
    family: str | None = None,
    timeout: float = 2.0,
    retries: int = 1,
    engine: PysnmpEngine | None = None,
) -> dict[str, Any]:
    return await poll_snmp(
        sim.host,
        sim.port,
        credential=V2C,
        secrets={"community": Secret(community)},
        profiles=profiles,
        profile=profile,
        family=family,
        timeout=timeout,
        retries=retries,
        engine=engine,
    )


def find(result: Mapping[str, Any], name: str, **labels: str) -> dict[str, Any]:
    """The one measurement called ``name`` whose labels include ``labels``."""
    hits = [
        m
        for m in result["measurements"]
        if m["name"] == name and all(m["labels"].get(k) == v for k, v in labels.items())
    ]
    if len(hits) != 1:
        raise AssertionError(f"{len(hits)} measurements {name}{labels}: {[m['labels'] for m in hits]}")
    return hits[0]


def value(result: Mapping[str, Any], name: str, **labels: str) -> float | None:
    return find(result, name, **labels)["value"]


def names(result: Mapping[str, Any]) -> set[str]:
    return {m["name"] for m in result["measurements"]}


def series(result: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    return [m["labels"] for m in result["measurements"] if m["name"] == name]


def communities(paths: Iterable[Path]) -> list[str]:
    return [p.stem for p in paths]
