"""One snmpsim per test module, serving every recording under tests/fixtures/snmp (community = file stem),
and one pysnmp engine per module (its first request costs about a second of set-up). Test modules that
use ``engine`` run on a module-scoped event loop:
``pytestmark = pytest.mark.asyncio(loop_scope="module")``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.snmp import PysnmpEngine
from tests.helpers.polling import all_recordings, shipped_profiles
from tests.helpers.snmp import serve


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSimulator]:
    workdir: Path = tmp_path_factory.mktemp("snmpsim")
    with serve(all_recordings(), workdir) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return shipped_profiles()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[PysnmpEngine]:
    eng = PysnmpEngine()
    yield eng
    eng.close()
