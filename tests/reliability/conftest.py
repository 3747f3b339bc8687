"""Fixtures shared by the reliability suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.peers import Peers
from tests.helpers.postgres import PostgresServer


@pytest.fixture
def peers() -> Iterator[Peers]:
    """The lab's delivery peers (EasyVista fake, SMTP, SMS fake, Teams fake, webhook receiver), started for one
    test."""
    p = Peers().start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own: the tests stop and restart it under the agent."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
