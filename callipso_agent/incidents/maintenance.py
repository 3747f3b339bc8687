"""Maintenance windows: planned work on a site, a device or a service line.

During a window, a problem of a covered target does not open an incident: the incident is recorded as
*suppressed* (its timeline names the window) and opens for real if the problem outlives the window.

Windows come from two places: a YAML file (``checks/maintenance.yaml`` by default, validated with
file/line/field errors) and the API (``add``/``remove``), which keeps them in the store so that they
survive restarts and are shared by every agent of a PostgreSQL store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import delete, select

from callipso_agent.clock import Clock
from callipso_agent.errors import CallipsoError
from callipso_agent.paths import checks_dir
from callipso_agent.rules.inventory import Inventory
from callipso_agent.store.db import Store
from callipso_agent.store.tables import maintenance_windows
from callipso_agent.yamlload import load_yaml, parse_model

Scope = Literal["site", "device", "service"]


class MaintenanceError(CallipsoError):
    kind = "maintenance_error"


class MaintenanceWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, description="file:<n> for the file, db:<n> for the API; set on load")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scope: Scope
    targets: Annotated[list[str], Field(min_length=1)]
    start: datetime
    end: datetime
    reason: str = ""
    created_by: str = "config"

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("give a UTC offset, e.g. 2026-03-02T08:00:00+01:00")
        return v

    @model_validator(mode="after")
    def _order(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def in_force(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def covers(self, *, site: str | None, device: str | None, services: Iterable[str], at: datetime) -> bool:
        if not self.in_force(at):
            return False
        if self.scope == "site":
            return site is not None and site in self.targets
        if self.scope == "device":
            return device is not None and device in self.targets
        return any(s in self.targets for s in services)

    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.id else self.name


class MaintenanceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    maintenance: list[MaintenanceWindow] = Field(default_factory=list)


def default_maintenance_path() -> Path:
    return checks_dir() / "maintenance.yaml"


def load_maintenance_file(path: str | Path | None = None) -> list[MaintenanceWindow]:
    """Windows of a maintenance file (ids ``file:1``, ``file:2``... in file order); [] when it is empty."""
    file = Path(path) if path is not None else default_maintenance_path()
    data = load_yaml(file)
    if data is None:
        return []
    parsed = parse_model(MaintenanceFile, data, str(file))
    return [w.model_copy(update={"id": f"file:{i}"}) for i, w in enumerate(parsed.maintenance, start=1)]


def unknown_targets(window: MaintenanceWindow, inventory: Inventory) -> list[str]:
    known = {"site": inventory.sites, "device": inventory.devices, "service": inventory.services}[
        window.scope
    ]
    return [t for t in window.targets if t not in known]


class MaintenanceBook:
    """The windows in force: the file's plus the store's, kept in memory between ``refresh`` calls."""

    def __init__(
        self, store: Store | None, clock: Clock, file_windows: Sequence[MaintenanceWindow] = ()
    ) -> None:
        self.store = store
        self.clock = clock
        self._file = list(file_windows)
        self._db: list[MaintenanceWindow] = []

    async def refresh(self) -> None:
        if self.store is None:
            return
        async with self.store.engine.connect() as conn:
            rows = (
                (await conn.execute(select(maintenance_windows).order_by(maintenance_windows.c.id)))
                .mappings()
                .all()
            )
        self._db = [_from_row(r) for r in rows]

    async def add(self, window: MaintenanceWindow) -> MaintenanceWindow:
        if self.store is None:
            raise MaintenanceError("no store: maintenance windows can only be given in the file")
        values: dict[str, Any] = {
            "name": window.name,
            "scope": window.scope,
            "targets": list(window.targets),
            "start_at": window.start,
            "end_at": window.end,
            "reason": window.reason,
            "created_by": window.created_by,
            "created_at": self.clock.now(),
        }
        async with self.store.engine.begin() as conn:
            new_id = (
                await conn.execute(
                    maintenance_windows.insert().values(**values).returning(maintenance_windows.c.id)
                )
            ).scalar_one()
        await self.refresh()
        return window.model_copy(update={"id": f"db:{new_id}"})

    async def remove(self, window_id: str) -> bool:
        """Remove a window added through the API; False when there is none with this id."""
        if window_id.startswith("file:"):
            raise MaintenanceError(
                f"{window_id} is defined in the maintenance file: edit the file to remove it"
            )
        if not window_id.startswith("db:") or not window_id[3:].isdigit() or self.store is None:
            return False
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                delete(maintenance_windows).where(maintenance_windows.c.id == int(window_id[3:]))
            )
        await self.refresh()
        return bool(result.rowcount)

    def windows(self, *, at: datetime | None = None, include_past: bool = True) -> list[MaintenanceWindow]:
        every = [*self._file, *self._db]
        if at is not None:
            every = [w for w in every if w.in_force(at)]
        elif not include_past:
            now = self.clock.now()
            every = [w for w in every if w.end > now]
        return sorted(every, key=lambda w: (w.start, w.id or ""))

    def active_for(
        self, *, site: str | None, device: str | None, services: Iterable[str], at: datetime
    ) -> MaintenanceWindow | None:
        services = tuple(services)
        for w in self.windows(at=at):
            if w.covers(site=site, device=device, services=services, at=at):
                return w
        return None


def _from_row(row: Any) -> MaintenanceWindow:
    return MaintenanceWindow(
        id=f"db:{row['id']}",
        name=row["name"],
        scope=row["scope"],
        targets=list(row["targets"]),
        start=row["start_at"],
        end=row["end_at"],
        reason=row["reason"],
        created_by=row["created_by"],
    )
