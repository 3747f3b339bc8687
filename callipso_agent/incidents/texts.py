"""Operator texts of the incident timeline, French first and English second.

Each entry is stored with both texts, so a report can be produced in either language later. Instants are
shown in the contract's time zone (Europe/Paris by default), never in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from callipso_agent.rules.texts import human_duration, render

TIMELINE: dict[str, dict[str, str]] = {
    "fr": {
        "opened": "Incident ouvert : {title} (priorité {priority}, sévérité {severity})",
        "reopened": (
            "Incident rouvert : le problème est revenu {ago} après sa résolution (réouverture n° {count})"
        ),
        "suppressed": "Ouverture suspendue par la maintenance « {window} » : {title}",
        "maintenance_ended": "Fin de la maintenance « {window} » : le problème persiste, incident ouvert",
        "cleared": "Condition disparue ; résolution automatique dans {hold} si elle ne revient pas",
        "recurred": "Condition revenue avant la résolution (occurrence n° {count})",
        "occurrence": "Nouvelle occurrence (n° {count}) : {title}",
        "severity_changed": "Sévérité {before} → {after}",
        "priority_changed": "Priorité {before} → {after}",
        "resolved_auto": "Résolu automatiquement : condition absente depuis {hold}",
        "resolved_manual": "Résolu par {actor} : {reason}",
        "resolved_maintenance": (
            "Condition disparue pendant la maintenance « {window} » : clos sans ouverture"
        ),
        "acknowledged": "Pris en charge par {actor}",
        "attached": "Rattaché à l'incident de site n° {parent}",
        "child_attached": "Alarme rattachée (n° {child}) : {title}",
        "detached": "Détaché de l'incident de site n° {parent}, qui est résolu : ouvert séparément",
        "deadline_at_risk": "Échéance « {label} » bientôt dépassée (due le {due})",
        "deadline_missed": "Échéance « {label} » dépassée (due le {due})",
        "itsm": "Ticket {ref} créé le {created}",
        "daily_check": "Contrôle quotidien en échec le {at}",
        "clock_start": "Début du décompte SLA avancé au {start} ; échéances recalculées",
    },
    "en": {
        "opened": "Incident opened: {title} (priority {priority}, severity {severity})",
        "reopened": (
            "Incident reopened: the problem came back {ago} after its resolution (reopening #{count})"
        ),
        "suppressed": "Opening suppressed by maintenance '{window}': {title}",
        "maintenance_ended": "Maintenance '{window}' ended: the problem persists, incident opened",
        "cleared": "Condition gone; automatic resolution in {hold} unless it comes back",
        "recurred": "Condition back before resolution (occurrence #{count})",
        "occurrence": "New occurrence (#{count}): {title}",
        "severity_changed": "Severity {before} → {after}",
        "priority_changed": "Priority {before} → {after}",
        "resolved_auto": "Resolved automatically: condition absent for {hold}",
        "resolved_manual": "Resolved by {actor}: {reason}",
        "resolved_maintenance": "Condition gone during maintenance '{window}': closed without opening",
        "acknowledged": "Taken in charge by {actor}",
        "attached": "Attached to site incident #{parent}",
        "child_attached": "Alarm attached (#{child}): {title}",
        "detached": "Detached from site incident #{parent}, which is resolved: opened on its own",
        "deadline_at_risk": "Deadline '{label}' at risk (due {due})",
        "deadline_missed": "Deadline '{label}' missed (due {due})",
        "itsm": "Ticket {ref} created {created}",
        "daily_check": "Daily check failed at {at}",
        "clock_start": "SLA clock start moved to {start}; deadlines recomputed",
    },
}

SEVERITY = {
    "fr": {"ok": "normale", "warning": "avertissement", "critical": "critique", "unknown": "inconnue"},
    "en": {"ok": "ok", "warning": "warning", "critical": "critical", "unknown": "unknown"},
}


def local_time(at: datetime, tz: ZoneInfo, lang: str) -> str:
    local = at.astimezone(tz)
    if lang == "fr":
        return local.strftime("%d/%m/%Y à %H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def both(code: str, params: Mapping[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    """The French and English texts of a timeline entry; datetimes, durations (``*_s``) and severities
    are shown in each language."""
    out: list[str] = []
    for lang in ("fr", "en"):
        shown: dict[str, Any] = {}
        for k, v in params.items():
            if isinstance(v, datetime):
                shown[k] = local_time(v, tz, lang)
            elif k in ("hold", "ago") and isinstance(v, (int, float)):
                shown[k] = human_duration(float(v), lang)
            elif k in ("before", "after", "severity") and v in SEVERITY[lang]:
                shown[k] = SEVERITY[lang][v]
            elif isinstance(v, Mapping) and lang in v:
                shown[k] = v[lang]
            else:
                shown[k] = v
        out.append(render(TIMELINE[lang][code], shown))
    return out[0], out[1]
