"""Agents sharing one PostgreSQL: device leases, takeover of a dead agent's devices, singleton jobs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.config.models import Device
from callipso_agent.ha import LeaseManager
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url
from tests.helpers.postgres import PostgresServer

SITES = [f"SITE-{i:02d}" for i in range(7)]
DEVICES = [
    Device(
        name=f"{kind}-{s.lower()}",
        site=s,
        family="eaton-ups",
        address=f"{kind}.{s.lower()}.example",
        snmp="c",
    )
    for s in SITES
    for kind in ("ups", "gw", "probe")
]
TTL = 40.0  # polls every 60 s: a dead agent's devices must move within one interval


@pytest.fixture
async def pg_url(postgres_server: PostgresServer) -> str:
    return await postgres_server.new_database()


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[Store]]:
    """One store object (engine, connection pool) per agent, as separate processes would have."""
    made = [Store(pg_url) for _ in range(5)]
    await made[0].migrate()
    try:
        yield made
    finally:
        for s in made:
            await s.close()


def sites_of(names: set[str]) -> set[str]:
    return {d.site for d in DEVICES if d.name in names}


async def test_agents_share_the_estate_without_overlap(stores: list[Store]) -> None:
    clock = ManualClock()
    a, b = (LeaseManager(stores[i], f"agent-{i}", clock, ttl=TTL) for i in range(2))
    alone = await a.owned_devices(DEVICES)
    assert alone == {d.name for d in DEVICES}
    assert await b.owned_devices(DEVICES) == set()  # a's leases are valid: b waits for its share
    for _ in range(2):
        clock.advance(a.renew_every)
        mine_a = await a.owned_devices(DEVICES)  # a sees two live agents and gives back its extra units
        mine_b = await b.owned_devices(DEVICES)
    assert mine_a and mine_b and not (mine_a & mine_b)
    assert mine_a | mine_b == {d.name for d in DEVICES}
    assert {len(sites_of(mine_a)), len(sites_of(mine_b))} == {3, 4}
    for site in SITES:  # a site's devices stay together on one agent
        assert len({d.name in mine_a for d in DEVICES if d.site == site}) == 1
    assert sorted(await a.live_agents()) == ["agent-0", "agent-1"]


async def test_dead_agent_devices_are_taken_over_within_one_interval(stores: list[Store]) -> None:
    clock = ManualClock()
    a, b = (
        LeaseManager(stores[0], "agent-a", clock, ttl=TTL),
        LeaseManager(stores[1], "agent-b", clock, ttl=TTL),
    )
    for _ in range(3):
        await a.owned_devices(DEVICES)
        await b.owned_devices(DEVICES)
        clock.advance(a.renew_every)
    mine_a = await a.owned_devices(DEVICES)
    last_renewal = clock.now()
    assert mine_a  # agent-a is killed here: it never renews again
    taken_at = None
    while taken_at is None:
        clock.advance(b.renew_every)
        if await b.owned_devices(DEVICES) == {d.name for d in DEVICES}:
            taken_at = clock.now()
    assert (taken_at - last_renewal).total_seconds() <= 60.0
    assert await b.live_agents() == ["agent-b"]


async def test_concurrent_claims_never_overlap(stores: list[Store]) -> None:
    clock = ManualClock()
    agents = [LeaseManager(stores[i], f"agent-{i}", clock, ttl=TTL) for i in range(5)]
    rng = random.Random(7)
    for _ in range(6):
        rng.shuffle(agents)
        owned = await asyncio.gather(*(a.owned_devices(DEVICES) for a in agents))
        seen: set[str] = set()
        for mine in owned:
            assert not (mine & seen)
            seen |= mine
        clock.advance(agents[0].renew_every)
    assert seen == {d.name for d in DEVICES}
    assert max(len(sites_of(m)) for m in owned) <= 2  # ceil(7 sites / 5 agents)


async def test_graceful_release_hands_over_at_once(stores: list[Store]) -> None:
    clock = ManualClock()
    a, b = (
        LeaseManager(stores[0], "agent-a", clock, ttl=TTL),
        LeaseManager(stores[1], "agent-b", clock, ttl=TTL),
    )
    await a.owned_devices(DEVICES)
    await b.owned_devices(DEVICES)
    await a.release()
    assert await b.owned_devices(DEVICES) == {d.name for d in DEVICES}


async def test_singleton_job_runs_once_per_key(stores: list[Store]) -> None:
    clock = ManualClock()
    agents = [LeaseManager(stores[i], f"agent-{i}", clock) for i in range(4)]
    runs: list[str] = []

    async def meteo(agent: LeaseManager) -> None:
        async with agent.singleton("meteo", run_key="2026-01-05") as mine:
            if mine:
                runs.append(agent.agent_id)
                await asyncio.sleep(0)

    await asyncio.gather(*(meteo(a) for a in agents))
    assert len(runs) == 1
    clock.advance(3600)
    await asyncio.gather(*(meteo(a) for a in agents))  # later the same day: already done
    assert len(runs) == 1


async def test_abandoned_or_failed_runs_are_taken_over(stores: list[Store]) -> None:
    clock = ManualClock()
    a, b = LeaseManager(stores[0], "agent-a", clock, job_ttl=300), LeaseManager(stores[1], "agent-b", clock)
    crashed = a.singleton("report", run_key="2026-W02")
    assert await crashed.__aenter__() is True  # agent-a dies inside the job: no exit
    async with b.singleton("report", run_key="2026-W02") as mine:
        assert mine is False
    clock.advance(301)
    async with b.singleton("report", run_key="2026-W02") as mine:
        assert mine is True
    with pytest.raises(RuntimeError):
        async with a.singleton("export", run_key="k") as mine:
            assert mine
            raise RuntimeError("mail server down")
    async with b.singleton("export", run_key="k") as mine:
        assert mine is True  # the failed run was freed


async def test_plain_lock_is_exclusive_then_free(stores: list[Store]) -> None:
    clock = ManualClock()
    a, b = LeaseManager(stores[0], "agent-a", clock), LeaseManager(stores[1], "agent-b", clock)
    async with a.singleton("purge") as first:
        async with b.singleton("purge") as second:
            assert (first, second) == (True, False)
    async with b.singleton("purge") as again:
        assert again is True


async def test_single_agent_on_sqlite_owns_everything(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "s.sqlite"))
    await store.migrate()
    try:
        clock = ManualClock()
        agent = LeaseManager(store, "solo", clock)
        assert await agent.owned_devices(DEVICES) == {d.name for d in DEVICES}
        fewer = [d for d in DEVICES if d.site != "SITE-00"]
        clock.advance(agent.renew_every)
        assert await agent.owned_devices(fewer) == {d.name for d in fewer}
        assert "SITE-00" not in agent.owned_units
        async with agent.singleton("meteo", run_key="d") as mine:
            assert mine
    finally:
        await store.close()
