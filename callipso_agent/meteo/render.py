"""Render a :class:`Meteo` as an HTML email (Outlook-friendly: tables and inline CSS only) and as plain text.

States are always shown as a symbol and a word, never by colour alone; the symbol is hidden from
screen readers (the word says it all).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from callipso_agent.meteo import i18n
from callipso_agent.meteo.builder import Meteo
from callipso_agent.meteo.states import TechState, UserState

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True, slots=True)
class Palette:
    background: str
    text: str
    border: str


# Per level (0 nominal, 1 perturbed, 2 unavailable). Text/background pairs meet WCAG AA contrast.
PALETTE = (
    Palette("#e3f2e6", "#0d4a23", "#2e7d32"),
    Palette("#fff1c7", "#5c3d00", "#c98a00"),
    Palette("#f9d9dc", "#7a1520", "#b3261e"),
)


def subject(meteo: Meteo) -> str:
    return i18n.message(meteo.lang, "subject", date=i18n.short_date(meteo.day, meteo.lang))


class MeteoRenderer:
    def __init__(self, templates: Path = TEMPLATES) -> None:
        loader = jinja2.FileSystemLoader(str(templates))
        self._html = jinja2.Environment(
            loader=loader,
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self._text = jinja2.Environment(
            loader=loader,
            autoescape=False,  # noqa: S701 - plain text, never shown as HTML
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )

    def _context(self, meteo: Meteo) -> dict[str, Any]:
        lang = i18n.lang_of(meteo.lang)
        tz = ZoneInfo(meteo.timezone)

        def t(key: str, **kw: Any) -> str:
            return i18n.message(lang, key, **kw)

        def local(when: datetime) -> datetime:
            return when.astimezone(tz)

        def label(state: UserState | TechState) -> str:
            return i18n.state_label(state, lang)

        def palette(state: UserState | TechState) -> Palette:
            return PALETTE[state.level]

        services_ok = sum(1 for line in meteo.services if line.nominal)
        sites_ok = sum(1 for line in meteo.sites if line.nominal)
        incidents = len({r for line in meteo.lines for r in line.refs})
        return {
            "m": meteo,
            "lang": lang,
            "t": t,
            "label": label,
            "symbol": i18n.state_symbol,
            "palette": palette,
            "subject": subject(meteo),
            "long_date": i18n.long_date(meteo.day, lang),
            "short_date": lambda d: i18n.short_date(d, lang),
            "when": lambda dt: i18n.date_time(local(dt), lang),
            "time_range": lambda c: i18n.time_range(
                local(c.start) if c.start else None, local(c.end) if c.end else None, lang
            ),
            "user_states": list(UserState),
            "tech_states": list(TechState),
            "services_ok": services_ok,
            "sites_ok": sites_ok,
            "incidents": incidents,
            "agent": meteo.agent or "callipso-agent",
        }

    def html(self, meteo: Meteo) -> str:
        return self._html.get_template("meteo.html.j2").render(self._context(meteo))

    def text(self, meteo: Meteo) -> str:
        return self._text.get_template("meteo.txt.j2").render(self._context(meteo))
