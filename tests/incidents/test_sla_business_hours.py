"""Business-hours calendar (Mon-Fri 08:00-18:00 Europe/Paris, French public holidays).

Every expected instant below is a literal worked out by hand against a paper calendar; the comment
on each case shows the day-by-day count. French holidays used (checked against the holidays
library's FR calendar): Easter Monday 2026-04-06, Whit Monday 2026-05-25, Christmas 2026-12-25
(a Friday), New Year 2027-01-01 (a Friday); Good Friday 2026-04-03 only in Alsace-Moselle.
Daylight saving: 2026-03-29 (02:00 -> 03:00) and 2026-10-25 (03:00 -> 02:00).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callipso_agent.incidents.business_hours import BusinessCalendar

PARIS = ZoneInfo("Europe/Paris")
CAL = BusinessCalendar()  # the contract's defaults: Mon-Fri 08:00-18:00 Paris, FR metropolitan


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)


H = timedelta(hours=1)


@pytest.mark.parametrize(("case", "start", "duration", "due"), [
    # Fri 17:00-18:00 = 1 h; Sat, Sun, Whit Monday closed; Tue 08:00 + 9 h = 17:00
    ("P3 before Whit Monday", paris(2026, 5, 22, 17, 0), 10 * H, paris(2026, 5, 26, 17, 0)),
    # Fri 17:00-18:00 = 1 h; Sat, Sun, Easter Monday closed; Tue 08:00 + 9 h = 17:00
    ("P3 before Easter Monday", paris(2026, 4, 3, 17, 0), 10 * H, paris(2026, 4, 7, 17, 0)),
    # Thu 24/12 09:00-18:00 = 9 h (21 left); Fri 25 Christmas, weekend; Mon 28 = 10 h (11 left);
    # Tue 29 = 10 h (1 left); Wed 30 08:00 + 1 h = 09:00
    ("P4 across Christmas", paris(2026, 12, 24, 9, 0), 30 * H, paris(2026, 12, 30, 9, 0)),
    # Tue 29/12 10:00-18:00 = 8 h (22 left); Wed 30 = 10 h (12 left); Thu 31 = 10 h (2 left);
    # Fri 1/1 New Year, weekend; Mon 4/1/2027 08:00 + 2 h = 10:00
    ("P4 across New Year", paris(2026, 12, 29, 10, 0), 30 * H, paris(2027, 1, 4, 10, 0)),
    # Tue 19:30 is after closing: counting starts Wed 08:00, + 30 min = 08:30
    ("alarm at 19:30", paris(2026, 3, 10, 19, 30), timedelta(minutes=30), paris(2026, 3, 11, 8, 30)),
    # Tue 06:10 is before opening: counting starts the same day 08:00
    ("alarm at 06:10", paris(2026, 3, 10, 6, 10), 2 * H, paris(2026, 3, 10, 10, 0)),
    # Saturday start: Mon 08:00 + 4 h
    ("Saturday start", paris(2026, 3, 14, 11, 0), 4 * H, paris(2026, 3, 16, 12, 0)),
    # a result on a closing time stays there, it does not jump to the next opening
    ("ends at closing", paris(2026, 3, 10, 8, 0), 10 * H, paris(2026, 3, 10, 18, 0)),
    # zero business time from inside hours is the start itself
    ("zero inside", paris(2026, 3, 10, 9, 15), timedelta(0), paris(2026, 3, 10, 9, 15)),
    # zero business time from the night is the next opening
    ("zero at night", paris(2026, 3, 10, 23, 0), timedelta(0), paris(2026, 3, 11, 8, 0)),
    # spring DST weekend: Fri 27/03 17:00-18:00 (+01:00) = 1 h; Mon 30/03 08:00 (+02:00) + 3 h = 11:00,
    # that is 09:00 UTC (a calendar counting fixed UTC windows would say 12:00 local)
    ("spring DST", paris(2026, 3, 27, 17, 0), 4 * H, datetime(2026, 3, 30, 9, 0, tzinfo=UTC)),
    # autumn DST weekend: Fri 23/10 16:00-18:00 (+02:00) = 2 h; Mon 26/10 08:00 (+01:00) + 8 h = 16:00,
    # that is 15:00 UTC
    ("autumn DST", paris(2026, 10, 23, 16, 0), 10 * H, datetime(2026, 10, 26, 15, 0, tzinfo=UTC)),
    # a start given in UTC: 2026-03-10 16:30 UTC = 17:30 Paris; 30 min to 18:00, then Wed 08:00 + 30 min
    ("UTC start", datetime(2026, 3, 10, 16, 30, tzinfo=UTC), H, paris(2026, 3, 11, 8, 30)),
])
def test_add(case: str, start: datetime, duration: timedelta, due: datetime) -> None:
    got = CAL.add(start, duration)
    assert got == due, case
    assert got.tzinfo is UTC


def test_add_minutes() -> None:
    # Mon 17:50 + 25 business minutes: 10 min to 18:00, Tue 08:00 + 15 min
    assert CAL.add_minutes(paris(2026, 3, 9, 17, 50), 25) == paris(2026, 3, 10, 8, 15)


def test_dst_days_keep_their_wall_clock_windows() -> None:
    # both local results are exactly on their wall-clock hour, with the right offset
    spring = CAL.add(paris(2026, 3, 27, 17, 0), 4 * H).astimezone(PARIS)
    autumn = CAL.add(paris(2026, 10, 23, 16, 0), 10 * H).astimezone(PARIS)
    assert spring.isoformat() == "2026-03-30T11:00:00+02:00"
    assert autumn.isoformat() == "2026-10-26T16:00:00+01:00"


@pytest.mark.parametrize(("case", "start", "end", "elapsed"), [
    # Fri 17:00-18:00 (1 h), Sat, Sun, Whit Monday closed, Tue 08:00-12:00 (4 h)
    ("across Whit Monday", paris(2026, 5, 22, 17, 0), paris(2026, 5, 26, 12, 0), 5 * H),
    # Fri 08:00-18:00 + Mon 08:00-18:00 across the spring change
    ("spring DST", paris(2026, 3, 27, 8, 0), paris(2026, 3, 30, 18, 0), 20 * H),
    # Fri 08:00-18:00 + Mon 08:00-18:00 across the autumn change
    ("autumn DST", paris(2026, 10, 23, 8, 0), paris(2026, 10, 26, 18, 0), 20 * H),
    # night only
    ("night", paris(2026, 3, 10, 19, 30), paris(2026, 3, 11, 8, 0), timedelta(0)),
    # same window
    ("same day", paris(2026, 3, 10, 9, 10), paris(2026, 3, 10, 11, 40), timedelta(hours=2, minutes=30)),
    # end before start
    ("reversed", paris(2026, 3, 11, 9, 0), paris(2026, 3, 10, 9, 0), timedelta(0)),
    # Christmas week: Thu 24 09:00-18:00 (9 h), Fri 25 closed, weekend, Mon 28 08:00-10:00 (2 h)
    ("Christmas", paris(2026, 12, 24, 9, 0), paris(2026, 12, 28, 10, 0), 11 * H),
])
def test_elapsed(case: str, start: datetime, end: datetime, elapsed: timedelta) -> None:
    assert CAL.elapsed(start, end) == elapsed, case


@pytest.mark.parametrize(("instant", "open_"), [
    (paris(2026, 3, 10, 8, 0), True),             # opening included
    (paris(2026, 3, 10, 17, 59, 59), True),
    (paris(2026, 3, 10, 18, 0), False),           # closing excluded
    (paris(2026, 3, 10, 7, 59), False),
    (paris(2026, 3, 14, 10, 0), False),           # Saturday
    (paris(2026, 5, 25, 10, 0), False),           # Whit Monday
    (datetime(2026, 3, 10, 7, 0, tzinfo=UTC), True),  # 08:00 Paris in winter
])
def test_is_open(instant: datetime, open_: bool) -> None:
    assert CAL.is_open(instant) is open_


def test_subdivision_adds_good_friday() -> None:
    moselle = BusinessCalendar(subdivision="57")
    assert moselle.holiday_name(date(2026, 4, 3)) == "Good Friday"
    assert CAL.holiday_name(date(2026, 4, 3)) is None
    # Good Friday closed in Moselle: a Friday 17:00 start counts from Tue 07/04 08:00; + 10 h = 18:00
    assert moselle.add(paris(2026, 4, 3, 17, 0), 10 * H) == paris(2026, 4, 7, 18, 0)


def test_extra_closed_and_open_days() -> None:
    cal = BusinessCalendar(extra_closed_days=[date(2026, 5, 15)],   # bridge Friday after Ascension
                           extra_open_days=[date(2026, 5, 25)])     # Whit Monday worked
    # Thu 14/05 Ascension closed, Fri 15 closed (extra), weekend: Wed 13 17:00-18:00 = 1 h, Mon 18 + 1 h
    assert cal.add(paris(2026, 5, 13, 17, 0), 2 * H) == paris(2026, 5, 18, 9, 0)
    # Whit Monday worked: Fri 22 17:00-18:00 = 1 h, Mon 25 08:00 + 9 h = 17:00
    assert cal.add(paris(2026, 5, 22, 17, 0), 10 * H) == paris(2026, 5, 25, 17, 0)


def test_other_hours_and_days() -> None:
    cal = BusinessCalendar(opening=time(7, 30), closing=time(19, 0), working_days=["mon", "tue", "wed", "thu",
                                                                                  "fri", "sat"], country=None)
    # Sat 14/03 is a working day (7:30-19:00); Sat 18:00 + 2 h: 1 h on Saturday, Mon 07:30 + 1 h = 08:30
    assert cal.add(paris(2026, 3, 14, 18, 0), 2 * H) == paris(2026, 3, 16, 8, 30)
    # country=None: Whit Monday is an ordinary Monday
    assert cal.is_open(paris(2026, 5, 25, 10, 0))


def test_bad_calendars_are_refused() -> None:
    with pytest.raises(ValueError, match="before closing"):
        BusinessCalendar(opening=time(18, 0), closing=time(8, 0))
    with pytest.raises(ValueError, match="unknown working day"):
        BusinessCalendar(working_days=["monday"])
    with pytest.raises(ValueError, match="at least one working day"):
        BusinessCalendar(working_days=[])
    with pytest.raises(ValueError, match="subdivision"):
        BusinessCalendar(subdivision="999")
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add(datetime(2026, 3, 10, 9, 0), H)
    with pytest.raises(ValueError, match="negative"):
        CAL.add(paris(2026, 3, 10, 9, 0), -H)


def test_no_business_time_at_all_is_an_error() -> None:
    # the only working day (Monday) is closed for the next 38 years: the search gives up
    mondays = [date(2026, 3, 9) + timedelta(weeks=w) for w in range(2000)]
    only_monday = BusinessCalendar(working_days=["mon"], country=None, extra_closed_days=mondays)
    with pytest.raises(ValueError, match="no business time"):
        only_monday.add(paris(2026, 3, 9, 9, 0), H)


# Cross-check of the two code paths: the business time between a start and add(start, d) is d.
@settings(max_examples=300, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                          timezones=st.just(PARIS)),
       minutes=st.integers(min_value=0, max_value=60 * 60))
def test_elapsed_inverts_add(start: datetime, minutes: int) -> None:
    d = timedelta(minutes=minutes)
    due = CAL.add(start, d)
    assert due >= start
    assert CAL.elapsed(start, due) == d
