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


async def test_a_batch_of_polls_keeps_their_order(store_url: str) -> None:
    """One batch with the same device several times: every failure counts, a success in between resets."""
    s = Store(store_url)
    await s.migrate()
    t = [datetime(2026, 3, 2, 9, 0, i, tzinfo=UTC) for i in range(8)]
    fail = {"error": "timeout", "error_text": "no answer"}
    try:
        await s.save_polls([
            (PollResult("a", t[0], 0.1, system={"model": "A"}), "ups-mib"),
            (PollResult("b", t[0], 0.1, **fail), None),
            (PollResult("a", t[1], 0.1, **fail), None),
            (PollResult("b", t[1], 0.1, **fail), None),
            (PollResult("a", t[2], 0.1, **fail), None),
            (PollResult("b", t[2], 0.1, **fail), None),
            (PollResult("c", t[2], 0.1, system={"model": "C"}), "eaton-xups"),
            (PollResult("a", t[3], 0.3, system={"model": "A2"}), "ups-mib"),
            (PollResult("a", t[4], 0.1, error="auth", error_text="wrong community"), None),
        ])
        await s.save_polls([(PollResult("b", t[5], 0.2, **fail), None)])
        rows = {r["device"]: r for r in await s.device_states()}
    finally:
        await s.close()
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert a["consecutive_failures"] == 1 and a["last_error"] == "auth"
    assert a["last_success_at"].replace(tzinfo=UTC) == t[3] and a["system"] == {"model": "A2"}
    assert a["profile"] == "ups-mib" and a["last_poll_at"].replace(tzinfo=UTC) == t[4]
    assert b["consecutive_failures"] == 4 and b["last_success_at"] is None and b["profile"] is None
    assert c["consecutive_failures"] == 0 and c["last_error"] is None and c["system"] == {"model": "C"}
