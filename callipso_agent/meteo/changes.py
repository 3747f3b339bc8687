"""Planned changes, maintenance windows and open requests for the section
"INFORMATIONS / CHANGEMENTS / INTERVENTIONS PLANIFIÉES".

The météo takes them from an injected provider: any callable ``provider(day) -> list[PlannedChange]``
(or an awaitable of one), e.g. one reading the ITSM. The default provider reads a YAML list
(``changes:``) from a file in the configuration folder, if the file exists.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from callipso_agent.errors import ConfigError
from callipso_agent.yamlload import load_yaml, parse_model

ChangeKind = Literal["change", "maintenance", "request", "information"]


@dataclass(frozen=True, slots=True)
class PlannedChange:
    start: datetime | None  # None: an open request or change not scheduled yet
    end: datetime | None
    title: str
    sites: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    ref: str | None = None
    kind: ChangeKind = "change"


ChangesProvider = Callable[[date], "list[PlannedChange] | Awaitable[list[PlannedChange]]"]


async def call_provider(provider: ChangesProvider | None, day: date) -> list[PlannedChange]:
    if provider is None:
        return []
    out = provider(day)
    if inspect.isawaitable(out):
        out = await out
    return list(out)


@dataclass(frozen=True)
class ChangesView:
    """The changes of one météo, split as the section shows them."""

    today: tuple[PlannedChange, ...]
    coming: tuple[PlannedChange, ...]
    open: tuple[PlannedChange, ...]


def select_changes(
    changes: Iterable[PlannedChange], day: date, tz: ZoneInfo, horizon_days: int = 7
) -> ChangesView:
    """Today's changes (overlapping the day), the coming days' (up to ``horizon_days``), the unscheduled."""
    day_start = datetime.combine(day, time(0), tzinfo=tz)
    day_end = day_start + timedelta(days=1)
    horizon = day_start + timedelta(days=1 + horizon_days)
    today: list[PlannedChange] = []
    coming: list[PlannedChange] = []
    unscheduled: list[PlannedChange] = []
    for c in changes:
        if c.start is None:
            if c.end is None or c.end >= day_start:
                unscheduled.append(c)
            continue
        end = c.end or c.start
        if c.start < day_end and end >= day_start:
            today.append(c)
        elif day_end <= c.start < horizon:
            coming.append(c)

    def order(c: PlannedChange) -> tuple[datetime, str]:
        return (c.start or day_start, c.title)

    return ChangesView(
        tuple(sorted(today, key=order)),
        tuple(sorted(coming, key=order)),
        tuple(sorted(unscheduled, key=lambda c: (c.ref or "", c.title))),
    )


# ---- the default provider: a YAML file ------------------------------------------------------------------


class _ChangeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    start: AwareDatetime | date | None = None
    end: AwareDatetime | date | None = None
    sites: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    ref: str | None = None
    kind: ChangeKind = "change"


class ChangesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    changes: list[_ChangeEntry] = Field(default_factory=list)


def _when(v: datetime | date | None, tz: ZoneInfo, *, end: bool) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v
    # a plain date: the whole day (end of day for an end date)
    t = datetime.combine(v, time(0), tzinfo=tz)
    return t + timedelta(days=1) - timedelta(seconds=1) if end else t


def load_changes_file(path: Path, tz: ZoneInfo) -> list[PlannedChange]:
    """Read a ``changes:`` list; plain dates are whole days in ``tz``. Raises ConfigError(s) if invalid."""
    data = load_yaml(path)
    if data is None:
        return []
    parsed = parse_model(ChangesFile, data, str(path))
    out = []
    for e in parsed.changes:
        start, end = _when(e.start, tz, end=False), _when(e.end, tz, end=True)
        if end is None and e.start is not None and not isinstance(e.start, datetime):
            end = _when(e.start, tz, end=True)  # a plain date alone: that whole day
        if start is not None and end is not None and end < start:
            raise ConfigError("end is before start", file=str(path), field=f"changes: {e.title}")
        out.append(
            PlannedChange(
                start=start,
                end=end,
                title=e.title,
                sites=tuple(e.sites),
                services=tuple(e.services),
                ref=e.ref,
                kind=e.kind,
            )
        )
    return out


class YamlChangesProvider:
    """The default provider: the YAML file at ``path`` when it exists, nothing otherwise."""

    def __init__(self, path: Path, tz: ZoneInfo) -> None:
        self.path = path
        self.tz = tz

    async def __call__(self, day: date) -> list[PlannedChange]:
        if not self.path.is_file():
            return []
        return await asyncio.to_thread(load_changes_file, self.path, self.tz)
