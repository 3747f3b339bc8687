"""The benchmark harness still works: a small run (N = 50) of ``python -m bench.run``.

Benchmarks are not tests: nothing here judges speed. The run must poll every device, read the same varbinds as
net-snmp and snmp_exporter device by device, open an incident for every trap and threshold crossing it plays,
and write results that follow the schema the README's figures are read from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.system import require_binary

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.system]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_binary("snmpbulkwalk")
    require_binary("snmpget")
    require_binary("prometheus-snmp-exporter", "snmp_exporter")
    out = tmp_path_factory.mktemp("bench-results")
    work = tmp_path_factory.mktemp("bench-work")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--devices", "50", "--trap-samples", "10", "--threshold-samples", "4",
         "--paced-spread", "5",
         "--workdir", str(work), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    files = sorted(out.glob("*-n50.json"))
    assert files, f"no result written (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(files[0].read_text(encoding="utf-8"))
    data["_exit"], data["_stdout"], data["_md"] = proc.returncode, proc.stdout, files[0].with_suffix(".md")
    return data


def test_schema(run: dict) -> None:
    assert run["schema"] == "callipso-bench/1"
    for key in ("date", "machine", "devices", "responder", "settings", "agent", "peers", "checks"):
        assert key in run, key
    assert run["machine"]["cores"] >= 1
    for a in run["agent"]:
        for key in ("cycle", "first_cycle", "metrics_scrape", "trap_to_incident", "threshold_to_incident",
                    "maxrss_bytes"):
            assert key in a, key
        lag = a["cycle"]["event_loop_lag_s"]
        assert lag["n"] > 0 and lag["p50"] <= lag["p99"] <= lag["max"]
        assert a["cycle"]["cpu_s"] > 0 and a["maxrss_bytes"] > 0
        gc_pauses = a["cycle"]["gc"]  # a cycle of 50 devices allocates enough for a young collection at least
        assert gc_pauses["collections"] > 0 and gc_pauses["full_collections"] <= gc_pauses["collections"]
    assert run["_md"].is_file() and "varbinds/s per core" in run["_md"].read_text(encoding="utf-8")


def test_every_device_polled(run: dict) -> None:
    assert run["devices"] == 50
    for a in run["agent"]:
        assert a["cycle"]["devices"] == 50 and a["cycle"]["ok"] == 50, a["cycle"]["errors"]
        assert a["cycle"]["varbinds"] > 50


def test_peers_read_the_same_varbinds(run: dict) -> None:
    agent_vbs = run["agent"][0]["cycle"]["varbinds"]
    assert set(run["peers"]) == {"client", "netsnmp", "exporter"}
    for name, p in run["peers"].items():
        assert "error" not in p, p
        assert p["failures"] == 0, (name, p.get("failure_examples"))
        assert p["mismatched_count"] == 0, (name, p["mismatched_devices"])
        assert p["varbinds"] == agent_vbs, name


def test_traps_and_threshold_open_incidents(run: dict) -> None:
    for a in run["agent"]:
        assert set(a["trap_to_incident"]) == {"flat_out", "paced"}
        for t in a["trap_to_incident"].values():  # at most half of the UPS carry the traps, in two waves
            assert t["sent"] >= 2 and t["incidents"] == t["sent"]
        th = a["threshold_to_incident"]
        assert th["devices"] == 4 and th["incidents"] == 4
        assert a["metrics_scrape"]["samples"] > 50


def test_run_says_its_checks_passed(run: dict) -> None:
    assert all(run["checks"].values()), run["checks"]
    assert run["_exit"] == 0
    assert "Checks: all passed" in run["_stdout"]
