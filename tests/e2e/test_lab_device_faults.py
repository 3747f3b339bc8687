"""Device faults of the lab, end to end on the real daemon: an SSH server that drops the connection in the
middle of a command, one that prints binary noise, host keys that changed (the agent refuses them before
sending any password, and raises an incident with the operator text), an SNMP agent answering after the
timeout and one sending truncated answers. Each faulty device carries the right reason; every other device
keeps being polled without error; clearing the faults brings them back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.lab_agent import LabAgent, wait_for

pytestmark = pytest.mark.slow

SITES = "HD13,ARENC"
INTERVAL = 5.0
SSH_ONLY_KEY = "otms-hd13"  # polled over SSH only: the poll fails with host_key
COMPOSITE_KEY = "oxe-arenc"  # SNMP and SSH: SNMP goes on, the SSH part is refused
GARBAGE = "ov8770-hd13"  # SSH only: nothing readable, the poll fails with parse_error
DROP = "oxe-hd13"  # SNMP and SSH: the SSH part loses its connection mid-command
LATE = "ups-arenc"  # SNMP answers after the agent gave up (request and retry)
TRUNCATED = "probe-hd13"  # SNMP answers cut in half: undecodable


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=INTERVAL, sites=SITES)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def _devices(lab: LabAgent) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in lab.api("/api/v1/devices")["devices"]}


def _ssh_up(lab: LabAgent, device: str) -> dict[str, Any] | None:
    ms = lab.api(f"/api/v1/devices/{device}")["measurements"]
    return next((m for m in ms if m["name"] == "collector_up" and m["labels"].get("transport") == "ssh"), None)


def _open(lab: LabAgent) -> list[dict[str, Any]]:
    return list(lab.api("/api/v1/incidents?state=open")["incidents"])


def _polls(lab: LabAgent) -> dict[str, float]:
    out = {}
    for line in lab.metrics_text().splitlines():
        if line.startswith('callipso_polls_total{device="'):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


def test_device_faults_give_the_right_reason_and_the_other_devices_keep_polling(lab: LabAgent, tmp_path: Path) -> None:
    lab.wait_all_up(150)
    before = _devices(lab)
    faulty = {SSH_ONLY_KEY, COMPOSITE_KEY, GARBAGE, DROP, LATE, TRUNCATED}
    assert faulty <= set(before), sorted(before)
    others = set(before) - faulty
    assert others

    lab.fault("ssh_host_key_changed", SSH_ONLY_KEY)
    lab.fault("ssh_host_key_changed", COMPOSITE_KEY)
    lab.fault("ssh_garbage", GARBAGE)
    lab.fault("ssh_drop", DROP)
    lab.fault("snmp_late", LATE)
    lab.fault("snmp_truncated", TRUNCATED)
    polls_at_fault = _polls(lab)

    # SNMP answers too late: the poll times out; undecodable answers: the agent's client says so at once
    # (parse_error), the pysnmp client drops them and times out; nothing worse either way
    wait_for(lambda: _devices(lab)[LATE]["last_error"] == "timeout", 90, "late SNMP device times out")
    wait_for(lambda: _devices(lab)[TRUNCATED]["last_error"] in ("parse_error", "timeout"), 90,
             "truncated SNMP answers refused")

    # a changed host key: refused, named as such, with both fingerprints and the known_hosts file
    wait_for(lambda: _devices(lab)[SSH_ONLY_KEY]["last_error"] == "host_key", 60, f"{SSH_ONLY_KEY} refused")
    text = _devices(lab)[SSH_ONLY_KEY]["last_error_text"]
    assert "has CHANGED" in text and "SHA256:" in text and "known_hosts" in text and "refusing" in text, text
    ssh_part = wait_for(lambda: (m := _ssh_up(lab, COMPOSITE_KEY)) and m["value"] == 0 and m, 60,
                        f"{COMPOSITE_KEY} SSH part refused")
    assert ssh_part["state"] == "critical" and ssh_part["text"].startswith("host_key:"), ssh_part
    assert _devices(lab)[COMPOSITE_KEY]["last_error"] is None  # SNMP still answers

    # noise instead of output: the device answered, nothing could be read
    wait_for(lambda: _devices(lab)[GARBAGE]["last_error"] == "parse_error", 60, f"{GARBAGE} unreadable")
    assert "no readable output" in _devices(lab)[GARBAGE]["last_error_text"]

    # a connection dropped mid-command: the SSH part of the OXE is lost, its SNMP part goes on
    dropped = wait_for(lambda: (m := _ssh_up(lab, DROP)) and m["value"] == 0 and m, 60, f"{DROP} SSH dropped")
    assert dropped["text"].startswith("connection_lost:") and dropped["state"] == "unknown", dropped
    assert _devices(lab)[DROP]["last_error"] is None

    # incidents with the operator text (French by default)
    def by_rule() -> dict[tuple[str, str], dict[str, Any]]:
        return {(i["rule"], i["device"]): i for i in _open(lab)}

    found = wait_for(lambda: (r := by_rule()) and ("device_host_key_refused", SSH_ONLY_KEY) in r
                     and ("device_ssh_host_key_refused", COMPOSITE_KEY) in r
                     and ("device_parse_error", GARBAGE) in r and r, 120, "host key and parse incidents")
    title = found[("device_host_key_refused", SSH_ONLY_KEY)]["title"]
    assert title.startswith(f"Clé d'hôte SSH de {SSH_ONLY_KEY} refusée"), title
    assert found[("device_host_key_refused", SSH_ONLY_KEY)]["runbook"] == "device-host-key-refused.md"
    assert "collecte SSH bloquée" in found[("device_ssh_host_key_refused", COMPOSITE_KEY)]["title"]
    assert found[("device_parse_error", GARBAGE)]["title"].startswith(f"Réponses illisibles de {GARBAGE}")
    assert not [i for i in _open(lab) if i["device"] in others], "no incident on a healthy device"

    # every other device kept being polled, without error
    now = _devices(lab)
    assert {n: now[n]["last_error"] for n in others if now[n]["last_error"]} == {}
    polls = _polls(lab)
    assert all(polls[n] >= polls_at_fault.get(n, 0) + 2 for n in others), (polls_at_fault, polls)

    # the faults cleared: the original host key is trusted again, output readable, nothing dropped
    for device in faulty:
        lab.clear(device)
    wait_for(lambda: all(_devices(lab)[n]["last_error"] is None for n in faulty), 90, "faulty devices back")
    wait_for(lambda: all((m := _ssh_up(lab, n)) and m["value"] == 1 for n in (COMPOSITE_KEY, DROP)), 90,
             "SSH parts back")
