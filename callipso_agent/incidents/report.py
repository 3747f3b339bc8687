"""The major-incident report: summary, priority explanation, SLA deadlines, chronology, actions, exchanges,
escalations, attached alarms, and an empty but structured root-cause and corrective-action section.

Rendered from an :class:`~callipso_agent.incidents.engine.IncidentDetail` in Markdown or HTML (Jinja2
templates beside this module), in French by default or in English. Instants are shown in the contract's
time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from callipso_agent.incidents.engine import IncidentDetail
from callipso_agent.incidents.priority import Reason
from callipso_agent.incidents.texts import SEVERITY, local_time
from callipso_agent.rules.texts import human_duration
from callipso_agent.store.incidents import TimelineRecord

Format = Literal["md", "html"]
Lang = Literal["fr", "en"]
TEMPLATES = Path(__file__).resolve().parent / "templates"

ACTIONS = frozenset({"acknowledged", "note", "action", "intervention", "resolved"})
EXCHANGES = frozenset({"notification", "first_information", "exchange", "itsm"})
ESCALATIONS = frozenset({"escalation", "deadline_at_risk", "deadline_missed", "priority_changed"})

LABELS: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Rapport d'incident majeur n° {id}",
        "summary": "Synthèse",
        "field": "Rubrique",
        "value": "Valeur",
        "incident": "Incident",
        "state": "État",
        "priority": "Priorité",
        "severity": "Sévérité",
        "site": "Site",
        "device": "Équipement",
        "services": "Lignes de service",
        "opened": "Ouvert le",
        "resolved": "Résolu le",
        "duration": "Durée",
        "ticket": "Ticket ITSM",
        "runbook": "Procédure",
        "key": "Clé du problème",
        "user_impact": "Impact utilisateurs",
        "technical_impact": "Impact technique",
        "reopened": "Réouvertures",
        "occurrences": "Occurrences",
        "why": "Justification de la priorité",
        "sla": "Engagements contractuels (SLA)",
        "deadline": "Échéance",
        "due": "Due le",
        "status": "Statut",
        "clock_start": "Début du décompte",
        "chronology": "Chronologie",
        "when": "Date",
        "what": "Événement",
        "text": "Détail",
        "who": "Acteur",
        "actions": "Actions menées",
        "exchanges": "Échanges et informations",
        "escalations": "Escalades",
        "children": "Alarmes rattachées",
        "none": "Aucune.",
        "analysis": "Analyse",
        "root_cause": "Cause racine",
        "to_fill": "À compléter.",
        "plan": "Plan d'actions correctives",
        "num": "N°",
        "action": "Action",
        "owner": "Responsable",
        "due_date": "Échéance",
        "lessons": "Retour d'expérience",
        "generated": "Rapport produit le {at}",
        "ongoing": "en cours",
        "auto": "automatique",
        "sep": " : ",
        "number": "n° {id}",
    },
    "en": {
        "title": "Major incident report #{id}",
        "summary": "Summary",
        "field": "Field",
        "value": "Value",
        "incident": "Incident",
        "state": "State",
        "priority": "Priority",
        "severity": "Severity",
        "site": "Site",
        "device": "Device",
        "services": "Service lines",
        "opened": "Opened",
        "resolved": "Resolved",
        "duration": "Duration",
        "ticket": "ITSM ticket",
        "runbook": "Runbook",
        "key": "Problem key",
        "user_impact": "User impact",
        "technical_impact": "Technical impact",
        "reopened": "Reopenings",
        "occurrences": "Occurrences",
        "why": "Why this priority",
        "sla": "Contract deadlines (SLA)",
        "deadline": "Deadline",
        "due": "Due",
        "status": "Status",
        "clock_start": "Clock start",
        "chronology": "Chronology",
        "when": "When",
        "what": "Event",
        "text": "Detail",
        "who": "Actor",
        "actions": "Actions taken",
        "exchanges": "Exchanges and information",
        "escalations": "Escalations",
        "children": "Attached alarms",
        "none": "None.",
        "analysis": "Analysis",
        "root_cause": "Root cause",
        "to_fill": "To be completed.",
        "plan": "Corrective action plan",
        "num": "#",
        "action": "Action",
        "owner": "Owner",
        "due_date": "Due",
        "lessons": "Lessons learnt",
        "generated": "Report produced {at}",
        "ongoing": "ongoing",
        "auto": "automatic",
        "sep": ": ",
        "number": "#{id}",
    },
}

STATES = {
    "fr": {
        "open": "ouvert",
        "acknowledged": "pris en charge",
        "suppressed": "suspendu (maintenance)",
        "resolved": "résolu",
    },
    "en": {
        "open": "open",
        "acknowledged": "acknowledged",
        "suppressed": "suppressed (maintenance)",
        "resolved": "resolved",
    },
}
STATUS = {
    "fr": {
        "ok": "dans les temps",
        "at_risk": "à risque",
        "missed": "dépassée",
        "met": "tenue",
        "not_applicable": "sans objet",
    },
    "en": {
        "ok": "on time",
        "at_risk": "at risk",
        "missed": "missed",
        "met": "met",
        "not_applicable": "not applicable",
    },
}
IMPACTS = {
    "fr": {
        "none": "aucun",
        "degraded": "dégradé",
        "outage": "interruption",
        "minor": "perturbé",
        "major": "inaccessible",
    },
    "en": {"none": "none", "degraded": "degraded", "outage": "outage", "minor": "minor", "major": "major"},
}
KINDS = {
    "fr": {
        "opened": "Ouverture",
        "reopened": "Réouverture",
        "suppressed": "Maintenance",
        "maintenance_ended": "Fin de maintenance",
        "cleared": "Condition disparue",
        "recurred": "Récidive",
        "occurrence": "Occurrence",
        "severity_changed": "Sévérité",
        "priority_changed": "Priorité",
        "resolved": "Résolution",
        "acknowledged": "Prise en charge",
        "attached": "Rattachement",
        "child_attached": "Alarme rattachée",
        "detached": "Détachement",
        "deadline_at_risk": "Échéance à risque",
        "deadline_missed": "Échéance dépassée",
        "itsm": "Ticket",
        "daily_check": "Contrôle quotidien",
        "clock_start": "Décompte SLA",
        "note": "Note",
        "action": "Action",
        "intervention": "Intervention",
        "notification": "Notification",
        "first_information": "Première information",
        "exchange": "Échange",
        "escalation": "Escalade",
    },
    "en": {
        "opened": "Opened",
        "reopened": "Reopened",
        "suppressed": "Maintenance",
        "maintenance_ended": "Maintenance ended",
        "cleared": "Condition gone",
        "recurred": "Recurred",
        "occurrence": "Occurrence",
        "severity_changed": "Severity",
        "priority_changed": "Priority",
        "resolved": "Resolved",
        "acknowledged": "Taken in charge",
        "attached": "Attached",
        "child_attached": "Alarm attached",
        "detached": "Detached",
        "deadline_at_risk": "Deadline at risk",
        "deadline_missed": "Deadline missed",
        "itsm": "Ticket",
        "daily_check": "Daily check",
        "clock_start": "SLA clock",
        "note": "Note",
        "action": "Action",
        "intervention": "Intervention",
        "notification": "Notification",
        "first_information": "First information",
        "exchange": "Exchange",
        "escalation": "Escalation",
    },
}
DEADLINES = {
    "fr": {
        "taking_charge": "Prise en charge",
        "first_information": "Première information",
        "restoration": "Rétablissement (GTR)",
        "intervention": "Intervention (GTI)",
    },
    "en": {
        "taking_charge": "Taking charge",
        "first_information": "First information",
        "restoration": "Restoration (GTR)",
        "intervention": "Intervention (GTI)",
    },
}


@dataclass(frozen=True, slots=True)
class Row:
    when: str
    kind: str
    text: str
    actor: str


def _rows(entries: list[TimelineRecord], lang: Lang, tz: ZoneInfo) -> list[Row]:
    return [
        Row(
            local_time(e.at, tz, lang),
            KINDS[lang].get(e.kind, e.kind),
            e.render(lang),
            e.actor or LABELS[lang]["auto"],
        )
        for e in entries
    ]


def explanation(reasons: Any, lang: Lang) -> list[str]:
    """The stored priority reasons rendered in ``lang``."""
    return [
        Reason(str(r["code"]), tuple((str(k), str(v)) for k, v in dict(r.get("params", {})).items())).render(
            lang
        )
        for r in reasons
    ]


def report_context(detail: IncidentDetail, *, lang: Lang, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    rec = detail.record
    L = LABELS[lang]
    end = rec.resolved_at or now
    timeline = list(detail.timeline)
    summary = [
        (L["incident"], rec.title(lang)),
        (L["state"], STATES[lang].get(rec.state, rec.state)),
        (L["priority"], f"{rec.priority} ({rec.urgency} × impact {rec.impact})"),
        (L["severity"], SEVERITY[lang][rec.severity.label]),
        (L["user_impact"], IMPACTS[lang].get(rec.user_impact, rec.user_impact)),
        (L["technical_impact"], IMPACTS[lang].get(rec.technical_impact, rec.technical_impact)),
        (L["site"], rec.site or "-"),
        (L["device"], rec.device or "-"),
        (L["services"], ", ".join(rec.services) or "-"),
        (L["opened"], local_time(rec.opened_at, tz, lang)),
        (L["resolved"], local_time(rec.resolved_at, tz, lang) if rec.resolved_at else L["ongoing"]),
        (L["duration"], human_duration(max(0.0, (end - rec.opened_at).total_seconds()), lang)),
        (L["occurrences"], str(rec.occurrences)),
        (L["reopened"], str(rec.reopen_count)),
        (L["ticket"], rec.itsm_ref or "-"),
        (L["runbook"], rec.runbook or "-"),
        (L["key"], rec.key),
    ]
    deadlines = []
    for kind, d in rec.deadlines.items():
        deadlines.append(
            (
                DEADLINES[lang].get(kind, kind),
                local_time(datetime.fromisoformat(d["due"]), tz, lang),
                STATUS[lang].get(detail.deadline_status.get(kind, ""), detail.deadline_status.get(kind, "")),
            )
        )
    return {
        "L": L,
        "title": L["title"].format(id=rec.id),
        "summary": summary,
        "explanation": explanation(rec.priority_reasons, lang),
        "clock_start": local_time(rec.clock_start, tz, lang),
        "deadlines": deadlines,
        "chronology": _rows(timeline, lang, tz),
        "actions": _rows([e for e in timeline if e.kind in ACTIONS], lang, tz),
        "exchanges": _rows([e for e in timeline if e.kind in EXCHANGES], lang, tz),
        "escalations": _rows([e for e in timeline if e.kind in ESCALATIONS], lang, tz),
        "children": [
            (L["number"].format(id=c.id), c.title(lang), c.device or "-", STATES[lang].get(c.state, c.state))
            for c in detail.child_records
        ],
        "plan_rows": 3,
        "generated": L["generated"].format(at=local_time(now, tz, lang)),
    }


def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def md_text(value: object) -> str:
    """Text that Markdown renders as written (no raw HTML, one line)."""
    return str(value).replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def md_cell(value: object) -> str:
    return md_text(value).replace("|", "\\|")


def render_report(
    detail: IncidentDetail,
    *,
    fmt: Format = "md",
    lang: Lang = "fr",
    tz: ZoneInfo | str = "Europe/Paris",
    now: datetime,
) -> str:
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    env = _env()
    env.filters["cell"] = md_cell
    env.filters["md"] = md_text
    template = env.get_template("report.html.j2" if fmt == "html" else "report.md.j2")
    return template.render(lang=lang, **report_context(detail, lang=lang, tz=zone, now=now))
