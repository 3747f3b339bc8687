"""The store's tests run on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from callipso_agent.store.db import sqlite_url
from tests.helpers.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "callipso.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()
