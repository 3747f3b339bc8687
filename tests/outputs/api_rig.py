"""A running HTTP server (the agent's HttpServer) with the incident API installed, on 127.0.0.1:0."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callipso_agent.api.alertmanager import AlertmanagerReceiver
from callipso_agent.api.auth import TokenAuth, sha256_hex
from callipso_agent.api.incidents import IncidentApi
from callipso_agent.api.server import HttpServer
from callipso_agent.clock import ManualClock
from callipso_agent.collect.cache import LatestCache
from callipso_agent.config.models import ApiToken
from callipso_agent.model import Event, Measurement, PollResult
from callipso_agent.store import Store
from tests.outputs.helpers import open_store
from tests.outputs.memory import MemoryIncidents, MemoryMaintenance

NOC_TOKEN = "noc-7f3a9c2e-token"  # SYNTHETIC test tokens
VIEWER_TOKEN = "viewer-51b0d4-token"
TOKENS = [
    ApiToken(name="noc", sha256=sha256_hex(NOC_TOKEN), scopes=["read", "write"]),
    ApiToken(name="viewer", sha256=sha256_hex(VIEWER_TOKEN), scopes=["read"]),
]


@dataclass
class ApiRig:
    server: HttpServer
    store: Store
    incidents: MemoryIncidents
    maintenance: MemoryMaintenance
    auth: TokenAuth
    clock: ManualClock
    events: list[Event] = field(default_factory=list)
    fail_sink: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.bound_port}"

    async def sink(self, event: Event) -> None:
        if self.fail_sink:
            raise RuntimeError("engine busy")
        self.events.append(event)

    async def close(self) -> None:
        await self.server.stop()
        await self.store.close()


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


async def start_api(tmp: Path, *, open_reads: bool = True, max_failures: int = 5,
                    max_clients: int = 10_000) -> ApiRig:
    clock = ManualClock(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))
    store = await open_store(tmp / "api.sqlite")
    cache = LatestCache()
    cache.update(
        PollResult(
            "ups-hd13-1",
            clock.now(),
            0.2,
            measurements=(
                Measurement("ups-hd13-1", "ups_battery_charge", 97.0, clock.now(), unit="percent"),
            ),
        )
    )
    inventory = {
        "ups-hd13-1": {
            "name": "ups-hd13-1",
            "site": "HD13",
            "family": "eaton_ups",
            "address": "127.0.0.1",
            "services": ["telephonie"],
            "enabled": True,
        }
    }
    server = HttpServer(cache, host="127.0.0.1", port=0, ready=_ready, inventory=lambda: inventory)
    incidents = MemoryIncidents(clock)
    maintenance = MemoryMaintenance(clock)
    auth = TokenAuth(TOKENS, clock, open_reads=open_reads, max_failures=max_failures, window=300,
                     max_clients=max_clients)
    rig = ApiRig(server, store, incidents, maintenance, auth, clock)
    api = IncidentApi(incidents, maintenance, store, clock, alerts=AlertmanagerReceiver(rig.sink, clock))
    api.install(server, auth)
    await server.start()
    return rig
