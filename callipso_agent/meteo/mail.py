"""The météo email: a multipart/alternative message (plain text + HTML, UTF-8) sent over SMTP.

Sending uses the standard library's smtplib in a worker thread (no extra dependency), with STARTTLS or
implicit TLS and optional authentication, and retries transient failures (connection errors, 4xx
replies) with exponential backoff. Permanent failures (5xx, authentication refused) are not retried.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

import structlog

from callipso_agent.errors import CallipsoError
from callipso_agent.meteo.settings import MeteoSettings, SmtpSettings

log = structlog.get_logger()

Sleep = Callable[[float], Awaitable[None]]


class MailError(CallipsoError):
    kind = "mail_error"


def build_message(
    *, subject: str, html: str, text: str, settings: MeteoSettings, lang: str, when: object | None = None
) -> EmailMessage:
    """The email: text/plain first, text/html second (clients show the last part they can render)."""
    if not settings.recipients:
        raise MailError("no recipients: set meteo.recipients")
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = formataddr((settings.sender_name, settings.sender))
    msg["To"] = ", ".join(settings.recipients)
    if settings.cc:
        msg["Cc"] = ", ".join(settings.cc)
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    if when is not None:
        msg["Date"] = format_datetime(when)  # type: ignore[arg-type]
    msg["Message-ID"] = make_msgid(idstring="meteo", domain=settings.sender.rsplit("@", 1)[-1])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    msg["Content-Language"] = lang  # after set_content, which clears Content-* headers
    return msg


def _transient(err: BaseException) -> bool:
    if isinstance(err, smtplib.SMTPAuthenticationError):
        return False
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in err.recipients.values()]
        return bool(codes) and all(400 <= c < 500 for c in codes)
    if isinstance(err, smtplib.SMTPResponseException):
        return 400 <= err.smtp_code < 500
    if isinstance(err, smtplib.SMTPNotSupportedError):
        return False
    return isinstance(err, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError, TimeoutError))


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """smtplib's login() only takes ASCII; a UTF-8 user or password goes through AUTH PLAIN (RFC 4616)."""
    if (username + password).isascii():
        client.login(username, password)
        return
    if not client.has_extn("auth") or "PLAIN" not in client.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPNotSupportedError("a non-ASCII user name or password needs AUTH PLAIN")
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode("ascii")
    code, resp = client.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


class SmtpSender:
    def __init__(
        self,
        smtp: SmtpSettings,
        *,
        base_dir: Path | None = None,
        retries: int = 4,
        backoff: float = 30.0,
        backoff_max: float = 900.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.smtp = smtp
        self.base_dir = base_dir
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls, settings: MeteoSettings, *, base_dir: Path | None = None, sleep: Sleep = asyncio.sleep
    ) -> SmtpSender:
        return cls(
            settings.smtp,
            base_dir=base_dir,
            retries=settings.retries,
            backoff=settings.retry_backoff,
            backoff_max=settings.retry_backoff_max,
            sleep=sleep,
        )

    def _tls_context(self) -> ssl.SSLContext:
        cafile = None
        if self.smtp.ca_file:
            p = Path(self.smtp.ca_file)
            cafile = str(p if p.is_absolute() or self.base_dir is None else self.base_dir / p)
        ctx = ssl.create_default_context(cafile=cafile)
        if not self.smtp.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _send_sync(self, msg: EmailMessage) -> None:
        s = self.smtp
        password = s.password.resolve(self.base_dir).reveal() if s.password is not None else None
        client: smtplib.SMTP
        if s.security == "tls":
            client = smtplib.SMTP_SSL(
                s.host,
                s.port,
                timeout=s.timeout,
                context=self._tls_context(),
                local_hostname=s.local_hostname,
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=s.local_hostname)
        with client:
            client.ehlo()
            if s.security == "starttls":
                client.starttls(context=self._tls_context())
                client.ehlo()
            if s.username:
                _login(client, s.username, password or "")
            client.send_message(msg)

    async def send(self, msg: EmailMessage) -> int:
        """Send, retrying transient failures; returns the attempts made. Raises MailError when giving up."""
        attempt = 0
        delay = self.backoff
        while True:
            attempt += 1
            try:
                await asyncio.to_thread(self._send_sync, msg)
            except (smtplib.SMTPException, OSError) as err:
                transient = _transient(err)
                log.warning(
                    "meteo_send_failed",
                    attempt=attempt,
                    transient=transient,
                    error=str(err)[:300],
                    host=self.smtp.host,
                    port=self.smtp.port,
                )
                if not transient or attempt > self.retries:
                    raise MailError(
                        f"sending the météo to {self.smtp.host}:{self.smtp.port} failed after "
                        f"{attempt} attempt(s): {err}"
                    ) from err
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            log.info("meteo_sent", attempts=attempt, to=msg["To"], host=self.smtp.host)
            return attempt
