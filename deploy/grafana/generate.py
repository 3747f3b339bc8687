"""Generate the Grafana dashboards of callipso-agent (deploy/grafana/dashboards/*.json).

The dashboards are declared here, as data, and written as plain JSON that Grafana provisions as is.
Edit this file, then run ``python deploy/grafana/generate.py``; ``--check`` fails when the JSON files are
not what this file produces (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'site=~"$site"'
SELD = 'site=~"$site",device=~"$device"'


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[str, ...]
    kind: str = "timeseries"  # timeseries | stat | table | state-timeline | bargauge
    unit: str = ""
    legend: str = "{{device}}"
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: tuple[tuple[float | None, str], ...] = ()
    mappings: tuple[dict[str, Any], ...] = ()
    instant: bool = False
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[tuple[str, str, str], ...]  # name, label, query
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]
    tags: tuple[str, ...] = field(default=("callipso",))


WEATHER_MAP = (
    {
        "type": "value",
        "options": {
            "0": {"text": "Beau", "color": "green", "index": 0},
            "1": {"text": "Perturbé", "color": "orange", "index": 1},
            "2": {"text": "Orage", "color": "red", "index": 2},
        },
    },
)
ON_BATTERY_MAP = (
    {
        "type": "value",
        "options": {
            "0": {"text": "Secteur", "color": "green", "index": 0},
            "1": {"text": "Batterie", "color": "red", "index": 1},
        },
    },
)
UP_MAP = (
    {
        "type": "value",
        "options": {
            "0": {"text": "Injoignable", "color": "red", "index": 0},
            "1": {"text": "OK", "color": "green", "index": 1},
        },
    },
)
ROLE_MAP = (
    {
        "type": "value",
        "options": {
            "0": {"text": "Secours", "color": "blue", "index": 0},
            "1": {"text": "Principal", "color": "green", "index": 1},
        },
    },
)
GYR = ((None, "green"), (1, "orange"), (2, "red"))

SITE_VAR = ("site", "Site", "label_values(callipso_device_up, site)")

NOC = Dashboard(
    uid="callipso-noc",
    title="Callipso — NOC overview",
    description="Météo du parc par site, incidents ouverts par priorité, échéances à risque, "
    "santé de l'agent.",
    variables=(SITE_VAR,),
    rows=(
        (
            "Météo du parc",
            (
                Panel(
                    "Météo par site",
                    (f"site:callipso_weather:score{{{SEL}}}",),
                    kind="state-timeline",
                    legend="{{site}}",
                    width=24,
                    height=10,
                    mappings=WEATHER_MAP,
                    thresholds=GYR,
                    description="0 beau, 1 perturbé (sur batterie, incident P3/P4), "
                    "2 orage (équipement injoignable, "
                    "incident P1/P2). Règle d'enregistrement site:callipso_weather:score.",
                ),
                Panel(
                    "Équipements injoignables",
                    (f"sum(1 - callipso_device_up{{{SEL}}})",),
                    kind="stat",
                    legend="",
                    width=6,
                    thresholds=((None, "green"), (1, "red")),
                ),
                Panel(
                    "Équipements supervisés",
                    (f"count(callipso_device_up{{{SEL}}})",),
                    kind="stat",
                    legend="",
                    width=6,
                ),
                Panel(
                    "Onduleurs sur batterie",
                    (f"sum(callipso_ups_on_battery{{{SEL}}})",),
                    kind="stat",
                    legend="",
                    width=6,
                    thresholds=((None, "green"), (1, "red")),
                ),
                Panel(
                    "Disponibilité par site",
                    (f"avg by (site) (callipso_device_up{{{SEL}}})",),
                    kind="bargauge",
                    unit="percentunit",
                    legend="{{site}}",
                    width=6,
                    min=0,
                    max=1,
                    thresholds=((None, "red"), (0.9, "orange"), (1, "green")),
                ),
                Panel(
                    "Équipements injoignables (détail)",
                    (f"callipso_device_up{{{SEL}}} == 0",),
                    kind="table",
                    instant=True,
                    width=24,
                    description="Vide quand tout répond.",
                ),
            ),
        ),
        (
            "Incidents et contrat",
            (
                Panel(
                    "Incidents ouverts par priorité",
                    (f"sum by (priority) (callipso_incidents_open{{{SEL}}})",),
                    kind="bargauge",
                    legend="{{priority}}",
                    width=8,
                    thresholds=((None, "green"), (1, "red")),
                ),
                Panel(
                    "Incidents ouverts par site",
                    (f"sum by (site, priority) (callipso_incidents_open{{{SEL}}})",),
                    kind="table",
                    instant=True,
                    legend="{{site}} {{priority}}",
                    width=8,
                ),
                Panel(
                    "Échéances à risque (moins d'une heure)",
                    (f"sort((callipso_incident_deadline_timestamp_seconds{{{SEL}}} - time()) < 3600)",),
                    kind="table",
                    instant=True,
                    unit="s",
                    legend="{{incident}} {{deadline}}",
                    width=8,
                    thresholds=((None, "red"), (900, "orange"), (1800, "green")),
                ),
            ),
        ),
        (
            "Agent",
            (
                Panel(
                    "Erreurs d'interrogation par type",
                    ("sum by (kind) (rate(callipso_poll_errors_total[$__rate_interval]))",),
                    unit="ops",
                    legend="{{kind}}",
                    width=8,
                ),
                Panel(
                    "Durée des interrogations p95 par famille",
                    (
                        "histogram_quantile(0.95, sum by (family, le) "
                        "(rate(callipso_poll_duration_seconds_bucket[$__rate_interval])))",
                    ),
                    unit="s",
                    legend="{{family}}",
                    width=8,
                ),
                Panel("Files d'attente", ("callipso_queue_length",), legend="{{queue}}", width=8),
                Panel(
                    "Dernière interrogation réussie (les plus anciennes)",
                    ("topk(10, time() - callipso_last_successful_poll_timestamp_seconds)",),
                    kind="table",
                    instant=True,
                    unit="s",
                    width=12,
                ),
                Panel(
                    "Échecs de notification",
                    ("sum by (channel) (increase(callipso_notification_failures_total[1h]))",),
                    kind="bargauge",
                    legend="{{channel}}",
                    width=12,
                ),
            ),
        ),
    ),
)

UPS = Dashboard(
    uid="callipso-ups",
    title="Callipso — UPS fleet",
    description="Onduleurs : charge, autonomie, batteries les plus faibles, passages sur batterie, "
    "âge des batteries.",
    variables=(
        SITE_VAR,
        ("device", "Onduleur", 'label_values(callipso_ups_battery_charge_percent{site=~"$site"}, device)'),
    ),
    rows=(
        (
            "Flotte",
            (
                Panel(
                    "Onduleurs sur batterie",
                    (f"sum(callipso_ups_on_battery{{{SEL}}})",),
                    kind="stat",
                    legend="",
                    width=6,
                    thresholds=((None, "green"), (1, "red")),
                ),
                Panel(
                    "Charge minimale",
                    (f"min(callipso_ups_battery_charge_percent{{{SEL}}})",),
                    kind="stat",
                    unit="percent",
                    legend="",
                    width=6,
                    thresholds=((None, "red"), (30, "orange"), (80, "green")),
                ),
                Panel(
                    "Autonomie minimale",
                    (f"min(callipso_ups_battery_runtime_seconds{{{SEL}}})",),
                    kind="stat",
                    unit="s",
                    legend="",
                    width=6,
                    thresholds=((None, "red"), (600, "orange"), (1200, "green")),
                ),
                Panel(
                    "Onduleurs joignables",
                    (f'sum(callipso_device_up{{{SEL},family=~"ups-mib|eaton-ups"}})',),
                    kind="stat",
                    legend="",
                    width=6,
                ),
                Panel(
                    "Passages sur batterie",
                    (f"callipso_ups_on_battery{{{SELD}}}",),
                    kind="state-timeline",
                    width=24,
                    height=10,
                    mappings=ON_BATTERY_MAP,
                    thresholds=((None, "green"), (1, "red")),
                ),
            ),
        ),
        (
            "Batteries",
            (
                Panel(
                    "Batteries les plus faibles (autonomie)",
                    (f"bottomk(10, callipso_ups_battery_runtime_seconds{{{SEL}}})",),
                    kind="bargauge",
                    instant=True,
                    unit="s",
                    width=12,
                    thresholds=((None, "red"), (600, "orange"), (1200, "green")),
                ),
                Panel(
                    "Batteries les plus faibles (charge)",
                    (f"bottomk(10, callipso_ups_battery_charge_percent{{{SEL}}})",),
                    kind="bargauge",
                    instant=True,
                    unit="percent",
                    width=12,
                    min=0,
                    max=100,
                    thresholds=((None, "red"), (30, "orange"), (80, "green")),
                ),
                Panel(
                    "Charge batterie",
                    (f"callipso_ups_battery_charge_percent{{{SELD}}}",),
                    unit="percent",
                    width=12,
                    min=0,
                    max=100,
                ),
                Panel(
                    "Autonomie estimée",
                    (f"callipso_ups_battery_runtime_seconds{{{SELD}}}",),
                    unit="s",
                    width=12,
                ),
                Panel(
                    "Température batterie",
                    (f"callipso_ups_battery_temperature_celsius{{{SELD}}}",),
                    unit="celsius",
                    width=12,
                ),
                Panel(
                    "Âge des batteries (si exposé)",
                    (f"callipso_ups_battery_age_seconds{{{SELD}}}",),
                    kind="table",
                    instant=True,
                    unit="s",
                    width=12,
                    description="Temps depuis le dernier remplacement, pour les cartes qui l'exposent.",
                ),
            ),
        ),
        (
            "Entrée / sortie",
            (
                Panel(
                    "Tension d'entrée",
                    (f"callipso_ups_input_voltage_volts{{{SELD}}}",),
                    unit="volt",
                    legend="{{device}} L{{phase}}",
                    width=12,
                ),
                Panel(
                    "Charge de sortie",
                    (f"callipso_ups_load_percent{{{SELD}}}",),
                    unit="percent",
                    legend="{{device}} L{{phase}}",
                    width=12,
                ),
            ),
        ),
    ),
)

SBC = Dashboard(
    uid="callipso-sbc",
    title="Callipso — SBC & SIP trunks",
    description="SBC Audiocodes (alarmes, redondance HA, trunks SIP, appels) et passerelles "
    "analogiques MP-11x.",
    variables=(
        SITE_VAR,
        ("device", "SBC", 'label_values(callipso_device_up{family="audiocodes-sbc",site=~"$site"}, device)'),
    ),
    rows=(
        (
            "SBC",
            (
                Panel(
                    "SBC joignables",
                    (f'callipso_device_up{{{SELD},family="audiocodes-sbc"}}',),
                    kind="stat",
                    mappings=UP_MAP,
                    width=8,
                    thresholds=((None, "red"), (1, "green")),
                ),
                Panel(
                    "Sévérité des alarmes",
                    (f"callipso_sbc_highest_alarm_severity_state{{{SELD}}}",),
                    kind="table",
                    instant=True,
                    width=8,
                ),
                Panel(
                    "État HA",
                    (f"callipso_sbc_ha_status_state{{{SELD}}}",),
                    kind="table",
                    instant=True,
                    width=8,
                ),
                Panel("Appels actifs", (f"callipso_sbc_active_calls{{{SELD}}}",), width=12),
                Panel(
                    "Trunks SIP",
                    (f"callipso_sbc_ip_group_connected{{{SELD}}}",),
                    kind="state-timeline",
                    legend="{{device}} {{ip_group}}",
                    width=12,
                ),
            ),
        ),
        (
            "Passerelles analogiques",
            (
                Panel(
                    "Passerelles injoignables",
                    (f'callipso_device_up{{{SEL},family="audiocodes-mp11x"}} == 0',),
                    kind="table",
                    instant=True,
                    width=12,
                ),
                Panel(
                    "Ports analogiques non nominaux",
                    (f'callipso_gateway_port_off_hook_state{{{SEL},severity!="ok"}}',),
                    kind="table",
                    instant=True,
                    width=12,
                ),
            ),
        ),
    ),
)

OXE = Dashboard(
    uid="callipso-oxe",
    title="Callipso — OXE",
    description="Jumeau OmniPCX Enterprise HD13 / ARENC : rôle, état, trunks.",
    variables=(
        SITE_VAR,
        ("device", "OXE", 'label_values(callipso_device_up{family="oxe",site=~"$site"}, device)'),
    ),
    rows=(
        (
            "OXE",
            (
                Panel(
                    "Rôle",
                    (f"callipso_pbx_role{{{SELD}}}",),
                    kind="state-timeline",
                    mappings=ROLE_MAP,
                    width=24,
                ),
                Panel("État", (f"callipso_pbx_state_state{{{SELD}}}",), kind="table", instant=True, width=12),
                Panel(
                    "OXE joignables",
                    (f'callipso_device_up{{{SELD},family="oxe"}}',),
                    kind="stat",
                    mappings=UP_MAP,
                    width=12,
                    thresholds=((None, "red"), (1, "green")),
                ),
                Panel(
                    "Trunks",
                    (f"callipso_pbx_trunk_in_service{{{SELD}}}",),
                    kind="state-timeline",
                    legend="{{device}} {{trunk}}",
                    width=24,
                ),
            ),
        ),
    ),
)

ENV = Dashboard(
    uid="callipso-environment",
    title="Callipso — Environment",
    description="Température et hygrométrie des locaux techniques, température des batteries d'onduleurs.",
    variables=(SITE_VAR,),
    rows=(
        (
            "Locaux techniques",
            (
                Panel(
                    "Température par local",
                    (f"callipso_sensor_temperature_celsius{{{SEL}}}",),
                    unit="celsius",
                    legend="{{site}} {{sensor}}",
                    width=12,
                    thresholds=((None, "green"), (30, "orange"), (35, "red")),
                ),
                Panel(
                    "Hygrométrie par local",
                    (f"callipso_sensor_humidity_percent{{{SEL}}}",),
                    unit="humidity",
                    legend="{{site}} {{sensor}}",
                    width=12,
                    thresholds=((None, "orange"), (20, "green"), (80, "orange")),
                ),
                Panel(
                    "Locaux les plus chauds",
                    (f"topk(10, callipso_sensor_temperature_celsius{{{SEL}}})",),
                    kind="bargauge",
                    instant=True,
                    unit="celsius",
                    legend="{{site}} {{sensor}}",
                    width=12,
                    thresholds=((None, "green"), (30, "orange"), (35, "red")),
                ),
                Panel(
                    "Température des batteries d'onduleurs",
                    (f"callipso_ups_battery_temperature_celsius{{{SEL}}}",),
                    unit="celsius",
                    width=12,
                    thresholds=((None, "green"), (35, "orange"), (40, "red")),
                ),
            ),
        ),
    ),
)

DASHBOARDS = (NOC, UPS, SBC, OXE, ENV)


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit} if p.unit else {}
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    if p.thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in p.thresholds],
        }
        defaults["color"] = {"mode": "thresholds"}
    if p.mappings:
        defaults["mappings"] = list(p.mappings)
    panel: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "expr": e,
                "legendFormat": p.legend,
                "instant": p.instant,
                "range": not p.instant,
                **({"format": "table"} if p.kind == "table" else {}),
            }
            for i, e in enumerate(p.exprs)
        ],
        "options": {},
    }
    if p.description:
        panel["description"] = p.description
    if p.kind == "table":
        panel["transformations"] = [{"id": "labelsToFields", "options": {}}]
    return panel


def render(d: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in d.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x, row_h = pid + 1, y + 1, 0, 0
        for p in row_panels:
            if x + p.width > 24:
                x, y, row_h = 0, y + row_h, 0
            panels.append(_panel(p, pid, x, y))
            pid, x, row_h = pid + 1, x + p.width, max(row_h, p.height)
        y += row_h
    datasource_var = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Callipso Prometheus", "value": "callipso-prometheus"},
    }
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": list(d.tags),
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [datasource_var, *(_variable(*v) for v in d.variables)]},
        "annotations": {
            "list": [
                {
                    "name": "Alertes Callipso",
                    "enable": True,
                    "datasource": DS,
                    "iconColor": "red",
                    "expr": 'ALERTS{alertname=~"Callipso.+",alertstate="firing"}',
                    "titleFormat": "{{alertname}}",
                    "textFormat": "{{site}} {{device}}",
                    "step": "60s",
                }
            ]
        },
        "links": [
            {"title": "Tableaux Callipso", "type": "dashboards", "tags": ["callipso"], "asDropdown": True}
        ],
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    return {f"{d.uid}.json": json.dumps(render(d), indent=2, ensure_ascii=False) + "\n" for d in DASHBOARDS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--check", action="store_true", help="fail if the JSON files differ from what would be written"
    )
    args = ap.parse_args()
    out = rendered()
    if args.check:
        stale = [
            n for n, text in out.items() if not (OUT / n).is_file() or (OUT / n).read_text("utf-8") != text
        ]
        extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in out)
        if stale or extra:
            print(
                f"dashboards out of date: {stale + extra}; run python {Path(__file__).name}", file=sys.stderr
            )
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in out.items():
        (OUT / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
