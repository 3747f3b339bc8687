"""Planned changes: the default YAML provider (the example config's file), injected providers, and which
changes the météo shows today, in the coming days, or as open requests. Entries are SYNTHETIC."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.meteo.changes import (
    PlannedChange,
    YamlChangesProvider,
    call_provider,
    load_changes_file,
    select_changes,
)
from callipso_agent.meteo.settings import load_meteo_settings
from tests.meteo.estate import EXAMPLE_CONFIG

PARIS = ZoneInfo("Europe/Paris")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


async def test_example_settings_and_changes_file() -> None:
    loaded = load_meteo_settings(EXAMPLE_CONFIG)
    s = loaded.settings
    assert loaded.file == EXAMPLE_CONFIG / "meteo" / "meteo.yaml"
    assert (s.time, s.timezone, s.smtp.security, s.smtp.port) == ("08:30", "Europe/Paris", "starttls", 587)
    assert s.smtp.password is not None and s.smtp.password.file == "/etc/callipso-agent/secrets/smtp-password"
    provider = YamlChangesProvider(loaded.changes_path, s.tz)
    changes = await call_provider(provider, date(2026, 12, 1))
    assert [c.ref for c in changes] == ["CHG0001234", "CHG0001240", "REQ0098765"]
    view = select_changes(changes, date(2026, 12, 1), s.tz, s.horizon_days)
    assert [c.ref for c in view.today] == ["CHG0001234"]
    assert [c.ref for c in view.coming] == ["CHG0001240"]
    assert [c.ref for c in view.open] == ["REQ0098765"]
    batteries = view.coming[0]
    assert (batteries.start, batteries.end) == (at(2026, 12, 3, 0, 0), at(2026, 12, 3, 23, 59, 59))
    assert batteries.kind == "maintenance" and batteries.sites == ("ISTRES-MDS",)


def test_no_settings_file_means_defaults(tmp_path: Path) -> None:
    loaded = load_meteo_settings(tmp_path)
    assert loaded.file is None and loaded.settings.recipients == [] and loaded.settings.time == "08:30"
    assert loaded.changes_path == tmp_path / "meteo" / "changes.yaml"


async def test_missing_changes_file_is_no_change(tmp_path: Path) -> None:
    assert await YamlChangesProvider(tmp_path / "nope.yaml", PARIS)(date(2026, 12, 1)) == []


def test_changes_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "changes.yaml"
    f.write_text("changes:\n  - title: Bascule\n    strat: 2026-12-01\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as exc:
        load_changes_file(f, PARIS)
    [err] = exc.value.errors
    assert (err.file, err.line, err.field) == (str(f), 3, "changes[0].strat")
    f.write_text("changes:\n  - {title: Bascule, start: 2026-12-02, end: 2026-12-01}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="end is before start"):
        load_changes_file(f, PARIS)
    f.write_text("changes:\n  - {title: Bascule, start: '2026-12-01T20:00:00'}\n", encoding="utf-8")
    with pytest.raises(ConfigErrors):  # a time without its offset is ambiguous
        load_changes_file(f, PARIS)


def test_what_shows_today_in_the_coming_days_or_as_open() -> None:
    day = date(2026, 12, 1)
    changes = [
        PlannedChange(at(2026, 11, 30, 22, 0), at(2026, 12, 1, 2, 0), "overnight from yesterday", ref="A"),
        PlannedChange(at(2026, 11, 30, 8, 0), at(2026, 11, 30, 12, 0), "yesterday, over", ref="B"),
        PlannedChange(at(2026, 12, 1, 20, 0), None, "tonight, no end", ref="C"),
        PlannedChange(at(2026, 12, 8, 23, 0), at(2026, 12, 9, 1, 0), "last day of the horizon", ref="D"),
        PlannedChange(at(2026, 12, 9, 0, 0), at(2026, 12, 9, 1, 0), "beyond the horizon", ref="E"),
        PlannedChange(None, None, "open request", ref="F", kind="request"),
        PlannedChange(None, at(2026, 11, 15, 0, 0), "closed request", ref="G", kind="request"),
        PlannedChange(at(2026, 12, 2, 9, 0), at(2026, 12, 2, 10, 0), "tomorrow", ref="H"),
    ]
    view = select_changes(changes, day, PARIS, horizon_days=7)
    assert [c.ref for c in view.today] == ["A", "C"]
    assert [c.ref for c in view.coming] == ["H", "D"]
    assert [c.ref for c in view.open] == ["F"]


async def test_injected_providers_sync_or_async() -> None:
    change = PlannedChange(at(2026, 12, 1, 9, 0), None, "from the ITSM", ref="CHG1")
    seen: list[date] = []

    def sync(day: date) -> list[PlannedChange]:
        seen.append(day)
        return [change]

    async def asynchronous(day: date) -> list[PlannedChange]:
        seen.append(day)
        return [change]

    assert await call_provider(sync, date(2026, 12, 1)) == [change]
    assert await call_provider(asynchronous, date(2026, 12, 2)) == [change]
    assert await call_provider(None, date(2026, 12, 3)) == []
    assert seen == [date(2026, 12, 1), date(2026, 12, 2)]
