"""High availability: several agents sharing one PostgreSQL store.

Devices are leased to live agents through lease rows (``ha_leases``), one lease per *unit*: a site by
default, so that a site's devices (and its site correlation) stay on one agent. Every agent calls
:meth:`LeaseManager.owned_devices` every :attr:`LeaseManager.renew_every` seconds: it renews its own
leases and heartbeat, gives back leases above its fair share (``ceil(units / live agents)``) so that a
new agent gets work, and claims free or expired units up to that share. A dead agent stops renewing:
its heartbeat and leases expire after ``ttl`` seconds and the others claim its units at their next
call, so its devices are taken over within ``ttl + renew_every``; choose ``ttl`` at most two thirds of
the poll interval to stay within one interval.

Singleton jobs (the météo, reports) run on one agent only::

    async with leases.singleton("meteo", run_key="2026-01-05") as mine:
        if mine:
            await send_meteo()

With a ``run_key`` the job runs once per key across all agents (a run whose agent died before finishing
is taken over after ``ttl``); without one it is a plain mutual-exclusion lock.

Every claim is one conditional statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``) in
its own transaction, so agents never hold several row locks at once (no deadlock) and two agents can
never both win a unit. Timestamps come from the injected clock: keep the agents' clocks in sync (NTP).
The same code runs on SQLite (a single agent then owns everything).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from callipso_agent.clock import Clock
from callipso_agent.config.models import Device
from callipso_agent.store.db import Store
from callipso_agent.store.tables import ha_agents, ha_job_runs, ha_leases

log = structlog.get_logger()

LOCK_KEY = "-"  # run_key of a plain lock


def by_site(device: Device) -> str:
    return device.site


class LeaseManager:
    def __init__(
        self,
        store: Store,
        agent_id: str,
        clock: Clock,
        *,
        ttl: float = 40.0,
        unit_of: Callable[[Device], str] = by_site,
        job_ttl: float = 600.0,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.store = store
        self.agent_id = agent_id
        self.clock = clock
        self.ttl = ttl
        self.job_ttl = job_ttl
        self.unit_of = unit_of
        self._units: set[str] = set()

    @property
    def renew_every(self) -> float:
        """How often to call :meth:`owned_devices` (a third of the lease time)."""
        return self.ttl / 3

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.store.dialect == "postgresql" else sqlite_insert)(table)

    async def owned_devices(self, all_devices: Iterable[Device]) -> set[str]:
        """Renew, rebalance and claim leases; return the names of the devices this agent polls now."""
        devices = [d for d in all_devices if d.enabled]
        units: dict[str, list[str]] = {}
        for d in devices:
            units.setdefault(self.unit_of(d), []).append(d.name)
        now = self.clock.now()
        expires = now + timedelta(seconds=self.ttl)
        engine = self.store.engine
        async with engine.begin() as conn:
            await conn.execute(
                self._insert(ha_agents)
                .values(agent=self.agent_id, started_at=now, expires_at=expires)
                .on_conflict_do_update(index_elements=[ha_agents.c.agent], set_={"expires_at": expires})
            )
            mine = set(
                (
                    await conn.execute(
                        update(ha_leases)
                        .where(ha_leases.c.owner == self.agent_id, ha_leases.c.unit.in_(list(units)))
                        .values(expires_at=expires)
                        .returning(ha_leases.c.unit)
                    )
                ).scalars()
            )
            await conn.execute(
                delete(ha_leases).where(
                    ha_leases.c.owner == self.agent_id, ha_leases.c.unit.not_in(list(units))
                )
            )
            live = (
                await conn.execute(
                    select(func.count()).select_from(ha_agents).where(ha_agents.c.expires_at > now)
                )
            ).scalar_one()
        share = math.ceil(len(units) / max(1, live)) if units else 0
        if len(mine) > share:
            extra = sorted(mine)[share:]
            async with engine.begin() as conn:
                await conn.execute(
                    delete(ha_leases).where(ha_leases.c.owner == self.agent_id, ha_leases.c.unit.in_(extra))
                )
            mine -= set(extra)
            log.info("leases_released", agent=self.agent_id, units=extra, share=share, live_agents=live)
        else:
            for unit in sorted(set(units) - mine):
                if len(mine) >= share:
                    break
                if await self._claim(unit, now, expires):
                    mine.add(unit)
        gained, lost = mine - self._units, self._units - mine
        if gained or lost:
            log.info(
                "leases_changed",
                agent=self.agent_id,
                gained=sorted(gained),
                lost=sorted(lost),
                owned=len(mine),
                units=len(units),
                live_agents=live,
            )
        self._units = mine
        return {name for unit in mine for name in units[unit]}

    async def _claim(self, unit: str, now: Any, expires: Any) -> bool:
        stmt = (
            self._insert(ha_leases)
            .values(unit=unit, owner=self.agent_id, acquired_at=now, expires_at=expires)
            .on_conflict_do_update(
                index_elements=[ha_leases.c.unit],
                set_={"owner": self.agent_id, "acquired_at": now, "expires_at": expires},
                where=ha_leases.c.expires_at <= now,
            )
            .returning(ha_leases.c.owner)
        )
        async with self.store.engine.begin() as conn:
            owner = (await conn.execute(stmt)).scalar_one_or_none()
        return owner == self.agent_id

    @property
    def owned_units(self) -> frozenset[str]:
        return frozenset(self._units)

    async def live_agents(self) -> list[str]:
        async with self.store.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(ha_agents.c.agent)
                        .where(ha_agents.c.expires_at > self.clock.now())
                        .order_by(ha_agents.c.agent)
                    )
                )
                .scalars()
                .all()
            )
        return list(rows)

    async def release(self) -> None:
        """Graceful stop: give every lease back at once, so the others take over without waiting."""
        async with self.store.engine.begin() as conn:
            await conn.execute(delete(ha_leases).where(ha_leases.c.owner == self.agent_id))
            await conn.execute(delete(ha_agents).where(ha_agents.c.agent == self.agent_id))
        self._units = set()
        log.info("leases_released_all", agent=self.agent_id)

    @asynccontextmanager
    async def singleton(
        self, name: str, *, run_key: str | None = None, ttl: float | None = None
    ) -> AsyncIterator[bool]:
        """Yield True on the one agent that runs job ``name`` (for ``run_key``), False on the others.

        ``ttl`` (default ``job_ttl``) must exceed the job's duration: past it, an unfinished run counts as
        abandoned and another agent may take it over.
        """
        key = run_key if run_key is not None else LOCK_KEY
        now = self.clock.now()
        expires = now + timedelta(seconds=ttl if ttl is not None else self.job_ttl)
        takeable = and_(ha_job_runs.c.finished_at.is_(None), ha_job_runs.c.expires_at <= now)
        if run_key is None:
            takeable = or_(takeable, ha_job_runs.c.finished_at.is_not(None))
        stmt = (
            self._insert(ha_job_runs)
            .values(name=name, run_key=key, owner=self.agent_id, started_at=now, expires_at=expires)
            .on_conflict_do_update(
                index_elements=[ha_job_runs.c.name, ha_job_runs.c.run_key],
                set_={"owner": self.agent_id, "started_at": now, "expires_at": expires, "finished_at": None},
                where=takeable,
            )
            .returning(ha_job_runs.c.owner)
        )
        async with self.store.engine.begin() as conn:
            acquired = (await conn.execute(stmt)).scalar_one_or_none() == self.agent_id
        if acquired:
            log.info("singleton_acquired", agent=self.agent_id, job=name, run_key=run_key)
        where = and_(
            ha_job_runs.c.name == name, ha_job_runs.c.run_key == key, ha_job_runs.c.owner == self.agent_id
        )
        try:
            yield acquired
        except BaseException:
            if acquired:  # failed: free it so that it can run again (here or on another agent)
                async with self.store.engine.begin() as conn:
                    await conn.execute(delete(ha_job_runs).where(where))
            raise
        if acquired:
            async with self.store.engine.begin() as conn:
                await conn.execute(update(ha_job_runs).where(where).values(finished_at=self.clock.now()))
