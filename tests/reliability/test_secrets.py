"""No secret in any output: a full lab run with faults (an SSH server hanging after login, a site cut off), then every
output is searched for the secret values the lab generated: the agent's log, /metrics, every /api/v1 GET,
/meteo and every text column of the SQLite store.

The lab's SSH passwords are random tokens written under the lab directory, so a hit can only be a leak.
The lab's SNMP communities equal the device names (snmpsim serves a recording under the community named
after its file), so they cannot be told apart from legitimate device names and are not searched here.
"""

from __future__ import annotations

import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.lab_agent import LabAgent, wait_for

pytestmark = pytest.mark.slow

SITES = "HD13,ARENC,GARDANNE-MDS"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=2.0, sites=SITES)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as rsp:  # noqa: S310 - loopback
        return rsp.read().decode("utf-8", errors="replace")


def _store_text(db: Path) -> str:
    """Every text (and blob) cell of every table, as one string."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        parts: list[str] = []
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in con.execute(f'SELECT * FROM "{t}"'):  # noqa: S608 - names from sqlite_master
                for cell in row:
                    if isinstance(cell, bytes):
                        parts.append(cell.decode("utf-8", errors="replace"))
                    elif isinstance(cell, str):
                        parts.append(cell)
        return "\n".join(parts)
    finally:
        con.close()


def test_no_secret_in_any_output(lab: LabAgent, tmp_path: Path) -> None:
    lab.wait_all_up(120)
    secrets_found = sorted((tmp_path / "lab").rglob("*.ssh-password"))
    assert secrets_found, "the lab wrote no SSH password file"
    passwords = [p.read_text(encoding="utf-8").strip() for p in secrets_found]
    assert all(len(p) >= 12 for p in passwords)
    ssh_devices = sorted(p.name.removesuffix(".ssh-password") for p in secrets_found)
    assert len(ssh_devices) >= 2, ssh_devices

    hung = ssh_devices[0]
    lab.fault("ssh_hang", hung)
    lab.fault("unreachable", "GARDANNE-MDS")

    def errors() -> dict[str, str | None]:
        return {d["name"]: d.get("last_error") for d in lab.api("/api/v1/devices")["devices"]}

    wait_for(lambda: errors().get(hung) in ("timeout", "unreachable"), 120, f"{hung} hung")
    wait_for(lambda: any(i["key"] == "site_unreachable:GARDANNE-MDS"
                         for i in lab.api("/api/v1/incidents?state=open")["incidents"]), 150, "site incident")

    outputs: dict[str, str] = {}
    base = lab.api_url
    outputs["/metrics"] = lab.metrics_text()
    for path in ("/api/v1/devices", "/api/v1/measurements", "/api/v1/incidents", "/api/v1/incidents?state=open",
                 "/api/v1/maintenance", "/api/v1/openapi.json", "/healthz", "/readyz", "/meteo"):
        outputs[path] = _text(base + path)
    for name in lab.api("/api/v1/devices")["devices"]:
        outputs[f"/api/v1/devices/{name['name']}"] = _text(f"{base}/api/v1/devices/{name['name']}")
    for inc in lab.api("/api/v1/incidents")["incidents"]:
        outputs[f"/api/v1/incidents/{inc['id']}"] = _text(f"{base}/api/v1/incidents/{inc['id']}")
    lab.stop()  # flush the log and the store
    outputs["log"] = lab.log.read_text(encoding="utf-8", errors="replace")
    dbs = sorted((tmp_path / "lab").rglob("*.sqlite"))
    assert dbs, "no SQLite store found under the lab directory"
    for db in dbs:
        outputs[str(db)] = _store_text(db)

    # the search is meaningful: the outputs do talk about the faulted devices and the refusal
    assert hung in outputs["/api/v1/devices"] and "timeout" in outputs["/api/v1/devices"]
    assert "GARDANNE-MDS" in outputs["/api/v1/incidents?state=open"]
    assert len(outputs["log"]) > 1000
    leaks = [(where, pw[:3] + "…") for where, text in outputs.items() for pw in passwords if pw in text]
    assert not leaks, f"secrets found in outputs: {leaks}"
