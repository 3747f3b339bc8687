"""The météo email through a real SMTP server (aiosmtpd on 127.0.0.1): MIME structure, headers, content,
STARTTLS with authentication, retries with backoff on temporary refusals, no retry on permanent ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from callipso_agent.meteo.mail import MailError, SmtpSender, build_message
from callipso_agent.meteo.render import MeteoRenderer, subject
from callipso_agent.meteo.settings import MeteoSettings
from tests.helpers.tls import self_signed
from tests.meteo.smtp import Sink, smtp_server
from tests.meteo.test_render import SERVICE_LABELS, busy_morning

RECIPIENTS = ["exploitation@cd13.example", "astreinte@cd13.example"]


def settings(port: int, **smtp: object) -> MeteoSettings:
    return MeteoSettings.model_validate(
        {
            "sender": "supervision@cd13.example",
            "recipients": RECIPIENTS,
            "cc": ["chef.projet@cd13.example"],
            "reply_to": "noc@cd13.example",
            "retries": 3,
            "retry_backoff": 5,
            "retry_backoff_max": 8,
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10, **smtp},
        }
    )


def message(s: MeteoSettings, lang: str = "fr"):  # type: ignore[no-untyped-def]
    meteo = busy_morning(lang)
    r = MeteoRenderer()
    return build_message(
        subject=subject(meteo),
        html=r.html(meteo),
        text=r.text(meteo),
        settings=s,
        lang=lang,
        when=meteo.generated_at,
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_the_email_received_is_multipart_alternative_utf8_with_every_line_in_order() -> None:
    with smtp_server() as srv:
        s = settings(srv.port)
        attempts = await SmtpSender.from_settings(s).send(message(s))
        assert attempts == 1
        [got] = srv.sink.received
    assert got.mail_from == "supervision@cd13.example"
    assert got.rcpt_tos == [*RECIPIENTS, "chef.projet@cd13.example"]
    msg = got.message
    assert msg["Subject"] == "Météo Callipso du 24/11/2026"
    assert msg["From"] == "Supervision Callipso <supervision@cd13.example>"
    assert msg["To"] == ", ".join(RECIPIENTS)
    assert msg["Cc"] == "chef.projet@cd13.example" and msg["Reply-To"] == "noc@cd13.example"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Content-Language"] == "fr"
    assert msg["Message-ID"].endswith("@cd13.example>")
    assert msg["Date"] == "Tue, 24 Nov 2026 07:30:00 +0000"
    assert b"=?utf-8?" in got.raw.split(b"\r\n\r\n", 1)[0].lower()  # the subject is encoded, not raw 8-bit
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    text, html = parts[0].get_content(), parts[1].get_content()
    for body, start in ((text, "LIGNES DE SERVICE"), (html, 'id="services"')):
        table = body[body.index(start) :]
        positions = [
            table.index(label.replace("'", "&#39;") if body is html else label) for label in SERVICE_LABELS
        ]
        assert positions == sorted(positions)
        for word in (
            "Perturbations",
            "Perturbé",
            "Nominal",
            "RAS",
            "INC0042137",
            "CAL-000057",
            "Légende",
            "Sur onduleur",
            "AUBAGNE-MDS",
            "CHG0001234",
        ):
            assert word.lower() in body.lower(), word
    assert html.lstrip().startswith("<!DOCTYPE html>") and 'lang="fr"' in html


async def test_english_email() -> None:
    with smtp_server() as srv:
        s = settings(srv.port)
        await SmtpSender.from_settings(s).send(message(s, "en"))
        [got] = srv.sink.received
    assert got.message["Subject"] == "Callipso weather report for 2026-11-24"
    assert got.message["Content-Language"] == "en"
    assert "REMOTE SITES" in got.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_starttls_and_authentication(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-météo\n", encoding="utf-8")
    with smtp_server(tls=(cert, key), credentials=("callipso", "s3cret-météo")) as srv:
        s = settings(
            srv.port,
            security="starttls",
            username="callipso",
            password={"file": str(secret)},
            ca_file=str(cert),
        )
        assert await SmtpSender.from_settings(s).send(message(s)) == 1
        assert len(srv.sink.received) == 1
        # a wrong password is a permanent failure: no retry
        secret.write_text("wrong\n", encoding="utf-8")
        sleeps = Sleeps()
        with pytest.raises(MailError, match="after 1 attempt"):
            await SmtpSender.from_settings(s, sleep=sleeps).send(message(s))
        assert sleeps.calls == []
        # a server certificate from an unknown CA is refused before any password is sent
        (tmp_path / "other").mkdir()
        other_cert, _ = self_signed(tmp_path / "other")
        s2 = settings(
            srv.port,
            security="starttls",
            username="callipso",
            password={"file": str(secret)},
            ca_file=str(other_cert),
        )
        with pytest.raises(MailError):
            await SmtpSender.from_settings(s2, sleep=Sleeps()).send(message(s2))
        assert len(srv.sink.received) == 1


async def test_temporary_refusals_are_retried_with_exponential_backoff() -> None:
    with smtp_server(Sink(refuse_first=3)) as srv:
        s = settings(srv.port)
        sleeps = Sleeps()
        attempts = await SmtpSender.from_settings(s, sleep=sleeps).send(message(s))
        assert attempts == 4 and srv.sink.attempts == 4
        assert sleeps.calls == [5, 8, 8]  # 5 s doubled, capped at retry_backoff_max
        assert len(srv.sink.received) == 1


async def test_gives_up_after_the_configured_retries() -> None:
    with smtp_server(Sink(refuse_first=10)) as srv:
        s = settings(srv.port)
        sleeps = Sleeps()
        with pytest.raises(MailError, match="after 4 attempt"):
            await SmtpSender.from_settings(s, sleep=sleeps).send(message(s))
        assert srv.sink.attempts == 4 and len(sleeps.calls) == 3 and srv.sink.received == []


async def test_permanent_refusal_is_not_retried() -> None:
    with smtp_server(Sink(refuse_first=10, refusal="554 5.7.1 Message rejected")) as srv:
        s = settings(srv.port)
        sleeps = Sleeps()
        with pytest.raises(MailError, match="554"):
            await SmtpSender.from_settings(s, sleep=sleeps).send(message(s))
        assert srv.sink.attempts == 1 and sleeps.calls == []


async def test_nobody_listening_is_retried_then_reported() -> None:
    from callipso_agent.lab.snmpsim import free_tcp_port

    s = settings(free_tcp_port())
    sleeps = Sleeps()
    with pytest.raises(MailError, match="after 4 attempt"):
        await SmtpSender.from_settings(s, sleep=sleeps).send(message(s))
    assert sleeps.calls == [5, 8, 8]


def test_no_recipients_is_an_error() -> None:
    s = MeteoSettings()
    with pytest.raises(MailError, match="no recipients"):
        message(s)
