"""Scenario harness: the pipeline on a store and a ManualClock, with helpers to drive devices."""

from __future__ import annotations

from datetime import datetime, timedelta

from callipso_agent.clock import ManualClock
from callipso_agent.config.models import AgentConfig
from callipso_agent.incidents.contract import load_contract
from callipso_agent.incidents.engine import IncidentNotice, IncidentSettings
from callipso_agent.incidents.maintenance import MaintenanceBook, MaintenanceWindow
from callipso_agent.incidents.pipeline import IncidentPipeline
from callipso_agent.rules.loader import load_rules
from callipso_agent.store import Store
from callipso_agent.store.incidents import IncidentRecord
from tests.helpers.estate import DEVICES, SERVICES, SITES, failed, m, poll

RULES = load_rules()
CONTRACT = load_contract()
CONFIG = AgentConfig(sites=SITES, devices=DEVICES, services=SERVICES)


class Scenario:
    def __init__(
        self,
        store: Store,
        clock: ManualClock | None = None,
        *,
        hold: float = 300,
        flap: float = 3600,
        windows: list[MaintenanceWindow] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or ManualClock()
        self.pipeline = IncidentPipeline(
            store,
            CONFIG,
            self.clock,
            rules=RULES,
            contract=CONTRACT,
            maintenance=MaintenanceBook(store, self.clock, windows or []),
            settings=IncidentSettings(hold=hold, flap_window=flap),
        )
        self.engine = self.pipeline.incidents
        self.notices: list[IncidentNotice] = []
        self.engine.subscribe(self.notices.append)

    async def start(self) -> Scenario:
        await self.pipeline.start()
        return self

    @property
    def now(self) -> datetime:
        return self.clock.now()

    async def step(self, seconds: float = 10) -> None:
        await self.pipeline.tick()
        self.clock.advance(seconds)

    async def value(
        self, device: str, metric: str, value: float, labels: dict[str, str] | None = None
    ) -> None:
        await self.pipeline.on_poll(poll(device, self.now, m(device, metric, value, self.now, labels)))

    async def ok(self, device: str) -> None:
        await self.pipeline.on_poll(poll(device, self.now))

    async def fail(self, device: str, error: str = "timeout") -> None:
        await self.pipeline.on_poll(failed(device, self.now, error))

    async def ups(self, device: str, on_battery: bool, seconds: float, step: float = 10) -> None:
        """Poll ``device`` every ``step`` seconds for ``seconds``, ticking in between."""
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            await self.value(device, "ups_on_battery", 1.0 if on_battery else 0.0)
            await self.step(step)

    async def rows(self, key: str | None = None) -> list[IncidentRecord]:
        rows = await self.engine.repo.search()
        return [r for r in rows if key is None or r.key == key]

    def kinds(self, incident_id: int | None = None) -> list[str]:
        return [n.kind for n in self.notices if incident_id is None or n.incident.id == incident_id]
