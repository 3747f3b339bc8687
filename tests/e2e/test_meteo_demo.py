"""The météo of the demo: the lab and the agent run (real snmpsim, real CLI in child processes), a UPS of a
remote site loses mains, and ``callipso-agent meteo --send`` mails a météo, built from the agent's HTTP API,
to a real SMTP server: it shows the site on UPS. The lab estate is SYNTHETIC."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.test_demo import Demo, _wait
from tests.meteo.smtp import SmtpServer, smtp_server

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path)
    d.start()
    try:
        yield d
    finally:
        # SIGTERM first: the demo then stops its snmpsim (a SIGKILL would leave it running)
        if d.proc is not None and d.proc.poll() is None:
            try:
                d.stop()
            except subprocess.TimeoutExpired:
                d.kill()


@pytest.fixture
def mail() -> Iterator[SmtpServer]:
    with smtp_server() as srv:
        yield srv


def test_demo_meteo_shows_the_remote_site_on_ups(demo: Demo, mail: SmtpServer, tmp_path: Path) -> None:
    _wait(
        lambda: (r := demo.api("/readyz")) and r["devices_up"] >= r["devices"] > 0 and r, 90, "lab devices up"
    )
    out = demo.lab("fault", "on_battery", "ups-aubagne-mds")
    assert out.returncode == 0, out.stderr

    def on_battery() -> bool:
        ms = demo.api("/api/v1/devices/ups-aubagne-mds")["measurements"]
        return any(x["name"] == "ups_on_battery" and x["value"] == 1 for x in ms)

    _wait(on_battery, 30, "ups-aubagne-mds on battery")

    config_dir = tmp_path / "lab" / "config"
    (config_dir / "meteo").mkdir(exist_ok=True)
    (config_dir / "meteo" / "meteo.yaml").write_text(
        "# SYNTHETIC demo settings\n"
        "meteo:\n"
        "  sender: supervision@cd13.example\n"
        "  recipients: [exploitation@cd13.example]\n"
        "  retries: 1\n"
        "  retry_backoff: 1\n"
        f"  smtp: {{host: {mail.host}, port: {mail.port}, security: none}}\n",
        encoding="utf-8",
    )
    # no --api: the command finds the agent from the configuration's http section
    run = subprocess.run(
        [sys.executable, "-m", "callipso_agent.meteo", "--config", str(config_dir), "--send"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    [got] = mail.sink.received
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    assert got.message["Subject"] == f"Météo Callipso du {today:%d/%m/%Y}"
    text = got.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = got.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    remote = text[text.index("SITES DISTANTS") : text.index("INFORMATIONS / CHANGEMENTS")]
    assert "Sur onduleur : 1" in remote
    # the site's line, with the incident number once the on-battery rule has opened its incident
    assert re.search(r"AUBAGNE-MDS — (CAL-\d{6} — )?Onduleur ups-aubagne-mds sur batterie", remote), remote
    assert "État technique : ▲ Perturbé" in remote
    assert "ups-aubagne-mds" in html and "Sur onduleur : <strong>1</strong>" in html
    # the other UPSes of the lab are on mains
    assert "ups-istres-mds sur batterie" not in text
    # archived in the agent's store, beside what the agent writes
    with sqlite3.connect(tmp_path / "lab" / "state" / "callipso.sqlite") as db:
        rows = db.execute("SELECT day, sent_at IS NOT NULL FROM meteo_report").fetchall()
    assert rows == [(today.isoformat(), 1)]
