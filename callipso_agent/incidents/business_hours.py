"""The contract's business-hours calendar.

Business time runs on working days (Monday to Friday by default) between an opening and a closing
wall-clock time (08:00-18:00 Europe/Paris by default). Public holidays of a country (France,
metropolitan, by default; a subdivision such as ``57`` for Moselle can be chosen) are closed, and
so are any extra closed days; extra open days override both the weekday rule and the holidays (for
example a Whit Monday worked as the *journée de solidarité*).

All arithmetic is done on instants: each day's window is built in local wall time and converted to
UTC, so windows on daylight-saving change days are still exactly as long as their wall-clock hours,
and nights, weekends and holidays contribute nothing. Inputs must be timezone-aware; results are
returned in UTC, like every timestamp in the agent (convert with ``astimezone`` to show them: a local
datetime inside the autumn repeated hour never compares equal to one in another zone, PEP 495).

The calendar is pure: it never reads the current time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# No real calendar is closed for this long; beyond it the configuration has no working day at all.
_MAX_SCAN_DAYS = 366 * 30


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got naive {value.isoformat()})")


class BusinessCalendar:
    """Working days, opening hours and closed days in one timezone."""

    __slots__ = ("_close", "_closed", "_holidays", "_open", "_opened", "_tz", "_weekdays")

    def __init__(self, *, timezone: str = "Europe/Paris", opening: time = time(8, 0),
                 closing: time = time(18, 0), working_days: Iterable[str] = WEEKDAYS[:5],
                 country: str | None = "FR", subdivision: str | None = None,
                 extra_closed_days: Iterable[date] = (), extra_open_days: Iterable[date] = ()) -> None:
        if opening >= closing:
            raise ValueError(f"opening {opening:%H:%M} must be before closing {closing:%H:%M}")
        if opening.tzinfo is not None or closing.tzinfo is not None:
            raise ValueError("opening and closing are wall-clock times without a timezone")
        days = {d.lower() for d in working_days}
        unknown = days - set(WEEKDAYS)
        if unknown:
            raise ValueError(f"unknown working day(s) {sorted(unknown)}; expected {', '.join(WEEKDAYS)}")
        if not days:
            raise ValueError("a business calendar needs at least one working day")
        self._tz = ZoneInfo(timezone)
        self._open = opening
        self._close = closing
        self._weekdays = frozenset(WEEKDAYS.index(d) for d in days)
        self._holidays: holidays.HolidayBase | None = None
        if country is not None:
            try:
                self._holidays = holidays.country_holidays(country, subdiv=subdivision)
            except NotImplementedError as err:
                raise ValueError(str(err)) from err
        self._closed = frozenset(extra_closed_days)
        self._opened = frozenset(extra_open_days)

    @property
    def timezone(self) -> ZoneInfo:
        return self._tz

    def is_working_day(self, day: date) -> bool:
        if day in self._opened:
            return True
        if day in self._closed or day.weekday() not in self._weekdays:
            return False
        return not (self._holidays is not None and day in self._holidays)

    def holiday_name(self, day: date) -> str | None:
        """Name of the public holiday on ``day`` (from the holidays library), if any."""
        if self._holidays is None:
            return None
        name = self._holidays.get(day)
        return str(name) if name is not None else None

    def is_open(self, instant: datetime) -> bool:
        """True when ``instant`` falls inside business hours (opening included, closing excluded)."""
        _aware("instant", instant)
        day = instant.astimezone(self._tz).date()
        if not self.is_working_day(day):
            return False
        start, end = self._window(day)
        return start <= instant.astimezone(UTC) < end

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which ``duration`` of business time has run from ``start``.

        A start outside business hours begins counting at the next opening. A result landing exactly
        on a closing time is that closing time (not the next opening).
        """
        _aware("start", start)
        if duration < timedelta(0):
            raise ValueError("duration must not be negative")
        remaining = duration
        cursor = start.astimezone(UTC)
        day = start.astimezone(self._tz).date()
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_working_day(day):
                win_start, win_end = self._window(day)
                cur = max(cursor, win_start)
                if cur <= win_end:
                    available = win_end - cur
                    if remaining <= available:
                        return cur + remaining
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("no business time found within 30 years; check the calendar's working days")

    def add_minutes(self, start: datetime, minutes: float) -> datetime:
        """``add`` with a number of business minutes."""
        return self.add(start, timedelta(minutes=minutes))

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants (zero when ``end`` is not after ``start``)."""
        _aware("start", start)
        _aware("end", end)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return timedelta(0)
        total = timedelta(0)
        day = start.astimezone(self._tz).date()
        last = end.astimezone(self._tz).date()
        while day <= last:
            if self.is_working_day(day):
                win_start, win_end = self._window(day)
                lo = max(start, win_start)
                hi = min(end, win_end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def _window(self, day: date) -> tuple[datetime, datetime]:
        """Opening and closing of ``day`` as UTC instants (wall time resolved in the calendar zone)."""
        opening = datetime.combine(day, self._open, tzinfo=self._tz).astimezone(UTC)
        closing = datetime.combine(day, self._close, tzinfo=self._tz).astimezone(UTC)
        return opening, closing
