"""SSH collection: run a profile's commands on one device and turn their output into Measurements.

``collect_ssh`` is what a device coordinator calls each poll (transport errors propagate, typed, for the
coordinator to turn into the device's state). ``poll_ssh`` is the one-shot used by
``callipso-agent poll HOST --profile oxe --ssh-user U``; :func:`add_ssh_arguments` and
:func:`run_ssh_poll` are the CLI hooks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from callipso_agent.clock import Clock, SystemClock
from callipso_agent.config.secrets import SecretRef
from callipso_agent.errors import CallipsoError
from callipso_agent.model import Measurement, Severity
from callipso_agent.parsers.table import Context, all_unknown, measure
from callipso_agent.profiles.ssh import SshProfile, load_ssh_profile
from callipso_agent.transports.ssh import CommandResult, SshSession, SshTarget


def parse_results(
    device_name: str, profile: SshProfile, results: Sequence[CommandResult], clock: Clock
) -> list[Measurement]:
    """Pure part of a poll: command results -> measurements (failed commands give UNKNOWN)."""
    at = clock.now()
    out: list[Measurement] = []
    for spec, res in zip(profile.commands, results, strict=True):
        ctx = Context(device=device_name, at=at, command=spec.command)
        if res.failed:
            status = f" (exit status {res.exit_status})" if res.exit_status not in (None, 0) else ""
            out.extend(
                all_unknown(spec.parser, ctx, f"command {spec.command!r} failed{status}: {res.output}")
            )
        else:
            out.extend(measure(spec.parser, profile.states, res.output, ctx))
    return out


async def collect_ssh(
    device_name: str,
    profile: SshProfile,
    session: SshSession,
    clock: Clock,
    *,
    session_timeout: float | None = None,
) -> list[Measurement]:
    """Run every command of ``profile`` on ``session`` and parse the outputs.

    Raises the transport's typed errors (Unreachable, Timeout, AuthFailed, HostKeyError); bad output
    never raises: it gives UNKNOWN measurements carrying the raw text.
    """
    with bound_contextvars(device=device_name, profile=profile.name):
        results = await session.run_many(
            [(c.command, c.timeout) for c in profile.commands], session_timeout=session_timeout
        )
        measurements = parse_results(device_name, profile, results, clock)
        unknown = sum(1 for m in measurements if m.state == Severity.UNKNOWN)
        structlog.get_logger().debug("ssh_collected", measurements=len(measurements), unknown=unknown)
    return measurements


def system_info(profile: SshProfile, measurements: Sequence[Measurement]) -> dict[str, str]:
    """Values the profile marks with ``system: <key>`` (software version, model...)."""
    keys = {m.name: m.system for c in profile.commands for m in c.parser.measurements if m.system}
    info: dict[str, str] = {}
    for meas in measurements:
        key = keys.get(meas.name)
        if key and meas.state != Severity.UNKNOWN:
            info[key] = meas.text if meas.text is not None else str(meas.value)
    return info


def measurement_json(m: Measurement) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": m.name,
        "labels": dict(m.labels),
        "value": m.value,
        "unit": m.unit,
        "state": m.state.label,
    }
    if m.state == Severity.UNKNOWN and m.text:
        d["text"] = m.text
    return d


async def poll_ssh(
    host: str,
    port: int,
    profile_name: str,
    username: str,
    *,
    key_file: str | Path | None = None,
    password_env: str | None = None,
    known_hosts: str | Path,
    trust_on_first_use: bool = False,
    legacy_algorithms: bool = False,
    command_timeout: float = 30.0,
    session_timeout: float = 120.0,
    clock: Clock | None = None,
    profiles_dir: Path | None = None,
    device_name: str | None = None,
) -> dict[str, Any]:
    """One-shot SSH poll.

    Returns ``{"profile", "system", "measurements": [{name, labels, value, unit, state}]}``.

    The password is read from the environment variable ``password_env`` (never from the command line).
    Raises ConfigError (missing variable, bad profile) or a TransportError.
    """
    profile = load_ssh_profile(profile_name, profiles_dir)
    device = device_name or host
    target = SshTarget(
        device=device,
        host=host,
        port=port,
        username=username,
        known_hosts=Path(known_hosts),
        password=SecretRef(env=password_env).resolve() if password_env else None,
        key_file=Path(key_file) if key_file else None,
        trust_on_first_use=trust_on_first_use,
        legacy_algorithms=legacy_algorithms,
        connect_timeout=command_timeout,
    )
    clock = clock or SystemClock()
    async with SshSession(
        target,
        profile.platform.session_spec(),
        command_timeout=command_timeout,
        session_timeout=session_timeout,
    ) as session:
        measurements = await collect_ssh(device, profile, session, clock)
    system = {
        "host": host,
        "port": str(port),
        "transport": "ssh",
        "family": profile.family,
        **system_info(profile, measurements),
    }
    return {
        "profile": profile.name,
        "system": system,
        "measurements": [measurement_json(m) for m in measurements],
    }


# -- CLI hooks --------------------------------------------------------------------------------


def add_ssh_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the SSH options to the ``poll`` subcommand (which already has HOST, --profile and --json)."""
    g = parser.add_argument_group("SSH polling")
    g.add_argument("--ssh-user", metavar="USER", help="poll over SSH as USER (with an SSH profile)")
    g.add_argument("--ssh-port", type=int, default=22, metavar="PORT")
    g.add_argument("--ssh-key", metavar="FILE", help="private key file")
    g.add_argument("--ssh-password-env", metavar="VAR", help="environment variable holding the password")
    g.add_argument(
        "--known-hosts",
        metavar="FILE",
        default=str(Path("~/.ssh/known_hosts").expanduser()),
        help="known_hosts file (default: ~/.ssh/known_hosts)",
    )
    g.add_argument(
        "--ssh-trust-on-first-use",
        action="store_true",
        help="accept and record an unknown host key (never a changed one)",
    )
    g.add_argument(
        "--ssh-legacy-algorithms",
        action="store_true",
        help="also offer old algorithms (diffie-hellman-group1-sha1, aes128-cbc, ssh-rsa...)",
    )
    g.add_argument("--ssh-timeout", type=float, default=30.0, metavar="SECONDS", help="per-command timeout")


def render_text(result: dict[str, Any]) -> str:
    lines = [f"profile {result['profile']}  " + "  ".join(f"{k}={v}" for k, v in result["system"].items())]
    for m in result["measurements"]:
        labels = ",".join(f'{k}="{v}"' for k, v in m["labels"].items())
        name = f"{m['name']}{{{labels}}}" if labels else m["name"]
        value = "-" if m["value"] is None else f"{m['value']:g}"
        lines.append(f"{name} {value}{(' ' + m['unit']) if m['unit'] else ''} [{m['state']}]")
    return "\n".join(lines)


async def run_ssh_poll(args: argparse.Namespace) -> int:
    """Run ``poll`` over SSH from parsed arguments (host, profile, json and the options above).

    Exit 0 when the device answered (the states are in the output), 2 with a one-line reason otherwise,
    like the SNMP poll."""
    try:
        result = await poll_ssh(
            args.host,
            args.ssh_port,
            args.profile,
            args.ssh_user,
            key_file=args.ssh_key,
            password_env=args.ssh_password_env,
            known_hosts=args.known_hosts,
            trust_on_first_use=args.ssh_trust_on_first_use,
            legacy_algorithms=args.ssh_legacy_algorithms,
            command_timeout=args.ssh_timeout,
        )
    except CallipsoError as err:
        print(f"error: {err.kind}: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(result, indent=2, ensure_ascii=False)
        if getattr(args, "json", False)
        else render_text(result)
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m callipso_agent.collect.ssh HOST --profile oxe --ssh-user mtcl``)."""
    parser = argparse.ArgumentParser(prog="callipso-agent poll (ssh)")
    parser.add_argument("host")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--json", action="store_true")
    add_ssh_arguments(parser)
    args = parser.parse_args(argv)
    if not args.ssh_user:
        parser.error("--ssh-user is required")
    return asyncio.run(run_ssh_poll(args))


if __name__ == "__main__":
    raise SystemExit(main())
