"""Notification channels: email (SMTP), SMS (LINK Mobility REST), Microsoft Teams, generic JSON webhook.

Each channel sends one already-rendered message and translates every failure into a
:class:`~callipso_agent.outbox.errors.DeliveryError` (retryable or final) at this boundary; the outbox
retries and records. Channels know nothing about routing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import aiosmtplib
import structlog

from callipso_agent.config.secrets import Secret
from callipso_agent.notify.config import EmailChannel as EmailSettings
from callipso_agent.notify.config import SmsChannel as SmsSettings
from callipso_agent.notify.config import TeamsChannel as TeamsSettings
from callipso_agent.notify.config import WebhookChannel as WebhookSettings
from callipso_agent.notify.texts import Rendered
from callipso_agent.outbox.errors import DeliveryError, FinalDelivery, RetryableDelivery

log = structlog.get_logger()

TEAMS_CONNECTOR_LIMIT = 20_000  # bytes; larger MessageCards are refused (with a 200!)


class Channel(Protocol):
    name: str
    type: str

    async def send(
        self, message: Rendered, recipients: Sequence[str], *, key: str, meta: Mapping[str, Any]
    ) -> str:
        """Send; return a one-line summary. Raise DeliveryError on failure."""
        ...

    async def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _http_error(what: str, status: int, body: str, retry_after: float | None) -> DeliveryError:
    snippet = body.strip().replace("\n", " ")[:200]
    if status in (408, 429):
        return RetryableDelivery(f"{what}: throttled ({status}) {snippet}".strip(), retry_after=retry_after)
    if status >= 500:
        return RetryableDelivery(
            f"{what}: server error ({status}) {snippet}".strip(), retry_after=retry_after
        )
    return FinalDelivery(f"{what}: refused ({status}) {snippet}".strip())


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class _Http:
    """A lazily created aiohttp session shared by one channel's requests."""

    def __init__(self, timeout: float, session: aiohttp.ClientSession | None = None) -> None:
        self.timeout = timeout
        self._session = session
        self._own = session is None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post(
        self, what: str, url: str, *, body: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str, float | None]:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session().post(url, json=body, headers=dict(headers or {})) as rsp:
                    return rsp.status, await rsp.text(), _retry_after(rsp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as err:
            raise RetryableDelivery(f"{what}: cannot connect ({err.os_error or err})") from err
        except TimeoutError as err:
            raise RetryableDelivery(f"{what}: no answer within {self.timeout:.0f} s", uncertain=True) from err
        except aiohttp.ClientError as err:
            raise RetryableDelivery(
                f"{what}: connection lost ({type(err).__name__})", uncertain=True
            ) from err

    async def close(self) -> None:
        if self._session is not None and self._own:
            await self._session.close()
        self._session = None


# ---- email -------------------------------------------------------------------------------------------
class EmailSender:
    type = "email"

    def __init__(
        self,
        name: str,
        settings: EmailSettings,
        password: Secret | None = None,
        *,
        base_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._password = password
        self._tls: ssl.SSLContext | None = None
        smtp = settings.smtp
        if smtp.ca_file:
            ca = Path(smtp.ca_file)
            self._tls = ssl.create_default_context(
                cafile=str(ca if ca.is_absolute() or base_dir is None else base_dir / ca)
            )

    def build(
        self, message: Rendered, recipients: Sequence[str], *, key: str, meta: Mapping[str, Any]
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = message.subject
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(recipients)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.settings.sender.rpartition("@")[2] or "callipso"
        # one Message-ID per outbox job: a resent copy is recognisably the same message
        msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}.callipso@{domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        if meta.get("incident_id") is not None:
            msg["X-Callipso-Incident"] = str(meta["incident_id"])
        if meta.get("priority"):
            msg["X-Callipso-Priority"] = str(meta["priority"])
            if meta["priority"] == "P1":
                msg["Importance"] = "high"
        msg.set_content(message.body, charset="utf-8")
        msg["Content-Language"] = message.lang  # after set_content, which resets Content-* headers
        return msg

    async def send(
        self, message: Rendered, recipients: Sequence[str], *, key: str, meta: Mapping[str, Any]
    ) -> str:
        smtp = self.settings.smtp
        to = list(recipients) or list(self.settings.to)
        msg = self.build(message, to, key=key, meta=meta)
        what = f"SMTP {smtp.host}:{smtp.port}"
        try:
            await aiosmtplib.send(
                msg,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=self._password.reveal() if self._password else None,
                use_tls=smtp.tls,
                start_tls=smtp.starttls if not smtp.tls else False,
                timeout=smtp.timeout,
                validate_certs=smtp.verify_tls,
                tls_context=self._tls,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise FinalDelivery(
                f"{what}: recipients refused ({', '.join(r.recipient for r in err.recipients)})"
            ) from err
        except aiosmtplib.SMTPAuthenticationError as err:
            raise FinalDelivery(f"{what}: authentication refused ({err.code} {err.message})") from err
        except aiosmtplib.SMTPResponseException as err:
            if 400 <= err.code < 500:
                raise RetryableDelivery(f"{what}: temporary failure ({err.code} {err.message})") from err
            raise FinalDelivery(f"{what}: refused ({err.code} {err.message})") from err
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            OSError,
        ) as err:
            raise RetryableDelivery(f"{what}: {type(err).__name__}: {err}") from err
        except aiosmtplib.SMTPException as err:
            raise RetryableDelivery(f"{what}: {err}") from err
        return (
            f"courriel envoyé à {', '.join(to)}" if message.lang == "fr" else f"email sent to {', '.join(to)}"
        )

    async def close(self) -> None:
        return None


# ---- SMS (LINK Mobility) ------------------------------------------------------------------------------
SMS_OK = {1000, 1001, 1005}  # 1005 queued (the usual answer), 1001 delivered; 1000 kept for older gateways


class SmsSender:
    """LINK Mobility "common" SMS REST API, one request per destination."""

    type = "sms"

    def __init__(
        self, name: str, settings: SmsSettings, password: Secret, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self._password = password
        self._http = _Http(settings.timeout, session)

    def payload(self, text: str, destination: str, ref: str) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "source": s.source,
            "sourceTON": s.source_ton,
            "destination": destination,
            "destinationTON": "MSISDN",
            "dcs": "TEXT",
            "userData": text,
            "platformId": s.platform_id,
            "platformPartnerId": s.platform_partner_id,
            "refId": ref,
            "useDeliveryReport": s.gate_id is not None,
        }
        if s.gate_id is not None:
            body["deliveryReportGates"] = [s.gate_id]
        return body

    async def send(
        self, message: Rendered, recipients: Sequence[str], *, key: str, meta: Mapping[str, Any]
    ) -> str:
        sent: list[str] = []
        for destination in recipients or self.settings.to:
            ref = hashlib.sha256(f"{key}:{destination}".encode()).hexdigest()[:32]
            status, text, retry_after = await self._http.post(
                "SMS gateway",
                self.settings.url.rstrip("/") + "/sms/send",
                body=self.payload(message.short, destination, ref),
                headers={"Authorization": basic_auth(self.settings.username, self._password.reveal())},
            )
            if status not in (200, 201, 202):
                raise _http_error("SMS gateway", status, text, retry_after)
            try:
                reply = json.loads(text)
                code = int(reply.get("resultCode"))
            except (ValueError, TypeError, AttributeError) as err:
                raise RetryableDelivery(
                    f"SMS gateway: unreadable reply {text[:120]!r}", uncertain=True
                ) from err
            if code not in SMS_OK:
                raise FinalDelivery(
                    f"SMS gateway refused {destination}: resultCode {code} ({reply.get('description', '')})"
                )
            sent.append(f"{destination} ({reply.get('messageId', '?')})")
        return (
            f"SMS accepté par la passerelle : {', '.join(sent)}"
            if message.lang == "fr"
            else f"SMS accepted by the gateway: {', '.join(sent)}"
        )

    async def close(self) -> None:
        await self._http.close()


# ---- Microsoft Teams ------------------------------------------------------------------------------------
def message_card(message: Rendered) -> dict[str, Any]:
    """Legacy Office 365 connector payload (MessageCard)."""
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": message.subject,
        "themeColor": message.color,
        "title": message.subject,
        "sections": [{"facts": [{"name": k, "value": v} for k, v in message.facts], "markdown": True}],
    }
    if message.link:
        card["potentialAction"] = [
            {
                "@type": "OpenUri",
                "name": "Ouvrir" if message.lang == "fr" else "Open",
                "targets": [{"os": "default", "uri": message.link}],
            }
        ]
    return card


def adaptive_card(message: Rendered) -> dict[str, Any]:
    """Workflows ("Post to a channel when a webhook request is received") payload."""
    urgent = message.color in ("C00000", "FF8C00")
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": message.subject,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                **({"color": "Attention"} if urgent else {}),
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]},
        ],
    }
    if message.link:
        content["actions"] = [
            {
                "type": "Action.OpenUrl",
                "title": "Ouvrir" if message.lang == "fr" else "Open",
                "url": message.link,
            }
        ]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
        ],
    }


class TeamsSender:
    type = "teams"

    def __init__(
        self, name: str, settings: TeamsSettings, url: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self._url = url  # may embed a credential: never logged
        self._http = _Http(settings.timeout, session)

    async def send(
        self, message: Rendered, recipients: Sequence[str], *, key: str, meta: Mapping[str, Any]
    ) -> str:
        fr = message.lang == "fr"
        if self.settings.flavour == "connector":
            card = message_card(message)
            if len(json.dumps(card).encode()) > TEAMS_CONNECTOR_LIMIT:
                card["sections"] = [{"text": message.body[:4000], "markdown": False}]
            status, text, retry_after = await self._http.post("Teams connector", self._url, body=card)
            if status == 200 and text.strip() == "1":
                return "publié dans Teams" if fr else "posted to Teams"
            if status == 200:
                # the connector reports throttling and refusals as 200 with another body
                if "429" in text or "throttl" in text.lower():
                    raise RetryableDelivery(f"Teams connector: throttled ({text.strip()[:200]})")
                raise FinalDelivery(f"Teams connector: not posted ({text.strip()[:200]})")
            raise _http_error("Teams connector", status, text, retry_after)
        status, text, retry_after = await self._http.post(
            "Teams workflow", self._url, body=adaptive_card(message)
        )
        if 200 <= status < 300:
            # a workflow only queues the card; a failed flow run is visible only in its run history
            return (
                f"accepté par le flux Teams ({status}), publication asynchrone"
                if fr
                else f"accepted by the Teams workflow ({status}), posted asynchronously"
            )
        raise _http_error("Teams workflow", status, text, retry_after)

    async def close(self) -> None:
        await self._http.close()


# ---- generic webhook -------------------------------------------------------------------------------------
class WebhookSender:
    type = "webhook"

    def __init__(
        self,
        name: str,
        settings: WebhookSettings,
        secret_headers: Mapping[str, Secret] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._secret_headers = dict(secret_headers or {})
        self._http = _Http(settings.timeout, session)

    def payload(self, message: Rendered, key: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "version": "1",
            "key": key,
            "event": meta.get("event"),
            "incident": meta.get("incident"),
            "message": {
                "subject": message.subject,
                "text": message.body,
                "short": message.short,
                "facts": [{"name": k, "value": v} for k, v in message.facts],
                "link": message.link,
                "lang": message.lang,
            },
        }

    async def send(
        self, message: Rendered, recipients: Sequence[str], *, key: str, meta: Mapping[str, Any]
    ) -> str:
        headers = {
            **self.settings.headers,
            "Idempotency-Key": key,
            **{k: v.reveal() for k, v in self._secret_headers.items()},
        }
        status, text, retry_after = await self._http.post(
            "webhook", self.settings.url, body=self.payload(message, key, meta), headers=headers
        )
        if 200 <= status < 300:
            return f"webhook : {status}" if message.lang == "fr" else f"webhook: {status}"
        raise _http_error("webhook", status, text, retry_after)

    async def close(self) -> None:
        await self._http.close()


def build_channels(channels: Mapping[str, Any], base_dir: Path | None = None) -> dict[str, Channel]:
    """Channel objects from the ``channels:`` settings, resolving their secrets."""
    out: dict[str, Channel] = {}
    for name, cfg in channels.items():
        if isinstance(cfg, EmailSettings):
            pw = cfg.smtp.password.resolve(base_dir) if cfg.smtp.password else None
            out[name] = EmailSender(name, cfg, pw, base_dir=base_dir)
        elif isinstance(cfg, SmsSettings):
            out[name] = SmsSender(name, cfg, cfg.password.resolve(base_dir))
        elif isinstance(cfg, TeamsSettings):
            url = cfg.url if cfg.url is not None else cfg.url_secret.resolve(base_dir).reveal()  # type: ignore[union-attr]
            out[name] = TeamsSender(name, cfg, url)
        elif isinstance(cfg, WebhookSettings):
            out[name] = WebhookSender(
                name, cfg, {k: v.resolve(base_dir) for k, v in cfg.secret_headers.items()}
            )
        else:  # pragma: no cover - the schema admits only the four types
            raise TypeError(f"unknown channel settings {type(cfg).__name__}")
    return out
