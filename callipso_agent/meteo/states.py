"""The météo's two scales, from the contract's legend.

User state: nominal (no impact) / perturbations (degraded service) / inaccessible (total outage).
Technical state: RAS (nominal, backups operational) / perturbé (anomaly without user impact) /
inaccessible (total outage of a critical service or of an entire supervised group).

Both scales have three levels (0, 1, 2) so they share symbols and colours: a state is always shown
with a word and a symbol, never by its colour alone.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeVar

S = TypeVar("S", bound="_Leveled")


class _Leveled(enum.StrEnum):
    @property
    def level(self) -> int:
        return list(type(self)).index(self)

    @classmethod
    def worst(cls: type[S], states: Iterable[S]) -> S:
        members = list(cls)
        level = max((s.level for s in states), default=0)
        return members[level]

    @classmethod
    def at_level(cls: type[S], level: int) -> S:
        members = list(cls)
        return members[max(0, min(level, len(members) - 1))]


class UserState(_Leveled):
    NOMINAL = "nominal"
    PERTURBATIONS = "perturbations"
    INACCESSIBLE = "inaccessible"


class TechState(_Leveled):
    RAS = "ras"
    PERTURBE = "perturbe"
    INACCESSIBLE = "inaccessible"


# One symbol per level, readable without colour (and in a plain-text mail).
SYMBOLS = ("●", "▲", "■")

USER_IMPACT = {
    "none": UserState.NOMINAL,
    "degraded": UserState.PERTURBATIONS,
    "outage": UserState.INACCESSIBLE,
}
TECHNICAL_IMPACT = {"minor": TechState.PERTURBE, "major": TechState.INACCESSIBLE}


def user_from_impact(impact: str) -> UserState:
    """IncidentView.user_impact -> user state (unknown values count as degraded: never hide an incident)."""
    return USER_IMPACT.get(impact, UserState.PERTURBATIONS)


def technical_from_impact(impact: str) -> TechState:
    return TECHNICAL_IMPACT.get(impact, TechState.PERTURBE)
