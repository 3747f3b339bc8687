"""The store: engine lifecycle, migrations at start, and small repositories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from callipso_agent.model import PollResult
from callipso_agent.store.sqlite_driver import one_trip_dbapi
from callipso_agent.store.tables import audit_log, device_state

log = structlog.get_logger()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # SQLite has one writer at a time: the agent's writers queue for one connection in order, rather
            # than each taking its own and fighting for the file lock (``database is locked`` once
            # busy_timeout runs out, when thousands of polls keep the event loop busy). A file needs no ping.
            extra: dict[str, Any] = {}
            if make_url(url).get_driver_name() == "aiosqlite":
                extra["module"] = one_trip_dbapi()  # one trip to the database thread per statement, not four
            self.engine: AsyncEngine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=120,
                                                           **extra)
        else:
            # a database server's connections can be dropped under the pool (restart, failover): ping them
            self.engine = create_async_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # several agents may start at once on a fresh database: one migrates, the others wait
                await conn.execute(text("SELECT pg_advisory_xact_lock(741013)"))
            await conn.run_sync(_upgrade)
        log.info("store_migrated", dialect=self.dialect)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
            return True
        except Exception:  # readiness probe reports, never raises
            return False

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    def _poll_upsert(self, ok: bool) -> Any:
        """One upsert of a device's state for many rows (executemany): a success rewrites the row, a failure
        keeps the last success and counts one more consecutive failure."""
        stmt = self._insert(device_state)
        columns = _OK_COLUMNS if ok else _FAILED_COLUMNS
        update: dict[str, Any] = {c: stmt.excluded[c] for c in columns if c != "device"}
        if not ok:
            update["consecutive_failures"] = device_state.c.consecutive_failures + 1
        return stmt.on_conflict_do_update(index_elements=[device_state.c.device], set_=update)

    async def save_poll(self, result: PollResult, profile: str | None) -> None:
        await self.save_polls([(result, profile)])

    async def save_polls(self, items: Sequence[tuple[PollResult, str | None]]) -> None:
        """Device states of several polls, in order, in one transaction (one commit, one WAL sync).

        The rows go in a few executemany calls (a run of successes, a run of failures, a new run when a
        device comes back in the same batch, so that every failure is counted in order): one round trip to
        the database per run rather than one per poll, so the write lock is held for milliseconds even when
        the event loop is busy with thousands of polls."""
        if not items:
            return
        runs: list[tuple[bool, list[dict[str, Any]]]] = []
        seen: set[str] = set()
        for result, profile in items:
            if not runs or runs[-1][0] != result.ok or result.device in seen:
                runs.append((result.ok, []))
                seen = set()
            seen.add(result.device)
            runs[-1][1].append(_poll_row(result, profile))
        statements = [(self._poll_upsert(ok), rows) for ok, rows in runs]

        async with self.engine.begin() as conn:
            for stmt, rows in statements:
                await conn.execute(stmt, rows)

    async def device_states(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(device_state).order_by(device_state.c.device))).mappings().all()
        return [dict(r) for r in rows]

    async def audit(self, at: datetime, actor: str, action: str, target: str | None = None,
                    detail: dict[str, Any] | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(audit_log.insert().values(at=at, actor=actor, action=action, target=target,
                                                         detail=detail or {}))


_OK_COLUMNS = ("device", "last_poll_at", "last_duration", "last_success_at", "last_error", "last_error_text",
               "consecutive_failures", "system", "profile")
_FAILED_COLUMNS = ("device", "last_poll_at", "last_duration", "last_error", "last_error_text",
                   "consecutive_failures")


def _poll_row(result: PollResult, profile: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"device": result.device, "last_poll_at": result.started,
                           "last_duration": result.duration}
    if result.ok:
        row.update(last_success_at=result.started, last_error=None, last_error_text=None,
                   consecutive_failures=0, system=dict(result.system), profile=profile)
    else:
        row.update(last_error=result.error, last_error_text=result.error_text, consecutive_failures=1)
    return row


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an incident acknowledged as written survives a power cut
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"
