"""Building the météo inside the agent: one call for the composition root (daemon.py).

``create_meteo_service`` reads the ``meteo`` settings beside the configuration, loads and cross-checks
the checklist, and wires the service to the agent's cache, store, clock and incident engine.
``meteo_web_routes`` gives the ``/meteo`` pages for :meth:`HttpServer.add_routes`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from callipso_agent.clock import Clock
from callipso_agent.collect.cache import LatestCache
from callipso_agent.config.models import AgentConfig
from callipso_agent.errors import ConfigErrors
from callipso_agent.incidents.contract import load_contract
from callipso_agent.meteo.archive import MeteoArchive
from callipso_agent.meteo.changes import ChangesProvider, YamlChangesProvider
from callipso_agent.meteo.checks import OnFailedCheck
from callipso_agent.meteo.mail import SmtpSender
from callipso_agent.meteo.routes import meteo_routes
from callipso_agent.meteo.service import MeteoService
from callipso_agent.meteo.settings import load_meteo_settings
from callipso_agent.meteo.snapshot import EstateSnapshot, snapshot_from_cache
from callipso_agent.meteo.spec import cross_check, load_meteo_spec
from callipso_agent.model import IncidentView

IncidentsSource = Callable[[], Awaitable[Sequence[IncidentView]]]


def create_meteo_service(
    config_path: Path,
    *,
    config: Callable[[], AgentConfig],
    cache: LatestCache,
    clock: Clock,
    store_engine: AsyncEngine | None = None,
    incidents: IncidentsSource | None = None,
    on_failed_check: OnFailedCheck | None = None,
    changes: ChangesProvider | None = None,
    families: Iterable[str] | None = None,
) -> MeteoService:
    """The agent's météo service; raises ConfigError(s) (file, line, field) on a bad setting or checklist.

    ``config`` returns the running configuration (it changes on reload); ``incidents`` returns the open
    IncidentViews; ``changes`` defaults to the YAML file named by the settings (``meteo/changes.yaml``).
    """
    ms = load_meteo_settings(config_path)
    settings = ms.settings
    spec = load_meteo_spec(ms.path(settings.checklist) if settings.checklist else None)
    problems = cross_check(spec, config(), families=families)
    if problems:
        raise ConfigErrors(problems)
    calendar = load_contract(ms.path(settings.contract) if settings.contract else None).business_calendar()

    async def snapshot(at: datetime) -> EstateSnapshot:
        open_incidents = await incidents() if incidents is not None else ()
        return snapshot_from_cache(config(), cache, at=at, incidents=open_incidents)

    return MeteoService(
        spec=spec,
        settings=settings,
        config=config,
        snapshot=snapshot,
        clock=clock,
        calendar=calendar,
        changes=changes if changes is not None else YamlChangesProvider(ms.changes_path, settings.tz),
        archive=MeteoArchive(store_engine) if store_engine is not None else None,
        sender=SmtpSender.from_settings(settings, base_dir=ms.base_dir),
        on_failed_check=on_failed_check,
    )


def meteo_web_routes(service: MeteoService) -> list[web.RouteDef]:
    """``/meteo`` (latest archived, or built live when none is) and ``/meteo/<YYYY-MM-DD>``."""

    async def live() -> tuple[str, str]:
        rendered = await service.build()
        return rendered.html, rendered.text

    archive = service.archive
    return meteo_routes(archive if archive is not None else (lambda: None), live=live)
