"""Shared fixtures. Tests use injected clocks, real lab programs on loopback, and no global patching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callipso_agent.store.db import sqlite_url
from tests.helpers.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def example_config() -> Path:
    return ROOT / "config"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (a database per test: ``new_database()``)."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store for the test, on SQLite and on the session's PostgreSQL server in turn."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "callipso.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()
