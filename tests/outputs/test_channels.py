"""SMS, Teams and webhook channels against faithful fakes: documented payloads and answer handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.config.secrets import Secret
from callipso_agent.model import IncidentState, IncidentView, Severity
from callipso_agent.notify.channels import SmsSender, TeamsSender, WebhookSender, message_card
from callipso_agent.notify.config import SmsChannel, TeamsChannel, WebhookChannel
from callipso_agent.notify.fakes import FakeLinkMobility, FakeTeams, FakeWebhook
from callipso_agent.notify.texts import Texts
from callipso_agent.outbox import FinalDelivery, RetryableDelivery

INCIDENT = IncidentView(
    id=7,
    key="oxe_t2_down:oxe-hd13",
    title="Lien T2 niveau 2 perdu sur l'OXE HD13",
    state=IncidentState.OPEN,
    priority="P1",
    severity=Severity.CRITICAL,
    opened_at=datetime(2026, 1, 5, 22, 5, tzinfo=UTC),
    site="HD13",
    device="oxe-hd13-main",
    services=("telephonie",),
    deadlines={
        "taking_charge": datetime(2026, 1, 5, 22, 5, tzinfo=UTC),
        "restoration": datetime(2026, 1, 6, 0, 5, tzinfo=UTC),
    },
)
MESSAGE = Texts("fr", link_template="https://callipso.cd13.fr/i/{id}").incident(INCIDENT, "opened")


@pytest.fixture
async def sms_gw() -> AsyncIterator[FakeLinkMobility]:
    gw = FakeLinkMobility(users={"cd13": "sms-pw"}, rate_limit=(3, 60.0), clock=ManualClock())
    await gw.start()
    yield gw
    await gw.stop()


def sms(gw: FakeLinkMobility, password: str = "sms-pw") -> SmsSender:
    cfg = SmsChannel.model_validate(
        {
            "type": "sms",
            "url": gw.url,
            "username": "cd13",
            "password": {"env": "X"},
            "platform_id": "COMMON_API",
            "platform_partner_id": "4321",
            "to": ["+33612345678", "+33698765432"],
        }
    )
    return SmsSender("sms-astreinte", cfg, Secret(password))


async def test_sms_payload_is_the_documented_one(sms_gw: FakeLinkMobility) -> None:
    sender = sms(sms_gw)
    try:
        summary = await sender.send(MESSAGE, [], key="notify:7:opened:sms-astreinte", meta={})
    finally:
        await sender.close()
    assert summary.startswith("SMS accepté par la passerelle : +33612345678 (")
    assert [m.body["destination"] for m in sms_gw.messages] == ["+33612345678", "+33698765432"]
    body = sms_gw.messages[0].body
    assert body["source"] == "CALLIPSO" and body["sourceTON"] == "ALPHANUMERIC"
    assert body["destinationTON"] == "MSISDN" and body["dcs"] == "TEXT"
    assert body["platformId"] == "COMMON_API" and body["platformPartnerId"] == "4321"
    assert body["useDeliveryReport"] is False and len(body["refId"]) == 32
    assert body["userData"].startswith(
        "[P1] Incident ouvert : Lien T2 niveau 2 perdu sur l'OXE HD13 (HD13 / oxe-hd13"
    )
    assert "Prise en charge : 05/01/2026 23:05" in body["userData"] and len(body["userData"]) <= 300
    assert sms_gw.messages[0].user == "cd13"


async def test_sms_errors(sms_gw: FakeLinkMobility) -> None:
    bad = sms(sms_gw, password="nope")
    try:
        with pytest.raises(FinalDelivery, match=r"refused \(401\)"):
            await bad.send(MESSAGE, ["+33612345678"], key="k", meta={})
    finally:
        await bad.close()
    sender = sms(sms_gw)
    try:
        sms_gw.inject("reject")
        with pytest.raises(FinalDelivery, match="resultCode 1102"):
            await sender.send(MESSAGE, ["+33612345678"], key="k", meta={})
        sms_gw.inject("throttle")
        with pytest.raises(RetryableDelivery) as throttled:
            await sender.send(MESSAGE, ["+33612345678"], key="k", meta={})
        assert throttled.value.retry_after == 2.0
        sms_gw.inject("error500")
        with pytest.raises(RetryableDelivery, match=r"server error \(500\)"):
            await sender.send(MESSAGE, ["+33612345678"], key="k", meta={})
        # the gateway's own rate limit: 3 a minute (one was the rejected one)
        await sender.send(MESSAGE, ["+33612345678", "+33698765432"], key="k2", meta={})
        with pytest.raises(RetryableDelivery, match=r"throttled \(429\)") as limited:
            await sender.send(MESSAGE, ["+33612345678"], key="k3", meta={})
        assert limited.value.retry_after is not None and limited.value.retry_after >= 1
        with pytest.raises(FinalDelivery, match="destination must be"):
            sms_gw.rate_limit = None
            await sender.send(MESSAGE, ["0612345678"], key="k4", meta={})
    finally:
        await sender.close()


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeams]:
    t = FakeTeams()
    await t.start()
    yield t
    await t.stop()


def teams_sender(url: str, flavour: str) -> TeamsSender:
    return TeamsSender("teams-noc", TeamsChannel(type="teams", flavour=flavour, url=url), url)  # type: ignore[arg-type]


async def test_teams_connector_message_card(teams: FakeTeams) -> None:
    sender = teams_sender(teams.connector_url(), "connector")
    try:
        assert await sender.send(MESSAGE, [], key="k", meta={}) == "publié dans Teams"
        card = teams.posts[0].body
        assert card["@type"] == "MessageCard" and card["@context"] == "https://schema.org/extensions"
        assert card["summary"] == MESSAGE.subject and card["themeColor"] == "C00000"
        facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
        assert facts["Équipement"] == "oxe-hd13-main" and facts["Priorité"] == "P1"
        assert card["potentialAction"][0]["targets"][0]["uri"] == "https://callipso.cd13.fr/i/7"
        teams.inject("throttle_200")
        with pytest.raises(RetryableDelivery, match="throttled"):
            await sender.send(MESSAGE, [], key="k", meta={})
        teams.inject("throttle")
        with pytest.raises(RetryableDelivery) as err:
            await sender.send(MESSAGE, [], key="k", meta={})
        assert err.value.retry_after == 3.0
        teams.inject("oversize")
        with pytest.raises(FinalDelivery, match="413"):  # a 200 whose body is not "1" is a failure
            await sender.send(MESSAGE, [], key="k", meta={})
        teams.inject("invalid_card")
        with pytest.raises(FinalDelivery, match="Summary or Text is required"):
            await sender.send(MESSAGE, [], key="k", meta={})
    finally:
        await sender.close()
    assert len(teams.posts) == 1


async def test_teams_workflow_adaptive_card(teams: FakeTeams) -> None:
    sender = teams_sender(teams.workflow_url(), "workflow")
    try:
        summary = await sender.send(MESSAGE, [], key="k", meta={})
    finally:
        await sender.close()
    assert summary == "accepté par le flux Teams (202), publication asynchrone"
    (post,) = teams.posts
    assert post.run_status == "Succeeded", post.run_error
    body = post.body
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert (
        attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        and attachment["contentUrl"] is None
    )
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["body"][0] == {
        "type": "TextBlock",
        "text": MESSAGE.subject,
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
        "color": "Attention",
    }


async def test_fake_workflow_fails_runs_of_connector_payloads(teams: FakeTeams) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.post(teams.workflow_url(), json=message_card(MESSAGE)) as rsp:
        assert rsp.status == 202  # accepted over HTTP...
    assert teams.posts[0].run_status == "Failed" and "'foreach' expression" in (
        teams.posts[0].run_error or ""
    )


async def test_webhook() -> None:
    hook = FakeWebhook()
    await hook.start()
    cfg = WebhookChannel(type="webhook", url=f"{hook.url}/hooks/callipso", headers={"X-Source": "callipso"})
    sender = WebhookSender("hook", cfg, {"Authorization": Secret("Bearer abc")})
    try:
        meta = {"event": "opened", "incident": {"id": 7, "priority": "P1"}}
        assert await sender.send(MESSAGE, [], key="notify:7:opened:hook:-", meta=meta) == "webhook : 200"
        (req,) = hook.requests
        assert req.path == "/hooks/callipso"
        assert req.headers["Idempotency-Key"] == "notify:7:opened:hook:-"
        assert req.headers["Authorization"] == "Bearer abc" and req.headers["X-Source"] == "callipso"
        assert (
            req.body["version"] == "1" and req.body["event"] == "opened" and req.body["incident"]["id"] == 7
        )
        assert req.body["message"]["subject"] == MESSAGE.subject and req.body["message"]["lang"] == "fr"
        hook.inject("503")
        with pytest.raises(RetryableDelivery):
            await sender.send(MESSAGE, [], key="k", meta={})
        hook.inject("422")
        with pytest.raises(FinalDelivery):
            await sender.send(MESSAGE, [], key="k", meta={})
    finally:
        await sender.close()
        await hook.stop()
    down = WebhookSender("hook", cfg)
    try:
        with pytest.raises(RetryableDelivery, match="cannot connect"):
            await down.send(MESSAGE, [], key="k", meta={})
    finally:
        await down.close()
