"""Priority matrix: every cell, every urgency reason, the impact thresholds and the technical floor.

Expected priorities are read off the contract's matrix by hand (U1: P1/P2/P3, U2: P2/P3/P4).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callipso_agent.config.models import Criticality, Vip
from callipso_agent.incidents.priority import (
    Impact,
    OutageKind,
    Priority,
    PriorityInputs,
    PriorityRules,
    SensitivePeriod,
    Urgency,
    decide_priority,
)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 16, 10, 0, tzinfo=PARIS)
NO_FLOOR = PriorityRules(technical_floor=None)
DEFAULT = PriorityRules()


def inputs(**kw: object) -> PriorityInputs:
    kw.setdefault("now", NOW)
    kw.setdefault("outage", OutageKind.TOTAL)
    return PriorityInputs(**kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the six matrix cells

@pytest.mark.parametrize(("case", "inp", "urgency", "impact", "priority"), [
    ("U1 x I1", inputs(service_cercle0=True, users_affected=201), Urgency.U1, Impact.I1, Priority.P1),
    ("U1 x I2", inputs(service_cercle0=True, outage=OutageKind.BACKUP), Urgency.U1, Impact.I2, Priority.P2),
    ("U1 x I3", inputs(service_cercle0=True, outage=OutageKind.ACCEPTABLE), Urgency.U1, Impact.I3,
     Priority.P3),
    ("U2 x I1", inputs(external_users=True, users_affected=3), Urgency.U2, Impact.I1, Priority.P2),
    ("U2 x I2", inputs(outage=OutageKind.DEGRADED, users_affected=900), Urgency.U2, Impact.I2, Priority.P3),
    ("U2 x I3", inputs(outage=OutageKind.ACCEPTABLE), Urgency.U2, Impact.I3, Priority.P4),
])
def test_matrix_cells(case: str, inp: PriorityInputs, urgency: Urgency, impact: Impact,
                      priority: Priority) -> None:
    d = decide_priority(inp, NO_FLOOR)
    assert (d.urgency, d.impact, d.priority) == (urgency, impact, priority), case
    assert d.matrix_priority == priority


# ---------------------------------------------------------------- urgency reasons

@pytest.mark.parametrize(("inp", "urgency", "reason_fr", "reason_en"), [
    (inputs(service_cercle0=True), Urgency.U1,
     "Urgence U1 : service Cercle 0 (critique)", "Urgency U1: Cercle 0 (critical) service"),
    (inputs(site_criticality=Criticality.CERCLE0), Urgency.U1,
     "Urgence U1 : site sensible (cercle0)", "Urgency U1: sensitive site (cercle0)"),
    (inputs(site_criticality=Criticality.SENSITIVE), Urgency.U1,
     "Urgence U1 : site sensible (sensitive)", "Urgency U1: sensitive site (sensitive)"),
    (inputs(vip=Vip.VIP), Urgency.U1,
     "Urgence U1 : utilisateurs VIP concernés (vip)", "Urgency U1: VIP users affected (vip)"),
    (inputs(vip=Vip.VVIP), Urgency.U1,
     "Urgence U1 : utilisateurs VIP concernés (vvip)", "Urgency U1: VIP users affected (vvip)"),
    (inputs(site_criticality=Criticality.STANDARD, vip=Vip.NONE), Urgency.U2,
     "Urgence U2 : aucun critère d'urgence U1", "Urgency U2: no U1 criterion met"),
])
def test_urgency_reasons(inp: PriorityInputs, urgency: Urgency, reason_fr: str, reason_en: str) -> None:
    d = decide_priority(inp, NO_FLOOR)
    assert d.urgency is urgency
    assert d.explanation()[0] == reason_fr
    assert d.explanation("en")[0] == reason_en


def test_every_urgency_reason_is_listed() -> None:
    period = SensitivePeriod("Plan grand froid", datetime(2026, 6, 1, tzinfo=PARIS),
                             datetime(2026, 7, 1, tzinfo=PARIS))
    d = decide_priority(inputs(service_cercle0=True, site_criticality=Criticality.SENSITIVE, vip=Vip.VVIP),
                        PriorityRules(technical_floor=None, sensitive_periods=(period,)))
    assert [r.code for r in d.reasons if r.code.startswith("u")] == [
        "u1_service_cercle0", "u1_site", "u1_vip", "u1_period"]
    assert "Urgence U1 : période sensible en cours (Plan grand froid)" in d.explanation()


# ---------------------------------------------------------------- sensitive period in / out

# The period runs from 2026-06-14 20:00 Paris (18:00 UTC) to 2026-06-15 08:00 Paris (06:00 UTC), end excluded.
ELECTIONS = SensitivePeriod("Élections", datetime(2026, 6, 14, 20, 0, tzinfo=PARIS),
                            datetime(2026, 6, 15, 8, 0, tzinfo=PARIS))


@pytest.mark.parametrize(("now", "urgency"), [
    (datetime(2026, 6, 14, 19, 59, 59, tzinfo=PARIS), Urgency.U2),   # just before
    (datetime(2026, 6, 14, 20, 0, tzinfo=PARIS), Urgency.U1),        # start is included
    (datetime(2026, 6, 14, 18, 0, tzinfo=UTC), Urgency.U1),          # same instant given in UTC
    (datetime(2026, 6, 15, 3, 0, tzinfo=PARIS), Urgency.U1),         # inside
    (datetime(2026, 6, 15, 7, 59, 59, tzinfo=PARIS), Urgency.U1),    # last second
    (datetime(2026, 6, 15, 8, 0, tzinfo=PARIS), Urgency.U2),         # end is excluded
    (datetime(2026, 6, 15, 6, 0, tzinfo=UTC), Urgency.U2),           # end, given in UTC
])
def test_sensitive_period(now: datetime, urgency: Urgency) -> None:
    d = decide_priority(inputs(now=now, outage=OutageKind.TOTAL, users_affected=500),
                        PriorityRules(technical_floor=None, sensitive_periods=(ELECTIONS,)))
    assert d.urgency is urgency
    # total outage of 500 users is impact 1: U1 -> P1, U2 -> P2
    assert d.priority is (Priority.P1 if urgency is Urgency.U1 else Priority.P2)


# ---------------------------------------------------------------- impact

@pytest.mark.parametrize(("outage", "users", "external", "impact", "reason_fr"), [
    (OutageKind.TOTAL, 200, False, Impact.I2,
     "Impact 2 : interruption totale touchant 200 utilisateurs (200 ou moins)"),
    (OutageKind.TOTAL, 201, False, Impact.I1,
     "Impact 1 : interruption totale touchant 201 utilisateurs (plus de 200)"),
    (OutageKind.TOTAL, 0, True, Impact.I1,
     "Impact 1 : interruption totale touchant des utilisateurs externes"),
    (OutageKind.TOTAL, 199, False, Impact.I2,
     "Impact 2 : interruption totale touchant 199 utilisateurs (200 ou moins)"),
    (OutageKind.PARTIAL, 5000, True, Impact.I2, "Impact 2 : interruption partielle"),
    (OutageKind.DEGRADED, 5000, False, Impact.I2, "Impact 2 : service dégradé"),
    (OutageKind.BACKUP, 10, False, Impact.I2, "Impact 2 : fonctionnement sur secours"),
    (OutageKind.ACCEPTABLE, 5000, True, Impact.I3, "Impact 3 : dégradation acceptable"),
])
def test_impact(outage: OutageKind, users: int, external: bool, impact: Impact, reason_fr: str) -> None:
    d = decide_priority(inputs(outage=outage, users_affected=users, external_users=external), NO_FLOOR)
    assert d.impact is impact
    assert d.explanation()[1] == reason_fr


def test_impact_one_lists_both_criteria() -> None:
    d = decide_priority(inputs(users_affected=350, external_users=True), NO_FLOOR)
    assert d.explanation("en")[1:3] == ["Impact 1: total outage affecting 350 users (more than 200)",
                                        "Impact 1: total outage affecting external users"]


def test_users_threshold_is_configurable() -> None:
    rules = PriorityRules(users_threshold=50, technical_floor=None)
    assert decide_priority(inputs(users_affected=50), rules).impact is Impact.I2
    assert decide_priority(inputs(users_affected=51), rules).impact is Impact.I1


# ---------------------------------------------------------------- technical floor

@pytest.mark.parametrize(("inp", "rules", "priority", "floored"), [
    # U2 x I3 = P4, detected by supervision, floor P2 -> P2
    (inputs(outage=OutageKind.ACCEPTABLE, detected_by_supervision=True), DEFAULT, Priority.P2, True),
    # same incident with the floor disabled stays P4
    (inputs(outage=OutageKind.ACCEPTABLE, detected_by_supervision=True), NO_FLOOR, Priority.P4, False),
    # same incident reported by a person (not supervision): no floor
    (inputs(outage=OutageKind.ACCEPTABLE, detected_by_supervision=False), DEFAULT, Priority.P4, False),
    # U2 x I2 = P3 -> P2
    (inputs(outage=OutageKind.DEGRADED, detected_by_supervision=True), DEFAULT, Priority.P2, True),
    # U1 x I1 = P1 is never lowered by the floor
    (inputs(service_cercle0=True, users_affected=300, detected_by_supervision=True), DEFAULT,
     Priority.P1, False),
    # U2 x I1 = P2 already meets the floor
    (inputs(external_users=True, detected_by_supervision=True), DEFAULT, Priority.P2, False),
    # a stricter floor (P1) configured
    (inputs(outage=OutageKind.ACCEPTABLE, detected_by_supervision=True),
     PriorityRules(technical_floor=Priority.P1), Priority.P1, True),
])
def test_technical_floor(inp: PriorityInputs, rules: PriorityRules, priority: Priority,
                         floored: bool) -> None:
    d = decide_priority(inp, rules)
    assert d.priority is priority
    assert any(r.code == "floor" for r in d.reasons) is floored


def test_floor_explanation_in_both_languages() -> None:
    d = decide_priority(inputs(outage=OutageKind.ACCEPTABLE, detected_by_supervision=True), DEFAULT)
    assert d.matrix_priority is Priority.P4
    assert d.explanation() == [
        "Urgence U2 : aucun critère d'urgence U1",
        "Impact 3 : dégradation acceptable",
        "Priorité P4 : matrice U2 × impact 3",
        "Priorité relevée de P4 à P2 : incident technique détecté par la supervision",
    ]
    assert d.explanation("en")[-1] == ("Priority raised from P4 to P2: "
                                       "technical incident detected by supervision")


# ---------------------------------------------------------------- input checks

def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PriorityInputs(now=datetime(2026, 6, 16, 10, 0), outage=OutageKind.TOTAL)


def test_period_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        SensitivePeriod("x", datetime(2026, 6, 2, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))
