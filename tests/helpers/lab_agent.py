"""The lab agent (``callipso-agent demo``: snmpsim lab, SSH emulators, fault switch and the real daemon)
as a child process on ephemeral loopback ports, for the Prometheus, Grafana and Nagios tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callipso_agent.lab.snmpsim import free_tcp_port

ROOT = Path(__file__).resolve().parents[2]
# a slice of the example estate: both data centres and five remote sites (single and dual WAN), which keeps
# the lab light on a loaded 2-core machine while every family is represented
TEST_SITES = "HD13,ARENC,AIX-MDS,AUBAGNE-MDS,ISTRES-MDS,GARDANNE-MDS,SALON-MDS"
#: the lab's SNMPv3 protocol names → net-snmp's
NET_SNMP_AUTH = {"md5": "MD5", "sha": "SHA", "sha224": "SHA-224", "sha256": "SHA-256", "sha384": "SHA-384",
                 "sha512": "SHA-512"}
NET_SNMP_PRIV = {"des": "DES", "aes": "AES", "aes192": "AES-192C", "aes256": "AES-256C",
                 "aes192-blumenthal": "AES-192", "aes256-blumenthal": "AES-256"}


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    """Poll ``pred`` until it returns something truthy; OSError and ValueError count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError) as err:
            last = err
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def alertmanager_alert(check: str, device: str) -> dict[str, Any]:
    """An Alertmanager webhook body whose alert opens a ``daily_check_failed`` incident at once
    (key ``daily_check_failed:<device>{check=<check>}``)."""
    from datetime import UTC, datetime

    starts = datetime.now(UTC).isoformat().replace("+00:00", "Z")  # the rule's clear_after counts from here
    return {"version": "4", "groupKey": f"reliability:{check}", "status": "firing", "alerts": [{
        "status": "firing", "fingerprint": check, "startsAt": starts,
        "labels": {"alertname": "daily_check_failed", "device": device, "check": check, "severity": "warning"}}]}


class LabAgent:
    """The lab agent as a child process on ephemeral loopback ports."""

    def __init__(self, workdir: Path, interval: float = 2.0, sites: str = TEST_SITES,
                 overlay: Path | None = None, snmpv3: str | None = None, random_communities: bool = False) -> None:
        self.sites = sites
        self.snmpv3 = snmpv3  # the lab's --snmpv3 (DEVICE[:AUTH/PRIV][:MISMATCH],...)
        self.random_communities = random_communities
        self.overlay = overlay  # configuration merged into the lab's (peers, store, agent settings)
        self.workdir = workdir
        self.interval = interval
        self.http = free_tcp_port()
        self.control = free_tcp_port()
        self.log = workdir / "lab-agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.http}"

    def start(self) -> None:
        from tests.helpers.system import missing

        try:
            import snmpsim  # noqa: F401
        except ImportError:
            missing("snmpsim")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callipso_agent",
                "demo",
                "--dir",
                str(self.workdir / "lab"),
                "--interval",
                str(self.interval),
                "--http-port",
                str(self.http),
                "--control-port",
                str(self.control),
                "--sites",
                self.sites,
                *(["--overlay", str(self.overlay)] if self.overlay is not None else []),
                *(["--snmpv3", self.snmpv3] if self.snmpv3 else []),
                *(["--random-communities"] if self.random_communities else []),
            ],
            cwd=ROOT,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.api_url + path, timeout=5) as rsp:  # noqa: S310 - loopback
            return json.loads(rsp.read())

    def control_api(self, path: str) -> Any:
        """GET on the lab's fault switch (``/lab``, ``/lab/network``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}{path}", timeout=10) as rsp:
            return json.loads(rsp.read())

    def post(self, path: str, body: Any, token: str) -> Any:
        req = urllib.request.Request(self.api_url + path, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as rsp:  # noqa: S310 - loopback
            return json.loads(rsp.read())

    def ready(self) -> tuple[int, Any]:
        """``/readyz``: status code and body, 503 included."""
        try:
            with urllib.request.urlopen(self.api_url + "/readyz", timeout=5) as rsp:  # noqa: S310 - loopback
                return rsp.status, json.loads(rsp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one series of ``/metrics`` (None when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_target}/metrics", timeout=5) as rsp:
            return rsp.read().decode()

    def wait_all_up(self, timeout: float = 90) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"lab agent exited: {self.log.read_text()[-3000:]}")
            r = self.api("/readyz")
            return r if r["devices"] > 0 and r["devices_up"] >= r["devices"] else None

        return wait_for(ready, timeout, "every lab device up")

    def lab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "callipso_agent", "lab", "--control-port", str(self.control), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )

    def fault(self, fault: str, target: str) -> None:
        """Inject a fault through the lab's fault switch (HTTP; ``lab()`` runs the CLI for the same)."""
        self._control("POST", fault, target)

    def clear(self, target: str, fault: str | None = None) -> None:
        self._control("DELETE", fault, target)

    def _control(self, method: str, fault: str | None, target: str) -> None:
        body = json.dumps({"target": target, "fault": fault}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}/lab/faults", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as rsp:  # noqa: S310 - loopback
            assert rsp.status == 200, rsp.read()

    def v3_key(self, device: str, what: str) -> str:
        """The agent's SNMPv3 ``auth`` or ``priv`` key for a lab device started with ``snmpv3``."""
        return (self.workdir / "lab" / "secrets" / f"{device}.v3-{what}-key").read_text(encoding="utf-8").strip()

    def send_v3_trap(self, device: str, trap_oid: str, varbinds: list[tuple[str, str, str]], *,
                     auth_key: str | None = None, priv_key: str | None = None,
                     net_snmp_priv: str | None = None) -> None:
        """net-snmp's ``snmptrap -v 3 -l authPriv`` as the lab device ``device`` (its user, engine ID and keys,
        unless others are given) to the agent's trap receiver; ``varbinds``: (OID, type letter, value)."""
        from tests.helpers.system import require_binary

        snmptrap = require_binary("snmptrap")
        state = self.control_api("/lab")
        v3 = state["devices"][device]["snmpv3"]
        argv = [snmptrap, "-v", "3", "-e", f"0x{v3['engine_id']}", "-u", v3["user"], "-l", "authPriv",
                "-a", NET_SNMP_AUTH[v3["auth"]], "-A", auth_key or self.v3_key(device, "auth"),
                "-x", net_snmp_priv or NET_SNMP_PRIV[v3["priv"]], "-X", priv_key or self.v3_key(device, "priv"),
                f"udp:127.0.0.1:{state['trap_port']}", "", trap_oid, *(x for vb in varbinds for x in vb)]
        proc = subprocess.run(argv, env=dict(os.environ, MIBS="", MIBDIRS=""), capture_output=True, timeout=20,
                              check=False)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

