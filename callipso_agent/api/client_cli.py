"""``callipso-agent incident list|show|ack|note|resolve`` and ``callipso-agent maintenance add|list|delete``.

They talk to a running agent's HTTP API. The token comes from ``--token-env VAR`` (an environment
variable) or ``--token-file FILE``, never from the command line, where ``ps`` and shell history would
show it. Reads work without a token when the agent allows open reads from loopback.

Wiring (cli.py)::

    from callipso_agent.api import client_cli
    client_cli.register(sub)                      # adds 'incident' and 'maintenance'
    # or, if an 'incident' parser already exists with its own sub-commands:
    client_cli.register(sub, incident_actions=incident_sub)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:9730"

HEADERS = {
    "fr": ("ID", "PRIO", "ÉTAT", "SITE", "ÉQUIPEMENT", "TICKET", "TITRE"),
    "en": ("ID", "PRIO", "STATE", "SITE", "DEVICE", "TICKET", "TITLE"),
}
WORDS = {
    "fr": {
        "opened": "Ouvert le",
        "timeline": "Historique",
        "acknowledged": "Incident {id} pris en compte",
        "noted": "Note ajoutée à l'incident {id}",
        "resolved": "Incident {id} résolu",
        "added": "Fenêtre de maintenance {id} déclarée ({start} → {end})",
        "deleted": "Fenêtre de maintenance {id} supprimée",
        "none": "aucun",
        "deadlines": "Échéances",
    },
    "en": {
        "opened": "Opened",
        "timeline": "Timeline",
        "acknowledged": "Incident {id} acknowledged",
        "noted": "Note added to incident {id}",
        "resolved": "Incident {id} resolved",
        "added": "Maintenance window {id} declared ({start} → {end})",
        "deleted": "Maintenance window {id} deleted",
        "none": "none",
        "deadlines": "Deadlines",
    },
}


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ---- parser --------------------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", default=None, help=f"agent URL (default: $CALLIPSO_URL or {DEFAULT_URL})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--token-env", metavar="VAR", help="read the API token from this environment variable")
    src.add_argument("--token-file", metavar="FILE", help="read the API token from this file")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p.add_argument("--lang", choices=["fr", "en"], default=os.environ.get("CALLIPSO_LANG", "fr"))
    p.add_argument("--timezone", default="Europe/Paris", help="zone for shown times and times without offset")
    p.add_argument("--timeout", type=float, default=15.0)
    return p


def add_incident_actions(actions: Any) -> None:
    """Add list/show/ack/note/resolve to an ``incident`` parser's sub-commands (argparse sub-parsers)."""
    common = _common()
    ls = actions.add_parser("list", parents=[common], help="list incidents")
    ls.add_argument("--state", choices=["open", "acknowledged", "suppressed", "resolved"])
    ls.add_argument("--priority", choices=["P1", "P2", "P3", "P4"])
    ls.add_argument("--site")
    ls.add_argument("--service")
    ls.add_argument("--device")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=cmd_incident_list)
    show = actions.add_parser("show", parents=[common], help="show an incident and its timeline")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_incident_show)
    ack = actions.add_parser("ack", parents=[common], help="acknowledge an incident")
    ack.add_argument("id", type=int)
    ack.add_argument("--comment", default=None)
    ack.set_defaults(func=cmd_incident_ack)
    note = actions.add_parser("note", parents=[common], help="add a note to an incident")
    note.add_argument("id", type=int)
    note.add_argument("text")
    note.set_defaults(func=cmd_incident_note)
    res = actions.add_parser("resolve", parents=[common], help="resolve an incident by hand")
    res.add_argument("id", type=int)
    res.add_argument("--reason", required=True)
    res.set_defaults(func=cmd_incident_resolve)


def add_maintenance(subparsers: Any) -> None:
    common = _common()
    m = subparsers.add_parser("maintenance", help="maintenance windows of a running agent")
    actions = m.add_subparsers(dest="maintenance_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="declare a maintenance window")
    add.add_argument("--start", default=None, help="ISO date-time (default: now); without offset: --timezone")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--end", help="ISO date-time")
    end.add_argument("--duration", help="e.g. 2h, 90m, 1h30m")
    add.add_argument("--reason", required=True)
    add.add_argument("--site", action="append", default=[], dest="sites")
    add.add_argument("--device", action="append", default=[], dest="devices")
    add.add_argument("--service", action="append", default=[], dest="services")
    add.set_defaults(func=cmd_maintenance_add)
    ls = actions.add_parser("list", parents=[common], help="list maintenance windows")
    ls.add_argument("--active", action="store_true", help="only windows in force now")
    ls.set_defaults(func=cmd_maintenance_list)
    rm = actions.add_parser("delete", parents=[common], help="delete a maintenance window")
    rm.add_argument("id", type=int)
    rm.set_defaults(func=cmd_maintenance_delete)


def register(subparsers: Any, *, incident_actions: Any = None) -> None:
    """Add ``incident`` and ``maintenance``; ``incident_actions``: an existing ``incident``'s sub-commands."""
    if incident_actions is None:
        inc = subparsers.add_parser("incident", help="incidents of a running agent")
        incident_actions = inc.add_subparsers(dest="incident_command", required=True, metavar="ACTION")
    add_incident_actions(incident_actions)
    add_maintenance(subparsers)


# ---- plumbing --------------------------------------------------------------------------------------------
def read_token(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    if args.token_env:
        value = environ.get(args.token_env)
        if not value:
            raise CliError(f"environment variable {args.token_env} is not set or empty", EXIT_USAGE)
        return value.strip()
    if args.token_file:
        try:
            value = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CliError(f"cannot read token file {args.token_file}: {err.strerror}", EXIT_USAGE) from err
        if not value:
            raise CliError(f"token file {args.token_file} is empty", EXIT_USAGE)
        return value
    return None


def request(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: Mapping[str, Any] | None = None,
) -> tuple[int, Any]:
    base = (args.url or os.environ.get("CALLIPSO_URL") or DEFAULT_URL).rstrip("/")
    url = base + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    headers = {"Accept": "application/json"}
    token = read_token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - operator-given URL
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as rsp:  # noqa: S310
            raw = rsp.read()
            return rsp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"error": raw.decode(errors="replace")}
        return err.code, payload
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CliError(f"cannot reach the agent at {base}: {reason}") from err


def _check(status: int, payload: Any) -> Any:
    if status < 300:
        return payload
    message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
    lines = [f"error {status}: {message}"]
    if isinstance(payload, dict):
        lines += [f"  {f['field']}: {f['message']}" for f in payload.get("fields", [])]
    raise CliError("\n".join(lines))


def _when(text: str | None, args: argparse.Namespace) -> str:
    if not text:
        return "-"
    local = datetime.fromisoformat(text).astimezone(ZoneInfo(args.timezone))
    return local.strftime("%d/%m/%Y %H:%M") if args.lang == "fr" else local.strftime("%Y-%m-%d %H:%M")


def _run(func: Any, args: argparse.Namespace) -> int:
    try:
        return int(func(args))
    except CliError as err:
        print(f"error: {err}" if not str(err).startswith("error") else str(err), file=sys.stderr)
        return err.code


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


# ---- incident commands ---------------------------------------------------------------------------------
def _incident_list(args: argparse.Namespace) -> int:
    payload = _check(
        *request(
            args,
            "GET",
            "/api/v1/incidents",
            query={
                "state": args.state,
                "priority": args.priority,
                "site": args.site,
                "service": args.service,
                "device": args.device,
                "limit": args.limit,
            },
        )
    )
    if args.json:
        _print_json(payload)
        return EXIT_OK
    rows = [
        (
            str(i["id"]),
            i["priority"],
            i["state"],
            i["site"] or "-",
            i["device"] or "-",
            i["itsm_ref"] or "-",
            i["title"],
        )
        for i in payload["incidents"]
    ]
    table = [HEADERS[args.lang], *rows]
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1])
    return EXIT_OK


def _incident_show(args: argparse.Namespace) -> int:
    payload = _check(*request(args, "GET", f"/api/v1/incidents/{args.id}"))
    if args.json:
        _print_json(payload)
        return EXIT_OK
    i = payload["incident"]
    w = WORDS[args.lang]
    print(f"#{i['id']} [{i['priority']}] {i['title']} ({i['state']})")
    site, device = HEADERS[args.lang][3].title(), HEADERS[args.lang][4].title()
    print(f"  {site}: {i['site'] or '-'}   {device}: {i['device'] or '-'}   Ticket: {i['itsm_ref'] or '-'}")
    print(f"  {w['opened']}: {_when(i['opened_at'], args)}")
    if i["deadlines"]:
        print(f"  {w['deadlines']}: " + ", ".join(f"{k} {_when(v, args)}" for k, v in i["deadlines"].items()))
    print(f"{w['timeline']}:")
    for e in payload["timeline"]:
        who = f" ({e['actor']})" if e.get("actor") else ""
        print(f"  {_when(e['at'], args)}  {e['kind']}{who}: {e['text']}")
    return EXIT_OK


def _incident_write(args: argparse.Namespace, action: str, body: dict[str, Any], word: str) -> int:
    payload = _check(*request(args, "POST", f"/api/v1/incidents/{args.id}/{action}", body=body))
    if args.json:
        _print_json(payload)
    else:
        print(WORDS[args.lang][word].format(id=args.id))
    return EXIT_OK


def cmd_incident_list(args: argparse.Namespace) -> int:
    return _run(_incident_list, args)


def cmd_incident_show(args: argparse.Namespace) -> int:
    return _run(_incident_show, args)


def cmd_incident_ack(args: argparse.Namespace) -> int:
    return _run(
        lambda a: _incident_write(a, "ack", {"comment": a.comment} if a.comment else {}, "acknowledged"), args
    )


def cmd_incident_note(args: argparse.Namespace) -> int:
    return _run(lambda a: _incident_write(a, "notes", {"text": a.text}, "noted"), args)


def cmd_incident_resolve(args: argparse.Namespace) -> int:
    return _run(lambda a: _incident_write(a, "resolve", {"reason": a.reason}, "resolved"), args)


# ---- maintenance commands --------------------------------------------------------------------------------
_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?:in)?)?$")


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip().lower())
    if not m or not any(m.groupdict().values()):
        raise CliError(f"cannot read duration {text!r} (examples: 2h, 90m, 1h30m, 1d)", EXIT_USAGE)
    return timedelta(days=int(m["d"] or 0), hours=int(m["h"] or 0), minutes=int(m["m"] or 0))


def parse_instant(text: str, tz: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise CliError(f"cannot read date-time {text!r} (example: 2026-01-06T22:00)", EXIT_USAGE) from err
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(tz))


def _maintenance_add(args: argparse.Namespace) -> int:
    start = parse_instant(args.start, args.timezone) if args.start else datetime.now(ZoneInfo(args.timezone))
    end = parse_instant(args.end, args.timezone) if args.end else start + parse_duration(args.duration)
    body = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": args.reason,
        "sites": args.sites,
        "devices": args.devices,
        "services": args.services,
    }
    payload = _check(*request(args, "POST", "/api/v1/maintenance", body=body))
    if args.json:
        _print_json(payload)
    else:
        w = payload["window"]
        print(
            WORDS[args.lang]["added"].format(
                id=w["id"], start=_when(w["start"], args), end=_when(w["end"], args)
            )
        )
    return EXIT_OK


def _maintenance_list(args: argparse.Namespace) -> int:
    payload = _check(
        *request(args, "GET", "/api/v1/maintenance", query={"active": "true" if args.active else None})
    )
    if args.json:
        _print_json(payload)
        return EXIT_OK
    if not payload["windows"]:
        print(WORDS[args.lang]["none"])
    for w in payload["windows"]:
        scope = ", ".join([*w["sites"], *w["devices"], *w["services"]])
        print(
            f"{w['id']:>4}  {_when(w['start'], args)} → {_when(w['end'], args)}  [{scope}]  {w['reason']}"
            f"  ({w['created_by']})"
        )
    return EXIT_OK


def _maintenance_delete(args: argparse.Namespace) -> int:
    status, payload = request(args, "DELETE", f"/api/v1/maintenance/{args.id}")
    _check(status, payload)
    print(WORDS[args.lang]["deleted"].format(id=args.id))
    return EXIT_OK


def cmd_maintenance_add(args: argparse.Namespace) -> int:
    return _run(_maintenance_add, args)


def cmd_maintenance_list(args: argparse.Namespace) -> int:
    return _run(_maintenance_list, args)


def cmd_maintenance_delete(args: argparse.Namespace) -> int:
    return _run(_maintenance_delete, args)
