"""``callipso-agent incident list`` and ``callipso-agent incident report ID [--format md|html]``.

Both read the store named by the configuration (``agent.store.url``) or by ``--store``; they never write.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from callipso_agent.clock import SystemClock
from callipso_agent.errors import CallipsoError, ConfigErrors

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> Any:
    """Add the ``incident`` command (``report`` and ``history``, read from the store) to the CLI's subparsers;
    return its action group so the API client can add the actions that talk to a running agent."""
    inc = subparsers.add_parser("incident", help="incidents: list, show, acknowledge, note, resolve, report")
    inc.add_argument(
        "--config",
        default=os.environ.get("CALLIPSO_CONFIG", "/etc/callipso-agent"),
        help="configuration file or folder (default: %(default)s)",
    )
    inc.add_argument("--store", default=None, help="SQLAlchemy store URL (default: the configuration's)")
    sub = inc.add_subparsers(dest="incident_command", required=True, metavar="ACTION")

    rep = sub.add_parser("report", help="major-incident report of one incident")
    rep.add_argument("id", type=int, help="incident number")
    rep.add_argument("--format", choices=["md", "html"], default="md", help="output format (default: md)")
    rep.add_argument(
        "--lang", choices=["fr", "en"], default=None, help="language (default: the configuration's, French)"
    )
    rep.add_argument("--output", "-o", default=None, help="write to this file instead of standard output")

    lst = sub.add_parser("history", help="list incidents from the store (open ones by default; no agent needed)")
    lst.add_argument("--all", action="store_true", help="include resolved and suppressed incidents")
    lst.add_argument("--site", default=None)
    lst.add_argument("--device", default=None)
    lst.add_argument("--service", default=None)
    lst.add_argument("--limit", type=int, default=200)
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    rep.set_defaults(func=main)
    lst.set_defaults(func=main)
    return sub


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    from callipso_agent.incidents.contract import load_contract
    from callipso_agent.incidents.engine import IncidentEngine, IncidentSettings
    from callipso_agent.rules.inventory import Inventory
    from callipso_agent.rules.loader import load_rules
    from callipso_agent.store.db import Store
    from callipso_agent.store.incidents import IncidentRepository

    try:
        config, url = _config_and_url(args)
        lang = getattr(args, "lang", None) or config.agent.language
        store = Store(url)
        engine = IncidentEngine(
            IncidentRepository(store),
            load_rules(),
            Inventory.from_config(config),
            load_contract(),
            SystemClock(),
            settings=IncidentSettings(lang=lang),
        )
    except ConfigErrors as errs:
        for e in errs.errors:
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CallipsoError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.incident_command == "report":
            return await _report(engine, args, lang)
        return await _list(engine, args)
    except Exception as err:
        print(f"error: cannot read the store ({type(err).__name__}: {err})", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await store.close()


def _config_and_url(args: argparse.Namespace) -> tuple[Any, str]:
    from callipso_agent.config.loader import load_config
    from callipso_agent.config.models import AgentConfig

    if args.store is not None and not Path(args.config).exists():
        return AgentConfig(), args.store
    loaded = load_config(args.config)
    url = args.store or loaded.config.agent.store.url.replace("{state_dir}", str(loaded.state_dir))
    return loaded.config, url


async def _report(engine: Any, args: argparse.Namespace, lang: str) -> int:
    from callipso_agent.incidents.report import render_report

    detail = await engine.get(args.id)
    if detail is None:
        print(f"error: no incident {args.id}", file=sys.stderr)
        return EXIT_ERROR
    text = render_report(
        detail,
        fmt=args.format,
        lang="en" if lang == "en" else "fr",
        tz=engine.timezone,
        now=engine.clock.now(),
    )
    if args.output:
        await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


async def _list(engine: Any, args: argparse.Namespace) -> int:
    if args.all:
        views = await engine.incidents(
            site=args.site, device=args.device, service=args.service, limit=args.limit
        )
    else:
        views = await engine.open_incidents(site=args.site, device=args.device, service=args.service)
        views = views[: args.limit]
    for v in views:
        if args.json:
            print(
                json.dumps(
                    {
                        "id": v.id,
                        "key": v.key,
                        "state": v.state.value,
                        "priority": v.priority,
                        "severity": v.severity.label,
                        "opened_at": v.opened_at.isoformat(),
                        "site": v.site,
                        "device": v.device,
                        "title": v.title,
                        "itsm_ref": v.itsm_ref,
                        "resolved_at": v.resolved_at.isoformat() if v.resolved_at else None,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            opened = v.opened_at.astimezone(engine.timezone).strftime("%Y-%m-%d %H:%M")
            print(f"{v.id:>6}  {v.priority}  {v.state.value:<12}  {opened}  {v.site or '-':<14}  {v.title}")
    if not args.json and not views:
        print("no incident" if args.all else "no open incident")
    return EXIT_OK
