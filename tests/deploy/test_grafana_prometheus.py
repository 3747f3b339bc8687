"""Grafana dashboards against a real Prometheus scraping the real lab agent.

One lab agent (snmpsim + the daemon + /metrics) and one Prometheus (scrape and rule evaluation every second,
the project's recording and alerting rules loaded) serve the whole module. Every panel query must parse;
queries over what the lab serves must return series. The lab serves UPSes only: panels over SBC, OXE,
probe, incident and notification series are listed in NOT_SERVED and are only checked to parse.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.lab_agent import LabAgent, wait_for
from tests.helpers.prometheus import Prometheus
from tests.helpers.system import require_binary

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))

pytestmark = [pytest.mark.system, pytest.mark.slow]

# (dashboard uid, panel title) whose series the lab cannot produce yet: other families or the incident engine.
NOT_SERVED = {
    ("callipso-noc", "Incidents ouverts par priorité"),
    ("callipso-noc", "Incidents ouverts par site"),
    ("callipso-noc", "Échéances à risque (moins d'une heure)"),
    ("callipso-noc", "Échecs de notification"),
    ("callipso-ups", "Âge des batteries (si exposé)"),
    ("callipso-sbc", "SBC joignables"),
    ("callipso-sbc", "Sévérité des alarmes"),
    ("callipso-sbc", "État HA"),
    ("callipso-sbc", "Appels actifs"),
    ("callipso-sbc", "Trunks SIP"),
    ("callipso-sbc", "Passerelles injoignables"),
    ("callipso-sbc", "Ports analogiques non nominaux"),
    ("callipso-oxe", "Rôle"),
    ("callipso-oxe", "État"),
    ("callipso-oxe", "OXE joignables"),
    ("callipso-oxe", "Trunks"),
    ("callipso-environment", "Température par local"),
    ("callipso-environment", "Hygrométrie par local"),
    ("callipso-environment", "Locaux les plus chauds"),
}
# Template variables whose values the lab cannot produce yet.
NOT_SERVED_VARIABLES = {("callipso-sbc", "device"), ("callipso-oxe", "device")}

ON_BATTERY = "ups-aubagne-mds"
UNREACHABLE_SITE, UNREACHABLE = "GARDANNE-MDS", "ups-gardanne-mds"


def dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    ]


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for d in dashboards():
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((d["uid"], p["title"], t["expr"]))
    return out


def substitute(expr: str) -> str:
    """What Grafana sends with every variable on "All" (allValue .*)."""
    return expr.replace("$__rate_interval", "1m").replace("$site", ".*").replace("$device", ".*")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabAgent, Prometheus]]:
    require_binary("prometheus")
    work = tmp_path_factory.mktemp("grafana")
    agent = LabAgent(work)
    agent.start()
    prom: Prometheus | None = None
    try:
        agent.wait_all_up()
        agent.fault("on_battery", ON_BATTERY)
        agent.fault("unreachable", UNREACHABLE_SITE)
        prom = Prometheus(work, agent.metrics_target, RULES)
        prom.start()
        yield agent, prom
    finally:
        if prom is not None:
            prom.stop()
        agent.stop()


def test_dashboard_json_is_what_the_generator_writes() -> None:
    out = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_dashboards_are_well_formed_and_use_the_variables() -> None:
    ds = dashboards()
    assert {d["uid"] for d in ds} == {
        "callipso-noc",
        "callipso-ups",
        "callipso-sbc",
        "callipso-oxe",
        "callipso-environment",
    }
    for d in ds:
        names = [v["name"] for v in d["templating"]["list"]]
        assert names[:2] == ["datasource", "site"], d["uid"]
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), d["uid"]
        for p in d["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == "${datasource}"
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24
            for t in p["targets"]:
                # a panel over sites must follow $site; over devices, $device when the dashboard has one
                if "site=~" in t["expr"]:
                    assert 'site=~"$site"' in t["expr"], (d["uid"], p["title"])
                if "device" in names and 'device=~"' in t["expr"]:
                    assert 'device=~"$device"' in t["expr"], (d["uid"], p["title"])
    served_titles = {(uid, title) for uid, title, _ in panel_queries()}
    assert served_titles >= NOT_SERVED, f"stale NOT_SERVED entries: {NOT_SERVED - served_titles}"


def test_prometheus_scrapes_the_agent_and_evaluates_every_rule(stack: tuple[LabAgent, Prometheus]) -> None:
    _, prom = stack

    def target_up() -> bool:
        r = prom.query('up{job="callipso-agent"} == 1')["data"]["result"]
        return bool(r)

    wait_for(target_up, 60, "agent target up")

    def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = prom.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_for(rules_evaluated, 30, "every rule evaluated")
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    assert len(rules) >= 30


def test_ups_on_battery_alert_goes_pending_for_the_faulty_ups_only(
    stack: tuple[LabAgent, Prometheus],
) -> None:
    _, prom = stack

    def pending() -> list[dict[str, Any]]:
        return prom.query('ALERTS{alertname="CallipsoUpsOnBattery"}')["data"]["result"]

    alerts = wait_for(pending, 60, "CallipsoUpsOnBattery pending")
    assert {a["metric"]["device"] for a in alerts} == {ON_BATTERY}
    assert alerts[0]["metric"]["severity"] == "warning"


@pytest.mark.parametrize(("uid", "title", "expr"), panel_queries(), ids=lambda v: str(v)[:60])
def test_every_panel_query_parses_and_returns_data_when_served(
    stack: tuple[LabAgent, Prometheus], uid: str, title: str, expr: str
) -> None:
    _, prom = stack
    query = substitute(expr)
    assert "$" not in query, f"unsubstituted variable in {expr!r}"
    first = prom.query(query)
    assert first["status"] == "success", f"{uid} / {title}: {first.get('errorType')}: {first.get('error')}"
    if (uid, title) in NOT_SERVED:
        return

    def has_series() -> list[Any]:
        r = prom.query(query)
        assert r["status"] == "success", r
        return r["data"]["result"]

    result = wait_for(has_series, 60, f"series for {uid} / {title}: {query}", every=0.5)
    assert result


def test_template_variables_list_lab_values(stack: tuple[LabAgent, Prometheus]) -> None:
    _, prom = stack
    pattern = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>\w+)\)$")
    checked = 0
    for d in dashboards():
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            m = pattern.match(v["query"]["query"])
            assert m, v["query"]
            match = substitute(m["match"])
            if (d["uid"], v["name"]) in NOT_SERVED_VARIABLES:
                assert prom.api("series", **{"match[]": match})["status"] == "success"
                continue
            label = m["label"]
            values = wait_for(
                lambda label=label, match=match: prom.api(f"label/{label}/values", **{"match[]": match})[
                    "data"
                ],
                30,
                f"values of ${v['name']} in {d['uid']}",
            )
            if v["name"] == "site":
                assert {"AUBAGNE-MDS", UNREACHABLE_SITE} <= set(values)
            if d["uid"] == "callipso-ups" and v["name"] == "device":
                assert ON_BATTERY in values
            checked += 1
    assert checked >= 6


def test_weakest_batteries_ranking_and_weather_reflect_the_faults(stack: tuple[LabAgent, Prometheus]) -> None:
    _, prom = stack

    def weather() -> dict[str, float] | None:
        r = prom.query("site:callipso_weather:score")["data"]["result"]
        by_site = {s["metric"]["site"]: float(s["value"][1]) for s in r}
        return by_site if by_site.get(UNREACHABLE_SITE) == 2 and by_site.get("AUBAGNE-MDS") == 1 else None

    by_site = wait_for(weather, 60, "weather: gardanne down, aubagne on battery")
    assert by_site["ISTRES-MDS"] == 0
    weakest = prom.query('bottomk(3, callipso_ups_battery_charge_percent{site=~".*"})')["data"]["result"]
    assert len(weakest) == 3
    assert ON_BATTERY in {s["metric"]["device"] for s in weakest}  # 62 % after the fault, others near 100 %
