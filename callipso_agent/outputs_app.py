"""Assembly of the output stage for the daemon: outbox + worker, EasyVista, notifications, HTTP API.

The daemon (composition root) calls :func:`build_outputs` once the store is migrated and the incident
engine exists, installs the API on its HttpServer before starting it, hands ``outputs.on_change`` to the
engine, then ``await outputs.start()`` / ``await outputs.stop()``. Configuration comes from
``<config>/outputs/easyvista.yaml`` and ``<config>/outputs/notifications.yaml`` (each optional).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from callipso_agent.api.alertmanager import AlertmanagerReceiver, EventSink
from callipso_agent.api.auth import TokenAuth
from callipso_agent.api.incidents import IncidentApi
from callipso_agent.clock import Clock
from callipso_agent.config.models import AgentSettings
from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.incidents.business_hours import BusinessCalendar
from callipso_agent.itsm.config import easyvista_path, load_easyvista
from callipso_agent.itsm.easyvista import EasyVistaClient
from callipso_agent.itsm.tickets import EasyVistaDeliverer, ItsmPublisher, TicketMapper
from callipso_agent.notify.channels import Channel, build_channels
from callipso_agent.notify.config import load_notifications, notifications_path
from callipso_agent.notify.deliver import NotifyDeliverer
from callipso_agent.notify.dispatch import OutputDispatcher
from callipso_agent.notify.router import NotificationRouter
from callipso_agent.notify.texts import Texts
from callipso_agent.outbox import Backoff, Deliverer, Outbox, OutboxWorker
from callipso_agent.ports import AuditSink, IncidentChange, IncidentSource, MaintenanceSource
from callipso_agent.store import Store

log = structlog.get_logger()


@dataclass
class Outputs:
    outbox: Outbox
    worker: OutboxWorker
    dispatcher: OutputDispatcher
    api: IncidentApi
    auth: TokenAuth
    router: NotificationRouter | None = None
    itsm: ItsmPublisher | None = None
    easyvista: EasyVistaClient | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    tick_seconds: float = 30.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def on_change(self, change: IncidentChange) -> None:
        """What the incident engine calls after committing a change of an incident."""
        await self.dispatcher.on_change(change)

    def install(self, http_server: Any) -> None:
        """Routes and authentication on the agent's HttpServer (before it starts)."""
        self.api.install(http_server, self.auth)

    async def backlog(self) -> dict[str, int]:
        """Outbox jobs per state, for ``callipso_outbox_jobs{state}``."""
        return await self.outbox.backlog()

    async def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.worker.run(self._stop), name="outbox-worker")]
        if self.router is not None:
            self._tasks.append(asyncio.create_task(self._ticks(), name="notify-ticks"))

    async def _ticks(self) -> None:
        assert self.router is not None
        while not self._stop.is_set():
            try:
                await self.router.tick()
            except Exception:
                log.exception("notify_tick_failed")
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.tick_seconds)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for channel in self.channels.values():
            await channel.close()
        if self.easyvista is not None:
            await self.easyvista.close()


def build_outputs(
    config_path: Path,
    *,
    agent: AgentSettings,
    store: Store,
    clock: Clock,
    incidents: IncidentSource,
    maintenance: MaintenanceSource,
    events: EventSink | None = None,
    calendar: BusinessCalendar | None = None,
    audit: AuditSink | None = None,
    tick_seconds: float = 30.0,
    on_attempt: Callable[[str, str], None] | None = None,
) -> Outputs:
    """Build every output from the configuration (raises ConfigErrors; resolves secrets)."""
    base_dir = config_path if config_path.is_dir() else config_path.parent
    retry = agent.outbox
    outbox = Outbox(store.engine, clock, max_attempts=retry.max_attempts,
                    backoff=Backoff(base=retry.retry_base, maximum=retry.retry_max))
    deliverers: dict[str, Deliverer] = {}
    target_limits: dict[str, int] = {}
    subscribers: list[Callable[[IncidentChange], Awaitable[Any]]] = []
    itsm = client = None
    ev_file = easyvista_path(config_path)
    if ev_file.exists():
        ev = load_easyvista(ev_file)
        client = EasyVistaClient.from_settings(ev, base_dir)
        mapper = TicketMapper(ev.mapping, Texts(ev.language, agent.timezone))
        itsm = ItsmPublisher(
            outbox,
            mapper,
            target=ev.target,
            reference_prefix=ev.reference_prefix,
            priorities=tuple(ev.priorities),
            language=ev.language,
        )
        deliverers["itsm"] = EasyVistaDeliverer(client, incidents, outbox, mapper, language=ev.language)
        target_limits[ev.target] = ev.concurrency
        subscribers.append(itsm.on_change)
    router = None
    channels: dict[str, Channel] = {}
    nf_file = notifications_path(config_path)
    if nf_file.exists():
        nf = load_notifications(nf_file)
        channels = build_channels(nf.channels, base_dir)
        router = NotificationRouter(nf, outbox, incidents, clock, calendar=calendar)
        deliverers["notify"] = NotifyDeliverer(channels, incidents)
        subscribers.append(router.on_change)
    worker = OutboxWorker(
        outbox,
        deliverers,
        clock=clock,
        timeline=incidents,
        language=agent.language,
        timezone=agent.timezone,
        target_limits=target_limits,
        on_attempt=on_attempt,
    )
    auth = TokenAuth(agent.http.tokens, clock, open_reads=agent.http.open_reads)
    alerts = AlertmanagerReceiver(events, clock) if events is not None else None
    api = IncidentApi(incidents, maintenance, audit or store, clock, alerts=alerts)
    log.info("outputs_built", easyvista=client is not None, channels=sorted(channels), routes=bool(router))
    return Outputs(
        outbox=outbox,
        worker=worker,
        dispatcher=OutputDispatcher(*subscribers),
        api=api,
        auth=auth,
        router=router,
        itsm=itsm,
        easyvista=client,
        channels=channels,
        tick_seconds=tick_seconds,
    )


def check_outputs(config_path: Path) -> list[ConfigError]:
    """Validate the output files (for ``config check``) without resolving secrets."""
    errors: list[ConfigError] = []
    for path, loader in (
        (easyvista_path(config_path), load_easyvista),
        (notifications_path(config_path), load_notifications),
    ):
        if path.exists():
            try:
                loader(path)
            except ConfigErrors as errs:
                errors.extend(errs.errors)
    return errors
