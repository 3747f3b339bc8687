"""The store migrates at start (idempotently) and keeps device state across restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect

from callipso_agent.model import PollResult
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url


async def test_migrate_twice_and_persist(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.sqlite")
    s = Store(url)
    await s.migrate()
    await s.migrate()
    t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    await s.save_poll(PollResult("ups-1", t, 0.1, system={"model": "X"}), "ups-mib")
    await s.save_poll(PollResult("ups-1", t, 0.2, error="timeout", error_text="no answer"), None)
    await s.save_poll(PollResult("ups-1", t, 0.2, error="timeout", error_text="no answer"), None)
    await s.close()

    s2 = Store(url)
    await s2.migrate()
    (row,) = await s2.device_states()
    assert row["device"] == "ups-1" and row["profile"] == "ups-mib"
    assert row["consecutive_failures"] == 2 and row["last_error"] == "timeout"
    assert row["system"] == {"model": "X"}
    async with s2.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert {"device_state", "audit_log", "alembic_version"} <= set(tables)
    await s2.close()
