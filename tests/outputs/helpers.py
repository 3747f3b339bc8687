"""Small shared pieces of the outputs tests (not fakes of third-party systems)."""

from __future__ import annotations

from pathlib import Path

from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url


async def open_store(path: Path) -> Store:
    store = Store(sqlite_url(path))
    await store.migrate()
    return store
