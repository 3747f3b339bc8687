"""The lab agent's outbound peers, in the test process: the EasyVista fake, the SMS gateway fake, the Teams
fake (Workflows flavour) and a webhook receiver (aiohttp servers on a background event loop) and a real SMTP
server (aiosmtpd).

Each peer can go down (connection refused) and come back on the same port, or misbehave (500, hang,
429 with Retry-After) through the fakes' fault switches. ``overlay()`` writes the configuration the lab
agent needs to talk to them (``callipso-agent demo --overlay``; the Teams channel with ``teams=True``).
What the peers received is read back with ``tickets()``, ``emails()``, ``sms()``, ``teams()`` and
``hooks()``. Credentials here are SYNTHETIC.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiosmtpd.controller import Controller

from callipso_agent.api.auth import sha256_hex
from callipso_agent.itsm.fake_easyvista import FakeEasyVista
from callipso_agent.lab.snmpsim import free_tcp_port
from callipso_agent.notify.fakes import FakeLinkMobility, FakeTeams, FakeWebhook
from tests.meteo.smtp import Sink

T = TypeVar("T")

EV_USER, EV_PASSWORD = "rest", "ev-lab-password"  # SYNTHETIC
SMS_USER, SMS_PASSWORD = "cd13", "sms-lab-password"  # SYNTHETIC
API_TOKEN = "lab-noc-token-4b1d"
REFERENCE_PREFIX = "LAB"
CHANNELS = ("mail-noc", "sms-astreinte", "hook-noc")
TEAMS_CHANNEL = "teams-noc"  # in the overlay with teams=True


class Peers:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="peers", daemon=True)
        self.ev = FakeEasyVista(users={EV_USER: EV_PASSWORD})
        self.sms_gw = FakeLinkMobility(users={SMS_USER: SMS_PASSWORD})
        self.webhook = FakeWebhook()
        self.teams_gw = FakeTeams()
        self.sink = Sink()
        self.smtp_port = free_tcp_port()
        self._smtp: Controller | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Peers:
        self._thread.start()
        self.call(self.ev.start())
        self.call(self.sms_gw.start())
        self.call(self.webhook.start())
        self.call(self.teams_gw.start())
        self.smtp_up()
        return self

    def stop(self) -> None:
        self.smtp_down()
        for server in (self.ev, self.sms_gw, self.webhook, self.teams_gw):
            try:
                self.call(server.stop())
            except Exception:  # noqa: S110 - best effort at teardown
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # ---- outages ------------------------------------------------------------------------------------
    def smtp_up(self) -> None:
        if self._smtp is None:
            self._smtp = Controller(self.sink, hostname="127.0.0.1", port=self.smtp_port)
            self._smtp.start()

    def smtp_down(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None

    def ev_down(self) -> None:
        self.call(self.ev.down())

    def ev_up(self) -> None:
        self.call(self.ev.up())

    def ev_fault(self, kind: str, *, op: str = "create", count: int = 1) -> None:
        self.loop.call_soon_threadsafe(lambda: self.ev.inject(kind, op=op, count=count))

    def sms_fault(self, kind: str, count: int = 1) -> None:
        self.loop.call_soon_threadsafe(lambda: self.sms_gw.inject(kind, count))

    def webhook_fault(self, status: int, count: int = 1) -> None:
        self.loop.call_soon_threadsafe(lambda: self.webhook.inject(str(status), count))

    # ---- what they received -------------------------------------------------------------------------
    def _snapshot(self, fn: Any) -> Any:
        async def read() -> Any:
            return fn()

        return self.call(read())

    def tickets(self) -> list[dict[str, Any]]:
        """Tickets in the EasyVista fake: external reference, number, status, actions."""
        return self._snapshot(lambda: [
            {"ref": t.rfc_number, "external_reference": str(t.fields.get("external_reference")),
             "status": t.status, "actions": len(t.actions)} for t in self.ev.tickets.values()])

    def emails(self) -> list[dict[str, str]]:
        return [{"message_id": str(r.message["Message-ID"]), "incident": str(r.message["X-Callipso-Incident"]),
                 "subject": str(r.message["Subject"])} for r in list(self.sink.received)]

    def sms(self) -> list[dict[str, Any]]:
        return self._snapshot(lambda: [{"ref": m.body.get("refId"), "destination": m.body.get("destination"),
                                        "text": m.body.get("userData")} for m in self.sms_gw.messages])

    def sms_requests(self) -> list[tuple[float, int]]:
        return self._snapshot(lambda: list(self.sms_gw.requests))

    def teams(self) -> list[dict[str, Any]]:
        """Posts to the Teams workflow: the card as sent, and the flow run's outcome."""
        return self._snapshot(lambda: [{"path": p.path, "body": p.body, "run_status": p.run_status,
                                        "run_error": p.run_error} for p in self.teams_gw.posts])

    def hooks(self) -> list[dict[str, Any]]:
        return self._snapshot(lambda: [
            {"key": r.headers.get("Idempotency-Key"), "event": r.body.get("event"),
             "incident": (r.body.get("incident") or {}).get("id")} for r in self.webhook.requests])

    # ---- the lab agent's configuration --------------------------------------------------------------
    def overlay(self, folder: Path, *, retry_base: float = 1.0, retry_max: float = 4.0,
                agent: dict[str, Any] | None = None, teams: bool = False) -> Path:
        """Configuration files pointing the lab agent at these peers (``--overlay folder``); ``teams`` adds
        the Teams channel (``TEAMS_CHANNEL``) to the channels and the route."""
        out = folder / "outputs"
        out.mkdir(parents=True, exist_ok=True)
        (folder / "ev.secret").write_text(EV_PASSWORD + "\n", encoding="utf-8")
        (folder / "sms.secret").write_text(SMS_PASSWORD + "\n", encoding="utf-8")
        # a Teams workflow URL is a credential: given through a secret file, like a real deployment would
        (folder / "teams.secret").write_text(self.teams_gw.workflow_url("lab-noc") + "\n", encoding="utf-8")
        settings: dict[str, Any] = {
            "outbox": {"retry_base": retry_base, "retry_max": retry_max},
            "http": {"tokens": [{"name": "noc", "sha256": sha256_hex(API_TOKEN), "scopes": ["read", "write"]}]},
        }
        settings.update(agent or {})
        header = "# SYNTHETIC: the lab agent's peers for the reliability tests\n"
        (folder / "agent.yaml").write_text(header + yaml.safe_dump({"agent": settings}), encoding="utf-8")
        easyvista = {
            "url": self.ev.url,
            "auth": {"username": EV_USER, "password": {"file": "ev.secret"}},
            "timeout": 3,
            "reference_prefix": REFERENCE_PREFIX,
            "mapping": {"catalog_code": "INC_TELEPHONIE"},
        }
        (out / "easyvista.yaml").write_text(header + yaml.safe_dump({"easyvista": easyvista}), encoding="utf-8")
        notifications = {
            "language": "fr",
            "channels": {
                "mail-noc": {"type": "email", "smtp": {"host": "127.0.0.1", "port": self.smtp_port,
                                                       "starttls": False, "timeout": 5},
                             "sender": "callipso@lab.invalid", "to": ["noc@lab.invalid"]},
                "sms-astreinte": {"type": "sms", "url": self.sms_gw.url, "username": SMS_USER,
                                  "password": {"file": "sms.secret"}, "platform_id": "COMMON_API",
                                  "platform_partner_id": "1234", "to": ["+33612345678"], "timeout": 5},
                "hook-noc": {"type": "webhook", "url": f"{self.webhook.url}/callipso", "timeout": 5},
            },
            "routes": [{"name": "tout", "notify": list(CHANNELS)}],
        }
        if teams:
            notifications["channels"][TEAMS_CHANNEL] = {
                "type": "teams", "flavour": "workflow", "url_secret": {"file": "teams.secret"}, "timeout": 5}
            notifications["routes"][0]["notify"].append(TEAMS_CHANNEL)
        (out / "notifications.yaml").write_text(
            header + yaml.safe_dump({"notifications": notifications}), encoding="utf-8")
        return folder
