"""SQLite statements make one trip to the database thread each, with the stock adapter's results and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every function aiosqlite queues for its thread, by name."""
    seen: list[str] = []
    real = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return seen


async def test_a_statement_is_one_trip(tmp_path: Path, trips: list[str]) -> None:
    store = Store(sqlite_url(tmp_path / "s.sqlite"))
    await store.migrate()
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
        trips.clear()
        await conn.execute(text("INSERT INTO t VALUES (:k, :v)"), [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
        assert trips == ["_run"]  # executemany: one trip for the batch
        trips.clear()
        rows = (await conn.execute(text("SELECT k, v FROM t ORDER BY k"))).all()
        assert [tuple(r) for r in rows] == [("a", 1), ("b", 2)]
        assert trips == ["_run"]  # execute, fetch and close in one trip (the stock adapter makes four)
        trips.clear()
        result = await conn.execute(text("UPDATE t SET v = v + 10 WHERE k = 'a'"))
        assert result.rowcount == 1 and trips == ["_run"]
        inserted = await conn.execute(text("INSERT INTO t VALUES ('c', 3) RETURNING v"))
        assert inserted.scalar_one() == 3
        trips.clear()
    assert trips == ["commit"]  # and no rollback when the pool takes the committed connection back
    trips.clear()
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("SELECT sum(v) FROM t"))).scalar_one() == 11 + 2 + 3
    assert trips == ["_run"]  # a read opens no transaction: nothing to roll back
    await store.close()


async def test_errors_are_sqlalchemy_errors_and_roll_back(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "s.sqlite"))
    await store.migrate()
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO t VALUES ('a')"))
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('b')"))
            await conn.execute(text("INSERT INTO t VALUES ('a')"))
    with pytest.raises(OperationalError, match="no such table"):
        async with store.engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    async with store.engine.connect() as conn:  # the failed transaction left nothing, the connection works
        assert (await conn.execute(text("SELECT k FROM t"))).scalars().all() == ["a"]
    await store.close()


async def test_the_sqlite_pragmas_still_apply(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "s.sqlite"))
    await store.migrate()
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 2  # FULL
    await store.close()
