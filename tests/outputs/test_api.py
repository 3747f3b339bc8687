"""The incident HTTP API: authentication (401/403/429), validation (400 per field), 404/409, audit,
OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import structlog.testing
from sqlalchemy import select

from callipso_agent.api.auth import client_key
from callipso_agent.metrics import ApiAuthStats
from callipso_agent.metrics_text import Families
from callipso_agent.store.tables import audit_log
from tests.outputs.api_rig import NOC_TOKEN, VIEWER_TOKEN, ApiRig, start_api

NOC = {"Authorization": f"Bearer {NOC_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ApiRig]:
    r = await start_api(tmp_path)
    yield r
    await r.close()


async def call(
    rig: ApiRig,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
    data: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, rig.url + path, headers=headers, json=json, data=data) as rsp,
    ):
        body = await rsp.json() if rsp.content_type == "application/json" else await rsp.text()
        return rsp.status, body, dict(rsp.headers)


async def audit_rows(rig: ApiRig) -> list[dict[str, Any]]:
    async with rig.store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(audit_log).order_by(audit_log.c.id))).mappings()]


async def test_reads_are_open_on_loopback_and_list_filters(rig: ApiRig) -> None:
    await rig.incidents.open(priority="P1", site="HD13", device="oxe-hd13-main", services=("telephonie",))
    await rig.incidents.open(priority="P3", site="ARENC", device="ups-arenc-1", services=("onduleurs",))
    status, body, _ = await call(rig, "GET", "/api/v1/incidents")
    assert status == 200 and body["count"] == 2
    status, body, _ = await call(rig, "GET", "/api/v1/incidents?priority=P3&site=ARENC&state=open")
    assert [i["device"] for i in body["incidents"]] == ["ups-arenc-1"]
    status, body, _ = await call(rig, "GET", "/api/v1/incidents?service=telephonie")
    assert [i["id"] for i in body["incidents"]] == [1]
    status, body, _ = await call(rig, "GET", "/api/v1/incidents/1")
    assert status == 200 and body["incident"]["priority"] == "P1" and body["timeline"][0]["kind"] == "opened"
    status, body, _ = await call(rig, "GET", "/api/v1/devices/ups-hd13-1")
    assert status == 200 and body["measurements"][0]["name"] == "ups_battery_charge"


async def test_reads_need_a_token_when_not_open(tmp_path: Path) -> None:
    rig = await start_api(tmp_path, open_reads=False)
    try:
        status, _body, headers = await call(rig, "GET", "/api/v1/incidents")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert (await call(rig, "GET", "/api/v1/devices"))[0] == 401
        assert (await call(rig, "GET", "/api/v1/incidents", headers=VIEWER))[0] == 200
        assert (await call(rig, "GET", "/api/v1/openapi.json"))[0] == 200  # the description stays public
        assert (await call(rig, "GET", "/healthz"))[0] == 200
    finally:
        await rig.close()


async def test_write_auth_401_403(rig: ApiRig) -> None:
    await rig.incidents.open()
    assert (await call(rig, "POST", "/api/v1/incidents/1/ack", json={}))[0] == 401
    status, body, _ = await call(
        rig, "POST", "/api/v1/incidents/1/ack", json={}, headers={"Authorization": "Bearer not-the-token"}
    )
    assert (status, body["error"]) == (403, "invalid token")
    assert (
        await call(rig, "POST", "/api/v1/incidents/1/ack", json={}, headers={"Authorization": NOC_TOKEN})
    )[0] == 403
    status, body, _ = await call(rig, "POST", "/api/v1/incidents/1/ack", json={}, headers=VIEWER)
    assert status == 403 and "lacks the 'write' scope" in body["error"]
    status, body, _ = await call(
        rig, "POST", "/api/v1/incidents/1/ack", json={"comment": "je prends"}, headers=NOC
    )
    assert status == 200 and body["incident"]["state"] == "acknowledged"
    assert rig.incidents.timelines[1][-1].actor == "noc"


async def test_failed_attempts_are_rate_limited_per_client(rig: ApiRig) -> None:
    for _ in range(5):
        assert (
            await call(rig, "POST", "/api/v1/maintenance", json={}, headers={"Authorization": "Bearer guess"})
        )[0] == 403
    status, _body, headers = await call(rig, "GET", "/api/v1/incidents", headers=NOC)
    assert status == 429 and int(headers["Retry-After"]) == 300
    assert (await call(rig, "GET", "/api/v1/incidents"))[0] == 429  # even anonymous reads
    rig.clock.advance(299)
    assert (await call(rig, "GET", "/api/v1/incidents", headers=NOC))[0] == 429
    rig.clock.advance(1)
    assert (await call(rig, "GET", "/api/v1/incidents", headers=NOC))[0] == 200


async def _from(address: str, rig: ApiRig, method: str, path: str, headers: dict[str, str] | None = None,
                json: Any = None) -> int:
    """One request from a given loopback source address (127.0.0.0/8 is all ours on Linux)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as s, s.request(
        method, rig.url + path, headers=headers, json=json
    ) as rsp:
        await rsp.read()
        return rsp.status


async def test_burst_of_wrong_tokens_is_throttled_and_others_go_on(rig: ApiRig) -> None:
    """A burst of guesses from one address: the first max_failures are 403, the rest 429 (with Retry-After),
    counted for /metrics; a valid client from another address still writes; no token in the log."""
    await rig.incidents.open()
    guesses = [f"Bearer guess-{i:03d}-SYNTHETIC" for i in range(60)]
    with structlog.testing.capture_logs() as logs:
        statuses = await asyncio.gather(*(
            _from("127.0.0.2", rig, "POST", "/api/v1/incidents/1/ack", {"Authorization": g}, {}) for g in guesses))
    assert sorted(statuses) == [403] * 5 + [429] * 55
    assert rig.auth.counters.failures == {"invalid_token": 5} and rig.auth.counters.throttled == 55
    families = Families()
    ApiAuthStats(lambda: rig.auth).collect_into(families)
    samples = {(s.name, s.labels.get("reason")): s.value for m in families.metrics() for s in m.samples}
    assert samples[("callipso_api_auth_failures_total", "invalid_token")] == 5
    assert samples[("callipso_api_auth_throttled_total", None)] == 55
    assert samples[("callipso_api_auth_limiter_clients", None)] == 1
    # another client is not affected, a valid token from the throttled one is refused until the window passes
    assert await _from("127.0.0.3", rig, "POST", "/api/v1/incidents/1/ack", NOC, {"comment": "moi"}) == 200
    assert await _from("127.0.0.2", rig, "GET", "/api/v1/incidents", NOC) == 429
    audit = [e for e in logs if e["event"] == "api_auth_failed"]
    assert len(audit) == 5 and {e["client"] for e in audit} == {"127.0.0.2"}
    assert all(e["method"] == "POST" and e["path"] == "/api/v1/incidents/1/ack" for e in audit)
    assert not [g for g in guesses for e in logs if g.split()[1] in str(e)]


async def test_limiter_memory_is_bounded_under_many_addresses(tmp_path: Path) -> None:
    rig = await start_api(tmp_path, max_failures=2, max_clients=50)
    try:
        for i in range(200):
            status = await _from(f"127.0.{1 + i // 250}.{1 + i % 250}", rig, "POST", "/api/v1/maintenance",
                                 {"Authorization": "Bearer guess"}, {})
            assert status == 403
            assert len(rig.auth.limiter) <= 50
        assert len(rig.auth.limiter) == 50
        # the clients still remembered are throttled at their next failure
        last = "127.0.1.200"
        assert await _from(last, rig, "POST", "/api/v1/maintenance", {"Authorization": "Bearer guess"}, {}) == 403
        assert await _from(last, rig, "GET", "/api/v1/incidents", NOC) == 429
    finally:
        await rig.close()


def test_client_key_groups_ipv6_by_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"


@pytest.mark.parametrize(
    ("method", "path", "payload", "expected"),
    [
        ("POST", "/api/v1/incidents/1/resolve", {}, [{"field": "reason", "message": "Field required"}]),
        (
            "POST",
            "/api/v1/incidents/1/resolve",
            {"reason": "ok", "by": "me"},
            [{"field": "by", "message": "Extra inputs are not permitted"}],
        ),
        (
            "POST",
            "/api/v1/incidents/1/notes",
            {"text": "   "},
            [{"field": "text", "message": "String should have at least 1 character"}],
        ),
        (
            "POST",
            "/api/v1/incidents/1/ack",
            {"comment": 12},
            [{"field": "comment", "message": "Input should be a valid string"}],
        ),
        (
            "POST",
            "/api/v1/maintenance",
            {
                "start": "2026-01-06T22:00:00+01:00",
                "end": "2026-01-06T20:00:00+01:00",
                "reason": "bascule",
                "sites": ["HD13"],
            },
            [{"field": "(body)", "message": "Value error, end must be after start"}],
        ),
        (
            "POST",
            "/api/v1/maintenance",
            {
                "start": "2026-01-06T22:00:00",
                "end": "2026-01-07T02:00:00+01:00",
                "reason": "bascule",
                "sites": ["HD 13"],
            },
            [
                {"field": "start", "message": "Input should have timezone info"},
                {
                    "field": "sites.0",
                    "message": "String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'",
                },
            ],
        ),
        (
            "GET",
            "/api/v1/incidents?priority=P9&limit=0",
            None,
            [
                {"field": "priority", "message": "String should match pattern '^P[1-4]$'"},
                {"field": "limit", "message": "Input should be greater than or equal to 1"},
            ],
        ),
        (
            "GET",
            "/api/v1/incidents?colour=red",
            None,
            [{"field": "colour", "message": "Extra inputs are not permitted"}],
        ),
        ("GET", "/api/v1/incidents/abc", None, [{"field": "id", "message": "expected a positive integer"}]),
    ],
)
async def test_validation_errors_name_each_field(
    rig: ApiRig, method: str, path: str, payload: Any, expected: list[dict[str, str]]
) -> None:
    await rig.incidents.open()
    status, body, _ = await call(rig, method, path, json=payload, headers=NOC)
    assert status == 400
    assert body == {"error": "invalid request", "fields": expected}


async def test_malformed_bodies(rig: ApiRig) -> None:
    await rig.incidents.open()
    for data, message in [
        (b"{not json", "the body is not valid JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b"", "a JSON body is required"),
    ]:
        status, body, _ = await call(
            rig,
            "POST",
            "/api/v1/incidents/1/notes",
            data=data,
            headers={**NOC, "Content-Type": "application/json"},
        )
        assert (status, body["error"]) == (400, message)


async def test_unknown_ids_and_conflicts(rig: ApiRig) -> None:
    assert (await call(rig, "GET", "/api/v1/incidents/99"))[0] == 404
    assert (await call(rig, "POST", "/api/v1/incidents/99/ack", json={}, headers=NOC))[0] == 404
    assert (await call(rig, "POST", "/api/v1/incidents/99/notes", json={"text": "x"}, headers=NOC))[0] == 404
    assert (await call(rig, "DELETE", "/api/v1/maintenance/99", headers=NOC))[0] == 404
    await rig.incidents.open()
    assert (await call(rig, "POST", "/api/v1/incidents/1/resolve", json={"reason": "fini"}, headers=NOC))[
        0
    ] == 200
    status, body, _ = await call(
        rig, "POST", "/api/v1/incidents/1/resolve", json={"reason": "encore"}, headers=NOC
    )
    assert (status, body["error"]) == (409, "incident already resolved")
    assert len(await audit_rows(rig)) == 1  # refused writes change nothing and are not audited as done


async def test_writes_are_audited(rig: ApiRig) -> None:
    await rig.incidents.open()
    await call(rig, "POST", "/api/v1/incidents/1/ack", json={"comment": "je prends"}, headers=NOC)
    await call(rig, "POST", "/api/v1/incidents/1/notes", json={"text": "technicien en route"}, headers=NOC)
    status, body, _ = await call(
        rig,
        "POST",
        "/api/v1/maintenance",
        headers=NOC,
        json={
            "start": "2026-01-06T22:00:00+01:00",
            "end": "2026-01-07T02:00:00+01:00",
            "reason": "bascule OXE",
            "sites": ["HD13"],
            "devices": ["oxe-hd13-main"],
        },
    )
    assert status == 201 and body["window"]["start"] == "2026-01-06T21:00:00+00:00"
    wid = body["window"]["id"]
    status, body, _ = await call(rig, "GET", "/api/v1/maintenance")
    assert [w["reason"] for w in body["windows"]] == ["bascule OXE"]
    assert (await call(rig, "GET", "/api/v1/maintenance?active=true"))[1]["windows"] == []  # not yet in force
    rig.clock.advance(12.5 * 3600)
    assert len((await call(rig, "GET", "/api/v1/maintenance?active=true"))[1]["windows"]) == 1
    assert (await call(rig, "DELETE", f"/api/v1/maintenance/{wid}", headers=NOC))[0] == 204
    await call(rig, "POST", "/api/v1/incidents/1/resolve", json={"reason": "secteur revenu"}, headers=NOC)
    rows = await audit_rows(rig)
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("noc", "incident.acknowledge", "incident:1"),
        ("noc", "incident.note", "incident:1"),
        ("noc", "maintenance.add", f"maintenance:{wid}"),
        ("noc", "maintenance.delete", f"maintenance:{wid}"),
        ("noc", "incident.resolve", "incident:1"),
    ]
    assert rows[0]["detail"] == {"client": "127.0.0.1", "comment": "je prends"}
    assert rows[2]["detail"]["sites"] == ["HD13"] and rows[4]["detail"]["reason"] == "secteur revenu"
    status, body, _ = await call(rig, "GET", "/api/v1/incidents/1")
    assert [e["kind"] for e in body["timeline"]] == ["opened", "acknowledged", "note", "resolved"]


async def test_openapi_document_is_valid(rig: ApiRig) -> None:
    from openapi_spec_validator import validate

    status, doc, _ = await call(rig, "GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    validate(doc)
    ops = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert {
        ("get", "/api/v1/incidents"),
        ("post", "/api/v1/incidents/{id}/ack"),
        ("delete", "/api/v1/maintenance/{id}"),
        ("post", "/api/v1/alertmanager"),
        ("get", "/api/v1/devices/{name}"),
        ("get", "/api/v1/measurements"),
    } <= ops
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in rig.server.app.router.routes()  # type: ignore[union-attr]
        if r.method != "HEAD"
    }
    assert routes == ops  # every route is documented, and nothing else
