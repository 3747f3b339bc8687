"""The contract's policy as data: schema and loader of ``checks/contract.yaml``.

The file has three sections: ``calendar`` (business hours and closed days), ``priority`` (the
200-user threshold, the technical floor, declared sensitive periods) and ``sla`` (deadline rules
per priority). Unknown keys are errors; every error names the file, the line and the field.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.incidents.business_hours import BusinessCalendar
from callipso_agent.incidents.priority import Priority, PriorityRules, SensitivePeriod
from callipso_agent.incidents.sla import ClockRule, DeadlineKind, DeadlineRule, SlaRules
from callipso_agent.paths import checks_dir
from callipso_agent.yamlload import load_yaml, parse_model

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Minutes = Annotated[int, Field(ge=0, le=60 * 24 * 366)]


def _weekdays() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HolidaySettings(_Model):
    country: str | None = Field(default="FR", description="ISO country code for the holidays library; "
                                                          "null: no public holidays")
    subdivision: str | None = Field(default=None, description="e.g. '57' (Moselle); null: metropolitan")

    @model_validator(mode="after")
    def _known(self) -> HolidaySettings:
        if self.country is None:
            if self.subdivision is not None:
                raise ValueError("a subdivision needs a country")
            return self
        supported = holidays.list_supported_countries()
        if self.country not in supported:
            raise ValueError(f"country {self.country!r} is not known to the holidays library")
        if self.subdivision is not None and self.subdivision not in supported[self.country]:
            aliases = getattr(holidays.country_holidays(self.country), "subdivisions_aliases", {})
            if self.subdivision not in aliases:
                raise ValueError(f"unknown subdivision {self.subdivision!r} for {self.country}; known: "
                                 f"{', '.join(supported[self.country])}")
        return self


class CalendarSettings(_Model):
    timezone: str = "Europe/Paris"
    working_days: Annotated[list[Weekday], Field(min_length=1)] = Field(default_factory=_weekdays)
    opening: time = time(8, 0)
    closing: time = time(18, 0)
    holidays: HolidaySettings = Field(default_factory=HolidaySettings)
    extra_closed_days: list[date] = Field(default_factory=list)
    extra_open_days: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("opening", "closing", mode="before")
    @classmethod
    def _wall_time(cls, v: Any) -> Any:
        # YAML 1.1 reads an unquoted 18:00 as the sexagesimal integer 1080: insist on a quoted string.
        if not isinstance(v, (str, time)):
            raise ValueError("write the time as a quoted 'HH:MM' string, e.g. '18:00'")
        return v

    @field_validator("extra_closed_days", "extra_open_days", mode="before")
    @classmethod
    def _plain_dates(cls, v: Any) -> Any:
        if isinstance(v, list) and any(isinstance(d, datetime) for d in v):
            raise ValueError("give plain dates (YYYY-MM-DD), not date-times")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CalendarSettings:
        if self.opening >= self.closing:
            raise ValueError("opening must be before closing")
        both = sorted(set(self.extra_closed_days) & set(self.extra_open_days))
        if both:
            raise ValueError(f"days both closed and open: {', '.join(d.isoformat() for d in both)}")
        if len(set(self.working_days)) != len(self.working_days):
            raise ValueError("working_days lists a day twice")
        return self

    def build(self) -> BusinessCalendar:
        return BusinessCalendar(timezone=self.timezone, opening=self.opening, closing=self.closing,
                                working_days=self.working_days, country=self.holidays.country,
                                subdivision=self.holidays.subdivision,
                                extra_closed_days=self.extra_closed_days,
                                extra_open_days=self.extra_open_days)


class PeriodSettings(_Model):
    """A sensitive period: both bounds plain dates (whole days, end included, in the contract's time
    zone) or both date-times with a UTC offset (end excluded)."""

    name: Annotated[str, Field(min_length=1)]
    start: datetime | date
    end: datetime | date

    @field_validator("start", "end", mode="before")
    @classmethod
    def _offset(cls, v: Any) -> Any:
        if isinstance(v, datetime) and v.utcoffset() is None:
            raise ValueError("a date-time needs a UTC offset, e.g. 2027-03-14T08:00:00+01:00 "
                             "(or give a plain date)")
        return v

    @model_validator(mode="after")
    def _order(self) -> PeriodSettings:
        if isinstance(self.start, datetime) != isinstance(self.end, datetime):
            raise ValueError("start and end must both be dates or both be date-times")
        if isinstance(self.start, datetime):
            if self.end <= self.start:
                raise ValueError("end must be after start")
        elif self.end < self.start:
            raise ValueError("end must not be before start")
        return self

    def resolve(self, tz: ZoneInfo) -> SensitivePeriod:
        if isinstance(self.start, datetime) and isinstance(self.end, datetime):
            return SensitivePeriod(self.name, self.start, self.end)
        start = datetime.combine(self.start, time(0), tzinfo=tz)
        end = datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=tz)
        return SensitivePeriod(self.name, start, end)


class PrioritySettings(_Model):
    users_threshold: Annotated[int, Field(ge=0)] = 200
    technical_floor: Priority | None = Priority.P2
    sensitive_periods: list[PeriodSettings] = Field(default_factory=list)


class DeadlineSettings(_Model):
    minutes: Minutes
    clock: ClockRule
    by_service_kind: dict[str, Minutes] = Field(default_factory=dict)

    @field_validator("by_service_kind")
    @classmethod
    def _lower(cls, v: dict[str, int]) -> dict[str, int]:
        lowered = {k.lower(): m for k, m in v.items()}
        if len(lowered) != len(v):
            raise ValueError("service kinds differ only by case")
        return lowered

    def rule(self) -> DeadlineRule:
        return DeadlineRule(minutes=self.minutes, clock=self.clock,
                            by_service_kind=dict(self.by_service_kind))


class PriorityDeadlines(_Model):
    taking_charge: DeadlineSettings | None = None
    first_information: DeadlineSettings | None = None
    restoration: DeadlineSettings | None = None


class SlaSettings(_Model):
    at_risk_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    priorities: dict[Priority, PriorityDeadlines]
    cercle0_intervention: DeadlineSettings | None = None
    major_first_information: DeadlineSettings | None = None

    @field_validator("priorities")
    @classmethod
    def _all(cls, v: dict[Priority, PriorityDeadlines]) -> dict[Priority, PriorityDeadlines]:
        missing = [p.value for p in Priority if p not in v]
        if missing:
            raise ValueError(f"deadlines missing for {', '.join(missing)} "
                             "(give an empty mapping {} for none)")
        return v

    def rules(self) -> SlaRules:
        per: dict[Priority, dict[DeadlineKind, DeadlineRule]] = {}
        for prio, deadlines in self.priorities.items():
            per[prio] = {DeadlineKind(name): s.rule() for name, s in
                         (("taking_charge", deadlines.taking_charge),
                          ("first_information", deadlines.first_information),
                          ("restoration", deadlines.restoration)) if s is not None}
        return SlaRules(
            priorities=per,
            cercle0_intervention=self.cercle0_intervention.rule() if self.cercle0_intervention else None,
            major_first_information=(self.major_first_information.rule()
                                     if self.major_first_information else None),
            at_risk_fraction=self.at_risk_fraction)


class Contract(_Model):
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    priority: PrioritySettings = Field(default_factory=PrioritySettings)
    sla: SlaSettings

    def business_calendar(self) -> BusinessCalendar:
        return self.calendar.build()

    def priority_rules(self) -> PriorityRules:
        tz = ZoneInfo(self.calendar.timezone)
        return PriorityRules(users_threshold=self.priority.users_threshold,
                             technical_floor=self.priority.technical_floor,
                             sensitive_periods=tuple(p.resolve(tz) for p in self.priority.sensitive_periods))

    def sla_rules(self) -> SlaRules:
        return self.sla.rules()


def default_contract_path() -> Path:
    return checks_dir() / "contract.yaml"


def load_contract(path: str | Path | None = None) -> Contract:
    """Load and validate a contract file (the shipped ``checks/contract.yaml`` by default).

    Raises ``ConfigError`` (unreadable file, bad YAML) or ``ConfigErrors`` (schema), naming file, line, field.
    """
    file = Path(path) if path is not None else default_contract_path()
    data = load_yaml(file)
    return parse_model(Contract, data, str(file))
