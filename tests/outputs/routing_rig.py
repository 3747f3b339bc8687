"""Shared set-up of the routing tests: a notifications file, a store, an outbox, a router, a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from callipso_agent.clock import ManualClock
from callipso_agent.notify.config import NotificationsConfig, parse_notifications
from callipso_agent.notify.router import NotificationRouter, Planned
from callipso_agent.notify.texts import Rendered
from callipso_agent.outbox import Outbox
from callipso_agent.ports import IncidentChange
from callipso_agent.store import Store
from callipso_agent.yamlload import load_yaml_text
from tests.outputs.helpers import open_store
from tests.outputs.memory import MemoryIncidents

PARIS = ZoneInfo("Europe/Paris")

# SYNTHETIC: routing rules written for these tests.
NOTIFICATIONS = """
notifications:
  language: fr
  link: "https://callipso.cd13.fr/incidents/{id}"
  quiet_hours: {start: "22:00", end: "07:00", allow: [P1]}
  channels:
    mail-noc:
      type: email
      smtp: {host: 127.0.0.1, port: 25, starttls: false}
      sender: callipso@cd13.fr
      to: [noc@cd13.fr]
    sms-astreinte:
      type: sms
      url: "http://127.0.0.1:9/"
      username: cd13
      password: {env: CALLIPSO_TEST_UNUSED}
      platform_id: COMMON_API
      platform_partner_id: "4321"
      to: ["+33612345678", "+33698765432"]
    sms-chef:
      type: sms
      url: "http://127.0.0.1:9/"
      username: cd13
      password: {env: CALLIPSO_TEST_UNUSED}
      platform_id: COMMON_API
      platform_partner_id: "4321"
      to: ["+33600000001"]
    teams-noc: {type: teams, flavour: workflow, url: "http://127.0.0.1:9/workflows/noc"}
  routes:
    - name: p1-astreinte
      match: {priorities: [P1], when: [outside_working_hours]}
      events: [opened, acknowledged, resolved]
      notify: [sms-astreinte, teams-noc]
      escalation:
        - {after_minutes: 15, notify: [sms-chef]}
        - {after_minutes: 30, notify: [mail-noc]}
    - name: p1-jour
      match: {priorities: [P1], when: [working_hours]}
      notify: [teams-noc, mail-noc]
    - name: p2
      match: {priorities: [P2]}
      notify: [mail-noc, teams-noc]
    - name: p3-heures-ouvrees
      match: {priorities: [P3], when: [working_hours]}
      notify: [mail-noc]
      defer: true
"""


def config(text: str = NOTIFICATIONS, **overrides: Any) -> NotificationsConfig:
    cfg = parse_notifications(load_yaml_text(text, "notifications.yaml"), "notifications.yaml")
    return cfg.model_copy(update=overrides) if overrides else cfg


def paris(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=PARIS)


@dataclass
class Rig:
    store: Store
    outbox: Outbox
    incidents: MemoryIncidents
    router: NotificationRouter
    clock: ManualClock
    planned: list[Planned] = field(default_factory=list)

    async def on_change(self, change: IncidentChange) -> None:
        self.planned.extend(await self.router.on_change(change))

    def take(self) -> list[Planned]:
        out, self.planned = self.planned, []
        return out


async def make_rig(tmp: Path, start: datetime, cfg: NotificationsConfig | None = None) -> Rig:
    clock = ManualClock(start)
    store = await open_store(tmp / "n.sqlite")
    outbox = Outbox(store.engine, clock)
    incidents = MemoryIncidents(clock)
    router = NotificationRouter(cfg or config(), outbox, incidents, clock)
    rig = Rig(store, outbox, incidents, router, clock)
    incidents.subscribers.append(rig.on_change)
    return rig


class RecordingChannel:
    """A Channel (our own interface) that records what it was asked to send."""

    def __init__(self, name: str, type_: str = "teams") -> None:
        self.name = name
        self.type = type_
        self.sent: list[tuple[Rendered, list[str], str]] = []

    async def send(self, message: Rendered, recipients: Any, *, key: str, meta: Any) -> str:
        self.sent.append((message, list(recipients), key))
        return f"recorded by {self.name}"

    async def close(self) -> None:
        return None
