"""Command line: ``callipso-agent run | config check | lab | demo | poll | version``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from callipso_agent import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _config_default() -> str:
    return os.environ.get("CALLIPSO_CONFIG", "/etc/callipso-agent")


def cmd_config_check(args: argparse.Namespace) -> int:
    from callipso_agent.daemon import load_all, load_ssh_families
    from callipso_agent.errors import CallipsoError, ConfigErrors
    from callipso_agent.outputs_app import check_outputs

    path = Path(args.path)
    try:
        loaded, profiles = load_all(path)
        ssh_profiles = load_ssh_families()
        output_errors = check_outputs(path)
        if output_errors:
            raise ConfigErrors(output_errors)
    except ConfigErrors as errs:
        for e in errs.errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"{len(errs.errors)} error(s): configuration refused", file=sys.stderr)
        return EXIT_USAGE
    except CallipsoError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    cfg = loaded.config
    print(f"configuration OK: {len(cfg.sites)} sites, {len(cfg.devices)} devices, {len(cfg.credentials)} credentials, "
          f"{len(cfg.services)} service lines, {len(profiles.profiles)} SNMP and {len(ssh_profiles)} SSH profiles "
          f"({', '.join(str(f) for f in loaded.files)})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from callipso_agent import logs
    from callipso_agent.daemon import App
    from callipso_agent.errors import CallipsoError, ConfigErrors

    logs.configure(args.log_level, json=args.log_json)
    app = App(Path(args.config), http_port=args.http_port)
    try:
        return asyncio.run(app.run_forever())
    except ConfigErrors as errs:
        for e in errs.errors:
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CallipsoError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def cmd_poll(args: argparse.Namespace) -> int:
    """One-shot poll: SNMP by default, SSH with ``--ssh-user`` (then ``--profile`` names an SSH profile)."""
    from callipso_agent import logs

    logs.configure("warning", json=False, stream=sys.stderr)  # stdout carries the result only
    if args.ssh_user:
        from callipso_agent.collect.ssh import run_ssh_poll

        host, _, port = args.target.rpartition(":") if args.target.count(":") == 1 else (args.target, "", "")
        args.host = host or args.target
        if port:
            args.ssh_port = int(port)
        if args.profile == "auto":
            print("error: SSH polling needs --profile (oxe, otms, omnivista-8770, audiocodes-cli)", file=sys.stderr)
            return EXIT_USAGE
        return asyncio.run(run_ssh_poll(args))
    from callipso_agent.poll import run_poll

    return asyncio.run(run_poll(args))


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"callipso-agent {__version__}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callipso-agent",
                                description="Supervision agent for the Callipso telephony estate")
    p.add_argument("--version", action="version", version=f"callipso-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent daemon")
    run.add_argument("--config", default=_config_default(), help="configuration file or folder (default: %(default)s)")
    run.add_argument("--http-port", type=int, default=None, help="override the HTTP port")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-json", action=argparse.BooleanOptionalAction, default=None,
                     help="JSON logs (default: when stderr is not a terminal)")
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a configuration (exit 0 valid, 2 invalid)")
    check.add_argument("path", nargs="?", default=_config_default())
    check.set_defaults(func=cmd_config_check)

    from callipso_agent.collect.ssh import add_ssh_arguments
    from callipso_agent.poll import add_poll_arguments

    poll = sub.add_parser("poll", help="poll one device once (SNMP; SSH with --ssh-user) and print its measurements")
    add_poll_arguments(poll)
    add_ssh_arguments(poll)
    poll.set_defaults(func=cmd_poll)

    from callipso_agent.lab import cli as lab_cli

    lab_cli.register(sub)

    from callipso_agent.api import client_cli
    from callipso_agent.incidents import cli as incident_cli
    from callipso_agent.meteo import cli as meteo_cli

    client_cli.register(sub, incident_actions=incident_cli.register(sub))
    meteo_cli.register(sub)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
