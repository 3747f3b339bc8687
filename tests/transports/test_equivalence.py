"""For every recording under tests/fixtures/snmp, in v2c and v1 (full walks, range walks on table columns,
GETs of present and absent OIDs, GETNEXTs), what PysnmpClient reads from a real snmpsim is the reference:

* FastSnmpClient reads the same from the same snmpsim;
* PysnmpClient reads the same from udpsim.

snmpsim keeps at most 31 recordings open (it re-reads the others on every request), so the recordings are
served by a few snmpsim processes of at most 23 each. A v1 walk costs one request per varbind, and pysnmp and
snmpsim are slow at it: recordings of more than ``V1_FULL_WALK_MAX`` records get a v1 walk of their first
table columns instead of a full one (``CALLIPSO_SNMP_EQUIVALENCE_FULL=1`` walks them all).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.lab.udpsim import UdpSim
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


Op = tuple[str, str, str, tuple[Any, ...]]  # label, version, method, arguments


def operations(path: Path, walk: Varbinds) -> list[Op]:
    """What is asked of every recording, derived from its v2c walk."""
    gets, nexts = probes(walk)
    ranges = columns(walk, 3)
    ops: list[Op] = [("v2c walk 1.3.6.1", "2c", "walk", ("1.3.6.1",))]
    ops += [(f"v2c walk {e} {a}..{b}", "2c", "walk", (e, a, b)) for e, a, b in ranges]
    ops += [("v2c get", "2c", "get", (gets,)), ("v2c next", "2c", "next", (nexts,))]
    ops += [(f"v2c next {o}", "2c", "next", ([o],)) for o in nexts[:3]]
    # v1 asks again one OID at a time when one is absent: fewer OIDs, still absent ones among them
    ops += [(f"v1 walk {e} {a}..{a}", "1", "walk", (e, a, a)) for e, a, _ in ranges[:1]]
    ops += [("v1 get", "1", "get", (gets[:4] + gets[20:24] + gets[-2:],)), ("v1 next", "1", "next", (nexts[:5],))]
    if FULL or record_count(path) <= V1_FULL_WALK_MAX:
        ops.append(("v1 walk 1.3.6.1", "1", "walk", ("1.3.6.1",)))
    else:
        ops.append(("v1 walk 1.3.6.1.2.1.1", "1", "walk", ("1.3.6.1.2.1.1",)))
    return ops


def client(kind: str, engine: FastSnmpEngine | PysnmpEngine, host: str, port: int, community: str,
           version: str) -> FastSnmpClient | PysnmpClient:
    cred = SnmpV2Credential(version=version, community=SecretRef(env="UNUSED_IN_TESTS"))  # type: ignore[arg-type]
    secrets = {"community": Secret(community)}
    if kind == "fast":
        assert isinstance(engine, FastSnmpEngine)
        return FastSnmpClient(engine, host, port, cred, secrets, timeout=10.0, retries=2)
    assert isinstance(engine, PysnmpEngine)
    return PysnmpClient(engine, host, port, cred, secrets, timeout=10.0, retries=2)


Results = dict[str, list[tuple[Op, Any]]]


async def run_ops(kind: str, engine: FastSnmpEngine | PysnmpEngine, host: str, port: int, community: str,
                  ops: list[Op]) -> list[Any]:
    clients = {v: client(kind, engine, host, port, community, v) for v in ("2c", "1")}
    return [await getattr(clients[version], method)(*args) for _, version, method, args in ops]


def differences(name: str, path: Path, ops: list[tuple[Op, Any]], got: list[Any]) -> list[str]:
    variable = variation_oids(path)
    diffs = []
    for ((label, *_), want), have in zip(ops, got, strict=True):
        a, b = masked(have, variable), masked(want, variable)
        if a != b:
            first = next((f"{x} != {y}" for x, y in zip(a, b, strict=False) if x != y), f"{len(a)} != {len(b)}")
            diffs.append(f"{name} {label}: {first}")
    return diffs


async def by_snmpsim(sims: dict[str, SnmpSimulator], work: Any) -> list[Any]:
    """``work(path)`` for every recording: one at a time per snmpsim process, the processes in parallel."""
    queues: dict[int, list[Path]] = {}
    for p in RECORDINGS:
        queues.setdefault(id(sims[p.stem]), []).append(p)

    async def worker(queue: list[Path]) -> list[Any]:
        return [await work(p) for p in queue]

    return [r for rs in await asyncio.gather(*(worker(q) for q in queues.values())) for r in rs]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reference(engines: tuple[FastSnmpEngine, PysnmpEngine], sims: dict[str, SnmpSimulator]) -> Results:
    """What pysnmp reads from snmpsim, per recording: the reference both comparisons are held to."""
    async def one(path: Path) -> tuple[str, list[tuple[Op, Any]]]:
        sim = sims[path.stem]
        walk = await client("pysnmp", engines[1], sim.host, sim.port, path.stem, "2c").walk("1.3.6.1")
        ops = operations(path, walk)
        got = [walk, *await run_ops("pysnmp", engines[1], sim.host, sim.port, path.stem, ops[1:])]
        return path.stem, list(zip(ops, got, strict=True))

    return dict(await by_snmpsim(sims, one))


@pytest.mark.asyncio(loop_scope="module")
async def test_fast_and_pysnmp_clients_agree_on_every_recording(
        engines: tuple[FastSnmpEngine, PysnmpEngine], sims: dict[str, SnmpSimulator], reference: Results) -> None:
    async def one(path: Path) -> list[str]:
        sim, ops = sims[path.stem], reference[path.stem]
        got = await run_ops("fast", engines[0], sim.host, sim.port, path.stem, [op for op, _ in ops])
        return differences(path.stem, path, ops, got)

    diffs = [d for ds in await by_snmpsim(sims, one) for d in ds]
    assert not diffs, "\n".join(diffs)
    assert len(reference) == len(RECORDINGS)
    assert sum(len(r[0][1]) for r in reference.values()) > 10000  # the full walks did read the recordings
    assert engines[0].stats.ignored == 0 and engines[0].stats.timeouts == 0


@pytest.mark.asyncio(loop_scope="module")
async def test_udpsim_answers_like_snmpsim_on_every_recording(
        engines: tuple[FastSnmpEngine, PysnmpEngine], reference: Results) -> None:
    """The same operations through pysnmp, from udpsim this time (one port, community = recording)."""
    sim = UdpSim()
    for p in RECORDINGS:
        sim.add_device(p.stem, p, port=0 if not sim.ports else sim.ports[0])
    port = sim.ports[0]
    await sim.start()
    try:
        diffs = []
        for p in RECORDINGS:
            ops = reference[p.stem]
            got = await run_ops("pysnmp", engines[1], "127.0.0.1", port, p.stem, [op for op, _ in ops])
            diffs += differences(p.stem, p, ops, got)
    finally:
        await sim.stop()
    assert not diffs, "\n".join(diffs)
    assert sim.stats.unknown_community == 0 and sim.stats.malformed_requests == 0
    assert sim.stats.responses == sim.stats.requests > 1000


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
