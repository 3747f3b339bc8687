"""Fault suite under load, reduced CI form: 200 simulated devices, 30 % of them misbehaving.

The full form is ``make fault-load`` (``python -m tests.reliability.fault_load``: 2,000 devices, 600 s, 60 s
interval); this runs the same harness on 200 devices at a 10 s interval with a 1 s SNMP timeout for about
70 s with the faults on. It fails when a healthy device misses its schedule by more than one interval (or a
run is refused because its previous poll was still running), when a healthy device fails a poll, when the
agent's asyncio tasks, fds or threads grow, when a misbehaving device does not carry its class's reason
(truncated and genErr answers: ``parse_error``; silence, late answers, random bytes, wrong community:
``timeout``; restarting agents: up, with a ``device_rebooted`` incident), when a cut-off site gives anything
but one site incident, or when a site that is not cut off gets a site incident.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability.fault_load import SITE_DOWN, Options, fault_classes, markdown, plan_faults, run

pytestmark = pytest.mark.slow

DEVICES = int(os.environ.get("CALLIPSO_FAULT_LOAD_DEVICES", "200"))
DURATION = float(os.environ.get("CALLIPSO_FAULT_LOAD_SECONDS", "70"))


def test_fault_plan_covers_every_class_and_never_a_whole_mixed_site(tmp_path: Path) -> None:
    from bench.estate import build

    opts = Options(devices=DEVICES, interval=10.0, timeout=1.0)
    estate = build(tmp_path, DEVICES, opts.port)
    plan = plan_faults(estate, opts)
    assert abs(len(plan) - 0.3 * DEVICES) <= 1
    assert set(plan.values()) == set(fault_classes(opts.timeout, opts.retries))
    by_site: dict[str, list[str]] = {}
    for d in estate.devices:
        by_site.setdefault(d.site, []).append(d.name)
    for site, names in by_site.items():
        classes = {plan.get(n) for n in names}
        if SITE_DOWN in classes:
            assert classes == {SITE_DOWN}, site  # a cut-off site is cut off whole
        else:
            assert None in classes, site  # every other site keeps a healthy device
    assert plan == plan_faults(estate, opts)  # reproducible


def test_healthy_devices_keep_schedule_while_30_percent_misbehave(tmp_path: Path) -> None:
    # a cut-off site's incident opens ~55 s after the cut at this interval (3 failed polls, the third after a
    # back-off, then the next incident tick): a loaded machine may take longer, the run then waits up to 45 s
    opts = Options(devices=DEVICES, duration=DURATION, interval=10.0, timeout=1.0, retries=1, sample_every=2.0,
                   scrape_every=10.0, settle=45.0, workdir=tmp_path / "work")
    result = run(opts, tmp_path / "out")
    text = markdown(result)
    print("\n" + text)
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["ok"]}
    assert not failed, json.dumps(failed, indent=1)
    names = {c["name"] for c in result["checks"]}
    assert {"healthy_on_schedule", "healthy_without_error", "no_growth", "faulty_reasons", "site_correlation",
            "restarts_seen", "faults_played"} <= names
    # the faults were there during the measure: every class reported, the healthy devices polled several times
    classes = result["estate"]["classes"]
    assert set(classes) == set(fault_classes(opts.timeout, opts.retries))
    assert result["schedule"]["polls_per_device_min"] >= int(DURATION / (opts.interval * 1.1)) - 1
    assert result["restarts"] >= 2
