"""The contract's priority matrix: urgency x impact -> priority, with the reasons shown on the incident.

Urgency
    U1 when any of: the service is a *Cercle 0* (critical) service; the site is sensitive (inventory
    criticality ``cercle0`` or ``sensitive``); VIP or VVIP users are affected (site ``vip`` is not
    ``none``); a declared sensitive period is in force at ``now``. Otherwise U2.

Impact
    1: total outage AND (more than ``users_threshold`` (200) users affected OR external users affected);
    2: total outage of ``users_threshold`` users or fewer, partial outage, degradation, or running on
    backup/bypass; 3: degraded but acceptable.

Matrix
    ======  ========  ========  ========
            impact 1  impact 2  impact 3
    ======  ========  ========  ========
    U1      P1        P2        P3
    U2      P2        P3        P4
    ======  ========  ========  ========

Technical floor
    The contract treats incidents detected by supervision as technical incidents of priority P1 or
    P2, so a supervision-detected incident is raised to at least ``technical_floor`` (P2 by default;
    ``None`` disables the rule).

Everything is decided from the typed inputs; ``now`` is given by the caller's injected clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from callipso_agent.config.models import Criticality, Vip

Lang = Literal["fr", "en"]


class Urgency(enum.StrEnum):
    U1 = "U1"
    U2 = "U2"


class Impact(enum.IntEnum):
    I1 = 1
    I2 = 2
    I3 = 3


class Priority(enum.StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """1 for P1 (most urgent) to 4 for P4."""
        return int(self.value[1])


class OutageKind(enum.StrEnum):
    TOTAL = "total"            # the service is down for the affected users
    PARTIAL = "partial"        # part of the service is down
    DEGRADED = "degraded"      # working, but degraded
    BACKUP = "backup"          # working on a backup or bypass path
    ACCEPTABLE = "acceptable"  # degraded but acceptable


MATRIX: dict[tuple[Urgency, Impact], Priority] = {
    (Urgency.U1, Impact.I1): Priority.P1,
    (Urgency.U1, Impact.I2): Priority.P2,
    (Urgency.U1, Impact.I3): Priority.P3,
    (Urgency.U2, Impact.I1): Priority.P2,
    (Urgency.U2, Impact.I2): Priority.P3,
    (Urgency.U2, Impact.I3): Priority.P4,
}


@dataclass(frozen=True, slots=True)
class SensitivePeriod:
    """A declared sensitive period (elections, crisis...), in force for ``start <= now < end``."""

    name: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for label, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"sensitive period {self.name!r}: {label} must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"sensitive period {self.name!r}: end must be after start")

    def in_force(self, now: datetime) -> bool:
        instant = now.astimezone(UTC)
        return self.start.astimezone(UTC) <= instant < self.end.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class PriorityRules:
    """The configurable part of the priority policy (see checks/contract.yaml)."""

    users_threshold: int = 200
    technical_floor: Priority | None = Priority.P2
    sensitive_periods: tuple[SensitivePeriod, ...] = ()


@dataclass(frozen=True, slots=True)
class PriorityInputs:
    now: datetime
    outage: OutageKind
    service_cercle0: bool = False
    site_criticality: Criticality = Criticality.STANDARD
    vip: Vip = Vip.NONE
    users_affected: int = 0
    external_users: bool = False
    detected_by_supervision: bool = False

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("PriorityInputs.now must be timezone-aware")
        if self.users_affected < 0:
            raise ValueError("users_affected must not be negative")


@dataclass(frozen=True, slots=True)
class Reason:
    """One line of the explanation; ``code`` is stable, ``render`` gives the operator text."""

    code: str
    params: tuple[tuple[str, str], ...] = ()

    def render(self, lang: Lang = "fr") -> str:
        return _TEXTS[lang][self.code].format(**dict(self.params))


@dataclass(frozen=True, slots=True)
class PriorityDecision:
    urgency: Urgency
    impact: Impact
    priority: Priority
    matrix_priority: Priority
    reasons: tuple[Reason, ...] = field(default=())

    def explanation(self, lang: Lang = "fr") -> list[str]:
        return [r.render(lang) for r in self.reasons]


_TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "u1_service_cercle0": "Urgence U1 : service Cercle 0 (critique)",
        "u1_site": "Urgence U1 : site sensible ({criticality})",
        "u1_vip": "Urgence U1 : utilisateurs VIP concernés ({vip})",
        "u1_period": "Urgence U1 : période sensible en cours ({name})",
        "u2": "Urgence U2 : aucun critère d'urgence U1",
        "i1_users": "Impact 1 : interruption totale touchant {users} utilisateurs (plus de {threshold})",
        "i1_external": "Impact 1 : interruption totale touchant des utilisateurs externes",
        "i2_total": "Impact 2 : interruption totale touchant {users} utilisateurs ({threshold} ou moins)",
        "i2_partial": "Impact 2 : interruption partielle",
        "i2_degraded": "Impact 2 : service dégradé",
        "i2_backup": "Impact 2 : fonctionnement sur secours",
        "i3": "Impact 3 : dégradation acceptable",
        "matrix": "Priorité {priority} : matrice {urgency} × impact {impact}",
        "floor": "Priorité relevée de {before} à {after} : incident technique détecté par la supervision",
    },
    "en": {
        "u1_service_cercle0": "Urgency U1: Cercle 0 (critical) service",
        "u1_site": "Urgency U1: sensitive site ({criticality})",
        "u1_vip": "Urgency U1: VIP users affected ({vip})",
        "u1_period": "Urgency U1: sensitive period in force ({name})",
        "u2": "Urgency U2: no U1 criterion met",
        "i1_users": "Impact 1: total outage affecting {users} users (more than {threshold})",
        "i1_external": "Impact 1: total outage affecting external users",
        "i2_total": "Impact 2: total outage affecting {users} users ({threshold} or fewer)",
        "i2_partial": "Impact 2: partial outage",
        "i2_degraded": "Impact 2: degraded service",
        "i2_backup": "Impact 2: running on backup",
        "i3": "Impact 3: acceptable degradation",
        "matrix": "Priority {priority}: matrix {urgency} × impact {impact}",
        "floor": "Priority raised from {before} to {after}: technical incident detected by supervision",
    },
}


def _urgency(inputs: PriorityInputs, rules: PriorityRules) -> tuple[Urgency, list[Reason]]:
    reasons: list[Reason] = []
    if inputs.service_cercle0:
        reasons.append(Reason("u1_service_cercle0"))
    if inputs.site_criticality in (Criticality.CERCLE0, Criticality.SENSITIVE):
        reasons.append(Reason("u1_site", (("criticality", inputs.site_criticality.value),)))
    if inputs.vip is not Vip.NONE:
        reasons.append(Reason("u1_vip", (("vip", inputs.vip.value),)))
    for period in rules.sensitive_periods:
        if period.in_force(inputs.now):
            reasons.append(Reason("u1_period", (("name", period.name),)))
    if reasons:
        return Urgency.U1, reasons
    return Urgency.U2, [Reason("u2")]


def _impact(inputs: PriorityInputs, rules: PriorityRules) -> tuple[Impact, list[Reason]]:
    users = (("users", str(inputs.users_affected)), ("threshold", str(rules.users_threshold)))
    match inputs.outage:
        case OutageKind.TOTAL:
            reasons: list[Reason] = []
            if inputs.users_affected > rules.users_threshold:
                reasons.append(Reason("i1_users", users))
            if inputs.external_users:
                reasons.append(Reason("i1_external"))
            if reasons:
                return Impact.I1, reasons
            return Impact.I2, [Reason("i2_total", users)]
        case OutageKind.PARTIAL:
            return Impact.I2, [Reason("i2_partial")]
        case OutageKind.DEGRADED:
            return Impact.I2, [Reason("i2_degraded")]
        case OutageKind.BACKUP:
            return Impact.I2, [Reason("i2_backup")]
        case OutageKind.ACCEPTABLE:
            return Impact.I3, [Reason("i3")]


def decide_priority(inputs: PriorityInputs, rules: PriorityRules) -> PriorityDecision:
    """Apply the contract's matrix (and the technical floor) to ``inputs``."""
    urgency, u_reasons = _urgency(inputs, rules)
    impact, i_reasons = _impact(inputs, rules)
    matrix = MATRIX[(urgency, impact)]
    reasons = [*u_reasons, *i_reasons,
               Reason("matrix", (("priority", matrix.value), ("urgency", urgency.value),
                                 ("impact", str(int(impact)))))]
    priority = matrix
    floor = rules.technical_floor
    if inputs.detected_by_supervision and floor is not None and matrix.rank > floor.rank:
        priority = floor
        reasons.append(Reason("floor", (("before", matrix.value), ("after", floor.value))))
    return PriorityDecision(urgency=urgency, impact=impact, priority=priority, matrix_priority=matrix,
                            reasons=tuple(reasons))
