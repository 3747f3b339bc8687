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
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from callipso_agent.model import PollResult
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
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)
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

    def _poll_statement(self, result: PollResult, profile: str | None) -> Any:
        values: dict[str, Any] = {
            "device": result.device,
            "last_poll_at": result.started,
            "last_duration": result.duration,
        }
        if result.ok:
            values.update(last_success_at=result.started, last_error=None, last_error_text=None,
                          consecutive_failures=0, system=dict(result.system), profile=profile)
            update = dict(values)
        else:
            values.update(last_error=result.error, last_error_text=result.error_text, consecutive_failures=1)
            update = {k: v for k, v in values.items() if k != "consecutive_failures"}
            update["consecutive_failures"] = device_state.c.consecutive_failures + 1
        stmt = self._insert(device_state).values(**values)
        return stmt.on_conflict_do_update(index_elements=[device_state.c.device], set_=update)

    async def save_poll(self, result: PollResult, profile: str | None) -> None:
        await self.save_polls([(result, profile)])

    async def save_polls(self, items: Sequence[tuple[PollResult, str | None]]) -> None:
        """Device states of several polls, in order, in one transaction (one commit, one WAL sync)."""
        if not items:
            return
        statements = [self._poll_statement(r, p) for r, p in items]

        def run(conn: Connection) -> None:
            for stmt in statements:
                conn.execute(stmt)

        async with self.engine.begin() as conn:
            await conn.run_sync(run)

    async def device_states(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(device_state).order_by(device_state.c.device))).mappings().all()
        return [dict(r) for r in rows]

    async def audit(self, at: datetime, actor: str, action: str, target: str | None = None,
                    detail: dict[str, Any] | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(audit_log.insert().values(at=at, actor=actor, action=action, target=target,
                                                         detail=detail or {}))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an incident acknowledged as written survives a power cut
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"
