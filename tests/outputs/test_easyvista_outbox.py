"""Tickets through the outbox: outages, restarts, lost replies and a killed worker never give an incident
zero or two tickets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callipso_agent.clock import Clock, ManualClock
from callipso_agent.config.secrets import Secret
from callipso_agent.itsm import EasyVistaClient, EasyVistaDeliverer, ItsmPublisher, TicketMapper
from callipso_agent.itsm.config import TicketMapping
from callipso_agent.itsm.fake_easyvista import FakeEasyVista
from callipso_agent.model import IncidentState
from callipso_agent.notify.texts import Texts
from callipso_agent.outbox import Backoff, JobState, Outbox, OutboxWorker
from callipso_agent.store import Store
from tests.outputs.helpers import open_store
from tests.outputs.memory import MemoryIncidents

ROOT = Path(__file__).resolve().parents[2]

MAPPING = TicketMapping.model_validate(
    {
        "catalog_guid": "7E3A3D4B-5C1A-4C4F-9E55-2F1C0B6B2A10",
        "priorities": {
            "P1": {"urgency_id": 1, "severity_id": 1, "impact_id": 1},
            "P2": {"urgency_id": 2, "severity_id": 2, "impact_id": 2},
        },
        "sites": {"HD13": {"location_code": "LOC-HD13", "department_code": "DSI-TEL"}},
        "custom_fields": {"e_callipso_key": "{key}", "e_equipement": "{device}"},
        "comment": {"action_type_id": 12, "group_id": 3},
    }
)


@dataclass
class Rig:
    """One agent "process": store, outbox, worker and EasyVista client over a given SQLite file."""

    store: Store
    outbox: Outbox
    worker: OutboxWorker
    client: EasyVistaClient

    async def close(self) -> None:
        await self.client.close()
        await self.store.close()


async def rig(
    db: Path, fake: FakeEasyVista, incidents: MemoryIncidents, clock: Clock, *, timeout: float = 5.0
) -> Rig:
    store = await open_store(db)
    outbox = Outbox(store.engine, clock, backoff=Backoff(base=10, factor=2, maximum=300, jitter=0.5))
    client = EasyVistaClient(
        fake.url, fake.account, username="rest", password=Secret("s3cret"), timeout=timeout
    )
    deliverer = EasyVistaDeliverer(client, incidents, outbox, TicketMapper(MAPPING, Texts()))
    worker = OutboxWorker(outbox, {"itsm": deliverer}, clock=clock, timeline=incidents, lease_seconds=60)
    return Rig(store, outbox, worker, client)


def publisher(outbox: Outbox) -> ItsmPublisher:
    return ItsmPublisher(outbox, TicketMapper(MAPPING, Texts()), reference_prefix="CALLIPSO-HD13")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 22, 30, tzinfo=UTC))


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeEasyVista]:
    f = FakeEasyVista(users={"rest": "s3cret"}, number_pattern="IZV%y%m%d_%05d", clock=clock)
    await f.start()
    yield f
    await f.stop()


async def test_outage_then_restart_gives_exactly_one_ticket_each(
    tmp_path: Path, fake: FakeEasyVista, clock: ManualClock
) -> None:
    db = tmp_path / "agent.sqlite"
    incidents = MemoryIncidents(clock)
    first = await rig(db, fake, incidents, clock)
    incidents.subscribers.append(publisher(first.outbox).on_change)
    await fake.down()
    opened = [
        await incidents.open(title=f"Lien T2 perdu {n}", device=f"oxe-{n}", priority="P1" if n == 0 else "P2")
        for n in range(4)
    ]
    await incidents.acknowledge(opened[0].id, "noc", "on regarde")
    assert await first.worker.drain() == 4  # the creates fail; the comment waits behind its create
    assert {j.state for j in await first.outbox.jobs(states=[JobState.FAILED])} == {JobState.FAILED}
    clock.advance(3600)
    assert await first.worker.drain() == 4  # still down
    await first.close()  # the agent stops

    await fake.up()
    clock.advance(3600)
    second = await rig(db, fake, incidents, clock)  # a new process over the same file
    incidents.subscribers[:] = [publisher(second.outbox).on_change]
    assert await second.worker.drain() == 5
    await incidents.resolve(opened[1].id, "noc", "lien rétabli")
    assert await second.worker.drain() == 1
    assert await second.outbox.backlog_size() == 0

    assert len(fake.tickets) == 4
    for inc in opened:
        ext = publisher(second.outbox).external_reference(inc)
        (ticket,) = fake.by_external_reference(ext)
        assert incidents.incidents[inc.id].itsm_ref == ticket.rfc_number
        assert ticket.rfc_number.startswith("IZV260106_")
        assert ticket.fields["e_callipso_key"] == inc.key and ticket.fields["location_code"] == "LOC-HD13"
        assert "Équipement : " + str(inc.device) in ticket.fields["description"]
    assert (
        fake.by_external_reference(publisher(second.outbox).external_reference(opened[0]))[0].fields[
            "urgency_id"
        ]
        == 1
    )
    (acked,) = fake.by_external_reference(publisher(second.outbox).external_reference(opened[0]))
    assert acked.actions == [
        {"action_type_id": 12, "group_id": 3, "description": "Pris en compte par noc : on regarde"}
    ]
    (resolved,) = fake.by_external_reference(publisher(second.outbox).external_reference(opened[1]))
    assert resolved.status == "solved" and resolved.closed_with == {
        "comment": "Résolu par noc : lien rétabli",
        "status_guid": "DC97DD1D-0F35-4153-B0E1-0F2E0155365D",
    }
    texts = [e.text for e in incidents.entries(opened[0].id, "delivery")]
    assert texts[0].startswith("Ticket EasyVista : échec de la tentative 1 (cannot connect to EasyVista")
    assert texts[-2].startswith("Ticket EasyVista : livré (ticket IZV260106_")
    assert texts[-1].startswith("Ticket EasyVista : livré (commentaire ajouté au ticket IZV260106_")
    await second.close()


@pytest.mark.parametrize("fault", ["reply_lost", "hang_after_commit"])
async def test_lost_reply_is_found_by_external_reference(
    tmp_path: Path, fake: FakeEasyVista, clock: ManualClock, fault: str
) -> None:
    incidents = MemoryIncidents(clock)
    r = await rig(tmp_path / "a.sqlite", fake, incidents, clock, timeout=0.5)
    incidents.subscribers.append(publisher(r.outbox).on_change)
    inc = await incidents.open(priority="P1")
    fake.inject(fault)
    await r.worker.drain()
    (job,) = await r.outbox.jobs()
    assert job.state is JobState.FAILED and job.uncertain
    assert len(fake.tickets) == 1  # EasyVista did create it
    clock.advance(600)
    await r.worker.drain()
    (job,) = await r.outbox.jobs()
    assert job.state is JobState.DONE
    assert len(fake.tickets) == 1
    (ticket,) = fake.tickets.values()
    assert incidents.incidents[inc.id].itsm_ref == ticket.rfc_number == job.result["ref"]  # type: ignore[index]
    searches = [p for m, p, _s in fake.log if m == "GET" and "search=" in p]
    assert len(searches) == 1 and "external_reference" in searches[0]
    assert incidents.entries(inc.id, "delivery")[-1].text.endswith("retrouvé (créé par un essai précédent))")
    await r.close()


async def test_worker_killed_mid_delivery(tmp_path: Path, fake: FakeEasyVista) -> None:
    """A worker process is killed (SIGKILL) after EasyVista committed the ticket but before it heard back."""
    db = tmp_path / "agent.sqlite"
    from callipso_agent.clock import SystemClock

    incidents = MemoryIncidents(SystemClock())
    store = await open_store(db)
    outbox = Outbox(store.engine, SystemClock())
    pub = publisher(outbox)
    incidents.subscribers.append(pub.on_change)
    inc = await incidents.open(priority="P1")
    await store.close()
    fake.inject("hang_after_commit")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.outputs.worker_process",
        str(db),
        fake.url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        async with asyncio.timeout(30):
            while not fake.tickets:
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(fake.tickets) == 1

    later = ManualClock(datetime.now(UTC) + timedelta(hours=1))  # the dead worker's lease has run out
    r = await rig(db, fake, incidents, later)
    (stuck,) = await r.outbox.jobs()
    assert stuck.state is JobState.IN_FLIGHT
    assert await r.worker.drain() == 1
    (job,) = await r.outbox.jobs()
    assert job.state is JobState.DONE and job.uncertain and job.attempts == 2
    (ticket,) = fake.tickets.values()
    assert ticket.fields["external_reference"] == pub.external_reference(inc)
    assert incidents.incidents[inc.id].itsm_ref == ticket.rfc_number
    assert incidents.incidents[inc.id].state is IncidentState.OPEN
    await r.close()
