"""The météo archive in the store: one report per day (data, HTML, text), and whether it was sent.

The previous day's data is what the next météo is compared with ("nouveau / résolu depuis hier").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from callipso_agent.meteo.builder import Meteo, meteo_to_dict
from callipso_agent.store.tables import meteo_report


def _utc(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


@dataclass(frozen=True)
class ArchivedMeteo:
    day: date
    generated_at: datetime
    lang: str
    data: dict[str, Any]
    html: str
    text: str
    sent_at: datetime | None = None
    send_error: str | None = None


def _row(r: Any) -> ArchivedMeteo:
    generated = _utc(r["generated_at"])
    assert generated is not None
    return ArchivedMeteo(
        day=r["day"],
        generated_at=generated,
        lang=r["lang"],
        data=dict(r["data"]),
        html=r["html"],
        text=r["text"],
        sent_at=_utc(r["sent_at"]),
        send_error=r["send_error"],
    )


class MeteoArchive:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _insert(self) -> Any:
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(meteo_report)

    async def save(self, meteo: Meteo, html: str, text: str) -> None:
        """Keep the day's météo (a new build of the same day replaces it, and clears its sending status)."""
        values = {
            "day": meteo.day,
            "generated_at": _utc(meteo.generated_at),
            "lang": meteo.lang,
            "data": meteo_to_dict(meteo),
            "html": html,
            "text": text,
            "sent_at": None,
            "send_error": None,
        }
        stmt = self._insert().values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[meteo_report.c.day], set_={k: v for k, v in values.items() if k != "day"}
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def mark_sent(self, day: date, at: datetime | None, error: str | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(meteo_report)
                .where(meteo_report.c.day == day)
                .values(sent_at=_utc(at), send_error=error)
            )

    async def get(self, day: date) -> ArchivedMeteo | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(meteo_report).where(meteo_report.c.day == day))).mappings().first()
        return _row(r) if r else None

    async def latest(self) -> ArchivedMeteo | None:
        async with self.engine.connect() as conn:
            r = (
                (await conn.execute(select(meteo_report).order_by(meteo_report.c.day.desc()).limit(1)))
                .mappings()
                .first()
            )
        return _row(r) if r else None

    async def previous(self, day: date) -> ArchivedMeteo | None:
        """The latest météo before ``day`` (the previous working day's, usually)."""
        async with self.engine.connect() as conn:
            r = (
                (
                    await conn.execute(
                        select(meteo_report)
                        .where(meteo_report.c.day < day)
                        .order_by(meteo_report.c.day.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return _row(r) if r else None

    async def days(self, limit: int = 60) -> list[date]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(meteo_report.c.day).order_by(meteo_report.c.day.desc()).limit(limit)
                )
            ).all()
        return [r[0] for r in rows]
