"""The météo's message catalogue: French (default) and English, as plain data.

``message(lang, key, **values)`` formats one message; an unknown language falls back to French and an
unknown key is a programming error (KeyError), caught by the tests that render both languages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from callipso_agent.meteo.states import SYMBOLS, TechState, UserState

DEFAULT_LANG = "fr"

_FR: dict[str, str] = {
    "subject": "Météo Callipso du {date}",
    "heading": "Météo du service Callipso",
    "intro": "État du service au {when}.",
    "overall": "Synthèse",
    "overall_text": "Lignes de service nominales : {services_ok} sur {services_total} · "
    "Sites nominaux : {sites_ok} sur {sites_total} · Incidents ouverts cités : {incidents}",
    "services": "Lignes de service",
    "sites": "Sites",
    "col_service": "Ligne de service",
    "col_site": "Site",
    "col_user": "État utilisateur",
    "col_tech": "État technique",
    "col_details": "Incidents et commentaires",
    "no_incident": "Aucun incident",
    "new": "NOUVEAU",
    "since": "depuis le {when}",
    "remote_total": "{total} sites",
    "remote_sites_caption": "Sites distants hors nominal",
    "col_category": "Statut",
    "changes": "INFORMATIONS / CHANGEMENTS / INTERVENTIONS PLANIFIÉES",
    "changes_today": "Aujourd'hui",
    "changes_coming": "Prochains jours",
    "changes_open": "Demandes et changements en cours",
    "changes_none": "Aucune intervention planifiée.",
    "col_when": "Quand",
    "col_what": "Intervention",
    "col_scope": "Périmètre",
    "col_ref": "Référence",
    "kind_change": "Changement",
    "kind_maintenance": "Maintenance",
    "kind_request": "Demande",
    "kind_information": "Information",
    "not_scheduled": "à planifier",
    "diff": "Depuis la météo du {date}",
    "diff_new": "Nouveau depuis hier",
    "diff_resolved": "Résolu depuis hier",
    "diff_changed": "Changements d'état",
    "diff_none": "Aucun changement depuis la météo précédente.",
    "diff_first": "Première météo archivée : pas de comparaison avec la veille.",
    "checks": "Contrôles quotidiens",
    "checks_text": "{total} contrôles : {passed} conformes, {failed} en échec, {no_data} sans données.",
    "checks_covered": "{covered} autre(s) contrôle(s) en échec au même endroit, déjà compris ci-dessus.",
    "col_check": "Contrôle",
    "col_result": "Résultat",
    "legend": "Légende",
    "legend_user": "État utilisateur",
    "legend_tech": "État technique",
    "col_meaning": "Signification",
    "sep": " : ",
    "colon": " :",
    "group_all_down": "{group} : {down}/{total} équipements injoignables ({devices})",
    "group_some_down": "{group} : {down}/{total} équipement(s) injoignable(s) ({devices})",
    "footer": "Message généré automatiquement par {agent} le {when}. "
    "Les états sont calculés à partir des incidents ouverts, de l'état des équipements et des contrôles "
    "quotidiens.",
    "user.nominal": "Nominal",
    "user.perturbations": "Perturbations",
    "user.inaccessible": "Inaccessible",
    "tech.ras": "RAS",
    "tech.perturbe": "Perturbé",
    "tech.inaccessible": "Inaccessible",
    "legend.user.nominal": "Aucun impact pour les utilisateurs.",
    "legend.user.perturbations": "Service dégradé pour les utilisateurs (lenteurs de la messagerie vocale, "
    "lien WAN instable…).",
    "legend.user.inaccessible": "Interruption totale d'un service critique ou d'un groupe d'utilisateurs.",
    "legend.tech.ras": "Fonctionnement nominal, secours et sauvegardes opérationnels.",
    "legend.tech.perturbe": "Anomalie mineure sans impact utilisateur (perte mineure de synchronisation de "
    "l'annuaire, sauvegarde en échec, poste perdu d'un groupe supervisé, perte du lien de "
    "secours, fonctionnement sur onduleur…).",
    "legend.tech.inaccessible": "Interruption totale d'un service critique ou d'un groupe supervisé entier.",
}

_EN: dict[str, str] = {
    "subject": "Callipso weather report for {date}",
    "heading": "Callipso service weather report",
    "intro": "Service status at {when}.",
    "overall": "Summary",
    "overall_text": "Nominal service lines: {services_ok} of {services_total} · "
    "Nominal sites: {sites_ok} of {sites_total} · Open incidents cited: {incidents}",
    "services": "Service lines",
    "sites": "Sites",
    "col_service": "Service line",
    "col_site": "Site",
    "col_user": "User state",
    "col_tech": "Technical state",
    "col_details": "Incidents and comments",
    "no_incident": "No incident",
    "new": "NEW",
    "since": "since {when}",
    "remote_total": "{total} sites",
    "remote_sites_caption": "Remote sites not nominal",
    "col_category": "Status",
    "changes": "INFORMATION / CHANGES / PLANNED WORK",
    "changes_today": "Today",
    "changes_coming": "Coming days",
    "changes_open": "Open requests and changes",
    "changes_none": "No planned work.",
    "col_when": "When",
    "col_what": "Work",
    "col_scope": "Scope",
    "col_ref": "Reference",
    "kind_change": "Change",
    "kind_maintenance": "Maintenance",
    "kind_request": "Request",
    "kind_information": "Information",
    "not_scheduled": "to be scheduled",
    "diff": "Since the report of {date}",
    "diff_new": "New since yesterday",
    "diff_resolved": "Resolved since yesterday",
    "diff_changed": "State changes",
    "diff_none": "No change since the previous report.",
    "diff_first": "First archived report: no comparison with the day before.",
    "checks": "Daily checks",
    "checks_text": "{total} checks: {passed} passed, {failed} failed, {no_data} without data.",
    "checks_covered": "{covered} more check(s) failing at the same place, already covered above.",
    "col_check": "Check",
    "col_result": "Result",
    "legend": "Legend",
    "legend_user": "User state",
    "legend_tech": "Technical state",
    "col_meaning": "Meaning",
    "sep": ": ",
    "colon": ":",
    "group_all_down": "{group}: {down}/{total} devices unreachable ({devices})",
    "group_some_down": "{group}: {down}/{total} device(s) unreachable ({devices})",
    "footer": "Generated automatically by {agent} on {when}. States are computed from open incidents, device "
    "status and the daily checks.",
    "user.nominal": "Nominal",
    "user.perturbations": "Disrupted",
    "user.inaccessible": "Unavailable",
    "tech.ras": "Nothing to report",
    "tech.perturbe": "Degraded",
    "tech.inaccessible": "Unavailable",
    "legend.user.nominal": "No impact on users.",
    "legend.user.perturbations": "Degraded service for users (slow voicemail, flapping WAN link…).",
    "legend.user.inaccessible": "Total outage of a critical service or of a group of users.",
    "legend.tech.ras": "Nominal; backups and standby systems operational.",
    "legend.tech.perturbe": "Minor anomaly without user impact (minor directory synchronisation loss, failed "
    "backup, a set lost from a supervised group, backup link lost, running on UPS…).",
    "legend.tech.inaccessible": "Total outage of a critical service or of an entire supervised group.",
}

CATALOGUE: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"fr": MappingProxyType(_FR), "en": MappingProxyType(_EN)}
)

# Labels that collector profiles give to device states, as operators read them.
_STATE_WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "main": "principal",
        "standby": "secours",
        "switching": "bascule en cours",
        "stopped": "arrêté",
        "synchronised": "synchronisée",
        "not_synchronised": "non synchronisée",
        "in_progress": "bascule en cours",
        "ok": "OK",
        "failed": "en échec",
        "success": "réussie",
        "partial": "partielle",
        "passed": "réussi",
        "warning": "avertissement",
        "error": "erreur",
        "aborted": "interrompu",
        "never_run": "jamais lancé",
        "normal": "normal",
        "low": "faible",
        "depleted": "épuisée",
        "unknown": "inconnu",
        "up": "en ligne",
        "down": "hors ligne",
        "not_resolved": "non résolu",
        "free": "libre",
        "busy": "occupé",
        "out_of_service": "hors service",
        "in_service": "en service",
        "battery": "batterie",
        "bypass": "bypass",
    },
    "en": {
        "not_synchronised": "not synchronised",
        "in_progress": "switchover in progress",
        "never_run": "never run",
        "not_resolved": "not resolved",
        "out_of_service": "out of service",
        "in_service": "in service",
    },
}

_WEEKDAYS = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


def lang_of(lang: str | None) -> str:
    return lang if lang is not None and lang in CATALOGUE else DEFAULT_LANG


def message(lang: str, key: str, **values: Any) -> str:
    text = CATALOGUE[lang_of(lang)][key]
    return text.format(**values) if values else text


def state_label(state: UserState | TechState, lang: str) -> str:
    prefix = "user" if isinstance(state, UserState) else "tech"
    return message(lang, f"{prefix}.{state.value}")


def state_word(label: str, lang: str) -> str:
    return _STATE_WORDS[lang_of(lang)].get(label, label)


def state_symbol(state: UserState | TechState) -> str:
    return SYMBOLS[state.level]


def short_date(day: date, lang: str) -> str:
    return day.strftime("%d/%m/%Y") if lang_of(lang) == "fr" else day.isoformat()


def long_date(day: date, lang: str) -> str:
    lang = lang_of(lang)
    wd, month = _WEEKDAYS[lang][day.weekday()], _MONTHS[lang][day.month - 1]
    if lang == "fr":
        d = "1er" if day.day == 1 else str(day.day)
        return f"{wd} {d} {month} {day.year}"
    return f"{wd} {day.day} {month} {day.year}"


def date_time(when: datetime, lang: str) -> str:
    if lang_of(lang) == "fr":
        return f"{when:%d/%m/%Y à %H:%M}"
    return f"{when:%Y-%m-%d at %H:%M}"


def time_range(start: datetime | None, end: datetime | None, lang: str) -> str:
    if start is None:
        return message(lang, "not_scheduled")
    fr = lang_of(lang) == "fr"
    fmt_day = "%d/%m" if fr else "%m-%d"
    if end is None:
        return f"{start:{fmt_day} %H:%M}"
    if start.date() == end.date():
        return f"{start:{fmt_day} %H:%M}–{end:%H:%M}"
    return f"{start:{fmt_day} %H:%M} → {end:{fmt_day} %H:%M}"
