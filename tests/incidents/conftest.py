"""Stores for incident tests: each test runs on SQLite and on a real PostgreSQL server (``store_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callipso_agent.store import Store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()
