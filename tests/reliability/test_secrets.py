"""No secret in any output: a full lab run with faults (an SSH server hanging after login, a site cut off) and an
SNMPv3 authPriv trap, then every output is searched for the secret values the lab generated: the agent's log,
/metrics, every /api/v1 GET, /meteo and every text column of the SQLite store.

Every secret is a random token written under the lab directory, so a hit can only be a leak: the SSH passwords,
the SNMP v2c communities (the lab runs with random communities: snmpsim serves each recording under a random
file name) and the SNMPv3 authentication and privacy keys of the devices polled in authPriv.
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
SNMPV3 = "sbc-hd13,ups-arenc:sha256/aes256"
AC_ETHERNET_LINK = "1.3.6.1.4.1.5003.9.10.1.21.2.0.10"
AC = "1.3.6.1.4.1.5003.9.10.1.21.1"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=2.0, sites=SITES, snmpv3=SNMPV3, random_communities=True)
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
    communities = [p.read_text(encoding="utf-8").strip() for p in sorted((tmp_path / "lab").rglob("*.community"))]
    v3_keys = [p.read_text(encoding="utf-8").strip() for p in sorted((tmp_path / "lab").rglob("*.v3-*-key"))]
    assert len(communities) >= 4 and all(len(c) >= 20 for c in communities), communities
    assert len(v3_keys) == 4 and all(len(k) >= 20 for k in v3_keys)
    secrets = {"ssh password": passwords, "community": communities, "v3 key": v3_keys}

    # an authPriv trap: its incident goes through the log, the API and the store
    lab.send_v3_trap("sbc-hd13", AC_ETHERNET_LINK, [(f"{AC}.2.0", "s", "Ethernet link down (SYNTHETIC)"),
                                                   (f"{AC}.3.0", "s", "Board#1/EthernetLink#0"),
                                                   (f"{AC}.4.0", "i", "4")])

    hung = ssh_devices[0]
    lab.fault("ssh_hang", hung)
    lab.fault("unreachable", "GARDANNE-MDS")

    def errors() -> dict[str, str | None]:
        return {d["name"]: d.get("last_error") for d in lab.api("/api/v1/devices")["devices"]}

    wait_for(lambda: errors().get(hung) in ("timeout", "unreachable"), 120, f"{hung} hung")
    wait_for(lambda: any(i["key"] == "site_unreachable:GARDANNE-MDS"
                         for i in lab.api("/api/v1/incidents?state=open")["incidents"]), 150, "site incident")
    wait_for(lambda: any(i["rule"] == "audiocodes_alarm_trap" and i["device"] == "sbc-hd13"
                         for i in lab.api("/api/v1/incidents?state=open")["incidents"]), 60, "trap incident")

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
    assert "sbc-hd13" in outputs["/api/v1/incidents?state=open"] and "audiocodes_alarm_trap" in outputs["log"]
    leaks = [(where, kind, value[:3] + "…") for where, text in outputs.items()
             for kind, values in secrets.items() for value in values if value in text]
    assert not leaks, f"secrets found in outputs: {leaks}"
