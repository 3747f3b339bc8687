"""The README's demo: lab + agent come up, poll the lab's UPSes, react to a fault, stop cleanly on SIGTERM
and resume after a restart. Runs the real CLI in a child process, against a real snmpsim."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from callipso_agent.lab.snmpsim import free_tcp_port
from tests.helpers.lab_agent import TEST_SITES
from tests.helpers.system import missing

pytestmark = pytest.mark.slow


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=3) as rsp:  # noqa: S310 - loopback
        return json.loads(rsp.read())


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except OSError as err:
            last = err
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http = free_tcp_port()
        self.control = free_tcp_port()
        self.log = workdir / "demo.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        try:
            import snmpsim  # noqa: F401
        except ImportError:
            missing("snmpsim")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callipso_agent", "demo", "--dir", str(self.workdir / "lab"),
             "--interval", "2", "--http-port", str(self.http), "--control-port", str(self.control),
             "--sites", TEST_SITES],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def api(self, path: str) -> dict:
        return _get(f"http://127.0.0.1:{self.http}{path}")

    def lab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "callipso_agent", "lab", "--control-port", str(self.control),
                               *args], capture_output=True, text=True, timeout=30, check=False)

    def stop(self) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path)
    d.start()
    yield d
    d.kill()


def test_demo_polls_lab_ups_reacts_to_fault_and_stops_cleanly(demo: Demo, tmp_path: Path) -> None:
    _wait(lambda: demo.api("/healthz")["status"] == "ok", 60, "/healthz")
    ready = _wait(lambda: (r := demo.api("/readyz")) and r["devices_up"] >= r["devices"] > 0 and r, 60, "all up")
    assert ready["store"] and ready["scheduler"]

    charges = demo.api("/api/v1/measurements?name=ups_battery_charge_percent")["measurements"]
    assert len(charges) >= 7 and all(0 <= m["value"] <= 100 for m in charges)
    log = (tmp_path / "demo.log").read_text()
    assert '"device_up"' in log and "ups-" in log

    # the fault switch: mains lost at one remote site
    out = demo.lab("fault", "on_battery", "ups-aubagne-mds")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["devices"] == ["ups-aubagne-mds"]

    def on_battery() -> bool:
        ms = demo.api("/api/v1/devices/ups-aubagne-mds")["measurements"]
        return any(m["name"] == "ups_on_battery" and m["value"] == 1 for m in ms)

    _wait(on_battery, 30, "ups-aubagne-mds on battery")
    other = demo.api("/api/v1/devices/ups-istres-mds")["measurements"]
    assert any(m["name"] == "ups_on_battery" and m["value"] == 0 for m in other)

    # SSH-polled devices (OXE twin, OTMS, OmniVista 8770) answer through their emulators
    def value(device: str, name: str, **labels: str) -> float | None:
        for m in demo.api(f"/api/v1/devices/{device}")["measurements"]:
            if m["name"] == name and all(m["labels"].get(k) == v for k, v in labels.items()):
                return m["value"]
        return None

    roles = {m["labels"]["cpu"]: m["text"] for m in demo.api("/api/v1/devices/oxe-hd13")["measurements"]
             if m["name"] == "pbx_cpu_role"}
    assert roles == {"A": "main", "B": "standby"}
    assert value("ov8770-hd13", "ov_directory_sync_ok") == 1
    assert demo.lab("fault", "directory_sync_failed", "ov8770-hd13").returncode == 0
    _wait(lambda: value("ov8770-hd13", "ov_directory_sync_ok") == 0, 30, "directory sync failed")

    out = demo.lab("fault", "unreachable", "GARDANNE-MDS")
    assert out.returncode == 0
    _wait(lambda: demo.api("/api/v1/devices/ups-gardanne-mds")["last_error"] == "timeout", 30, "unreachable")

    # one incident for the cut-off site, carrying its devices' alarms, with the contract's priority
    def site_incidents() -> list[dict]:
        body = demo.api("/api/v1/incidents?state=open")
        items = body["incidents"] if isinstance(body, dict) else body
        return [i for i in items if i.get("site") == "GARDANNE-MDS"]

    found = _wait(lambda: [i for i in site_incidents() if i["key"] == "site_unreachable:GARDANNE-MDS"], 120,
                  "site incident")
    assert len(site_incidents()) == 1, site_incidents()
    assert found[0]["priority"] in ("P1", "P2", "P3")
    assert "GARDANNE" in found[0]["title"]
    def metrics() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{demo.http}/metrics", timeout=5).read().decode()

    # the snapshot of open incidents is read again a second after a burst of changes
    _wait(lambda: 'callipso_incidents_open{priority="' in (text := metrics()) and 'site="GARDANNE-MDS"' in text,
          10, "the site incident on /metrics")
    assert demo.lab("fault", "no_such_fault", "GARDANNE-MDS").returncode == 2

    # SIGHUP with a broken configuration keeps the running one; a valid one is applied
    devices = tmp_path / "lab" / "config" / "devices.yaml"
    good = devices.read_text()
    devices.write_text(good.replace("interval:", "intervall:", 1))
    assert demo.proc is not None
    demo.proc.send_signal(signal.SIGHUP)
    _wait(lambda: '"reload_refused"' in (tmp_path / "demo.log").read_text(), 20, "reload refused")
    assert "intervall" in (tmp_path / "demo.log").read_text()
    assert demo.api("/healthz")["status"] == "ok"
    devices.write_text(good)
    demo.proc.send_signal(signal.SIGHUP)
    _wait(lambda: '"config_reloaded"' in (tmp_path / "demo.log").read_text(), 20, "reload applied")
    # what the start and the reload built is kept out of the garbage collector's full collections
    frozen = [json.loads(line)["frozen_objects"] for line in (tmp_path / "demo.log").read_text().splitlines()
              if '"agent_started"' in line or '"config_reloaded"' in line]
    assert len(frozen) == 2 and all(n > 10_000 for n in frozen), frozen
    _wait(lambda: demo.api("/readyz")["devices_up"] > 0, 30, "polling after reload")

    rc, took = demo.stop()
    assert rc == 0
    assert took < 5.0, f"SIGTERM took {took:.1f}s"
    db = tmp_path / "lab" / "state" / "callipso.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n, = conn.execute("SELECT count(*) FROM device_state WHERE last_success_at IS NOT NULL").fetchone()
    assert n >= 7

    # restart on the same state: the store is reused and polling resumes
    again = Demo(tmp_path)
    again.log = tmp_path / "demo2.log"
    again.start()
    try:
        _wait(lambda: again.api("/readyz")["devices_polled"] > 0, 60, "polls after restart")
        assert "store_migrated" in again.log.read_text()
    finally:
        rc2, _ = again.stop()
    assert rc2 == 0
