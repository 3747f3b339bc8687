"""The agent's own store failing under it, on the real daemon with the lab and its peers.

* **Full disk**: the SQLite store lives on a small tmpfs that the test fills up. The agent keeps polling,
  says so (``callipso_store_writable 0``, ``callipso_store_write_errors_total``, ``/readyz`` 503 with the
  error, one log line per failing operation), and loses nothing: the incident opened before is intact,
  the one raised while the disk was full is written, ticketed and notified once the space is back (its
  Alertmanager post is answered 503 while it cannot be written, and acknowledged when sent again).
* **PostgreSQL restarted**: the agent keeps running, reconnects, and the incident raised while the
  database was away (its alert answered 503, then sent again) is written once, with one ticket.

Both need root (mounting a tmpfs; PostgreSQL runs as ``postgres``): skipped elsewhere, failing in CI.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.error
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.disk import fill, small_tmpfs
from tests.helpers.lab_agent import LabAgent, alertmanager_alert, wait_for
from tests.helpers.peers import API_TOKEN, REFERENCE_PREFIX, Peers
from tests.helpers.postgres import PostgresServer

pytestmark = pytest.mark.slow

SITES = "HD13,AUBAGNE-MDS"
DEVICE = "ups-hd13"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: the agent's state folder, which the test can fill."""
    # the store as the test left it is copied to state-copy, for a failure's post-mortem
    with small_tmpfs(tmp_path / "state", 24, keep=tmp_path / "state-copy") as mnt:
        yield mnt


def _post_alert(lab: LabAgent, check: str, timeout: float = 30) -> None:
    """Post until acknowledged, as Alertmanager does (a 503 counts as 'send again later')."""
    wait_for(lambda: lab.post("/api/v1/alertmanager", alertmanager_alert(check, DEVICE), API_TOKEN) is not None,
             timeout, f"alert {check} accepted")


def _post_status(lab: LabAgent, check: str) -> int:
    try:
        lab.post("/api/v1/alertmanager", alertmanager_alert(check, DEVICE), API_TOKEN)
    except urllib.error.HTTPError as err:
        return err.code
    return 200


def _incidents(lab: LabAgent, check: str) -> list[dict]:
    return [i for i in lab.api("/api/v1/incidents")["incidents"] if i["key"].endswith(f"{{check={check}}}")]


def _tickets_of(peers: Peers, lab: LabAgent, check: str) -> list[dict]:
    ids = {i["id"] for i in _incidents(lab, check)}
    return [t for t in peers.tickets()
            if any(t["external_reference"].startswith(f"{REFERENCE_PREFIX}-{i}-") for i in ids)]


def _last_polls(lab: LabAgent) -> dict[str, str | None]:
    return {d["name"]: d.get("last_poll") for d in lab.api("/api/v1/devices")["devices"]}


def test_full_disk_keeps_polling_reports_and_recovers(tmp_path: Path, peers: Peers, small_disk: Path) -> None:
    overlay = peers.overlay(tmp_path / "overlay", agent={"state_dir": str(small_disk)})
    lab = LabAgent(tmp_path, interval=2.0, sites=SITES, overlay=overlay)
    lab.start()
    try:
        wait_for(lambda: lab.api("/healthz")["status"] == "ok", 90, "/healthz")
        wait_for(lambda: lab.ready()[0] == 200, 90, "ready")
        _post_alert(lab, "before")
        wait_for(lambda: _tickets_of(peers, lab, "before"), 60, "ticket of the incident opened before")

        filler = fill(small_disk)
        wait_for(lambda: lab.metric("callipso_store_writable") == 0, 60, "store reported not writable")
        # refused (503) while the incident cannot be written, so that Alertmanager sends it again; 200 only if
        # SQLite found room for it after all (a checkpointed WAL is reused without growing)
        assert _post_status(lab, "during") in (200, 503)
        status, ready = lab.ready()
        assert status == 503 and ready["store_writable"] is False and ready["store_errors"], ready
        assert (lab.metric("callipso_store_write_errors_total", operation="device_state") or 0) >= 1
        # polling goes on: every device is polled again while the disk is full
        before = _last_polls(lab)
        wait_for(lambda: all(v != before[n] for n, v in _last_polls(lab).items()), 90, "devices polled again")
        assert len(_incidents(lab, "before")) == 1

        filler.unlink()
        wait_for(lambda: lab.ready()[0] == 200 and lab.metric("callipso_store_writable") == 1, 90, "store back")
        _post_alert(lab, "during", 90)  # Alertmanager's next attempt is acknowledged
        wait_for(lambda: _tickets_of(peers, lab, "during"), 90, "the incident raised during the outage ticketed")
        wait_for(lambda: lab.metric("callipso_outbox_jobs", state="pending") == 0
                 and lab.metric("callipso_outbox_jobs", state="failed") == 0, 60, "deliveries done")
        assert len(_incidents(lab, "before")) == 1 and len(_incidents(lab, "during")) == 1
    finally:
        lab.stop()
    log = lab.log.read_text(encoding="utf-8", errors="replace")
    assert "store_write_failed" in log and "store_write_recovered" in log
    # one log line per failing operation, not one per poll
    assert log.count('"store_write_failed"') <= 10, log.count('"store_write_failed"')
    refs = Counter(t["external_reference"] for t in peers.tickets())
    assert refs and all(n == 1 for n in refs.values()), refs
    mails = Counter(e["message_id"] for e in peers.emails())
    assert mails and all(n == 1 for n in mails.values()), mails
    (db,) = small_disk.glob("*.sqlite")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [k for (k,) in con.execute("SELECT key FROM incidents WHERE key LIKE 'daily_check_failed:%'")]
    finally:
        con.close()
    assert sorted(keys) == sorted(f"daily_check_failed:{DEVICE}{{check={c}}}" for c in ("before", "during")), keys


def test_postgresql_restart_under_the_agent(tmp_path: Path, peers: Peers, postgres: PostgresServer) -> None:
    url = asyncio.run(postgres.new_database())
    overlay = peers.overlay(tmp_path / "overlay", agent={"store": {"url": url}})
    lab = LabAgent(tmp_path, interval=2.0, sites=SITES, overlay=overlay)
    lab.start()
    try:
        wait_for(lambda: lab.api("/healthz")["status"] == "ok", 90, "/healthz")
        wait_for(lambda: lab.ready()[0] == 200, 90, "ready")
        _post_alert(lab, "before")
        wait_for(lambda: _tickets_of(peers, lab, "before"), 60, "ticket of the incident opened before")

        postgres.halt("fast")
        wait_for(lambda: lab.ready()[0] == 503, 60, "/readyz reports the store")
        # the incident cannot be written: refused, so that Alertmanager sends it again
        assert _post_status(lab, "during") == 503
        wait_for(lambda: lab.metric("callipso_store_writable") == 0, 60, "store reported not writable")
        before = _last_polls(lab)  # polling goes on while the database is away
        wait_for(lambda: all(v != before[n] for n, v in _last_polls(lab).items()), 90, "devices polled again")
        assert lab.proc is not None and lab.proc.poll() is None
        postgres.resume()

        wait_for(lambda: lab.ready()[0] == 200, 90, "ready again")
        _post_alert(lab, "during", 90)
        wait_for(lambda: _tickets_of(peers, lab, "during"), 90, "incident raised while PostgreSQL was away")
        wait_for(lambda: lab.metric("callipso_outbox_jobs", state="pending") == 0
                 and lab.metric("callipso_outbox_jobs", state="failed") == 0, 60, "deliveries done")
        assert len(_incidents(lab, "before")) == 1 and len(_incidents(lab, "during")) == 1
        assert lab.proc.poll() is None
    finally:
        lab.stop()
    refs = Counter(t["external_reference"] for t in peers.tickets())
    assert refs and all(n == 1 for n in refs.values()), refs
    log = lab.log.read_text(encoding="utf-8", errors="replace")
    assert "store_write_recovered" in log or "incident_store_recovered" in log
