"""The EasyVista client against the fake: documented payloads, references from HREF, typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.config.secrets import Secret
from callipso_agent.itsm import (
    EasyVistaClient,
    ItsmAuthError,
    ItsmFunctionalError,
    ItsmNotFound,
    ItsmRejected,
    ItsmTimeout,
    ItsmUnavailable,
    ref_from_href,
)
from callipso_agent.itsm.fake_easyvista import FakeEasyVista, format_ticket_number

GUID = "7E3A3D4B-5C1A-4C4F-9E55-2F1C0B6B2A10"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEasyVista]:
    f = FakeEasyVista(
        clock=ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC)),
        tokens={"tok-123"},
        users={"rest": "s3cret", "viewer": "v"},
        readonly_users={"viewer"},
        recipients={"noc@cd13.fr"},
    )
    await f.start()
    yield f
    await f.stop()


def client(
    fake: FakeEasyVista, *, user: str = "rest", password: str = "s3cret", timeout: float = 5.0
) -> EasyVistaClient:
    return EasyVistaClient(fake.url, fake.account, username=user, password=Secret(password), timeout=timeout)


@pytest.mark.parametrize(
    ("pattern", "n", "expected"),
    [
        ("I%y%m%d_%06d", 1, "I260105_000001"),
        ("S%y%m%d_%06d", 34, "S260105_000034"),
        ("IZV%y%m_%05d", 123, "IZV2601_00123"),
        ("%Y-%d%%%03d", 7, "2026-05%007"),
    ],
)
def test_ticket_number_patterns(pattern: str, n: int, expected: str) -> None:
    assert format_ticket_number(pattern, datetime(2026, 1, 5, 9, 0, tzinfo=UTC), n) == expected


def test_reference_is_the_last_segment_of_href() -> None:
    assert ref_from_href("https://ev.example/api/v1/50004/requests/I2210526_000001") == "I2210526_000001"
    assert ref_from_href("https://ev.example/api/v1/50004/requests/IZV%2F12/") == "IZV/12"


async def test_create_read_search_update_comment_close(fake: FakeEasyVista) -> None:
    c = client(fake)
    try:
        ticket = await c.create_ticket(
            {
                "Catalog_GUID": GUID,
                "external_reference": "CALLIPSO-1-2601050900",
                "description": "Onduleur sur batterie à Aubagne",
                "urgency_id": 2,
                "e_site": "AUBAGNE",
                "unknown_field": "ignored",
            }
        )
        assert ticket.ref == "I260105_000001"
        assert ticket.href == f"{fake.api_root}/requests/I260105_000001"
        stored = fake.tickets[ticket.ref]
        assert stored.fields["catalog_guid"] == GUID and "unknown_field" not in stored.fields
        record = await c.get_ticket(ticket.ref)
        assert record["RFC_NUMBER"] == ticket.ref and record["STATUS"]["STATUS_EN"] == "Open"
        assert record["DESCRIPTION"] == "Onduleur sur batterie à Aubagne" and record["E_SITE"] == "AUBAGNE"
        found = await c.find_by_external_reference("CALLIPSO-1-2601050900")
        assert found is not None and found.ref == ticket.ref
        assert await c.find_by_external_reference("CALLIPSO-2-2601050900") is None
        await c.update_ticket(ticket.ref, {"urgency_id": 1})
        assert stored.fields["urgency_id"] == 1
        href = await c.add_action(
            ticket.ref, {"action_type_id": 12, "group_id": 3, "description": "pris en compte"}
        )
        assert href.endswith(f"/requests/{ticket.ref}/actions/1")
        assert stored.actions == [{"action_type_id": 12, "group_id": 3, "description": "pris en compte"}]
        await c.close_ticket(
            ticket.ref, {"Status_GUID": "DC97DD1D-0F35-4153-B0E1-0F2E0155365D", "comment": "ok"}
        )
        assert stored.status == "solved"
        with pytest.raises(ItsmFunctionalError) as err:
            await c.close_ticket(ticket.ref, {})
        assert "closed" in err.value.detail and not err.value.retryable
    finally:
        await c.close()


async def test_bearer_token(fake: FakeEasyVista) -> None:
    c = EasyVistaClient(fake.url, fake.account, token=Secret("tok-123"))
    try:
        assert (await c.create_ticket({"catalog_code": "INC_TELEPHONIE"})).ref == "I260105_000001"
    finally:
        await c.close()


@pytest.mark.parametrize(("user", "password", "status"), [("rest", "wrong", 401), ("nobody", "x", 401)])
async def test_bad_credentials_are_final(fake: FakeEasyVista, user: str, password: str, status: int) -> None:
    c = client(fake, user=user, password=password)
    try:
        with pytest.raises(ItsmAuthError) as err:
            await c.create_ticket({"catalog_guid": GUID})
        assert err.value.status == status and not err.value.retryable
    finally:
        await c.close()
    assert fake.tickets == {}


async def test_missing_auth_is_401_and_read_only_user_is_403(fake: FakeEasyVista) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{fake.api_root}/requests", json={"requests": [{"catalog_guid": GUID}]}) as rsp,
    ):
        assert rsp.status == 401
    c = client(fake, user="viewer", password="v")
    try:
        with pytest.raises(ItsmAuthError) as err:
            await c.create_ticket({"catalog_guid": GUID})
        assert err.value.status == 403
        assert (await c.search("external_reference", "x")) == []  # reading is allowed
    finally:
        await c.close()


async def test_functional_errors(fake: FakeEasyVista) -> None:
    c = client(fake)
    try:
        with pytest.raises(ItsmFunctionalError) as err:
            await c.create_ticket({"catalog_guid": GUID, "urgency_id": 42})
        assert "FK_SD_REQUEST_SD_URGENCY" in err.value.detail and err.value.correlation_id
        with pytest.raises(ItsmFunctionalError) as err:
            await c.create_ticket(
                {"catalog_guid": "00000000-0000-0000-0000-000000000000", "catalog_code": "INC_TELEPHONIE"}
            )
        assert "Catalog GUID" in err.value.detail  # a wrong GUID stops processing; the code is not tried
        with pytest.raises(ItsmRejected) as rej:
            await c.create_ticket({"catalog_guid": GUID, "recipient_mail": "ghost@cd13.fr"})
        assert rej.value.status == 406 and not rej.value.retryable
        ok = await c.create_ticket({"catalog_guid": GUID, "recipient_mail": "noc@cd13.fr"})
        with pytest.raises(ItsmFunctionalError) as err:
            await c.update_ticket(ok.ref, {"no_such_column": 1})
        assert err.value.detail.startswith("Nothing to update")
        with pytest.raises(ItsmNotFound):
            await c.get_ticket("I000000_999999")
    finally:
        await c.close()


async def test_transient_failures_are_retryable(fake: FakeEasyVista) -> None:
    c = client(fake, timeout=0.5)
    try:
        fake.inject("error500")
        with pytest.raises(ItsmUnavailable) as err:
            await c.create_ticket({"catalog_guid": GUID})
        assert err.value.retryable and err.value.uncertain and err.value.status == 500
        fake.inject("hang")
        with pytest.raises(ItsmTimeout) as tmo:
            await c.create_ticket({"catalog_guid": GUID})
        assert tmo.value.retryable and tmo.value.uncertain
        fake.inject("reply_lost")
        with pytest.raises(ItsmUnavailable) as lost:
            await c.create_ticket({"catalog_guid": GUID, "external_reference": "X-1"})
        assert lost.value.uncertain
        assert [t.fields["external_reference"] for t in fake.tickets.values()] == ["X-1"]  # committed
        fake.inject("slow", seconds=0.05)
        slow = await c.create_ticket({"catalog_guid": GUID, "external_reference": "X-2"})
        assert fake.tickets[slow.ref].fields["external_reference"] == "X-2"
        await fake.down()
        with pytest.raises(ItsmUnavailable) as refused:
            await c.create_ticket({"catalog_guid": GUID})
        assert refused.value.retryable and not refused.value.uncertain
        await fake.up()
        assert (await c.create_ticket({"catalog_guid": GUID})).ref == "I260105_000003"
    finally:
        await c.close()
