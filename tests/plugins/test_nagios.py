"""callipso-check run by a real Nagios 4 against the real lab agent: OK first, CRITICAL after a lab fault.

``ups``, ``sensors`` (a UPS's battery temperature), ``device``, ``pbx`` (the OXE over SSH), ``sbc`` and
``gateway`` go from OK to CRITICAL after lab faults; ``incidents`` and ``meteo`` read the agent's incidents
and turn WARNING or CRITICAL once the unreachable device has opened its incident.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from callipso_agent.plugins.check import main as check_main
from tests.helpers.lab_agent import LabAgent
from tests.helpers.nagios import Nagios
from tests.helpers.system import missing, require_binary

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.system, pytest.mark.slow]


def run_check(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = check_main(list(argv))
    return code, buf.getvalue()


def readable_package(dest: Path) -> Path:
    """A copy of the package the nagios user can read (the checkout may sit in a private home directory)."""
    shutil.copytree(ROOT / "callipso_agent", dest / "callipso_agent",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def plugin_python(uid: int, gid: int, root: Path = ROOT) -> str:
    """A Python 3.11+ the Nagios user can run: this one or the system's (the plugin needs only the stdlib)."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/bin:/bin") or ""):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [
                    candidate,
                    "-c",
                    "import sys; sys.path.insert(0, sys.argv[1]); import callipso_agent.plugins.check",
                    str(root),
                ],
                capture_output=True,
                timeout=30,
                check=False,
                user=uid if os.geteuid() == 0 else None,
                group=gid if os.geteuid() == 0 else None,
            )
        except PermissionError:
            continue
        if probe.returncode == 0:
            return candidate
    missing("a Python 3.11 the nagios user can run")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabAgent]:
    require_binary("nagios4", "/usr/sbin/nagios4")
    a = LabAgent(tmp_path_factory.mktemp("nagios-lab"))
    a.start()
    try:
        a.wait_all_up()
        yield a
    finally:
        a.stop()


def pick_devices(agent: LabAgent) -> tuple[str, str, str]:
    """Three devices on three sites, each OK for its check now: a UPS for ups, a device with temperature
    sensors (a probe or a UPS battery) for sensors, any device for device."""
    url = ("--agent-url", agent.api_url)
    devices = sorted(d["name"] for d in agent.api("/api/v1/devices")["devices"])
    sites = {d["name"]: d["site"] for d in agent.api("/api/v1/devices")["devices"]}
    ups = next(d for d in devices if run_check("ups", "-d", d, *url)[0] == 0)
    sensors = next(
        d for d in devices if sites[d] != sites[ups] and run_check("sensors", "-d", d, *url)[0] == 0
    )
    dev = next(d for d in devices if sites[d] not in (sites[ups], sites[sensors]))
    return ups, sensors, dev


def test_nagios_runs_every_mode_ok_then_critical_after_lab_faults(agent: LabAgent) -> None:
    ups, sensors, dev = pick_devices(agent)
    sites_of = {d["name"]: d["site"] for d in agent.api("/api/v1/devices")["devices"]}
    nagios = Nagios()
    pkg = readable_package(nagios.dir / "pkg")
    py = plugin_python(nagios.uid, nagios.gid, pkg)
    wrapper = nagios.dir / "callipso-check"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{pkg}" PYTHONDONTWRITEBYTECODE=1 exec "{py}" '
        f'-m callipso_agent.plugins.check "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    url = f"--agent-url {agent.api_url}"
    nagios.add_service("ups", f"{wrapper} ups -d {ups} {url}")
    nagios.add_service("sensors", f"{wrapper} sensors -d {sensors} {url}")
    nagios.add_service("device", f"{wrapper} device -d {dev} {url} -c 60")
    nagios.add_service("sbc", f"{wrapper} sbc -d sbc-hd13 {url}")
    nagios.add_service("gateway", f"{wrapper} gateway -d gw-aix-mds {url}")
    nagios.add_service("pbx", f"{wrapper} pbx -d oxe-hd13 {url}")
    nagios.add_service("incidents", f"{wrapper} incidents {url}")
    nagios.add_service("meteo", f"{wrapper} meteo {url}")
    nagios.start()
    try:
        ok = {name: nagios.wait_state(name, 0) for name in ("ups", "sensors", "device", "pbx", "sbc", "gateway")}
        assert ok["ups"]["plugin_output"].startswith(f"CALLIPSO-UPS OK - {ups}")
        assert "ups_battery_charge_percent" in ok["ups"]["performance_data"]
        assert "_temperature_celsius" in ok["sensors"]["performance_data"]
        # the agent's incidents API answers: the incidents and météo checks give a real state, not UNKNOWN
        inc = nagios.wait_state("incidents", (0, 1, 2))
        assert inc["plugin_output"].startswith("CALLIPSO-INCIDENTS "), inc["plugin_output"]
        met = nagios.wait_state("meteo", (0, 1, 2))
        assert met["plugin_output"].startswith("CALLIPSO-METEO "), met["plugin_output"]

        agent.fault("on_battery", ups)
        agent.fault("over_temperature", sensors)
        agent.fault("unreachable", dev)
        agent.fault("oxe_trunk_down", "oxe-hd13")
        agent.fault("sbc_alarm", "sbc-hd13")
        agent.fault("trunk_down", "gw-aix-mds")
        crit = {name: nagios.wait_state(name, 2) for name in ("ups", "sensors", "device", "pbx", "sbc", "gateway")}
        assert "sbc_highest_alarm_severity major" in crit["sbc"]["plugin_output"]
        assert "gateway_operational" in crit["gateway"]["plugin_output"]
        # the unreachable device opens an incident (P2 or worse) and its site turns perturbé in the météo
        inc = nagios.wait_state("incidents", (1, 2), timeout=120)
        assert "incident(s) ouvert(s)" in inc["plugin_output"]
        # (HD13's faults may turn the météo first: wait for the unreachable device's site to be named too)
        met = nagios.wait_state("meteo", (1, 2), timeout=120, output=sites_of[dev])
        assert sites_of[dev] in met["plugin_output"], met["plugin_output"]
        assert "pbx_trunk" in crit["pbx"]["plugin_output"]
        assert "ups_output_source battery" in crit["ups"]["plugin_output"]
        assert "_temperature_celsius" in crit["sensors"]["plugin_output"]  # over_temperature: 41 to 48 °C
        assert "injoignable" in crit["device"]["plugin_output"]
        log = nagios.log()
        assert f"SERVICE ALERT: lab;ups;CRITICAL;HARD;1;CALLIPSO-UPS CRITICAL - {ups}" in log
        assert "SERVICE ALERT: lab;sensors;CRITICAL;HARD" in log
        assert "SERVICE ALERT: lab;device;CRITICAL;HARD" in log
        assert "SERVICE ALERT: lab;pbx;CRITICAL;HARD" in log
    finally:
        nagios.stop()
