"""SLA deadlines and their status, with the shipped contract (checks/contract.yaml).

Expected due times are literals worked out by hand (Mon-Fri 08:00-18:00 Europe/Paris, French holidays);
each case's comment shows the count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.config.models import Hours
from callipso_agent.incidents.business_hours import BusinessCalendar
from callipso_agent.incidents.contract import load_contract
from callipso_agent.incidents.priority import Priority
from callipso_agent.incidents.sla import (
    ClockRule,
    DeadlineKind,
    DeadlineRule,
    DeadlineStatus,
    SlaRules,
    clock_start,
    compute_deadlines,
    deadline_status,
)

PARIS = ZoneInfo("Europe/Paris")
CONTRACT = load_contract()
RULES = CONTRACT.sla_rules()
CAL = CONTRACT.business_calendar()

TC, FI, RS, IV = (DeadlineKind.TAKING_CHARGE, DeadlineKind.FIRST_INFORMATION, DeadlineKind.RESTORATION,
                  DeadlineKind.INTERVENTION)
ALWAYS, BUSINESS = Hours.ALWAYS, Hours.BUSINESS


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)


def dues(priority: Priority, start: datetime, **kw: object) -> dict[DeadlineKind, tuple[datetime, Hours]]:
    ds = compute_deadlines(priority, start, rules=RULES, calendar=CAL, **kw)  # type: ignore[arg-type]
    return {d.kind: (d.due, d.clock) for d in ds}


@pytest.mark.parametrize(("case", "priority", "start", "kw", "expected"), [
    # P3: 10 business hours. Fri 22/05 17:00-18:00 = 1 h; weekend + Whit Monday 25/05 closed;
    # Tue 26 08:00 + 9 h = 17:00.
    ("P3 before Whit Monday", Priority.P3, paris(2026, 5, 22, 17, 0), {},
     {RS: (paris(2026, 5, 26, 17, 0), BUSINESS)}),
    # P3 on a 24x7 site still runs on business hours (contract.yaml choice).
    ("P3 on a 24x7 site", Priority.P3, paris(2026, 5, 22, 17, 0), {"hours_mode": ALWAYS},
     {RS: (paris(2026, 5, 26, 17, 0), BUSINESS)}),
    # P4: 30 business hours. Thu 24/12 09:00-18:00 = 9 h; Christmas Fri 25 + weekend closed;
    # Mon 28 10 h, Tue 29 10 h (29 h); Wed 30 08:00 + 1 h = 09:00.
    ("P4 across Christmas", Priority.P4, paris(2026, 12, 24, 9, 0), {},
     {RS: (paris(2026, 12, 30, 9, 0), BUSINESS)}),
    # P4 from Tue 29/12 10:00: 8 h + Wed 30 10 h + Thu 31 10 h = 28 h; New Year Fri 1/1 + weekend;
    # Mon 4/1/2027 08:00 + 2 h = 10:00.
    ("P4 across New Year", Priority.P4, paris(2026, 12, 29, 10, 0), {},
     {RS: (paris(2027, 1, 4, 10, 0), BUSINESS)}),
    # P2 alarm Tue 10/03 19:30 on a business-hours site: counting starts Wed 08:00.
    # Taking charge 30 min -> 08:30; first information 2 h -> 10:00; restoration 4 h -> 12:00.
    ("P2 alarm at 19:30", Priority.P2, paris(2026, 3, 10, 19, 30), {},
     {TC: (paris(2026, 3, 11, 8, 30), BUSINESS), FI: (paris(2026, 3, 11, 10, 0), BUSINESS),
      RS: (paris(2026, 3, 11, 12, 0), BUSINESS)}),
    # Same alarm on a 24x7 site: wall clock. 19:30 + 30 min, + 2 h, + 4 h.
    ("P2 alarm at 19:30, 24x7 site", Priority.P2, paris(2026, 3, 10, 19, 30), {"hours_mode": ALWAYS},
     {TC: (paris(2026, 3, 10, 20, 0), ALWAYS), FI: (paris(2026, 3, 10, 21, 30), ALWAYS),
      RS: (paris(2026, 3, 10, 23, 30), ALWAYS)}),
    # P1 at 03:00 on Sunday 14/06 on a 24x7 site, ToIP: taking charge immediate, information 1 h,
    # restoration 2 h (ToIP).
    ("P1 Sunday 03:00, 24x7, ToIP", Priority.P1, paris(2026, 6, 14, 3, 0),
     {"hours_mode": ALWAYS, "service_kind": "toip"},
     {TC: (paris(2026, 6, 14, 3, 0), ALWAYS), FI: (paris(2026, 6, 14, 4, 0), ALWAYS),
      RS: (paris(2026, 6, 14, 5, 0), ALWAYS)}),
    # Same, another service kind: restoration 4 h -> 07:00. Kind is matched case-insensitively.
    ("P1 Sunday 03:00, 24x7, other", Priority.P1, paris(2026, 6, 14, 3, 0),
     {"hours_mode": ALWAYS, "service_kind": "voicemail"},
     {TC: (paris(2026, 6, 14, 3, 0), ALWAYS), FI: (paris(2026, 6, 14, 4, 0), ALWAYS),
      RS: (paris(2026, 6, 14, 7, 0), ALWAYS)}),
    ("P1 Sunday 03:00, 24x7, NETWORK", Priority.P1, paris(2026, 6, 14, 3, 0),
     {"hours_mode": ALWAYS, "service_kind": "NETWORK"},
     {TC: (paris(2026, 6, 14, 3, 0), ALWAYS), FI: (paris(2026, 6, 14, 4, 0), ALWAYS),
      RS: (paris(2026, 6, 14, 5, 0), ALWAYS)}),
    # P1 at 03:00 Sunday on a business-hours site: taking charge still immediate (24x7); the rest
    # counts from Mon 15/06 08:00: information 09:00, restoration (ToIP 2 h) 10:00.
    ("P1 Sunday 03:00, business site", Priority.P1, paris(2026, 6, 14, 3, 0), {"service_kind": "toip"},
     {TC: (paris(2026, 6, 14, 3, 0), ALWAYS), FI: (paris(2026, 6, 15, 9, 0), BUSINESS),
      RS: (paris(2026, 6, 15, 10, 0), BUSINESS)}),
    # 24x7 P1 across the spring change: Sun 29/03 01:30 +01:00 = 00:30 UTC; + 1 h = 01:30 UTC = 03:30 CEST;
    # + 4 h = 04:30 UTC = 06:30 CEST (adding to the wall clock would wrongly give 02:30 / 05:30).
    ("P1 24x7 spring DST", Priority.P1, paris(2026, 3, 29, 1, 30), {"hours_mode": ALWAYS},
     {TC: (paris(2026, 3, 29, 1, 30), ALWAYS), FI: (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), ALWAYS),
      RS: (datetime(2026, 3, 29, 4, 30, tzinfo=UTC), ALWAYS)}),
    # 24x7 P1 across the autumn change: Sun 25/10 01:30 +02:00 = 24/10 23:30 UTC; + 1 h = 00:30 UTC
    # (02:30 +02:00); + 2 h (ToIP) = 01:30 UTC (the second 02:30, +01:00).
    ("P1 24x7 autumn DST", Priority.P1, paris(2026, 10, 25, 1, 30),
     {"hours_mode": ALWAYS, "service_kind": "toip"},
     {TC: (datetime(2026, 10, 24, 23, 30, tzinfo=UTC), ALWAYS),
      FI: (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), ALWAYS),
      RS: (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), ALWAYS)}),
    # P2 on Friday 27/03 17:00 (+01:00), business site, across the spring change:
    # taking charge 17:30; information 17:00-18:00 = 1 h then Mon 30/03 08:00 + 1 h = 09:00 (+02:00);
    # restoration 1 h Friday + Mon 08:00 + 3 h = 11:00 (+02:00).
    ("P2 business spring DST", Priority.P2, paris(2026, 3, 27, 17, 0), {},
     {TC: (paris(2026, 3, 27, 17, 30), BUSINESS), FI: (paris(2026, 3, 30, 9, 0), BUSINESS),
      RS: (paris(2026, 3, 30, 11, 0), BUSINESS)}),
    # Cercle 0 adds the intervention (GTI) 30 min: Mon 15/06 10:00 -> 10:30.
    ("Cercle 0 GTI", Priority.P1, paris(2026, 6, 15, 10, 0), {"cercle0": True},
     {TC: (paris(2026, 6, 15, 10, 0), ALWAYS), FI: (paris(2026, 6, 15, 11, 0), BUSINESS),
      RS: (paris(2026, 6, 15, 14, 0), BUSINESS), IV: (paris(2026, 6, 15, 10, 30), BUSINESS)}),
    # Major incident: first information within 15 min (10:15) instead of 1 h.
    ("major", Priority.P1, paris(2026, 6, 15, 10, 0), {"major": True},
     {TC: (paris(2026, 6, 15, 10, 0), ALWAYS), FI: (paris(2026, 6, 15, 10, 15), BUSINESS),
      RS: (paris(2026, 6, 15, 14, 0), BUSINESS)}),
    # A major P3 (no first information of its own) gets the 15-minute one: Fri 17:50 -> 10 min Friday,
    # then Tue 26/05 08:05 after the weekend and Whit Monday.
    ("major P3", Priority.P3, paris(2026, 5, 22, 17, 50), {"major": True},
     {FI: (paris(2026, 5, 26, 8, 5), BUSINESS), RS: (paris(2026, 5, 26, 17, 50), BUSINESS)}),
])
def test_compute_deadlines(case: str, priority: Priority, start: datetime, kw: dict[str, object],
                           expected: dict[DeadlineKind, tuple[datetime, Hours]]) -> None:
    assert dues(priority, start, **kw) == expected, case


def test_deadlines_are_typed_and_labelled() -> None:
    ds = compute_deadlines(Priority.P1, paris(2026, 6, 15, 10, 0), rules=RULES, calendar=CAL,
                           service_kind="toip", cercle0=True, major=True)
    assert [d.kind for d in ds] == [TC, FI, RS, IV]
    assert ds[RS].basis == "service_kind:toip"
    assert ds[FI].basis == "major"
    assert ds[IV].basis == "cercle0"
    assert ds[TC].duration == timedelta(0)
    assert ds[RS].label() == "Rétablissement (GTR)"
    assert ds[TC].label("en") == "Taking charge"
    assert ds.get(DeadlineKind.INTERVENTION) is not None
    p4 = compute_deadlines(Priority.P4, paris(2026, 6, 15, 10, 0), rules=RULES, calendar=CAL)
    assert p4.get(TC) is None
    with pytest.raises(KeyError):
        p4[TC]


# ---------------------------------------------------------------- clock start

A = datetime(2026, 6, 16, 8, 5, tzinfo=UTC)       # 10:05 Paris
T = paris(2026, 6, 16, 10, 1)                     # 08:01 UTC
C = paris(2026, 6, 16, 7, 0)                      # daily check, 05:00 UTC


@pytest.mark.parametrize(("kw", "expected"), [
    ({"alarm_at": A}, A),
    ({"alarm_at": A, "ticket_created_at": T}, T),                          # 08:01 UTC < 08:05 UTC
    ({"alarm_at": A, "ticket_created_at": T, "daily_check_failed_at": C}, C),
    ({"ticket_created_at": paris(2026, 6, 16, 10, 6), "alarm_at": A}, A),  # 08:06 UTC > 08:05 UTC
    ({"daily_check_failed_at": C}, C),
])
def test_clock_start_is_the_earliest(kw: dict[str, datetime], expected: datetime) -> None:
    got = clock_start(**kw)
    assert got == expected
    assert got is expected   # the given instant itself, in the zone it was given in


def test_clock_start_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError, match="at least one"):
        clock_start()
    with pytest.raises(ValueError, match="alarm_at"):
        clock_start(alarm_at=datetime(2026, 6, 16, 8, 5))


def test_earliest_start_drives_the_deadline() -> None:
    # the failed daily check at 07:00 (before opening) is the start: P3 counts from 08:00 -> 18:00
    start = clock_start(alarm_at=paris(2026, 6, 16, 9, 30), ticket_created_at=paris(2026, 6, 16, 9, 45),
                        daily_check_failed_at=paris(2026, 6, 16, 7, 0))
    assert dues(Priority.P3, start) == {RS: (paris(2026, 6, 16, 18, 0), BUSINESS)}


# ---------------------------------------------------------------- status

P3_WHIT = compute_deadlines(Priority.P3, paris(2026, 5, 22, 17, 0), rules=RULES, calendar=CAL)[RS]
P2_TC = compute_deadlines(Priority.P2, paris(2026, 6, 15, 10, 0), rules=RULES, calendar=CAL)[TC]
P1_TC = compute_deadlines(Priority.P1, paris(2026, 6, 14, 3, 0), rules=RULES, calendar=CAL)[TC]
P1_RS_24 = compute_deadlines(Priority.P1, paris(2026, 6, 14, 3, 0), rules=RULES, calendar=CAL,
                             hours_mode=ALWAYS)[RS]


@pytest.mark.parametrize(("case", "deadline", "now", "fraction", "status"), [
    # P3 due Tue 26/05 17:00; 80 % of 10 h = 8 h: Fri 1 h + Tue 08:00-15:00 7 h -> at risk from 15:00.
    ("P3 before start", P3_WHIT, paris(2026, 5, 22, 16, 0), 0.8, DeadlineStatus.OK),
    ("P3 over Whit Monday", P3_WHIT, paris(2026, 5, 25, 12, 0), 0.8, DeadlineStatus.OK),   # 1 h spent
    ("P3 Tue 14:59", P3_WHIT, paris(2026, 5, 26, 14, 59), 0.8, DeadlineStatus.OK),
    ("P3 Tue 15:00", P3_WHIT, paris(2026, 5, 26, 15, 0), 0.8, DeadlineStatus.AT_RISK),
    ("P3 due", P3_WHIT, paris(2026, 5, 26, 17, 0), 0.8, DeadlineStatus.AT_RISK),
    ("P3 one second late", P3_WHIT, paris(2026, 5, 26, 17, 0, 1), 0.8, DeadlineStatus.MISSED),
    # half of 10 h = 5 h: Fri 1 h + Tue 08:00-12:00 -> at risk from Tue 12:00
    ("P3 half, 11:59", P3_WHIT, paris(2026, 5, 26, 11, 59), 0.5, DeadlineStatus.OK),
    ("P3 half, 12:00", P3_WHIT, paris(2026, 5, 26, 12, 0), 0.5, DeadlineStatus.AT_RISK),
    # P2 taking charge, Mon 15/06 10:00, 30 business minutes: at risk at 10:24, due 10:30
    ("P2 TC 10:23", P2_TC, paris(2026, 6, 15, 10, 23, 59), 0.8, DeadlineStatus.OK),
    ("P2 TC 10:24", P2_TC, paris(2026, 6, 15, 10, 24), 0.8, DeadlineStatus.AT_RISK),
    ("P2 TC 10:30:01", P2_TC, paris(2026, 6, 15, 10, 30, 1), 0.8, DeadlineStatus.MISSED),
    # immediate P1 taking charge: at risk at its start, missed right after
    ("P1 TC at start", P1_TC, paris(2026, 6, 14, 3, 0), 0.8, DeadlineStatus.AT_RISK),
    ("P1 TC +1 s", P1_TC, paris(2026, 6, 14, 3, 0, 1), 0.8, DeadlineStatus.MISSED),
    # 24x7 P1 restoration Sun 03:00 + 4 h = 07:00; 80 % = 3 h 12 min -> 06:12
    ("P1 RS 06:11", P1_RS_24, paris(2026, 6, 14, 6, 11), 0.8, DeadlineStatus.OK),
    ("P1 RS 06:12", P1_RS_24, datetime(2026, 6, 14, 4, 12, tzinfo=UTC), 0.8, DeadlineStatus.AT_RISK),
    ("P1 RS 07:01", P1_RS_24, paris(2026, 6, 14, 7, 1), 0.8, DeadlineStatus.MISSED),
])
def test_deadline_status(case: str, deadline: object, now: datetime, fraction: float,
                         status: DeadlineStatus) -> None:
    assert deadline_status(deadline, now, fraction) is status, case  # type: ignore[arg-type]


def test_status_follows_an_injected_clock() -> None:
    clock = ManualClock(paris(2026, 6, 15, 10, 0))
    seen = []
    for _ in range(4):
        seen.append(deadline_status(P2_TC, clock.now()))
        clock.advance(10 * 60)
    # 10:00 ok, 10:10 ok, 10:20 ok (20 of 30 min < 24), 10:30 at risk (due, not yet missed)
    assert seen == [DeadlineStatus.OK, DeadlineStatus.OK, DeadlineStatus.OK, DeadlineStatus.AT_RISK]
    clock.advance(1)
    assert deadline_status(P2_TC, clock.now()) is DeadlineStatus.MISSED


def test_status_input_checks() -> None:
    with pytest.raises(ValueError, match="at_risk_fraction"):
        deadline_status(P2_TC, paris(2026, 6, 15, 10, 0), 1.5)
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline_status(P2_TC, datetime(2026, 6, 15, 10, 0))


def test_rules_given_in_code() -> None:
    # rules need not come from YAML: a 24x7 12-hour restoration and a business 1-hour information
    rules = SlaRules(priorities={Priority.P1: {
        DeadlineKind.RESTORATION: DeadlineRule(minutes=720, clock=ClockRule.ALWAYS),
        DeadlineKind.FIRST_INFORMATION: DeadlineRule(minutes=60, clock=ClockRule.BUSINESS)}})
    cal = BusinessCalendar(country=None)
    ds = compute_deadlines(Priority.P1, paris(2026, 5, 25, 20, 0), rules=rules, calendar=cal,
                           hours_mode=ALWAYS)
    # 20:00 + 12 h = Tue 08:00; information on business hours (Whit Monday is open without holidays):
    # Mon 20:00 is after closing, so Tue 08:00 + 1 h = 09:00
    assert ds[RS].due == paris(2026, 5, 26, 8, 0)
    assert ds[FI].due == paris(2026, 5, 26, 9, 0)
    assert ds[FI].clock is BUSINESS
