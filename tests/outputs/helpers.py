"""Small shared pieces of the outputs tests (not fakes of third-party systems)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callipso_agent.config.models import AgentSettings
from callipso_agent.incidents.adapters import EngineIncidentSource, EngineMaintenanceSource, notice_to_change
from callipso_agent.outputs_app import Outputs, build_outputs
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url
from tests.incidents.harness import Scenario


async def open_store(path: Path) -> Store:
    store = Store(sqlite_url(path))
    await store.migrate()
    return store


def wire_outputs(sc: Scenario, store: Store, conf: Path) -> Outputs:
    """The outputs of ``conf`` on the scenario's engine, as the daemon wires them (replays included)."""
    engine = sc.engine
    outputs = build_outputs(conf, agent=AgentSettings(), store=store, clock=sc.clock,
                            incidents=EngineIncidentSource(engine), maintenance=EngineMaintenanceSource(engine))

    async def on_notice(notice: Any) -> None:
        await outputs.on_change(notice_to_change(notice, sc.clock.now()))

    engine.subscribe(on_notice, replays=True)
    return outputs
