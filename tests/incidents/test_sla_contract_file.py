"""checks/contract.yaml: the shipped policy, and errors that name file, line and field."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.incidents.contract import load_contract
from callipso_agent.incidents.priority import Priority
from callipso_agent.incidents.sla import ClockRule, DeadlineKind

PARIS = ZoneInfo("Europe/Paris")

# A minimal valid contract (SYNTHETIC, written for these tests).
MINIMAL_SLA = """\
sla:
  priorities:
    P1: {restoration: {minutes: 240, clock: site}}
    P2: {}
    P3: {}
    P4: {}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "contract.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def errors_of(tmp_path: Path, text: str) -> list[ConfigError]:
    path = write(tmp_path, text)
    with pytest.raises((ConfigErrors, ConfigError)) as info:
        load_contract(path)
    err = info.value
    if isinstance(err, ConfigErrors):
        return err.errors
    assert isinstance(err, ConfigError)
    return [err]


def test_shipped_contract_matches_the_contract_text() -> None:
    c = load_contract()
    assert c.calendar.timezone == "Europe/Paris"
    assert (c.calendar.opening, c.calendar.closing) == (time(8, 0), time(18, 0))
    assert c.calendar.working_days == ["mon", "tue", "wed", "thu", "fri"]
    assert c.calendar.holidays.country == "FR" and c.calendar.holidays.subdivision is None
    pr = c.priority_rules()
    assert pr.users_threshold == 200 and pr.technical_floor is Priority.P2
    r = c.sla_rules()
    minutes = {(p, k): (rule.minutes, rule.clock)
               for p, per in r.priorities.items() for k, rule in per.items()}
    assert minutes == {
        (Priority.P1, DeadlineKind.TAKING_CHARGE): (0, ClockRule.ALWAYS),
        (Priority.P1, DeadlineKind.FIRST_INFORMATION): (60, ClockRule.SITE),
        (Priority.P1, DeadlineKind.RESTORATION): (240, ClockRule.SITE),
        (Priority.P2, DeadlineKind.TAKING_CHARGE): (30, ClockRule.SITE),
        (Priority.P2, DeadlineKind.FIRST_INFORMATION): (120, ClockRule.SITE),
        (Priority.P2, DeadlineKind.RESTORATION): (240, ClockRule.SITE),
        (Priority.P3, DeadlineKind.RESTORATION): (600, ClockRule.BUSINESS),
        (Priority.P4, DeadlineKind.RESTORATION): (1800, ClockRule.BUSINESS),
    }
    assert dict(r.priorities[Priority.P1][DeadlineKind.RESTORATION].by_service_kind) == {"toip": 120,
                                                                                        "network": 120}
    assert r.cercle0_intervention is not None and r.cercle0_intervention.minutes == 30
    assert r.major_first_information is not None and r.major_first_information.minutes == 15
    assert r.at_risk_fraction == 0.8


def test_defaults_fill_a_minimal_file(tmp_path: Path) -> None:
    c = load_contract(write(tmp_path, MINIMAL_SLA))
    assert c.priority_rules().technical_floor is Priority.P2
    assert c.business_calendar().is_open(datetime(2026, 3, 10, 9, 0, tzinfo=PARIS))


def test_floor_can_be_disabled(tmp_path: Path) -> None:
    c = load_contract(write(tmp_path, "priority:\n  technical_floor: null\n" + MINIMAL_SLA))
    assert c.priority_rules().technical_floor is None


def test_sensitive_periods_from_dates_and_datetimes(tmp_path: Path) -> None:
    c = load_contract(write(tmp_path, textwrap.dedent("""\
        priority:
          sensitive_periods:
            - name: "Élections, 1er tour"
              start: 2028-03-12
              end: 2028-03-12
            - name: Plan grand froid
              start: 2027-01-10T18:00:00+01:00
              end: 2027-01-15T08:00:00+01:00
        """) + MINIMAL_SLA))
    day, cold = c.priority_rules().sensitive_periods
    # a date period covers the whole day in Paris, end day included
    assert day.in_force(datetime(2028, 3, 12, 0, 0, tzinfo=PARIS))
    assert day.in_force(datetime(2028, 3, 12, 23, 59, 59, tzinfo=PARIS))
    assert not day.in_force(datetime(2028, 3, 13, 0, 0, tzinfo=PARIS))
    assert not day.in_force(datetime(2028, 3, 11, 22, 59, 59, tzinfo=UTC))   # 23:59:59 Paris the day before
    assert cold.in_force(datetime(2027, 1, 10, 17, 0, tzinfo=UTC))
    assert not cold.in_force(datetime(2027, 1, 15, 7, 0, tzinfo=UTC))


def test_calendar_settings_reach_the_calendar(tmp_path: Path) -> None:
    c = load_contract(write(tmp_path, textwrap.dedent("""\
        calendar:
          opening: "07:30"
          closing: "17:00"
          holidays: {country: FR, subdivision: "57"}
          extra_closed_days: [2026-05-15]
        """) + MINIMAL_SLA))
    cal = c.business_calendar()
    assert cal.is_open(datetime(2026, 3, 10, 7, 30, tzinfo=PARIS))
    assert not cal.is_open(datetime(2026, 3, 10, 17, 0, tzinfo=PARIS))
    assert not cal.is_open(datetime(2026, 4, 3, 10, 0, tzinfo=PARIS))    # Good Friday in Moselle
    assert not cal.is_open(datetime(2026, 5, 15, 10, 0, tzinfo=PARIS))   # extra closed day


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    # misspelt key
    ("priority:\n  technical_flor: P2\n" + MINIMAL_SLA, 2, "priority.technical_flor", "unknown field"),
    # unquoted 18:00 is the YAML integer 1080
    ("calendar:\n  opening: '08:00'\n  closing: 18:00\n" + MINIMAL_SLA, 3, "calendar.closing", "quoted"),
    # opening after closing
    ("calendar:\n  opening: '19:00'\n" + MINIMAL_SLA, 1, "calendar", "opening must be before closing"),
    # unknown subdivision
    ("calendar:\n  holidays:\n    subdivision: '99'\n" + MINIMAL_SLA, 2, "calendar.holidays", "subdivision"),
    # unknown weekday
    ("calendar:\n  working_days: [mon, tuesday]\n" + MINIMAL_SLA, 2, "calendar.working_days[1]",
     "Input should be"),
    # naive date-time in a period
    ("priority:\n  sensitive_periods:\n    - name: x\n      start: 2027-01-10 18:00:00\n"
     "      end: 2027-01-11\n" + MINIMAL_SLA, 4, "priority.sensitive_periods[0].start", "UTC offset"),
    # period ending before it starts
    ("priority:\n  sensitive_periods:\n    - name: x\n      start: 2027-01-10\n      end: 2027-01-09\n"
     + MINIMAL_SLA, 3, "priority.sensitive_periods[0]", "end must not be before start"),
    # a priority without its deadlines
    ("sla:\n  priorities:\n    P1: {}\n    P2: {}\n    P3: {}\n", 2, "sla.priorities", "P4"),
    # unknown clock
    ("sla:\n  priorities:\n    P1: {restoration: {minutes: 240, clock: always}}\n    P2: {}\n    P3: {}\n"
     "    P4: {}\n", 3, "sla.priorities.P1.restoration.clock", "Input should be"),
    # negative minutes
    ("sla:\n  priorities:\n    P1: {restoration: {minutes: -5, clock: site}}\n    P2: {}\n    P3: {}\n"
     "    P4: {}\n", 3, "sla.priorities.P1.restoration.minutes", "greater than or equal"),
    # floor that is not a priority
    ("priority:\n  technical_floor: P5\n" + MINIMAL_SLA, 2, "priority.technical_floor", "Input should be"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int, field: str,
                                         message: str) -> None:
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1, [str(e) for e in errs]
    e = errs[0]
    assert e.file == str(tmp_path / "contract.yaml")
    assert (e.line, e.field) == (line, field)
    assert message in e.message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_contract(tmp_path / "nope.yaml")
    errs = errors_of(tmp_path, "sla: [unclosed\n")
    assert errs[0].line is not None and "invalid YAML" in errs[0].message
