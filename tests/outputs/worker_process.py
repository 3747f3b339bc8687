"""A delivery worker in its own process, for the kill -9 test.

``python -m tests.outputs.worker_process DB URL``.

It delivers the outbox's ITSM jobs to the (fake) EasyVista at URL until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callipso_agent.clock import SystemClock
from callipso_agent.config.secrets import Secret
from callipso_agent.itsm import EasyVistaClient, EasyVistaDeliverer, TicketMapper
from callipso_agent.itsm.config import TicketMapping
from callipso_agent.model import IncidentView
from callipso_agent.notify.texts import Texts
from callipso_agent.outbox import Outbox, OutboxWorker
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url


class NoIncidents:
    """This process never gets as far as recording anything on an incident."""

    async def get(self, incident_id: int) -> IncidentView | None:
        return None

    async def set_itsm_ref(self, incident_id: int, ref: str) -> None:
        print(f"recorded {ref}", flush=True)

    async def add_timeline(
        self, incident_id: int, kind: str, text: str, data: Mapping[str, Any] | None = None
    ) -> None:
        print(f"timeline {text}", flush=True)


async def main(db: Path, url: str) -> None:
    store = Store(sqlite_url(db))
    clock = SystemClock()
    outbox = Outbox(store.engine, clock)
    client = EasyVistaClient(url, "50004", username="rest", password=Secret("s3cret"), timeout=600)
    mapper = TicketMapper(TicketMapping(catalog_code="INC_TELEPHONIE"), Texts())
    deliverer = EasyVistaDeliverer(client, NoIncidents(), outbox, mapper)  # type: ignore[arg-type]
    worker = OutboxWorker(
        outbox, {"itsm": deliverer}, clock=clock, timeline=NoIncidents(), lease_seconds=900, poll_interval=0.1
    )
    print("worker ready", flush=True)
    await worker.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
