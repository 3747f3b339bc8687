"""SNMPv3 authPriv end to end: the lab serves some devices in SNMPv3 only (snmpsim USM users with random keys),
the real daemon polls them, and net-snmp's snmptrap sends them authPriv traps to the daemon's receiver.

- SHA/AES and SHA/AES-256 devices (both key extensions: Blumenthal's, as net-snmp; Reeder's, as Cisco) are
  polled: their measurements appear.
- A wrong authentication key, a wrong privacy key and an unknown user are each reported at once as
  ``auth_failed`` naming the USM counter of snmpsim's REPORT (not as a timeout), and open ``device_auth_failed``.
- An authPriv trap (engine ID in the device's credential) opens its incident on the device the credential
  belongs to, although every lab device shares the address 127.0.0.1.
- Traps with a wrong key are dropped and counted by reason in ``callipso_traps_rejected_total``; the receiver
  goes on accepting good ones.
- No v3 key appears in the log, /metrics or the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.lab_agent import LabAgent, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.system]

SITES = "HD13,ARENC"
V3 = {
    "sbc-hd13": "sha/aes",
    "ups-hd13": "sha/aes256-blumenthal",  # a key extension is needed (SHA-1 gives 20 bytes): net-snmp's
    "sbc-arenc": "sha/aes256",  # and Cisco's (Reeder)
    "probe-hd13": "sha/aes:wrong_auth_key",
    "ups-arenc": "sha/aes:wrong_priv_key",
    "probe-arenc": "sha/aes:unknown_user",
}
REASONS = {
    "probe-hd13": "usmStatsWrongDigests",
    "ups-arenc": "usmStatsDecryptionErrors",
    "probe-arenc": "usmStatsUnknownUserNames",
}
# acBoardEthernetLinkAlarm with acBoardTrapGlobals: Name, TextualDescription, Source, Severity (major) (SYNTHETIC)
AC_ETHERNET_LINK = "1.3.6.1.4.1.5003.9.10.1.21.2.0.10"
AC = "1.3.6.1.4.1.5003.9.10.1.21.1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabAgent]:
    tmp = tmp_path_factory.mktemp("snmpv3")
    spec = ",".join(f"{d}:{s}" for d, s in V3.items())
    agent = LabAgent(tmp, interval=2.0, sites=SITES, snmpv3=spec)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def _secrets(lab: LabAgent) -> Path:
    return lab.workdir / "lab" / "secrets"


def _devices(lab: LabAgent) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in lab.api("/api/v1/devices")["devices"]}


def _open_incidents(lab: LabAgent) -> list[dict[str, Any]]:
    return list(lab.api("/api/v1/incidents?state=open")["incidents"])


def _snmptrap(lab: LabAgent, device: str, *, auth_key: str | None = None, priv_key: str | None = None,
              source: str = "Board#1/EthernetLink#0", severity: int = 4, net_snmp_priv: str | None = None) -> None:
    lab.send_v3_trap(device, AC_ETHERNET_LINK, [
        (f"{AC}.1.0", "s", "acBoardEthernetLinkAlarm"),
        (f"{AC}.2.0", "s", "Ethernet link down (SYNTHETIC)"),
        (f"{AC}.3.0", "s", source),
        (f"{AC}.4.0", "i", str(severity))], auth_key=auth_key, priv_key=priv_key, net_snmp_priv=net_snmp_priv)


def _rejected(lab: LabAgent, reason: str) -> float:
    return lab.metric("callipso_traps_rejected_total", reason=reason) or 0.0


def test_v3_devices_are_polled_and_refusals_name_their_reason(lab: LabAgent) -> None:
    def polled() -> bool:
        devs = _devices(lab)
        return all(devs[d]["up"] for d in ("sbc-hd13", "ups-hd13", "sbc-arenc"))

    wait_for(polled, 120, "the SNMPv3 devices polled")
    # measurements read through the encrypted sessions (AES-128, AES-256 with either key extension)
    for device in ("sbc-hd13", "ups-hd13", "sbc-arenc"):
        assert lab.api(f"/api/v1/measurements?device={device}")["measurements"], device

    def refused() -> dict[str, dict[str, Any]] | None:
        devs = _devices(lab)
        return devs if all(devs[d]["last_error"] == "auth_failed" for d in REASONS) else None

    devs = wait_for(refused, 60, "the mis-keyed devices refused")
    for device, counter in REASONS.items():
        assert counter in devs[device]["last_error_text"], devs[device]
        assert not devs[device]["up"]
    wait_for(lambda: {i["device"] for i in _open_incidents(lab) if i["rule"] == "device_auth_failed"}
             >= set(REASONS), 60, "device_auth_failed incidents")
    for device in REASONS:
        assert lab.metric("callipso_poll_errors_total", device=device, kind="auth_failed")


def test_v3_trap_opens_its_incident_and_bad_keys_are_counted(lab: LabAgent) -> None:
    wait_for(lambda: lab.control_api("/lab")["trap_port"], 60, "the lab")
    wait_for(lambda: lab.metric("callipso_traps_received_total") is not None, 60, "the trap receiver's metrics")
    before = {r: _rejected(lab, r) for r in ("wrong_digest", "decryption_error")}

    _snmptrap(lab, "sbc-hd13", auth_key="not-the-auth-key-0")
    _snmptrap(lab, "sbc-hd13", priv_key="not-the-priv-key-0")
    wait_for(lambda: _rejected(lab, "wrong_digest") >= before["wrong_digest"] + 1, 30, "wrong digest counted")
    wait_for(lambda: _rejected(lab, "decryption_error") >= before["decryption_error"] + 1, 30,
             "decryption error counted")
    assert not [i for i in _open_incidents(lab) if i["rule"] == "audiocodes_alarm_trap"]

    # a good trap after the bad ones: the receiver still works, and the credential names the device
    _snmptrap(lab, "sbc-hd13")
    incident = wait_for(lambda: next((i for i in _open_incidents(lab) if i["rule"] == "audiocodes_alarm_trap"),
                                     None), 60, "the trap's incident")
    assert incident["device"] == "sbc-hd13"
    assert (lab.metric("callipso_traps_events_total") or 0) >= 1
    # net-snmp's AES-256 is the Blumenthal key extension: accepted from the device configured so
    events = lab.metric("callipso_traps_notifications_total") or 0
    _snmptrap(lab, "ups-hd13", source="Board#1/EthernetLink#1")
    wait_for(lambda: (lab.metric("callipso_traps_notifications_total") or 0) > events, 30, "the AES-256 trap")
    # ... and refused from a device configured with Cisco's extension (aes256): the right keys, another cipher key
    refused = _rejected(lab, "decryption_error")
    _snmptrap(lab, "sbc-arenc", net_snmp_priv="AES-256")
    wait_for(lambda: _rejected(lab, "decryption_error") > refused, 30, "the key-extension mismatch refused")


def test_no_v3_key_in_outputs(lab: LabAgent) -> None:
    keys = [p.read_text(encoding="utf-8").strip() for p in sorted(_secrets(lab).glob("*.v3-*-key"))]
    assert len(keys) == 2 * len(V3) and all(len(k) >= 20 for k in keys)
    wait_for(lambda: _devices(lab)["probe-hd13"]["last_error"] == "auth_failed", 60, "a refusal to search")
    outputs = {"/metrics": lab.metrics_text(), "log": lab.log.read_text(encoding="utf-8", errors="replace")}
    for path in ("/api/v1/devices", "/api/v1/incidents", "/api/v1/measurements?device=sbc-hd13"):
        outputs[path] = str(lab.api(path))
    assert "usmStatsWrongDigests" in outputs["/api/v1/devices"]  # the search covers the refusal texts
    leaks = [(where, k[:3] + "…") for where, text in outputs.items() for k in keys if k in text]
    assert not leaks, leaks
