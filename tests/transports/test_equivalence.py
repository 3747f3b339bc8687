"""FastSnmpClient and PysnmpClient give the same answers from a real snmpsim, for every recording under
tests/fixtures/snmp, in v2c and v1: full walks, range walks on table columns, GETs of present and absent OIDs
and GETNEXTs.

snmpsim keeps at most 31 recordings open (it re-reads the others on every request), so the recordings are
served by a few snmpsim processes of at most 23 each. A v1 walk costs one request per varbind, and pysnmp and
snmpsim are slow at it: recordings of more than ``V1_FULL_WALK_MAX`` records get a v1 walk of their first
table columns instead of a full one (``CALLIPSO_SNMP_EQUIVALENCE_FULL=1`` walks them all).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.transports import ber
from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine, SnmpValue, Varbinds
from tests.helpers.polling import all_recordings
from tests.helpers.snmp import serve

pytestmark = [pytest.mark.system, pytest.mark.slow]

PER_SNMPSIM = 23
V1_FULL_WALK_MAX = 80
FULL = os.environ.get("CALLIPSO_SNMP_EQUIVALENCE_FULL") == "1"
RECORDINGS = all_recordings()


def variation_oids(path: Path) -> set[str]:
    """OIDs served through a snmpsim variation module (their values change with time)."""
    out = set()
    if path.suffix != ".snmprec":
        return out
    for line in path.read_bytes().decode("latin-1").splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3 and ":" in parts[1] and not parts[0].startswith("#"):
            out.add(parts[0].strip("."))
    return out


def record_count(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line.strip() and not line.startswith(b"#"))


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SnmpSimulator]]:
    """Recording stem -> the snmpsim serving it (community = stem)."""
    by_stem: dict[str, SnmpSimulator] = {}
    with ExitStack() as stack:
        for i in range(0, len(RECORDINGS), PER_SNMPSIM):
            shard = RECORDINGS[i : i + PER_SNMPSIM]
            sim = stack.enter_context(serve(shard, tmp_path_factory.mktemp(f"snmpsim{i}"), log_level="error"))
            by_stem.update({p.stem: sim for p in shard})
        yield by_stem


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines() -> AsyncIterator[tuple[FastSnmpEngine, PysnmpEngine]]:
    fast, slow = FastSnmpEngine(), PysnmpEngine()
    yield fast, slow
    fast.close()
    slow.close()


def masked(varbinds: Varbinds | dict[str, SnmpValue], variable: set[str]) -> Any:
    """Values of variation-served OIDs reduced to their type."""
    items = varbinds.items() if isinstance(varbinds, dict) else varbinds
    return [(o, SnmpValue(v.type, None) if o in variable else v) for o, v in items]


def columns(walk: Varbinds, n: int) -> list[tuple[str, str, str]]:
    """Up to ``n`` (entry, first column, last column) ranges of the tables seen in a walk."""
    parents: dict[str, list[str]] = {}
    for oid, _ in walk:
        col = oid.rsplit(".", 1)[0]
        parents.setdefault(col, []).append(oid)
    cols = [c for c, rows in parents.items() if len(rows) >= 2 and c.count(".") >= 4]
    entries: dict[str, list[str]] = {}
    for c in cols:
        entries.setdefault(c.rsplit(".", 1)[0], []).append(c)
    out = []
    for entry, cs in entries.items():
        out.append((entry, cs[0], cs[min(2, len(cs) - 1)]))
    step = max(1, len(out) // n)
    return out[::step][:n]


def probes(walk: Varbinds) -> tuple[list[str], list[str]]:
    """OIDs to GET (present ones spread over the walk, enough for two chunks, and absent ones) and to
    GETNEXT (present, prefixes, absent, past the end)."""
    present = [o for o, _ in walk]
    step = max(1, len(present) // 40)
    gets = present[::step][:40]
    absent = ["1.3.6.1.2.1.1.99.0", "1.3.6.1.4.1.99999.1.0"]
    if present:
        absent += [present[0] + ".0", present[-1].rsplit(".", 1)[0]]
    gets = gets[:20] + absent + gets[20:]
    nexts = ["1.3.6.1.2.1.1", "1.3.6.1.2.1.33.1", "1.3.6.1.4.1", *present[:: max(1, len(present) // 5)][:5]]
    return gets, nexts


class Pair:
    """The same device through both clients."""

    def __init__(self, engines: tuple[FastSnmpEngine, PysnmpEngine], sim: SnmpSimulator, community: str,
                 version: str) -> None:
        cred = SnmpV2Credential(version=version, community=SecretRef(env="UNUSED_IN_TESTS"))  # type: ignore[arg-type]
        secrets = {"community": Secret(community)}
        self.fast = FastSnmpClient(engines[0], sim.host, sim.port, cred, secrets, timeout=10.0, retries=2)
        self.slow = PysnmpClient(engines[1], sim.host, sim.port, cred, secrets, timeout=10.0, retries=2)

    async def both(self, method: str, *args: Any) -> tuple[Any, Any]:
        return (await getattr(self.fast, method)(*args), await getattr(self.slow, method)(*args))


async def compare(name: str, engines: tuple[FastSnmpEngine, PysnmpEngine], sim: SnmpSimulator,
                  path: Path) -> list[str]:
    """Differences between the two clients for one recording (empty when they agree)."""
    diffs: list[str] = []
    variable = variation_oids(path)

    def check(what: str, a: Any, b: Any) -> None:
        if isinstance(a, (list, dict)):
            a, b = masked(a, variable), masked(b, variable)
        if a != b:
            first = next((f"{x} != {y}" for x, y in zip(a, b, strict=False) if x != y), f"{len(a)} != {len(b)}")
            diffs.append(f"{name} {what}: {first}")

    v2 = Pair(engines, sim, name, "2c")
    walk, ref = await v2.both("walk", "1.3.6.1")
    check("v2c walk 1.3.6.1", walk, ref)
    if not walk and record_count(path) > 2:
        diffs.append(f"{name}: empty v2c walk")
    gets, nexts = probes(ref)
    ranges = columns(ref, 3)
    v1 = Pair(engines, sim, name, "1")
    for entry, first, last in ranges:
        check(f"v2c walk {entry} {first}..{last}", *await v2.both("walk", entry, first, last))
    check("v2c get", *await v2.both("get", gets))
    check("v2c next", *await v2.both("next", nexts))
    for o in nexts[:3]:
        check(f"v2c next {o}", *await v2.both("next", [o]))
    # v1 asks again one OID at a time when one is absent: fewer OIDs, still two absent ones among them
    for entry, first, _ in ranges[:1]:
        check(f"v1 walk {entry} {first}..{first}", *await v1.both("walk", entry, first, first))
    check("v1 get", *await v1.both("get", gets[:4] + gets[20:24] + gets[-2:]))
    check("v1 next", *await v1.both("next", nexts[:5]))
    if FULL or record_count(path) <= V1_FULL_WALK_MAX:
        check("v1 walk 1.3.6.1", *await v1.both("walk", "1.3.6.1"))
    else:
        check("v1 walk 1.3.6.1.2.1.1", *await v1.both("walk", "1.3.6.1.2.1.1"))
    return diffs


async def _run(engines: tuple[FastSnmpEngine, PysnmpEngine], sims: dict[str, SnmpSimulator],
               paths: Sequence[Path]) -> list[str]:
    # one recording at a time per snmpsim process, the processes in parallel
    queues: dict[int, list[Path]] = {}
    for p in paths:
        queues.setdefault(id(sims[p.stem]), []).append(p)

    async def worker(queue: list[Path]) -> list[str]:
        out: list[str] = []
        for p in queue:
            out += await compare(p.stem, engines, sims[p.stem], p)
        return out

    results = await asyncio.gather(*(worker(q) for q in queues.values()))
    return [d for r in results for d in r]


@pytest.mark.asyncio(loop_scope="module")
async def test_fast_and_pysnmp_clients_agree_on_every_recording(
        engines: tuple[FastSnmpEngine, PysnmpEngine], sims: dict[str, SnmpSimulator]) -> None:
    diffs = await _run(engines, sims, RECORDINGS)
    assert not diffs, "\n".join(diffs)
    assert engines[0].stats.responses > 1000
    assert engines[0].stats.ignored == 0 and engines[0].stats.timeouts == 0


def test_the_comparison_covers_the_quirks_of_the_recordings() -> None:
    """The recordings include what the clients must agree on: variation modules, v1-invisible Counter64,
    duplicated and unsorted OIDs, net-snmp walk files."""
    assert any(variation_oids(p) for p in RECORDINGS)
    assert any(p.suffix == ".snmpwalk" for p in RECORDINGS)
    assert any("|70|" in p.read_text("latin-1") for p in RECORDINGS)
    keys = []
    for p in RECORDINGS:
        if p.suffix == ".snmprec":
            oids = [line.split("|", 1)[0] for line in p.read_text("latin-1").splitlines()
                    if "|" in line and not line.startswith("#")]
            keys.append([ber.oid_key(ber.oid_content(o)) for o in oids])
    assert any(k != sorted(k) for k in keys) and any(len(set(k)) != len(k) for k in keys)
