"""Serve fixture recordings with a real snmpsim for tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from callipso_agent.lab.snmpsim import SnmpSimulator
from tests.helpers.system import missing

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SNMP_FIXTURES = FIXTURES / "snmp"


def recording(name: str) -> Path:
    """Path of a recording under tests/fixtures/snmp by file name (searched in sub-folders)."""
    hits = [p for p in SNMP_FIXTURES.rglob("*") if p.is_file() and (p.name == name or p.stem == name)]
    if not hits:
        raise FileNotFoundError(f"no recording {name!r} under {SNMP_FIXTURES}")
    return hits[0]


@contextmanager
def serve(recordings: Iterable[Path | tuple[str, Path]], workdir: Path,
          v3_users: list[dict[str, str]] | None = None, log_level: str | None = None) -> Iterator[SnmpSimulator]:
    """Start snmpsim serving each recording under a community: its stem, or the name given in a tuple.
    ``log_level="error"`` spares snmpsim a log line per request (it then answers about twice as fast)."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    first = None
    for item in recordings:
        community, src = (item if isinstance(item, tuple) else (item.stem, item))
        shutil.copy(src, data / f"{community}{src.suffix}")
        first = first or community
    try:
        sim = SnmpSimulator(data, v3_users=v3_users, log_level=log_level)
        sim.start()
    except FileNotFoundError as err:
        missing(str(err))
        raise
    try:
        sim.wait_ready(first or "public")
        yield sim
    finally:
        sim.stop()
