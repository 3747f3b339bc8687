"""EasyVista Service Manager REST client (aiohttp).

``https://<host>/api/v1/<account>/requests``: create (``POST``, body ``{"requests":[{...}]}``, 201 +
``HREF``), read and search (``GET``), update and close (``PUT /requests/<rfc_number>``), actions
(``POST /requests/<rfc_number>/actions``). The ticket reference is the last path segment of the
``HREF`` EasyVista returns; it is never rebuilt from a pattern.

Failures are translated here into :mod:`callipso_agent.itsm.errors`: 401/403/404/406/400/590 are
final, connection errors, timeouts, 429 and 5xx are retryable. A request that may have run on the
server (timeout, connection lost after sending, 5xx on a write) is marked ``uncertain``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import structlog

from callipso_agent.config.secrets import Secret
from callipso_agent.itsm.config import EasyVistaSettings
from callipso_agent.itsm.errors import (
    ItsmAuthError,
    ItsmError,
    ItsmFunctionalError,
    ItsmNotFound,
    ItsmProtocolError,
    ItsmRejected,
    ItsmTimeout,
    ItsmUnavailable,
)

log = structlog.get_logger()

_INNER_ERROR = re.compile(
    r'^\s*\{\s*"error"\s*:\s*"(?P<error>.*)"\s*\}\s*(?:\((?P<code>[^)]*)\))?\s*$', re.DOTALL
)


@dataclass(frozen=True, slots=True)
class TicketRef:
    ref: str  # rfc_number, e.g. I260105_000001
    href: str


def ref_from_href(href: str) -> str:
    """The ticket reference: the last segment of the HREF's path (``.../requests/I2210526_000001``)."""
    path = urlsplit(href).path.rstrip("/")
    ref = unquote(path.rsplit("/", 1)[-1]) if path else ""
    if not ref or ref in ("requests", "actions"):
        raise ItsmProtocolError(f"HREF {href!r} names no ticket")
    return ref


def parse_590(body: Any) -> tuple[str, str | None]:
    """The business error inside a 590 reply.

    The body looks like ``{"message":"{\\"error\\": ...} (code)", "correlationId": ...}``.
    """
    if not isinstance(body, Mapping):
        return (str(body)[:500] if body else "functional error"), None
    message = str(body.get("message") or "")
    correlation = body.get("correlationId")
    m = _INNER_ERROR.match(message)
    detail = m.group("error") if m else message
    detail = detail.replace('\\"', '"').strip().rstrip("-").strip() or message
    return detail, str(correlation) if correlation not in (None, "") else None


class EasyVistaClient:
    def __init__(
        self,
        url: str,
        account: str,
        *,
        username: str | None = None,
        password: Secret | None = None,
        token: Secret | None = None,
        timeout: float = 65.0,
        ssl_context: ssl.SSLContext | bool = True,
        wrap_actions: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if (token is None) == (username is None or password is None):
            raise ValueError("EasyVistaClient needs basic credentials or a bearer token")
        parts = urlsplit(url)
        self.root = f"{parts.scheme}://{parts.netloc}/api/v1/{account}"
        self._username = username
        self._password = password
        self._token = token
        self.timeout = timeout
        self.wrap_actions = wrap_actions
        self._ssl = ssl_context
        self._session = session
        self._own_session = session is None

    @classmethod
    def from_settings(
        cls,
        settings: EasyVistaSettings,
        base_dir: Path | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> EasyVistaClient:
        auth = settings.auth
        ctx: ssl.SSLContext | bool = settings.verify_tls
        if settings.ca_file:
            ca = Path(settings.ca_file)
            ctx = ssl.create_default_context(
                cafile=str(ca if ca.is_absolute() or base_dir is None else base_dir / ca)
            )
        return cls(
            settings.url,
            settings.account,
            username=auth.username,
            password=auth.password.resolve(base_dir) if auth.password else None,
            token=auth.token.resolve(base_dir) if auth.token else None,
            timeout=settings.timeout,
            ssl_context=ctx,
            wrap_actions=settings.wrap_actions,
            session=session,
        )

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        if self._token is not None:
            auth = f"Bearer {self._token.reveal()}"
        else:
            assert self._username is not None and self._password is not None
            raw = f"{self._username}:{self._password.reveal()}".encode()
            auth = f"Basic {base64.b64encode(raw).decode('ascii')}"
        return {"Authorization": auth, "Accept": "application/json"}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # one connection per request: calls are few, and a pooled connection that EasyVista (or a load
            # balancer) closed while idle would turn a clean "not sent" into an uncertain outcome
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, force_close=True)
            )
        return self._session

    # ---- transport --------------------------------------------------------------------------------
    async def _call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        url = f"{self.root}/{path}"
        writes = method != "GET"
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().request(
                    method, url, json=body, params=params, headers=self._headers()
                ) as rsp:
                    status = rsp.status
                    text = await rsp.text()
                    retry_after = _retry_after(rsp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as err:
            raise ItsmUnavailable(
                f"cannot connect to EasyVista ({err.os_error or err})", uncertain=False
            ) from err
        except TimeoutError as err:
            raise ItsmTimeout(
                f"EasyVista did not answer within {self.timeout:.0f} s", uncertain=writes
            ) from err
        except aiohttp.ClientError as err:
            raise ItsmUnavailable(
                f"connection to EasyVista lost ({type(err).__name__})", uncertain=writes
            ) from err
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = text
        log.debug("easyvista_call", method=method, path=path, status=status)
        if status in (200, 201):
            return status, data
        raise _status_error(status, data, writes=writes, retry_after=retry_after)

    # ---- tickets ----------------------------------------------------------------------------------
    async def create_ticket(self, fields: Mapping[str, Any]) -> TicketRef:
        _status, data = await self._call("POST", "requests", body={"requests": [dict(fields)]})
        return _href(data)

    async def get_ticket(self, ref: str) -> dict[str, Any]:
        _status, data = await self._call("GET", f"requests/{_seg(ref)}")
        if not isinstance(data, dict):
            raise ItsmProtocolError("EasyVista returned no ticket record")
        return data

    async def search(self, field: str, value: str) -> list[dict[str, Any]]:
        """``GET /requests?search=<field>:<value>``; the records found (maybe none)."""
        _status, data = await self._call("GET", "requests", params={"search": f"{field}:{value}"})
        records = data.get("records") if isinstance(data, dict) else None
        return [r for r in records or [] if isinstance(r, dict)]

    async def find_by_external_reference(self, value: str) -> TicketRef | None:
        """The ticket a previous attempt created with this external reference, if any."""
        for record in await self.search("external_reference", value):
            ext = _upper(record).get("EXTERNAL_REFERENCE")
            if ext is not None and str(ext) != value:
                continue  # the server matched loosely; keep exact matches only
            ref = _upper(record).get("RFC_NUMBER")
            href = _upper(record).get("HREF")
            if ref:
                return TicketRef(str(ref), str(href or f"{self.root}/requests/{ref}"))
        return None

    async def update_ticket(self, ref: str, fields: Mapping[str, Any]) -> str:
        _status, data = await self._call("PUT", f"requests/{_seg(ref)}", body=dict(fields))
        return _maybe_href(data)

    async def add_action(self, ref: str, fields: Mapping[str, Any]) -> str:
        body: Any = {"actions": [dict(fields)]} if self.wrap_actions else dict(fields)
        _status, data = await self._call("POST", f"requests/{_seg(ref)}/actions", body=body)
        return _maybe_href(data)

    async def close_ticket(self, ref: str, closed: Mapping[str, Any] | None = None) -> str:
        _status, data = await self._call("PUT", f"requests/{_seg(ref)}", body={"closed": dict(closed or {})})
        return _maybe_href(data)


def _seg(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def _upper(record: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in record.items()}


def _href(data: Any) -> TicketRef:
    href = _upper(data).get("HREF") if isinstance(data, Mapping) else None
    if not href:
        raise ItsmProtocolError("EasyVista accepted the request but sent no HREF")
    return TicketRef(ref_from_href(str(href)), str(href))


def _maybe_href(data: Any) -> str:
    href = _upper(data).get("HREF") if isinstance(data, Mapping) else None
    return str(href) if href else ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _status_error(status: int, data: Any, *, writes: bool, retry_after: float | None) -> ItsmError:
    if status == 401:
        return ItsmAuthError("EasyVista refused the credentials (401)", status=401)
    if status == 403:
        return ItsmAuthError("the EasyVista REST user has no rights for this (403)", status=403)
    if status == 404:
        return ItsmNotFound("EasyVista: no such ticket or resource (404)")
    if status == 406:
        return ItsmRejected(
            "EasyVista: the recipient does not exist or is outside the REST user's domains (406)", status=406
        )
    if status == 590:
        detail, correlation = parse_590(data)
        return ItsmFunctionalError(
            f"EasyVista refused the request (590): {detail}", detail=detail, correlation_id=correlation
        )
    if status in (408, 429):
        return ItsmUnavailable(
            f"EasyVista asked to slow down ({status})",
            uncertain=False,
            status=status,
            retry_after=retry_after,
        )
    if status >= 500:
        return ItsmUnavailable(
            f"EasyVista server error ({status})", uncertain=writes, status=status, retry_after=retry_after
        )
    if status == 400:
        detail, _ = parse_590(data)
        return ItsmRejected(f"EasyVista: malformed request (400): {detail}", status=400)
    return ItsmRejected(f"EasyVista: unexpected status {status}", status=status)
