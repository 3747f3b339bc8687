"""Operator-facing texts of notifications and tickets: French by default, English available.

Rendering happens once, when a notification is planned; the outbox then carries the rendered text, so
a retry sends exactly what was decided. Times are shown in the operators' time zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from callipso_agent.model import IncidentView

Lang = Literal["fr", "en"]
SMS_MAX = 300  # two concatenated GSM-7 segments, roughly

LABELS: dict[str, dict[str, str]] = {
    "fr": {
        "priority": "Priorité",
        "site": "Site",
        "device": "Équipement",
        "services": "Services",
        "opened": "Ouvert le",
        "state": "État",
        "deadlines": "Échéances",
        "link": "Lien",
        "ticket": "Ticket",
        "runbook": "Procédure",
        "severity": "Gravité",
        "by": "Par",
        "comment": "Commentaire",
        "reason": "Motif",
        "resolved": "Résolu le",
        "none": "—",
        "incidents": "Incidents",
    },
    "en": {
        "priority": "Priority",
        "site": "Site",
        "device": "Device",
        "services": "Services",
        "opened": "Opened",
        "state": "State",
        "deadlines": "Deadlines",
        "link": "Link",
        "ticket": "Ticket",
        "runbook": "Runbook",
        "severity": "Severity",
        "by": "By",
        "comment": "Comment",
        "reason": "Reason",
        "resolved": "Resolved",
        "none": "-",
        "incidents": "Incidents",
    },
}

SUBJECTS: dict[str, dict[str, str]] = {
    "fr": {
        "opened": "[{priority}] Incident ouvert : {title}",
        "updated": "[{priority}] Incident mis à jour : {title}",
        "acknowledged": "[{priority}] Incident pris en compte : {title}",
        "note": "[{priority}] Note sur l'incident : {title}",
        "resolved": "[{priority}] Incident résolu : {title}",
        "escalated": "[{priority}] ESCALADE niveau {level}, non pris en compte : {title}",
        "storm": "[{site}] {count} incidents en {minutes} min",
        "storm_summary": "[{site}] Fin de rafale : {count} incidents regroupés",
    },
    "en": {
        "opened": "[{priority}] Incident opened: {title}",
        "updated": "[{priority}] Incident updated: {title}",
        "acknowledged": "[{priority}] Incident acknowledged: {title}",
        "note": "[{priority}] Note on incident: {title}",
        "resolved": "[{priority}] Incident resolved: {title}",
        "escalated": "[{priority}] ESCALATION level {level}, not acknowledged: {title}",
        "storm": "[{site}] {count} incidents within {minutes} min",
        "storm_summary": "[{site}] Storm over: {count} incidents grouped",
    },
}

STATES = {
    "fr": {"open": "ouvert", "acknowledged": "pris en compte", "resolved": "résolu"},
    "en": {"open": "open", "acknowledged": "acknowledged", "resolved": "resolved"},
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

COLORS = {"P1": "C00000", "P2": "FF8C00", "P3": "FFC000", "P4": "2F75B5"}


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message in every shape the channels need."""

    subject: str
    body: str  # plain text, several lines (email, webhook)
    short: str  # one SMS
    facts: tuple[tuple[str, str], ...]  # label/value pairs (Teams cards)
    link: str | None
    color: str
    lang: Lang

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "body": self.body,
            "short": self.short,
            "facts": [list(f) for f in self.facts],
            "link": self.link,
            "color": self.color,
            "lang": self.lang,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Rendered:
        facts = tuple((str(a), str(b)) for a, b in data.get("facts", []))  # type: ignore[attr-defined]
        link = data.get("link")
        return cls(
            subject=str(data["subject"]),
            body=str(data["body"]),
            short=str(data["short"]),
            facts=facts,
            link=str(link) if link else None,
            color=str(data.get("color", "2F75B5")),
            lang="en" if data.get("lang") == "en" else "fr",
        )


class Texts:
    def __init__(
        self, lang: Lang = "fr", timezone: str = "Europe/Paris", link_template: str | None = None
    ) -> None:
        if lang not in LABELS:
            raise ValueError(f"unknown language {lang!r}")
        self.lang: Lang = lang
        self.tz = ZoneInfo(timezone)
        self.link_template = link_template

    def when(self, at: datetime) -> str:
        local = at.astimezone(self.tz)
        return local.strftime("%d/%m/%Y %H:%M") if self.lang == "fr" else local.strftime("%Y-%m-%d %H:%M")

    def link(self, incident: IncidentView) -> str | None:
        if not self.link_template:
            return None
        return self.link_template.format(id=incident.id, key=incident.key)

    def facts(self, incident: IncidentView) -> list[tuple[str, str]]:
        lab = LABELS[self.lang]
        out = [(lab["priority"], incident.priority)]
        if incident.site:
            out.append((lab["site"], incident.site))
        if incident.device:
            out.append((lab["device"], incident.device))
        if incident.services:
            out.append((lab["services"], ", ".join(incident.services)))
        out.append((lab["state"], STATES[self.lang].get(incident.state.value, incident.state.value)))
        out.append((lab["opened"], self.when(incident.opened_at)))
        for key, due in sorted(incident.deadlines.items(), key=lambda kv: kv[1]):
            out.append((DEADLINES[self.lang].get(key, key), self.when(due)))
        if incident.itsm_ref:
            out.append((lab["ticket"], incident.itsm_ref))
        if incident.runbook:
            out.append((lab["runbook"], incident.runbook))
        return out

    def incident(
        self,
        incident: IncidentView,
        event: str,
        *,
        actor: str | None = None,
        text: str | None = None,
        level: int | None = None,
    ) -> Rendered:
        lab = LABELS[self.lang]
        subject = SUBJECTS[self.lang][event].format(
            priority=incident.priority, title=incident.title, level=level or 1, site=incident.site or ""
        )
        facts = self.facts(incident)
        if actor:
            facts.append((lab["by"], actor))
        if text:
            facts.append((lab["reason"] if event == "resolved" else lab["comment"], text))
        link = self.link(incident)
        lines = [subject, ""] + [f"{k} : {v}" if self.lang == "fr" else f"{k}: {v}" for k, v in facts]
        if link:
            lines += ["", f"{lab['link']} : {link}" if self.lang == "fr" else f"{lab['link']}: {link}"]
        where = " / ".join(x for x in (incident.site, incident.device) if x)
        short = f"{subject}" + (f" ({where})" if where else "")
        deadline = min(incident.deadlines.items(), key=lambda kv: kv[1], default=None)
        if deadline and event in ("opened", "escalated"):
            short += (
                f". {DEADLINES[self.lang].get(deadline[0], deadline[0])} : {self.when(deadline[1])}"
                if self.lang == "fr"
                else f". {DEADLINES['en'].get(deadline[0], deadline[0])}: {self.when(deadline[1])}"
            )
        if link:
            short += f" {link}"
        return Rendered(
            subject=subject,
            body="\n".join(lines) + "\n",
            short=_cut(short, SMS_MAX),
            facts=tuple(facts),
            link=link,
            color=COLORS.get(incident.priority, "2F75B5"),
            lang=self.lang,
        )

    def storm(
        self, site: str, incidents: Sequence[IncidentView], minutes: int, *, summary: bool = False
    ) -> Rendered:
        lab = LABELS[self.lang]
        subject = SUBJECTS[self.lang]["storm_summary" if summary else "storm"].format(
            site=site, count=len(incidents), minutes=minutes
        )
        facts = [
            (f"{i.priority} #{i.id}", f"{i.title}" + (f" ({i.device})" if i.device else ""))
            for i in incidents
        ]
        lines = [subject, ""] + [f"- {k} {v}" for k, v in facts]
        worst = min((i.priority for i in incidents), default="P4")
        short = (
            subject + " : " + "; ".join(f"{i.priority} {i.device or i.title}" for i in incidents)
            if self.lang == "fr"
            else subject + ": " + "; ".join(f"{i.priority} {i.device or i.title}" for i in incidents)
        )
        facts.insert(0, (lab["site"], site))
        return Rendered(
            subject=subject,
            body="\n".join(lines) + "\n",
            short=_cut(short, SMS_MAX),
            facts=tuple(facts),
            link=None,
            color=COLORS.get(worst, "2F75B5"),
            lang=self.lang,
        )

    def ticket_description(self, incident: IncidentView) -> str:
        lab = LABELS[self.lang]
        sep = " : " if self.lang == "fr" else ": "
        lines = [incident.title, ""] + [f"{k}{sep}{v}" for k, v in self.facts(incident)]
        if incident.rule:
            lines.append(f"{'Règle' if self.lang == 'fr' else 'Rule'}{sep}{incident.rule}")
        lines.append(f"{'Clé' if self.lang == 'fr' else 'Key'}{sep}{incident.key}")
        link = self.link(incident)
        if link:
            lines.append(f"{lab['link']}{sep}{link}")
        return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
