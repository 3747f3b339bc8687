"""kill -9 loop on the real daemon: the lab agent is SIGKILLed at random moments while incidents open and
are resolved and their tickets and notifications go out, then restarted on the same directory (same
store). Its peers live in the test process: the EasyVista fake, a real SMTP server (aiosmtpd), the SMS
gateway fake and a webhook receiver.

Each run posts one Alertmanager alert (a new incident, at once: a ticket and three notifications) and
resolves the previous run's incident through the API (a ticket closure and three more notifications),
then the agent is killed 0-3 s later, in the middle of that work. At the end: no duplicate unresolved
incident, every alert's incident exactly once, the cut-off site's incident exactly once, every outbox
job done, and the peers' records match the outbox exactly: one ticket per incident (closed when the
incident is resolved), one e-mail, SMS and webhook call per notification, none lost; a message goes out
twice only when the outbox recorded its first attempt's outcome as unknown (killed between the gateway's
acceptance and the record), and then with the same Message-ID / refId / Idempotency-Key.

CI runs 8 kills; ``CALLIPSO_KILLS=100`` runs the full loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.lab_agent import LabAgent, alertmanager_alert, wait_for
from tests.helpers.peers import API_TOKEN, CHANNELS, Peers

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("CALLIPSO_KILLS", "8"))
SITES = "HD13,AUBAGNE-MDS,GARDANNE-MDS"
EXPECTED_KEYS = ("site_unreachable:GARDANNE-MDS",)
UNRESOLVED = ("open", "acknowledged", "suppressed")


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
def lab(tmp_path: Path, peers: Peers) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=2.0, sites=SITES, overlay=peers.overlay(tmp_path / "overlay"))
    try:
        yield agent
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(10)
        _reap(tmp_path / "lab")


def _start_with_faults(lab: LabAgent) -> None:
    lab.start()
    wait_for(lambda: lab.api("/healthz")["status"] == "ok", 90, "/healthz")
    # the lab's fault switch lives in the killed process: set the faults again after every start
    wait_for(lambda: lab.lab("fault", "unreachable", "GARDANNE-MDS").returncode == 0, 30, "fault applied")


def _try(fn: Any) -> Any:
    """Requests cut by the kill count as not done (the caller repeats them, as Alertmanager or an operator
    would)."""
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


def test_kill9_loop_loses_and_duplicates_nothing(lab: LabAgent, peers: Peers, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CALLIPSO_KILL_SEED", "13")))
    lab_dir = tmp_path / "lab"
    kills = 0
    checks: list[str] = []
    alerts: list[str] = []
    for n in range(KILLS):
        _start_with_faults(lab)
        checks.append(f"k{n:03d}")
        alerts.append(checks[-1])
        _work(lab, alerts, checks[:-1], rng)
        time.sleep(rng.uniform(0.0, 3.0))  # during incident writes, outbox claims, deliveries, their records
        assert lab.proc is not None and lab.proc.poll() is None, lab.log.read_text()[-2000:]
        lab.proc.send_signal(signal.SIGKILL)
        lab.proc.wait(10)
        kills += 1
        _reap(lab_dir)

    # the last run is left alone until every alert's incident and the site's are there, every incident
    # but the last resolved, and every delivery done; then it is stopped cleanly
    _start_with_faults(lab)
    resolve = checks[:-1]
    wait_for(lambda: (_work(lab, alerts, resolve, None), not alerts)[1], 60, "alerts accepted")

    def settled() -> bool:
        _work(lab, alerts, resolve, None)
        opened = {i["key"] for i in lab.api("/api/v1/incidents?state=open")["incidents"]}
        if not all(k in opened for k in EXPECTED_KEYS) or any(k.endswith(f"{{check={c}}}") for k in opened
                                                               for c in resolve):
            return False
        pending = lab.metric("callipso_outbox_jobs", state="pending") or 0
        return pending + (lab.metric("callipso_outbox_jobs", state="failed") or 0) + (
            lab.metric("callipso_outbox_jobs", state="in_flight") or 0) == 0

    wait_for(settled, 240, "site incident, resolutions and deliveries after the kills", every=2)
    lab.stop()
    _reap(lab_dir)

    dbs = sorted(lab_dir.rglob("*.sqlite"))
    assert len(dbs) == 1, dbs
    con = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(UNRESOLVED))
        dup = con.execute(f"SELECT key, COUNT(*) FROM incidents WHERE state IN ({marks}) GROUP BY key "  # noqa: S608
                          "HAVING COUNT(*) > 1", UNRESOLVED).fetchall()
        assert dup == [], dup
        for key in EXPECTED_KEYS:
            n = con.execute("SELECT COUNT(*) FROM incidents WHERE key = ?", (key,)).fetchone()[0]
            assert n == 1, (key, n)  # the site stayed cut off across every restart: one incident, never two
        incidents = {key: (iid, state) for iid, key, state in
                     con.execute("SELECT id, key, state FROM incidents WHERE key LIKE 'daily_check_failed:%'")}
        per_check = Counter(k.rsplit("{check=", 1)[1].rstrip("}") for k in incidents)
        assert per_check == Counter(checks), per_check  # every alert's incident, once
        total = con.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        cols = ("id", "kind", "target", "key", "state", "incident", "payload", "result", "uncertain", "attempts")
        jobs = [dict(zip(cols, row, strict=True))
                for row in con.execute("SELECT id, kind, target, idempotency_key, state, incident_id, payload, result, "
                                       "uncertain, attempts "
                                       "FROM outbox")]
    finally:
        con.close()
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
    missing = {(iid, ch) for iid, _ in incidents.values() for ch in CHANNELS} - opened_notices
    assert not missing, f"incidents without their opening notification: {sorted(missing)}"

    # notifications: what each peer received is exactly the outbox's delivered notifications, each once; the
    # only exception is at-least-once delivery itself: a kill between the gateway's acceptance and the outbox's
    # record leaves the outcome unknown, the job is retried as "uncertain" and the message goes out again with
    # the same Message-ID / refId / Idempotency-Key (a receiver deduplicating on them drops the copy)
    sent = [j for j in jobs if j["kind"].startswith("notify.")
            and not (json.loads(j["result"] or "{}") or {}).get("skipped")]
    ids = {"mail-noc": lambda k: f"<{hashlib.sha256(k.encode()).hexdigest()[:32]}.callipso@lab.invalid>",
           "sms-astreinte": lambda k: hashlib.sha256(f"{k}:+33612345678".encode()).hexdigest()[:32],
           "hook-noc": lambda k: k}
    expected = {ch: {ids[ch](j["key"]): j for j in sent if j["target"] == ch} for ch in CHANNELS}
    received = {"mail-noc": Counter(e["message_id"] for e in peers.emails()),
                "sms-astreinte": Counter(m["ref"] for m in peers.sms()),
                "hook-noc": Counter(h["key"] for h in peers.hooks())}
    lost = {ch: sorted(set(expected[ch]) - set(received[ch])) for ch in CHANNELS}
    unknown = {ch: sorted(set(received[ch]) - set(expected[ch])) for ch in CHANNELS}
    resent = {ch: {i: n for i, n in received[ch].items() if n > 1} for ch in CHANNELS}

    def explained(ch: str, i: str, n: int) -> bool:
        job = expected[ch].get(i)
        return job is not None and bool(job["uncertain"]) and n <= job["attempts"]

    unexplained = {ch: [i for i, n in resent[ch].items() if not explained(ch, i, n)] for ch in CHANNELS}
    uncertain = sum(1 for j in jobs if j["uncertain"])
    figures = {ch: (sum(received[ch].values()), len(expected[ch])) for ch in CHANNELS}
    print(f"\nFIGURES kills={kills} incidents={total} alerts={len(checks)} outbox_jobs={len(jobs)} "
          f"uncertain_jobs={uncertain} tickets={len(tickets)} received/expected={figures} "
          f"lost={ {ch: len(v) for ch, v in lost.items()} } "
          f"resent_uncertain={ {ch: len(v) for ch, v in resent.items()} } "
          f"at={datetime.now(UTC):%Y-%m-%dT%H:%MZ}")
    assert not any(lost.values()), lost
    assert not any(unknown.values()), unknown
    assert not any(unexplained.values()), f"sent twice without an unknown outcome: {unexplained}"
