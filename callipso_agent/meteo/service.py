"""Build, archive and send the météo; and its schedule (every working day at 08:30, Europe/Paris).

Everything concrete is injected: where the snapshot comes from (the agent's cache or its HTTP API), the
planned changes provider, the archive, the mail sender, the clock, the business calendar, and the
``on_failed_check`` hook of the incident engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import structlog
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from callipso_agent.clock import Clock
from callipso_agent.config.models import AgentConfig
from callipso_agent.incidents.business_hours import BusinessCalendar
from callipso_agent.meteo.archive import MeteoArchive
from callipso_agent.meteo.builder import Meteo, compute_meteo, diff_meteo
from callipso_agent.meteo.changes import ChangesProvider, call_provider, select_changes
from callipso_agent.meteo.checks import CheckRun, OnFailedCheck, run_daily_checks
from callipso_agent.meteo.mail import MailError, SmtpSender, build_message
from callipso_agent.meteo.render import MeteoRenderer, subject
from callipso_agent.meteo.settings import MeteoSettings
from callipso_agent.meteo.snapshot import EstateSnapshot
from callipso_agent.meteo.spec import MeteoSpec

log = structlog.get_logger()

SnapshotSource = Callable[[datetime], Awaitable[EstateSnapshot]]


@dataclass(frozen=True)
class RenderedMeteo:
    meteo: Meteo
    subject: str
    html: str
    text: str
    checks: CheckRun


class MeteoService:
    def __init__(
        self,
        *,
        spec: MeteoSpec,
        settings: MeteoSettings,
        config: Callable[[], AgentConfig],
        snapshot: SnapshotSource,
        clock: Clock,
        calendar: BusinessCalendar,
        changes: ChangesProvider | None = None,
        archive: MeteoArchive | None = None,
        sender: SmtpSender | None = None,
        on_failed_check: OnFailedCheck | None = None,
        renderer: MeteoRenderer | None = None,
        lang: str | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.config = config
        self.snapshot = snapshot
        self.clock = clock
        self.calendar = calendar
        self.changes = changes
        self.archive = archive
        self.sender = sender
        self.on_failed_check = on_failed_check
        self.renderer = renderer or MeteoRenderer()
        self.lang = lang or settings.language or config().agent.language

    def today(self) -> date:
        return self.clock.now().astimezone(self.settings.tz).date()

    async def build(
        self,
        day: date | None = None,
        *,
        lang: str | None = None,
        compare: bool = True,
        run_hooks: bool = False,
    ) -> RenderedMeteo:
        """Compute and render the météo of ``day`` (today by default) from a fresh snapshot."""
        day = day or self.today()
        lang = lang or self.lang
        at = self.clock.now()
        snap = await self.snapshot(at)
        run = await run_daily_checks(
            self.spec.checks, snap, on_failed_check=self.on_failed_check if run_hooks else None
        )
        changes = select_changes(
            await call_provider(self.changes, day), day, self.settings.tz, self.settings.horizon_days
        )
        cfg = self.config()
        meteo = compute_meteo(
            self.spec,
            snap,
            run,
            day=day,
            changes=changes,
            lang=lang,
            incident_prefix=self.settings.incident_prefix,
            timezone=self.settings.timezone,
            agent=cfg.agent.name,
        )
        if compare and self.archive is not None:
            previous = await self.archive.previous(day)
            meteo = diff_meteo(meteo, previous.data if previous else {})
        return RenderedMeteo(meteo, subject(meteo), self.renderer.html(meteo), self.renderer.text(meteo), run)

    async def publish(
        self, day: date | None = None, *, send: bool = True, lang: str | None = None
    ) -> RenderedMeteo:
        """Build, archive, then send (the archive records whether and when it was sent)."""
        rendered = await self.build(day, lang=lang, run_hooks=True)
        m = rendered.meteo
        if self.archive is not None:
            await self.archive.save(m, rendered.html, rendered.text)
        if send:
            if self.sender is None:
                raise MailError("no mail sender configured")
            msg = build_message(
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
                settings=self.settings,
                lang=m.lang,
                when=self.clock.now(),
            )
            try:
                await self.sender.send(msg)
            except MailError as err:
                if self.archive is not None:
                    await self.archive.mark_sent(m.day, None, str(err))
                raise
            if self.archive is not None:
                await self.archive.mark_sent(m.day, self.clock.now())
        log.info(
            "meteo_published",
            day=m.day.isoformat(),
            user=m.user.value,
            technical=m.technical.value,
            sent=send,
        )
        return rendered

    async def run_scheduled(self) -> bool:
        """The scheduler's job: publish on working days; False when the day is skipped or sending is off."""
        if not self.settings.enabled:
            return False
        day = self.today()
        if self.settings.working_days_only and not self.calendar.is_working_day(day):
            log.info(
                "meteo_skipped",
                day=day.isoformat(),
                reason="not a working day",
                holiday=self.calendar.holiday_name(day),
            )
            return False
        try:
            await self.publish(day, send=bool(self.settings.recipients))
        except MailError:
            log.exception("meteo_not_sent", day=day.isoformat())
            return False
        return True


def meteo_trigger(settings: MeteoSettings) -> CronTrigger:
    """Every day at the settings' time in their zone; the job itself skips the calendar's closed days
    (so holidays and extra open days follow the contract's calendar, not a fixed mon-fri)."""
    t = settings.send_time
    return CronTrigger(hour=t.hour, minute=t.minute, timezone=settings.tz)


def schedule_meteo(scheduler: Any, service: MeteoService, *, job_id: str = "meteo") -> None:
    """Add the daily job to an APScheduler 3 scheduler (replacing an older one on reload)."""
    scheduler.add_job(
        service.run_scheduled,
        meteo_trigger(service.settings),
        id=job_id,
        name="daily météo",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )
