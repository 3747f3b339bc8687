"""Email through a real SMTP server (aiosmtpd) with STARTTLS and AUTH: headers, UTF-8 body, errors."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from callipso_agent.config.secrets import Secret
from callipso_agent.lab.snmpsim import free_tcp_port
from callipso_agent.model import IncidentState, IncidentView, Severity
from callipso_agent.notify.channels import EmailSender
from callipso_agent.notify.config import EmailChannel
from callipso_agent.notify.texts import Texts
from callipso_agent.outbox import FinalDelivery, RetryableDelivery
from tests.helpers.tls import self_signed


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def authenticator(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"callipso" and data.password == b"m0t-de-passe"
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Controller, Inbox, Path]]:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_tcp_port(),
        tls_context=ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    yield controller, inbox, cert
    controller.stop()


def settings(port: int, cert: Path, **smtp: Any) -> EmailChannel:
    return EmailChannel.model_validate(
        {
            "type": "email",
            "sender": "callipso@cd13.fr",
            "to": ["noc@cd13.fr", "astreinte@cd13.fr"],
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "username": "callipso",
                "password": {"env": "UNUSED"},
                "ca_file": str(cert),
                **smtp,
            },
        }
    )


INCIDENT = IncidentView(
    id=42,
    key="ups_on_battery:ups-aubagne-mds",
    title="Onduleur sur batterie à Aubagne (MDS)",
    state=IncidentState.OPEN,
    priority="P1",
    severity=Severity.CRITICAL,
    opened_at=datetime(2026, 1, 5, 22, 5, tzinfo=UTC),
    site="AUBAGNE",
    device="ups-aubagne-mds",
    services=("telephonie",),
    deadlines={"restoration": datetime(2026, 1, 6, 2, 5, tzinfo=UTC)},
)


async def test_email_is_delivered_with_utf8_and_headers(smtp: tuple[Controller, Inbox, Path]) -> None:
    controller, inbox, cert = smtp
    sender = EmailSender("mail-noc", settings(controller.port, cert), Secret("m0t-de-passe"))
    rendered = Texts("fr", link_template="https://callipso.cd13.fr/incidents/{id}").incident(
        INCIDENT, "opened"
    )
    summary = await sender.send(
        rendered, [], key="notify:42:opened:mail-noc:-", meta={"incident_id": 42, "priority": "P1"}
    )
    assert summary == "courriel envoyé à noc@cd13.fr, astreinte@cd13.fr"
    (mail_from, rcpt, raw) = inbox.messages[0]
    assert mail_from == "callipso@cd13.fr" and rcpt == ["noc@cd13.fr", "astreinte@cd13.fr"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "[P1] Incident ouvert : Onduleur sur batterie à Aubagne (MDS)"
    assert msg["X-Callipso-Incident"] == "42" and msg["Importance"] == "high"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_charset() == "utf-8"
    body = msg.get_content()
    assert "Équipement : ups-aubagne-mds" in body
    assert "Rétablissement (GTR) : 06/01/2026 03:05" in body  # Paris time
    assert "Lien : https://callipso.cd13.fr/incidents/42" in body
    again = await sender.send(rendered, [], key="notify:42:opened:mail-noc:-", meta={})
    assert again
    ids = [email.message_from_bytes(m[2], policy=email.policy.default)["Message-ID"] for m in inbox.messages]
    assert ids[0] == ids[1]  # a retried copy is recognisably the same message


async def test_english_text(smtp: tuple[Controller, Inbox, Path]) -> None:
    controller, inbox, cert = smtp
    sender = EmailSender("mail-noc", settings(controller.port, cert), Secret("m0t-de-passe"))
    rendered = Texts("en").incident(INCIDENT, "resolved", actor="noc", text="mains back")
    await sender.send(rendered, ["noc@cd13.fr"], key="k", meta={})
    msg = email.message_from_bytes(inbox.messages[0][2], policy=email.policy.default)
    assert msg["Subject"] == "[P1] Incident resolved: Onduleur sur batterie à Aubagne (MDS)"
    assert "Reason: mains back" in msg.get_content() and msg["Content-Language"] == "en"


async def test_wrong_password_is_final(smtp: tuple[Controller, Inbox, Path]) -> None:
    controller, inbox, cert = smtp
    sender = EmailSender("mail-noc", settings(controller.port, cert), Secret("wrong"))
    with pytest.raises(FinalDelivery, match="authentication refused"):
        await sender.send(Texts().incident(INCIDENT, "opened"), [], key="k", meta={})
    assert inbox.messages == []


async def test_server_down_is_retryable(tmp_path: Path) -> None:
    cert, _key = self_signed(tmp_path)
    sender = EmailSender("mail-noc", settings(free_tcp_port(), cert, timeout=3), Secret("x"))
    with pytest.raises(RetryableDelivery):
        await sender.send(Texts().incident(INCIDENT, "opened"), [], key="k", meta={})


async def test_untrusted_certificate_is_refused(smtp: tuple[Controller, Inbox, Path], tmp_path: Path) -> None:
    controller, inbox, _cert = smtp
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = self_signed(other)
    sender = EmailSender("mail-noc", settings(controller.port, other_cert, timeout=3), Secret("m0t-de-passe"))
    with pytest.raises((RetryableDelivery, FinalDelivery)):
        await sender.send(Texts().incident(INCIDENT, "opened"), [], key="k", meta={})
    assert inbox.messages == []
