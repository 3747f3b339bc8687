"""Alertmanager webhook (v4): events for firing/resolved alerts, idempotent re-sends, retry on failure."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from callipso_agent.model import Severity
from callipso_agent.store.tables import audit_log
from tests.outputs.api_rig import NOC_TOKEN, ApiRig, start_api

NOC = {"Authorization": f"Bearer {NOC_TOKEN}"}

# SYNTHETIC: shaped like the documented version-4 sample payload.
FIRING: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="OxeTrunkDown"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "callipso",
    "groupLabels": {"alertname": "OxeTrunkDown"},
    "commonLabels": {"alertname": "OxeTrunkDown", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.cd13.local:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "OxeTrunkDown",
                "severity": "critical",
                "device": "oxe-hd13-main",
                "trunk": "T2-12",
            },
            "annotations": {"summary": "Faisceau T2-12 hors service"},
            "startsAt": "2026-01-06T08:58:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
            "fingerprint": "a1b2c3d4e5f60718",
        },
        {
            "status": "firing",
            "labels": {"alertname": "OxeTrunkDown", "severity": "warning", "instance": "10.13.0.21:9116"},
            "annotations": {"description": "Faisceau T2-14 dégradé"},
            "startsAt": "2026-01-06T08:59:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "0718a1b2c3d4e5f6",
            "someFutureField": True,
        },
    ],
}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ApiRig]:
    r = await start_api(tmp_path)
    yield r
    await r.close()


async def post(rig: ApiRig, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{rig.url}/api/v1/alertmanager", json=payload, headers=NOC if headers is None else headers
        ) as rsp,
    ):
        return rsp.status, await rsp.json()


async def test_firing_then_resolved(rig: ApiRig) -> None:
    status, body = await post(rig, FIRING)
    assert (status, body) == (200, {"received": 2, "accepted": 2, "duplicates": 0})
    first, second = rig.events
    assert (first.device, first.name, first.severity, first.clear) == (
        "oxe-hd13-main",
        "OxeTrunkDown",
        Severity.CRITICAL,
        False,
    )
    assert first.source == "alertmanager" and first.text == "Faisceau T2-12 hors service"
    assert first.labels["trunk"] == "T2-12" and first.raw["fingerprint"] == "a1b2c3d4e5f60718"
    assert first.at.isoformat() == "2026-01-06T08:58:00+00:00"
    assert (second.device, second.severity, second.text) == (
        "10.13.0.21:9116",
        Severity.WARNING,
        "Faisceau T2-14 dégradé",
    )
    status, body = await post(rig, FIRING)  # group_interval re-send
    assert body == {"received": 2, "accepted": 0, "duplicates": 2} and len(rig.events) == 2
    resolved = copy.deepcopy(FIRING)
    resolved["status"] = "resolved"
    resolved["alerts"] = [dict(FIRING["alerts"][0], status="resolved", endsAt="2026-01-06T09:20:00Z")]
    status, body = await post(rig, resolved)
    assert body["accepted"] == 1
    clear = rig.events[-1]
    assert (
        clear.clear and clear.name == "OxeTrunkDown" and clear.at.isoformat() == "2026-01-06T09:20:00+00:00"
    )
    assert (await post(rig, resolved))[1]["duplicates"] == 1
    async with rig.store.engine.connect() as conn:
        actions = [r.action for r in (await conn.execute(select(audit_log)))]
    assert actions == ["alertmanager.receive", "alertmanager.receive"]  # only requests that brought news


async def test_a_failing_consumer_answers_503_and_the_retry_is_processed(rig: ApiRig) -> None:
    rig.fail_sink = True
    status, body = await post(rig, FIRING)
    assert status == 503 and rig.events == []
    rig.fail_sink = False
    status, body = await post(rig, FIRING)
    assert body["accepted"] == 2


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p["alerts"][0].pop("fingerprint"), "alerts.0.fingerprint"),
        (lambda p: p["alerts"][1].update(status="pending"), "alerts.1.status"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
    ],
)
async def test_invalid_payloads(rig: ApiRig, mutate: Any, field: str) -> None:
    payload = copy.deepcopy(FIRING)
    mutate(payload)
    status, body = await post(rig, payload)
    assert status == 400 and [f["field"] for f in body["fields"]] == [field]
    assert rig.events == []


async def test_needs_a_write_token(rig: ApiRig) -> None:
    assert (await post(rig, FIRING, headers={}))[0] == 401
    assert rig.events == []
