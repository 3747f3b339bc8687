"""Faithful fakes of the notification gateways, for the lab and the tests (loopback aiohttp servers).

* :class:`FakeLinkMobility`: ``POST /sms/send`` of LINK Mobility's "common" SMS REST API, HTTP Basic,
  JSON body checked (source/sourceTON/destination in E.164/userData/platformId/platformPartnerId), reply
  ``{"messageId","resultCode":1005,"description":"Queued"}``; a rate limit answering 429 with
  Retry-After; faults ``error500``, ``throttle`` (429), ``reject`` (resultCode other than 1005).
* :class:`FakeTeams`: ``/webhookb2/<id>`` behaves like a legacy Office 365 connector (MessageCard; 200
  with body ``1``; ``Summary or Text is required`` 400; oversize and throttling answered as 200 with
  another body, as observed), ``/workflows/<id>`` like a Workflows trigger (202 for anything, and a
  recorded flow run that fails unless the body is ``{"type":"message","attachments":[adaptive card]}``,
  with the error texts users reported); faults ``throttle``, ``oversize``, ``invalid_card``, ``error500``.
* :class:`FakeWebhook`: any JSON POST, recorded with its headers; faults are status codes.

Each has ``start(port=0)``, ``stop()``, ``url`` and the recorded requests as Python attributes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from callipso_agent.clock import Clock, SystemClock

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
TONS = ("ALPHANUMERIC", "MSISDN", "SHORTNUMBER")


class _Server:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.faults: list[tuple[str, int]] = []  # (kind, remaining)

    def _app(self) -> web.Application:  # pragma: no cover - abstract
        raise NotImplementedError

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port or self.port, reuse_address=True)
        await site.start()
        sockets = getattr(getattr(site, "_server", None), "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inject(self, kind: str, count: int = 1) -> None:
        self.faults.append((kind, count))

    def _fault(self) -> str | None:
        if not self.faults:
            return None
        kind, remaining = self.faults[0]
        if remaining <= 1:
            self.faults.pop(0)
        else:
            self.faults[0] = (kind, remaining - 1)
        return kind


@dataclass
class SmsRecord:
    body: dict[str, Any]
    user: str
    message_id: str


class FakeLinkMobility(_Server):
    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        rate_limit: tuple[int, float] | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.users = dict(users if users is not None else {"cd13": "sms-password"})
        self.rate_limit = rate_limit  # (max requests, per seconds)
        self.clock = clock or SystemClock()
        self.messages: list[SmsRecord] = []
        self.refused: list[tuple[int, str]] = []  # status, reason
        self.requests: list[tuple[float, int]] = []  # (clock.monotonic(), status) of every request answered
        self._recent: deque[float] = deque()

    def _app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/sms/send", self._send)])
        return app

    def _user(self, request: web.Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return name if self.users.get(name) == password else None

    def _refuse(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
        self.refused.append((status, reason))
        self.requests.append((self.clock.monotonic(), status))
        return web.json_response({"description": reason}, status=status, headers=dict(headers or {}))

    async def _send(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            return self._refuse(401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="sms"'})
        fault = self._fault()
        if fault == "error500":
            return self._refuse(500, "Internal error")
        now = self.clock.monotonic()
        if self.rate_limit is not None:
            limit, per = self.rate_limit
            while self._recent and now - self._recent[0] >= per:
                self._recent.popleft()
            if len(self._recent) >= limit:
                wait = per - (now - self._recent[0])
                return self._refuse(429, "Too many requests", {"Retry-After": str(max(1, round(wait)))})
        if fault == "throttle":
            return self._refuse(429, "Too many requests", {"Retry-After": "2"})
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return self._refuse(400, "malformed JSON")
        problems = []
        if not isinstance(body, dict):
            return self._refuse(400, "expected a JSON object")
        for key in ("source", "destination", "userData", "platformId", "platformPartnerId"):
            if not isinstance(body.get(key), str) or not body.get(key):
                problems.append(f"{key} is required")
        if body.get("sourceTON", "ALPHANUMERIC") not in TONS:
            problems.append("sourceTON must be ALPHANUMERIC, MSISDN or SHORTNUMBER")
        if isinstance(body.get("destination"), str) and not E164.match(body["destination"]):
            problems.append("destination must be +E.164")
        if body.get("destinationTON", "MSISDN") != "MSISDN":
            problems.append("destinationTON must be MSISDN")
        if problems:
            return self._refuse(400, "; ".join(problems))
        self._recent.append(now)
        message_id = base64.b64encode(uuid.uuid4().bytes[:18]).decode().rstrip("=")
        if fault == "reject":
            return web.json_response(
                {"messageId": message_id, "resultCode": 1102, "description": "Invalid destination address"}
            )
        self.messages.append(SmsRecord(body, user, message_id))
        self.requests.append((self.clock.monotonic(), 200))
        return web.json_response({"messageId": message_id, "resultCode": 1005, "description": "Queued"})


@dataclass
class TeamsPost:
    path: str
    body: Any
    flavour: str  # connector | workflow
    run_status: str = "Succeeded"  # what the flow run would show (workflows)
    run_error: str | None = None


@dataclass
class FakeTeams(_Server):
    posts: list[TeamsPost] = field(default_factory=list)
    size_limit: int = 20_000

    def __post_init__(self) -> None:
        super().__init__("127.0.0.1")

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.add_routes(
            [web.post("/webhookb2/{id:.*}", self._connector), web.post("/workflows/{id:.*}", self._workflow)]
        )
        return app

    def connector_url(self, hook: str = "cd13-noc") -> str:
        return f"{self.url}/webhookb2/{hook}"

    def workflow_url(self, hook: str = "cd13-noc") -> str:
        return f"{self.url}/workflows/{hook}"

    async def _connector(self, request: web.Request) -> web.Response:
        raw = await request.read()
        fault = self._fault()
        if fault == "error500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "throttle":
            return web.Response(
                status=429,
                text="Microsoft Teams endpoint returned HTTP error 429",
                headers={"Retry-After": "3"},
            )
        if fault == "throttle_200":
            return web.Response(
                status=200, text="Microsoft Teams endpoint returned HTTP error 429 with ContextId ..."
            )
        if len(raw) > self.size_limit or fault == "oversize":
            return web.Response(
                status=200,
                text="Webhook message delivery failed with error: Microsoft Teams "
                "endpoint returned HTTP error 413 with ContextId ...",
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return web.Response(status=400, text="Bad payload received by generic incoming webhook.")
        if (
            not isinstance(body, dict)
            or not (body.get("summary") or body.get("text"))
            or fault == "invalid_card"
        ):
            return web.Response(status=400, text="Summary or Text is required.")
        self.posts.append(TeamsPost(request.path, body, "connector"))
        return web.Response(status=200, text="1")

    async def _workflow(self, request: web.Request) -> web.Response:
        fault = self._fault()
        if fault == "error500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "throttle":
            return web.json_response(
                {"error": {"code": "TooManyRequests"}}, status=429, headers={"Retry-After": "3"}
            )
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": {"code": "InvalidRequestContent"}}, status=400)
        post = TeamsPost(request.path, body, "workflow")
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if not isinstance(attachments, list):
            post.run_status, post.run_error = (
                "Failed",
                (
                    "The execution of template action 'Send_each_adaptive_card' failed: "
                    "the result of the evaluation of "
                    "'foreach' expression '@triggerOutputs()?['body']?['attachments']' is of type 'Null'."
                ),
            )
        elif fault == "invalid_card" or any(
            not isinstance(a, dict)
            or not isinstance(a.get("content"), dict)
            or a["content"].get("type") != "AdaptiveCard"
            for a in attachments
        ):
            post.run_status, post.run_error = "Failed", "Property 'type' must be 'AdaptiveCard'."
        self.posts.append(post)
        return web.Response(status=202)


@dataclass
class WebhookRequest:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeWebhook(_Server):
    requests: list[WebhookRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__("127.0.0.1")

    def _app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/{path:.*}", self._post)])
        return app

    async def _post(self, request: web.Request) -> web.Response:
        fault = self._fault()
        if fault is not None and fault.isdigit():
            return web.Response(status=int(fault), text=f"injected {fault}")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="expected JSON")
        self.requests.append(WebhookRequest(request.path, dict(request.headers), body))
        return web.json_response({"ok": True})


def main(argv: list[str] | None = None) -> int:
    """``python -m callipso_agent.notify.fakes``: the three fakes on loopback, for the lab."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(description="Fake SMS gateway, Teams and webhook sink on 127.0.0.1")
    parser.add_argument("--sms-port", type=int, default=0)
    parser.add_argument("--teams-port", type=int, default=0)
    parser.add_argument("--webhook-port", type=int, default=0)
    parser.add_argument("--sms-user", default="cd13")
    parser.add_argument("--sms-password", default="sms-password")
    args = parser.parse_args(argv)

    async def serve() -> None:
        sms = FakeLinkMobility(users={args.sms_user: args.sms_password})
        teams = FakeTeams()
        hook = FakeWebhook()
        await sms.start(args.sms_port)
        await teams.start(args.teams_port)
        await hook.start(args.webhook_port)
        print(f"SMS gateway {sms.url}/sms/send", flush=True)
        print(f"Teams connector {teams.connector_url()} workflow {teams.workflow_url()}", flush=True)
        print(f"webhook sink {hook.url}/", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
