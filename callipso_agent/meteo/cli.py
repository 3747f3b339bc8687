"""``callipso-agent meteo``: build the météo from a running agent's HTTP API, show it, archive it, send it.

The command is stateless towards the agent: devices, measurements and incidents are read from its API
(``/api/v1/incidents`` answering 404 means no incident engine, hence no incidents). The archive (for
"nouveau / résolu depuis hier" and ``--send``) is the agent's store, named by the same configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from callipso_agent.meteo.settings import LoadedMeteoSettings

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _config_default() -> str:
    return os.environ.get("CALLIPSO_CONFIG", "/etc/callipso-agent")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "meteo",
        help="build the daily météo from the running agent; show, archive or send it",
        description="Build the météo (service lines, sites, planned changes) from the agent's HTTP API. "
        "Without --html/--text/--send, print the plain-text version.",
    )
    p.add_argument(
        "--config", default=_config_default(), help="configuration file or folder (default: %(default)s)"
    )
    p.add_argument("--date", type=_day, default=None, help="day of the météo, YYYY-MM-DD (default: today)")
    p.add_argument("--html", metavar="FILE", default=None, help="write the HTML email to FILE ('-': stdout)")
    p.add_argument("--text", action="store_true", help="print the plain-text version")
    p.add_argument("--send", action="store_true", help="archive and email it to the configured recipients")
    p.add_argument(
        "--lang", choices=["fr", "en"], default=None, help="language (default: settings, then agent)"
    )
    p.add_argument(
        "--api",
        metavar="URL",
        default=None,
        help="agent API base URL (default: meteo.api_url, else the agent's http host and port)",
    )
    p.add_argument(
        "--checklist",
        metavar="PATH",
        default=None,
        help="météo checklist (default: meteo.checklist, else the shipped checks/meteo.yaml)",
    )
    p.add_argument(
        "--archive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep it in the store's archive (default: when --send)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point for the command line (synchronous, like the other subcommands)."""
    return asyncio.run(run_async(args))


def _api_url(loaded_settings: LoadedMeteoSettings, cfg: Any, override: str | None) -> str:
    if override:
        return override
    if loaded_settings.settings.api_url:
        return loaded_settings.settings.api_url
    host = cfg.agent.http.host
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - reading the agent's bind address, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.agent.http.port}"


def _errors(errs: Any) -> int:
    for e in getattr(errs, "errors", [errs]):
        print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE


async def run_async(args: argparse.Namespace) -> int:
    from callipso_agent import logs
    from callipso_agent.clock import SystemClock
    from callipso_agent.daemon import known_families, load_all
    from callipso_agent.errors import CallipsoError, ConfigError, ConfigErrors
    from callipso_agent.incidents.contract import load_contract
    from callipso_agent.meteo.changes import YamlChangesProvider
    from callipso_agent.meteo.mail import MailError, SmtpSender
    from callipso_agent.meteo.settings import load_meteo_settings
    from callipso_agent.meteo.snapshot import ApiError, fetch_snapshot
    from callipso_agent.meteo.spec import cross_check, load_meteo_spec

    logs.configure(os.environ.get("CALLIPSO_LOG_LEVEL", "warning"))
    config_path = Path(args.config)
    try:
        loaded, _profiles = load_all(config_path)
        ms = load_meteo_settings(config_path)
        settings = ms.settings
        checklist = args.checklist or (str(ms.path(settings.checklist)) if settings.checklist else None)
        spec = load_meteo_spec(checklist)
        problems = cross_check(spec, loaded.config, families=known_families())
        if problems:
            raise ConfigErrors(problems)
        calendar = load_contract(
            ms.path(settings.contract) if settings.contract else None
        ).business_calendar()
        token = settings.api_token.resolve(ms.base_dir).reveal() if settings.api_token else None
    except (ConfigErrors, ConfigError) as errs:
        return _errors(errs)
    except CallipsoError as err:
        return _errors(err)
    cfg = loaded.config
    if args.send and not settings.recipients:
        print(f"error: no recipients: set meteo.recipients in {ms.base_dir / 'meteo.yaml'}", file=sys.stderr)
        return EXIT_USAGE
    url = _api_url(ms, cfg, args.api)
    archive_wanted = args.send if args.archive is None else args.archive

    async def snapshot(at: datetime) -> Any:
        return await fetch_snapshot(cfg, url, at=at, token=token)

    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        store, archive = await _open_archive(loaded, write=archive_wanted)
    except (SQLAlchemyError, OSError, CommandError) as err:
        print(f"error: cannot open the archive in the agent's store: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        from callipso_agent.meteo.service import MeteoService

        service = MeteoService(
            spec=spec,
            settings=settings,
            config=lambda: cfg,
            snapshot=snapshot,
            clock=SystemClock(),
            calendar=calendar,
            changes=YamlChangesProvider(ms.changes_path, settings.tz),
            archive=archive,
            sender=SmtpSender.from_settings(settings, base_dir=ms.base_dir),
            lang=args.lang,
        )
        try:
            if args.send or archive_wanted:
                rendered = await service.publish(args.date, send=args.send, lang=args.lang)
            else:
                rendered = await service.build(args.date, lang=args.lang)
        except ApiError as err:
            print(f"error: cannot read the agent's API ({err}); is the agent running?", file=sys.stderr)
            return EXIT_ERROR
        except MailError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_ERROR
        except (ConfigErrors, ConfigError) as errs:
            return _errors(errs)
    finally:
        if store is not None:
            await store.close()
    if args.html:
        if args.html == "-":
            sys.stdout.write(rendered.html)
        else:
            await asyncio.to_thread(Path(args.html).write_text, rendered.html, encoding="utf-8")
    if args.text or not (args.html or args.send):
        sys.stdout.write(rendered.text)
    if args.send:
        print(
            f"météo of {rendered.meteo.day.isoformat()} sent to {', '.join(settings.recipients)}",
            file=sys.stderr,
        )
    return EXIT_OK


async def _open_archive(loaded: Any, *, write: bool) -> tuple[Any, Any]:
    """The agent's store, when there is one to read (or when archiving was asked for, created/migrated)."""
    import structlog
    from sqlalchemy.exc import SQLAlchemyError

    from callipso_agent.meteo.archive import MeteoArchive
    from callipso_agent.store import Store

    log = structlog.get_logger()
    url = loaded.config.agent.store.url.replace("{state_dir}", str(loaded.state_dir))
    if url.startswith("sqlite") and not write:
        path = url.split("///", 1)[-1]
        if not await asyncio.to_thread(Path(path).is_file):
            return None, None  # nothing archived here: no comparison with yesterday
    store = Store(url)
    try:
        if write:
            loaded.state_dir.mkdir(parents=True, exist_ok=True)
            await store.migrate()
        archive = MeteoArchive(store.engine)
        await archive.latest()  # the table is there
    except (SQLAlchemyError, OSError) as err:
        log.warning("meteo_archive_unavailable", error=str(err)[:300])
        await store.close()
        if write:
            raise
        return None, None
    return store, archive
