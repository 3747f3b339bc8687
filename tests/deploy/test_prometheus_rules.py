"""deploy/prometheus and deploy/alertmanager: rules and configs checked by the real promtool/amtool, every
alert unit-tested, every runbook_url pointing to a runbook that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.system import require_binary

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
TESTS = sorted((PROM / "tests").glob("*.yaml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOK_URL = re.compile(r"^https://[^/]+/runbooks/(?P<file>[a-z0-9-]+\.md)$")

pytestmark = pytest.mark.system


def alert_rules() -> list[dict[str, object]]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out += [r for r in group["rules"] if "alert" in r]
    return out


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_rule_files_pass_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    out = run(promtool, "check", "rules", *map(str, RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_example_scrape_config_passes_promtool_check_config() -> None:
    promtool = require_binary("promtool")
    out = run(promtool, "check", "config", "--syntax-only", str(PROM / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "callipso-agent"]
    assert job["metrics_path"] == "/metrics"
    assert {Path(f).name for f in cfg["rule_files"]} == {p.name for p in RULES}


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    promtool = require_binary("promtool")
    out = run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_unit_test() -> None:
    fired: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for t in case.get("alert_rule_test", []):
                if t.get("exp_alerts"):
                    fired.add(t["alertname"])
    names = {str(r["alert"]) for r in alert_rules()}
    assert names, "no alert found"
    assert names - fired == set(), f"alerts without a test that fires them: {sorted(names - fired)}"


def test_every_alert_has_severity_french_texts_and_a_runbook_that_exists() -> None:
    runbooks = ROOT / "runbooks"
    missing = []
    for rule in alert_rules():
        labels = rule.get("labels") or {}
        ann = rule.get("annotations") or {}
        assert isinstance(labels, dict) and isinstance(ann, dict)
        assert labels.get("severity") in {"critical", "warning"}, rule["alert"]
        assert ann.get("summary") and ann.get("description"), rule["alert"]
        m = RUNBOOK_URL.match(str(ann.get("runbook_url", "")))
        assert m, f"{rule['alert']}: runbook_url {ann.get('runbook_url')!r} is not .../runbooks/<file>.md"
        if not (runbooks / m["file"]).is_file():
            missing.append((rule["alert"], m["file"]))
    assert not missing, f"runbook files missing: {missing}"


def test_runbooks_follow_the_plan_and_are_listed_in_the_index() -> None:
    index = (ROOT / "runbooks" / "README.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "runbooks").glob("*.md")):
        if path.name == "README.md":
            continue
        text = path.read_text(encoding="utf-8")
        headings = re.findall(r"^## (.+)$", text, flags=re.M)
        for section in ("Symptôme", "Impact et priorité", "Diagnostic", "Résolution", "Escalade"):
            assert any(h.startswith(section) for h in headings), f"{path.name}: no '{section}' section"
        assert f"({path.name})" in index, f"{path.name} not listed in runbooks/README.md"


def test_alertmanager_config_passes_amtool_and_routes_as_documented() -> None:
    amtool = require_binary("amtool")
    out = run(amtool, "check-config", str(ALERTMANAGER))
    assert out.returncode == 0, out.stdout + out.stderr

    def receivers(*labels: str) -> set[str]:
        r = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        assert r.returncode == 0, r.stdout + r.stderr
        return set(r.stdout.strip().split(","))

    assert receivers("alertname=CallipsoUpsOnBattery", "severity=warning") == {"callipso-agent"}
    assert receivers("alertname=CallipsoUpsLowCharge", "severity=critical") == {"callipso-agent", "oncall"}
    assert receivers("alertname=CallipsoAgentDown", "severity=critical") == {"oncall"}
    cfg = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    (agent,) = [r for r in cfg["receivers"] if r["name"] == "callipso-agent"]
    assert agent["webhook_configs"][0]["url"] == "http://127.0.0.1:9730/api/v1/alertmanager"
