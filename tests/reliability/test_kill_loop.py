"""kill -9 loop on the real daemon: the lab agent is SIGKILLed at random moments while incidents open and
are resolved and their tickets and notifications go out, then restarted on the same store. Its peers live
in the test process: the EasyVista fake, a real SMTP server (aiosmtpd), the SMS gateway fake, the Teams
fake (Workflows) and a webhook receiver.

Each run posts one Alertmanager alert (a new incident, at once: a ticket and four notifications) and
resolves earlier runs' incidents through the API (a ticket closure and four more notifications), then the
agent is killed 0-3 s later, in the middle of that work. At the end: no duplicate unresolved incident,
every alert's incident exactly once, the cut-off site's incident exactly once, every outbox job done, and
the peers' records match the outbox exactly: one ticket per incident (closed when the incident is
resolved), one e-mail, SMS, Teams card and webhook call per notification, none lost; a message goes out
twice only when the outbox recorded its first attempt's outcome as unknown (killed between the gateway's
acceptance and the record), and then with the same Message-ID / refId / Idempotency-Key / card.

Three stores:

* SQLite (``CALLIPSO_KILLS``, 8 in CI);
* PostgreSQL (``CALLIPSO_PG_KILLS``, 3 in CI): every other run and the last, PostgreSQL itself is stopped (``fast`` or
  ``immediate``, i.e. as a crash) at a random moment, before or after the run's alert, and started again
  either under the running agent, which is killed a moment later, or only after the agent was killed;
* SQLite on a small tmpfs (``CALLIPSO_DISK_KILLS``, 2 in CI): every other run and the last, the disk fills
  up at a random moment and its space comes back under the agent or after the kill. Needs root (tmpfs), like
  ``test_store_faults.py``.

An alert the agent answered with an error, or whose answer the kill cut, is posted again (Alertmanager
retries what it could not deliver); one it accepted is never posted again. ``CALLIPSO_KILL_SEED`` picks the
moments; ``CALLIPSO_KILL_MINUTES`` bounds a long run (it stops killing once that time is spent).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from callipso_agent.notify.channels import adaptive_card
from callipso_agent.notify.texts import Rendered
from tests.helpers.disk import fill, small_tmpfs
from tests.helpers.lab_agent import LabAgent, alertmanager_alert, wait_for
from tests.helpers.peers import API_TOKEN, CHANNELS, TEAMS_CHANNEL, Peers
from tests.helpers.postgres import PostgresServer

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("CALLIPSO_KILLS", "8"))
PG_KILLS = int(os.environ.get("CALLIPSO_PG_KILLS", "3"))
DISK_KILLS = int(os.environ.get("CALLIPSO_DISK_KILLS", "2"))
SEED = int(os.environ.get("CALLIPSO_KILL_SEED", "13"))
MINUTES = float(os.environ.get("CALLIPSO_KILL_MINUTES", "0"))  # >0: stop killing once this time is spent
SITES = "HD13,AUBAGNE-MDS,GARDANNE-MDS"
EXPECTED_KEYS = ("site_unreachable:GARDANNE-MDS",)
UNRESOLVED = ("open", "acknowledged", "suppressed")
ALL_CHANNELS = (*CHANNELS, TEAMS_CHANNEL)


def _lab_children(lab_dir: Path) -> list[int]:
    """Processes (snmpsim shards) started in their own session by the lab under ``lab_dir``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(b"--data-dir") for arg in cmd) and str(lab_dir).encode() in b" ".join(cmd):
            pids.append(int(entry.name))
    return pids


def _reap(lab_dir: Path) -> None:
    for pid in _lab_children(lab_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not _lab_children(lab_dir), 20, "lab children gone")


@pytest.fixture
def make_lab(tmp_path: Path, peers: Peers) -> Iterator[Callable[..., LabAgent]]:
    """The lab agent with its peers (Teams included) and extra agent settings (the store)."""
    made: list[LabAgent] = []

    def make(agent: dict[str, Any] | None = None) -> LabAgent:
        overlay = peers.overlay(tmp_path / "overlay", agent=agent, teams=True)
        made.append(LabAgent(tmp_path, interval=2.0, sites=SITES, overlay=overlay))
        return made[-1]

    try:
        yield make
    finally:
        for agent in made:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait(10)
        _reap(tmp_path / "lab")


# ---- what fails besides the agent -------------------------------------------------------------------------
class Outage(Protocol):
    active: bool
    count: int

    def begin(self, rng: random.Random) -> None: ...

    def end(self) -> None: ...


class PostgresDown:
    """PostgreSQL stopped under the agent: ``fast`` (clients disconnected) or ``immediate`` (as a crash)."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.active = False
        self.count = 0
        self.modes: Counter[str] = Counter()

    def begin(self, rng: random.Random) -> None:
        mode = rng.choice(("fast", "immediate"))
        self.server.halt(mode)
        self.active, self.count = True, self.count + 1
        self.modes[mode] += 1

    def end(self) -> None:
        self.server.resume()
        self.active = False


class DiskFull:
    """The store's filesystem filled up to ENOSPC, then freed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.active = False
        self.count = 0
        self._filler: Path | None = None

    def begin(self, rng: random.Random) -> None:
        self._filler = fill(self.folder)
        self.active, self.count = True, self.count + 1

    def end(self) -> None:
        assert self._filler is not None
        self._filler.unlink()
        self.active = False


# ---- reading the store after the loop ---------------------------------------------------------------------
class StoreReader(Protocol):
    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...


@dataclass
class SqliteReader:
    path: Path

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in con.execute(sql).fetchall()]
        finally:
            con.close()


@dataclass
class PostgresReader:
    url: str  # the agent's SQLAlchemy URL

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        import asyncpg

        async def fetch() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(fetch())


def _sqlite_store(folder: Path) -> SqliteReader:
    dbs = sorted(folder.rglob("*.sqlite"))
    assert len(dbs) == 1, dbs
    return SqliteReader(dbs[0])


# ---- the loop ---------------------------------------------------------------------------------------------
def _start_with_faults(lab: LabAgent) -> None:
    lab.start()
    wait_for(lambda: lab.api("/healthz")["status"] == "ok", 90, "/healthz")
    # the lab's fault switch lives in the killed process: set the faults again after every start
    wait_for(lambda: lab.fault("unreachable", "GARDANNE-MDS") or True, 30, "fault applied")


def _try(fn: Any) -> Any:
    """Requests cut by the kill, or refused, count as not done (the caller repeats them, as Alertmanager or an
    operator would)."""
    try:
        return fn()
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _work(lab: LabAgent, alerts: list[str], to_resolve: list[str], rng: random.Random | None) -> None:
    """Post the alerts not yet accepted; resolve the incidents of earlier alerts not yet resolved."""
    for check in list(alerts):
        body = alertmanager_alert(check, "ups-hd13")
        if _try(lambda b=body: lab.post("/api/v1/alertmanager", b, API_TOKEN)) is not None:
            alerts.remove(check)
    opened = _try(lambda: lab.api("/api/v1/incidents?state=open")["incidents"]) or []
    for inc in opened:
        check = next((c for c in to_resolve if inc["key"].endswith(f"{{check={c}}}")), None)
        if check is not None and (rng is None or rng.random() < 0.8):
            _try(lambda i=inc: lab.post(f"/api/v1/incidents/{i['id']}/resolve", {"reason": "kill loop"}, API_TOKEN))


@dataclass
class Loop:
    kills: int = 0
    checks: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # posted, not yet accepted
    started: float = field(default_factory=time.monotonic)


def _kill(lab: LabAgent) -> None:
    assert lab.proc is not None and lab.proc.poll() is None, lab.log.read_text()[-2000:]
    lab.proc.send_signal(signal.SIGKILL)
    lab.proc.wait(10)


def _disrupted(n: int, kills: int) -> bool:
    """Whether run ``n`` also loses its store: every other run, and the last one."""
    return n % 2 == 1 or n == kills - 1


def _run_loop(lab: LabAgent, kills: int, rng: random.Random, outage: Outage | None = None) -> Loop:
    """``kills`` runs, each killed at a random moment; with ``outage``, every other run (and the last) also
    loses its store for a while, starting before or after the run's alert and ending under the agent or
    after the kill."""
    loop = Loop()
    lab_dir = lab.workdir / "lab"
    for n in range(kills):
        if MINUTES and time.monotonic() - loop.started > MINUTES * 60:
            break  # the time budget of a long run: the figures give the number of kills done
        _start_with_faults(lab)
        loop.checks.append(f"k{n:03d}")
        loop.alerts.append(loop.checks[-1])
        out = outage if outage is not None and _disrupted(n, kills) else None
        if out is not None and rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 1.5))
            out.begin(rng)  # the run's alert arrives while the store is away
        _work(lab, loop.alerts, loop.checks[:-1], rng)
        if out is not None and not out.active:
            time.sleep(rng.uniform(0.0, 1.5))
            out.begin(rng)  # during the incident's writes and deliveries
            _work(lab, loop.alerts, loop.checks[:-1], rng)
        time.sleep(rng.uniform(0.0, 3.0))  # during incident writes, outbox claims, deliveries, their records
        if out is not None and rng.random() < 0.5:
            out.end()  # the store comes back under the agent, which is killed while it recovers
            time.sleep(rng.uniform(0.0, 3.0))
        _kill(lab)
        loop.kills += 1
        if outage is not None and outage.active:
            outage.end()  # the agent always restarts on a store it can write to
        _reap(lab_dir)
    return loop


def _settle(lab: LabAgent, loop: Loop) -> None:
    """The last run is left alone until every alert's incident and the site's are there, every incident but
    the last resolved, and every delivery done; then it is stopped cleanly."""
    _start_with_faults(lab)
    resolve = loop.checks[:-1]
    wait_for(lambda: (_work(lab, loop.alerts, resolve, None), not loop.alerts)[1], 60, "alerts accepted")

    def settled() -> bool:
        _work(lab, loop.alerts, resolve, None)
        opened = {i["key"] for i in lab.api("/api/v1/incidents?state=open")["incidents"]}
        if not all(k in opened for k in EXPECTED_KEYS) or any(k.endswith(f"{{check={c}}}") for k in opened
                                                               for c in resolve):
            return False
        return sum(lab.metric("callipso_outbox_jobs", state=s) or 0 for s in ("pending", "failed", "in_flight")) == 0

    wait_for(settled, 240, "site incident, resolutions and deliveries after the kills", every=2)
    lab.stop()
    _reap(lab.workdir / "lab")


# ---- what must hold ---------------------------------------------------------------------------------------
def _card(job: dict[str, Any]) -> str:
    """The Teams card a notification job sends (the fake records the body as posted)."""
    return json.dumps(adaptive_card(Rendered.from_dict(job["payload"]["message"])), sort_keys=True)


def _ids(ch: str, job: dict[str, Any]) -> str:
    """How a peer names what it received: e-mails by Message-ID, SMS by refId, webhook calls by
    Idempotency-Key (all derived from the job's key), Teams posts by their card."""
    key = job["key"]
    if ch == "mail-noc":
        return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}.callipso@lab.invalid>"
    if ch == "sms-astreinte":
        return hashlib.sha256(f"{key}:+33612345678".encode()).hexdigest()[:32]
    if ch == TEAMS_CHANNEL:
        return _card(job)
    return str(key)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _verify(store: StoreReader, peers: Peers, loop: Loop, label: str, extra: str = "") -> None:
    unresolved = ",".join(f"'{s}'" for s in UNRESOLVED)
    dup = store.rows(f"SELECT key, COUNT(*) FROM incidents WHERE state IN ({unresolved}) "  # noqa: S608
                     "GROUP BY key HAVING COUNT(*) > 1")
    assert dup == [], dup
    for key in EXPECTED_KEYS:
        (n,), = store.rows(f"SELECT COUNT(*) FROM incidents WHERE key = '{key}'")  # noqa: S608
        assert n == 1, (key, n)  # the site stayed cut off across every restart: one incident, never two
    incidents = {key: (iid, state) for iid, key, state in
                 store.rows("SELECT id, key, state FROM incidents WHERE key LIKE 'daily_check_failed:%'")}
    per_check = Counter(k.rsplit("{check=", 1)[1].rstrip("}") for k in incidents)
    assert per_check == Counter(loop.checks), (  # every alert's incident, once
        f"lost: {sorted(set(loop.checks) - set(per_check))}, more than once: "
        f"{sorted(c for c, n in per_check.items() if n > 1)}")
    (total,), = store.rows("SELECT COUNT(*) FROM incidents")
    cols = ("id", "kind", "target", "key", "state", "incident", "payload", "result", "uncertain", "attempts")
    jobs = [dict(zip(cols, row, strict=True)) for row in store.rows(
        "SELECT id, kind, target, idempotency_key, state, incident_id, payload, result, uncertain, attempts "
        "FROM outbox")]
    for j in jobs:
        j["payload"], j["result"], j["uncertain"] = _json(j["payload"]), _json(j["result"]), bool(j["uncertain"])
    assert len({j["key"] for j in jobs}) == len(jobs)
    assert Counter(j["state"] for j in jobs) == Counter({"done": len(jobs)}), Counter(j["state"] for j in jobs)

    # tickets: one per incident that has a create job, none without; closed when the incident is resolved
    creates = {j["key"]: j for j in jobs if j["kind"] == "itsm.create"}
    tickets = peers.tickets()
    refs = Counter(t["external_reference"] for t in tickets)
    assert all(n == 1 for n in refs.values()), refs
    assert set(refs) == set(creates), (set(refs) ^ set(creates))
    by_id = {iid: state for iid, state in incidents.values()}
    for t in tickets:
        incident_id = creates[t["external_reference"]]["incident"]
        if by_id.get(incident_id) == "resolved":
            assert t["status"] == "solved", t
    # every incident of an alert (top-level, so notified) got its ticket and its opening notifications
    ticketed = {j["incident"] for j in creates.values()}
    assert {iid for iid, _ in incidents.values()} <= ticketed, "incident without a ticket job"
    opened_notices = {(j["incident"], j["target"]) for j in jobs
                      if j["kind"].startswith("notify.") and ":opened:" in j["key"]}
    missing = {(iid, ch) for iid, _ in incidents.values() for ch in ALL_CHANNELS} - opened_notices
    assert not missing, f"incidents without their opening notification: {sorted(missing)}"

    # notifications: what each peer received is exactly the outbox's delivered notifications, each once; the
    # only exception is at-least-once delivery itself: a kill between the gateway's acceptance and the outbox's
    # record leaves the outcome unknown, the job is retried as "uncertain" and the message goes out again with
    # the same Message-ID / refId / Idempotency-Key / card (a receiver deduplicating on them drops the copy)
    sent = [j for j in jobs if j["kind"].startswith("notify.") and not (j["result"] or {}).get("skipped")]
    expected: dict[str, dict[str, list[dict[str, Any]]]] = {ch: {} for ch in ALL_CHANNELS}
    for j in sent:
        expected[j["target"]].setdefault(_ids(j["target"], j), []).append(j)
    teams = peers.teams()
    assert all(p["run_status"] == "Succeeded" for p in teams), [p["run_error"] for p in teams if p["run_error"]]
    received = {"mail-noc": Counter(e["message_id"] for e in peers.emails()),
                "sms-astreinte": Counter(m["ref"] for m in peers.sms()),
                "hook-noc": Counter(h["key"] for h in peers.hooks()),
                TEAMS_CHANNEL: Counter(json.dumps(p["body"], sort_keys=True) for p in teams)}
    lost = {ch: [i for i, js in expected[ch].items() if received[ch][i] < len(js)] for ch in ALL_CHANNELS}
    unknown = {ch: sorted(set(received[ch]) - set(expected[ch])) for ch in ALL_CHANNELS}
    resent = {ch: {i: n for i, n in received[ch].items() if n > len(expected[ch].get(i, ()))} for ch in ALL_CHANNELS}

    def explained(ch: str, i: str, n: int) -> bool:
        js = expected[ch].get(i, [])
        return any(j["uncertain"] for j in js) and n <= sum(j["attempts"] for j in js)

    unexplained = {ch: [i for i, n in resent[ch].items() if not explained(ch, i, n)] for ch in ALL_CHANNELS}
    uncertain = sum(1 for j in jobs if j["uncertain"])
    figures = {ch: (sum(received[ch].values()), sum(len(js) for js in expected[ch].values())) for ch in ALL_CHANNELS}
    print(f"\nFIGURES store={label} kills={loop.kills} {extra}incidents={total} alerts={len(loop.checks)} "
          f"outbox_jobs={len(jobs)} uncertain_jobs={uncertain} tickets={len(tickets)} "
          f"received/expected={figures} lost={ {ch: len(v) for ch, v in lost.items()} } "
          f"resent_uncertain={ {ch: len(v) for ch, v in resent.items()} } "
          f"duration={time.monotonic() - loop.started:.0f}s at={datetime.now(UTC):%Y-%m-%dT%H:%MZ}")
    assert not any(lost.values()), lost
    assert not any(unknown.values()), unknown
    assert not any(unexplained.values()), f"sent twice without an unknown outcome: {unexplained}"


# ---- the tests --------------------------------------------------------------------------------------------
def test_kill9_loop_loses_and_duplicates_nothing(make_lab: Callable[..., LabAgent], peers: Peers) -> None:
    lab = make_lab()
    loop = _run_loop(lab, KILLS, random.Random(SEED))
    _settle(lab, loop)
    _verify(_sqlite_store(lab.workdir / "lab"), peers, loop, "sqlite")


def test_kill9_loop_on_postgresql_restarted_under_the_agent(
    make_lab: Callable[..., LabAgent], peers: Peers, postgres: PostgresServer
) -> None:
    url = asyncio.run(postgres.new_database())
    lab = make_lab({"store": {"url": url}})
    down = PostgresDown(postgres)
    loop = _run_loop(lab, PG_KILLS, random.Random(SEED), down)
    assert down.count == sum(_disrupted(n, PG_KILLS) for n in range(loop.kills))
    _settle(lab, loop)
    _verify(PostgresReader(url), peers, loop, "postgresql",
            f"postgres_restarts={down.count} modes={dict(down.modes)} ")


def test_kill9_loop_with_the_disk_filling_up(make_lab: Callable[..., LabAgent], peers: Peers, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "state", 64, keep=tmp_path / "state-copy") as state:
        lab = make_lab({"state_dir": str(state)})
        full = DiskFull(state)
        loop = _run_loop(lab, DISK_KILLS, random.Random(SEED), full)
        assert full.count == sum(_disrupted(n, DISK_KILLS) for n in range(loop.kills))
        _settle(lab, loop)
        store = _sqlite_store(state)
        assert store.rows("PRAGMA integrity_check") == [("ok",)]
        _verify(store, peers, loop, "sqlite-full-disk", f"disk_full={full.count} ")
