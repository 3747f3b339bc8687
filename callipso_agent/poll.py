"""One-shot SNMP poll of a device: detect its profile, fetch, evaluate, apply default thresholds.

Used by ``callipso-agent poll HOST[:PORT]`` (wired by the CLI through :func:`add_poll_arguments`
and :func:`run_poll`) and by tests, which poll real snmpsim agents through the network path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from callipso_agent.config.models import AuthProtocol, PrivProtocol, SnmpV2Credential, SnmpV3Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.errors import CallipsoError, ConfigError, ConfigErrors, NoProfile, TransportError
from callipso_agent.model import Measurement, Severity
from callipso_agent.paths import checks_dir, collectors_dir
from callipso_agent.profiles.engine import build, fetch, identify, system_info
from callipso_agent.profiles.loader import ProfileSet, load_profiles
from callipso_agent.rules.thresholds import Thresholds, load_thresholds
from callipso_agent.transports.engines import SnmpClientKind, SnmpEngines
from callipso_agent.transports.snmp import PysnmpEngine

DEFAULT_PORT = 161


def default_thresholds() -> Thresholds:
    path = checks_dir() / "thresholds.yaml"
    return load_thresholds(path) if path.is_file() else Thresholds()


def measurement_dict(m: Measurement, thresholds: Thresholds | None) -> dict[str, Any]:
    state = m.state
    if thresholds is not None:
        state = Severity.worst([state, thresholds.state(m.name, m.value, m.labels)])
    return {
        "name": m.name,
        "labels": dict(m.labels),
        "value": m.value,
        "unit": m.unit,
        "state": state.label,
        "text": m.text,
    }


async def poll_snmp(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    credential: SnmpV2Credential | SnmpV3Credential,
    secrets: Mapping[str, Secret],
    profiles: ProfileSet | Path | None = None,
    profile: str = "auto",
    family: str | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the SNMP request timeout, not an asyncio one
    retries: int = 1,
    thresholds: Thresholds | None = None,
    device: str | None = None,
    engine: SnmpEngines | PysnmpEngine | None = None,
    client: SnmpClientKind = "fast",
) -> dict[str, Any]:
    """Poll one device once. Raises TransportError (Timeout, AuthFailed, Unreachable), ParseError or
    NoProfile; returns ``{"profile", "system", "measurements": [{name, labels, value, unit, state, text}]}``.

    ``client``: the SNMP v1/v2c client, ``fast`` or ``pysnmp`` (SNMPv3 always uses pysnmp), as the
    agent's ``agent.snmp.client``. ``engine``: shared engines, or a shared pysnmp engine (the first
    request on a new pysnmp engine costs about a second of set-up); by default private ones are created
    and closed."""
    pset = profiles if isinstance(profiles, ProfileSet) else load_profiles(profiles or collectors_dir())
    limits = thresholds if thresholds is not None else default_thresholds()
    if isinstance(engine, SnmpEngines):
        engines, own_engine = engine, False
    else:
        engines, own_engine = SnmpEngines(client=client, pysnmp=engine), True
    snmp = engines.client_for(host, port, credential, dict(secrets), timeout=timeout, retries=retries)
    try:
        ident = await identify(snmp, pset, family)
        if not ident.sys_object_id and not ident.sys_descr and not ident.present:
            # nothing at all answered: a GET that got an empty response is not a device we can poll
            raise NoProfile(
                f"{host}:{port} answered but exposes neither the system group nor any known MIB",
                candidates=[p.name for p in pset.detectable(family)],
            )
        chosen = pset.detect(ident, family) if profile == "auto" else pset.get(profile)
        raw = await fetch(snmp, chosen)
        ms = build(device or host, chosen, raw, datetime.now(UTC))
    finally:
        snmp.close()
        if own_engine:
            engines.close()
    return {
        "profile": chosen.name,
        "system": system_info(chosen, raw, ident),
        "measurements": [measurement_dict(m, limits) for m in ms],
    }


# -------------------------------------------------------------------------------------------- render


def _fmt_value(v: float | None) -> str:
    if v is None:
        return "-"
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else f"{v:.6g}"


def render_table(result: Mapping[str, Any], out: TextIO) -> None:
    """A readable text table: identity first, then one line per measurement."""
    out.write(f"profile: {result['profile']}\n")
    for k, v in result.get("system", {}).items():
        out.write(f"{k}: {v}\n")
    rows = [("NAME", "LABELS", "VALUE", "UNIT", "STATE", "TEXT")]
    for m in result.get("measurements", []):
        labels = ",".join(f"{k}={v}" for k, v in sorted(m["labels"].items()))
        rows.append(
            (m["name"], labels, _fmt_value(m["value"]), m["unit"], m["state"].upper(), m.get("text") or "")
        )
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(5)]
    out.write("\n")
    for r in rows:
        cells = [
            r[i].ljust(widths[i]) if len(r[i]) <= widths[i] else r[i][: widths[i] - 1] + "…" for i in range(5)
        ]
        out.write("  ".join(cells) + ("  " + r[5] if r[5] else "") + "\n")


# ------------------------------------------------------------------------------------------ argparse


def parse_target(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"invalid target {text!r}")
    if port and not port.isdigit():
        raise ValueError(f"invalid port in {text!r}")
    return host, int(port) if port else DEFAULT_PORT


def add_poll_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="HOST[:PORT]", help="device address, default port 161")
    auth = parser.add_argument_group("SNMP credentials (v2c community, or a v3 user; keys never in clear)")
    auth.add_argument("--community", help="SNMP v2c community")
    auth.add_argument(
        "--community-env", metavar="VAR", help="read the community from this environment variable"
    )
    auth.add_argument(
        "--snmp-version", choices=["1", "2c"], default="2c", help="with --community (default 2c)"
    )
    auth.add_argument("--v3-user", metavar="USER", help="SNMPv3 user name")
    auth.add_argument(
        "--auth-proto", choices=[p.value for p in AuthProtocol], help="v3 authentication protocol"
    )
    auth.add_argument("--auth-key-env", metavar="VAR", help="environment variable holding the v3 auth key")
    auth.add_argument("--auth-key-file", metavar="FILE", help="file holding the v3 auth key")
    auth.add_argument("--priv-proto", choices=[p.value for p in PrivProtocol], help="v3 privacy protocol")
    auth.add_argument("--priv-key-env", metavar="VAR", help="environment variable holding the v3 privacy key")
    auth.add_argument("--priv-key-file", metavar="FILE", help="file holding the v3 privacy key")
    auth.add_argument("--context", default="", help="v3 context name")
    parser.add_argument("--profile", default="auto", help="profile name, or 'auto' to detect it (default)")
    parser.add_argument("--family", help="restrict detection to the profiles of this inventory family")
    parser.add_argument(
        "--collectors", type=Path, help="profile directory (default: the shipped collectors/)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    parser.add_argument("--retries", type=int, default=1, help="retries per request (default 1)")
    parser.add_argument("--snmp-client", choices=["fast", "pysnmp"], default="fast",
                        help="SNMP v1/v2c client, as agent.snmp.client (default fast; v3 always uses pysnmp)")


def _secret_ref(env: str | None, file: str | None, what: str) -> SecretRef | None:
    if env and file:
        raise ConfigError(f"give --{what}-env or --{what}-file, not both")
    if env:
        return SecretRef(env=env)
    if file:
        return SecretRef(file=file)
    return None


def credential_from_args(
    args: argparse.Namespace,
) -> tuple[SnmpV2Credential | SnmpV3Credential, dict[str, Secret]]:
    if args.v3_user:
        if args.community or args.community_env:
            raise ConfigError("give a community or a v3 user, not both")
        auth = _secret_ref(args.auth_key_env, args.auth_key_file, "auth-key")
        priv = _secret_ref(args.priv_key_env, args.priv_key_file, "priv-key")
        try:
            cred: SnmpV2Credential | SnmpV3Credential = SnmpV3Credential(
                version="3",
                user=args.v3_user,
                context=args.context,
                auth_protocol=AuthProtocol(args.auth_proto) if args.auth_proto else None,
                auth_key=auth,
                priv_protocol=PrivProtocol(args.priv_proto) if args.priv_proto else None,
                priv_key=priv,
            )
        except ValueError as err:
            raise ConfigError(f"invalid SNMPv3 options: {err}") from None
        secrets: dict[str, Secret] = {}
        if auth is not None:
            secrets["auth_key"] = auth.resolve(Path.cwd())
        if priv is not None:
            secrets["priv_key"] = priv.resolve(Path.cwd())
        return cred, secrets
    if args.community_env:
        value = os.environ.get(args.community_env)
        if value is None:
            raise ConfigError(f"environment variable {args.community_env} is not set")
    elif args.community is not None:
        value = args.community
    else:
        raise ConfigError("no credentials: give --community (or --community-env) or --v3-user with its keys")
    # the community is held as a Secret from here on (never logged)
    cred = SnmpV2Credential(version=args.snmp_version, community=SecretRef(env="CALLIPSO_POLL_COMMUNITY"))
    return cred, {"community": Secret(value)}


async def run_poll(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0 after printing the result; 2 with a one-line reason when the poll cannot be done."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        host, port = parse_target(args.target)
        credential, secrets = credential_from_args(args)
        profiles = load_profiles(args.collectors) if args.collectors else load_profiles(collectors_dir())
        result = await poll_snmp(
            host,
            port,
            credential=credential,
            secrets=secrets,
            profiles=profiles,
            profile=args.profile,
            family=args.family,
            timeout=args.timeout,
            retries=args.retries,
            client=getattr(args, "snmp_client", "fast"),
        )
    except NoProfile as e:
        cands = ", ".join(e.candidates) if e.candidates else "none"
        err.write(f"error: {e}\ncandidate profiles: {cands}\nuse --profile NAME to force one\n")
        return 2
    except TransportError as e:
        err.write(f"error: {e.kind}: {e}\n")
        return 2
    except (ConfigError, ConfigErrors) as e:
        err.write(f"error: {e}\n")
        return 2
    except CallipsoError as e:
        err.write(f"error: {e.kind}: {e}\n")
        return 2
    except ValueError as e:
        err.write(f"error: {e}\n")
        return 2
    if args.json:
        json.dump(result, out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
    else:
        render_table(result, out)
    return 0
