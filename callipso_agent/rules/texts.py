"""Rendering of the rules' text templates: a missing or unformattable field never breaks an incident."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

MISSING = "?"


class _SafeFormatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, AttributeError, IndexError, TypeError):
            return MISSING, field_name

    def format_field(self, value: Any, format_spec: str) -> Any:
        if value is None:
            return MISSING
        try:
            return super().format_field(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


_FORMATTER = _SafeFormatter()


def render(template: str, fields: Mapping[str, Any]) -> str:
    return _FORMATTER.vformat(template, (), dict(fields))


def human_duration(seconds: float, lang: str = "fr") -> str:
    """``90`` -> ``1 min 30 s``; ``3600`` -> ``1 h`` (same in French and English)."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    parts = []
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts.append(f"{days} {'j' if lang == 'fr' else 'd'}")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs:
        parts.append(f"{secs} s")
    return " ".join(parts)
