"""``callipso-check``: Nagios / Centreon plugin over the agent's API (Monitoring Plugins conventions).

    callipso-check ups --device ups-aubagne-mds [-w 50: -c 20:] [--warning-runtime 900:] [-v]
    callipso-check device --device sbc-hd13 -c 600
    callipso-check incidents [--site HD13]          callipso-check meteo

Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad arguments, timeout, agent unreachable, and, as the
Monitoring Plugins do, ``--help`` and ``--version``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from callipso_agent import __version__
from callipso_agent.model import Severity
from callipso_agent.plugins.agent import AgentClient
from callipso_agent.plugins.core import CheckError
from callipso_agent.plugins.modes import (
    DEVICE_MODES,
    device_mode,
    device_status,
    incidents_mode,
    meteo_mode,
    now_utc,
)
from callipso_agent.rules.ranges import Range, RangeError

PROG = "callipso-check"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{PROG} UNKNOWN - {message}", file=sys.stdout)
        raise SystemExit(Severity.UNKNOWN.value)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(Severity.UNKNOWN.value if status == 0 else status)  # --help / --version: UNKNOWN


INCIDENT_THRESHOLDS = (
    ("p1", "open P1 incidents", None, "0"),
    ("p2", "open P2 incidents", "0", None),
    ("p3", "open P3 incidents", None, None),
    ("p4", "open P4 incidents", None, None),
    ("deadline", "seconds before the next SLA deadline", "1800:", "900:"),
)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--agent-url",
        default=os.environ.get("CALLIPSO_AGENT_URL", "http://127.0.0.1:9730"),
        help="the agent's HTTP API (default: %(default)s; env CALLIPSO_AGENT_URL)",
    )
    common.add_argument("--token-file", help="file holding an API token (read scope), sent as a Bearer token")
    common.add_argument(
        "-t", "--timeout", type=float, default=10.0, help="seconds before UNKNOWN (default: 10)"
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="long output: one line per item")
    common.add_argument(
        "--lang",
        choices=["fr", "en"],
        default=os.environ.get("CALLIPSO_LANG", "fr"),
        help="language of the output text (default: %(default)s)",
    )

    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="mode", metavar="MODE", required=True, parser_class=_Parser)
    for spec in DEVICE_MODES.values():
        m = sub.add_parser(spec.name, parents=[common], help=spec.help, description=spec.help)
        m.add_argument("-d", "--device", "-H", required=True, help="device name in the agent's inventory")
        if spec.primary:
            m.add_argument(
                "-w", "--warning", help=f"Nagios range for {spec.primary} (same as --warning-{spec.primary})"
            )
            m.add_argument("-c", "--critical", help=f"Nagios range for {spec.primary}")
        for t in spec.thresholds:
            what = t.help.replace("%", "%%")  # argparse formats help strings with %
            m.add_argument(
                f"--warning-{t.key}",
                default=t.warning,
                metavar="RANGE",
                help=f"{what} (default: {t.warning or 'none'})",
            )
            m.add_argument(
                f"--critical-{t.key}",
                default=t.critical,
                metavar="RANGE",
                help=f"{what} (default: {t.critical or 'none'})",
            )
    dev = sub.add_parser("device", parents=[common], help="reachability of a device as the agent polls it")
    dev.add_argument("-d", "--device", "-H", required=True)
    dev.add_argument("-w", "--warning", help="range for the age of the last successful poll, seconds")
    dev.add_argument("-c", "--critical", help="range for the age of the last successful poll, seconds")
    for name, text in (
        ("incidents", "open incidents by priority and the next SLA deadline"),
        ("meteo", "the service weather by site (orage, perturbé, beau)"),
    ):
        m = sub.add_parser(name, parents=[common], help=text, description=text)
        m.add_argument("--site", help="only this site code")
        if name == "incidents":
            m.add_argument("-w", "--warning", help="range for P1 incidents (same as --warning-p1)")
            m.add_argument("-c", "--critical", help="range for P1 incidents (default 0: any P1 is CRITICAL)")
            for key, help_, warn, crit in INCIDENT_THRESHOLDS:
                m.add_argument(
                    f"--warning-{key}", default=warn, metavar="RANGE", help=f"{help_} (default: {warn})"
                )
                m.add_argument(
                    f"--critical-{key}", default=crit, metavar="RANGE", help=f"{help_} (default: {crit})"
                )
    return p


def _ranges(
    args: argparse.Namespace, keys: Sequence[str], primary: str | None
) -> dict[str, tuple[Range | None, Range | None]]:
    out = {}
    for key in keys:
        attr = key.replace("-", "_")
        warn, crit = getattr(args, f"warning_{attr}", None), getattr(args, f"critical_{attr}", None)
        if key == primary:
            warn = args.warning if getattr(args, "warning", None) is not None else warn
            crit = args.critical if getattr(args, "critical", None) is not None else crit
        out[key] = (Range.optional(warn), Range.optional(crit))
    return out


def run(args: argparse.Namespace) -> tuple[int, str]:
    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as err:
            raise CheckError(f"cannot read the token file: {err}") from err
    client = AgentClient(args.agent_url, timeout=args.timeout, token=token)
    if args.mode in DEVICE_MODES:
        spec = DEVICE_MODES[args.mode]
        ranges = _ranges(args, [t.key for t in spec.thresholds], spec.primary)
        out = device_mode(spec, client, args.device, ranges, args.lang)
    elif args.mode == "device":
        out = device_status(
            client,
            args.device,
            Range.optional(args.warning),
            Range.optional(args.critical),
            args.lang,
            now_utc(),
        )
    elif args.mode == "incidents":
        ranges = _ranges(args, [k for k, *_ in INCIDENT_THRESHOLDS], "p1")
        out = incidents_mode(client, ranges, args.site, args.lang, now_utc())
    else:
        out = meteo_mode(client, args.site, args.lang)
    return out.state.value, out.render(args.verbose)


def _on_alarm(_sig: int, _frame: FrameType | None) -> None:
    raise CheckError("timeout")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed; keep its code (UNKNOWN for errors and --help)
        code: Any = exc.code
        return code if isinstance(code, int) else Severity.UNKNOWN.value
    name = f"CALLIPSO-{str(args.mode).upper()}"
    # a global deadline besides the socket timeouts (signals only work in the main thread)
    guard = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if guard else None
    if guard:
        signal.setitimer(signal.ITIMER_REAL, max(args.timeout, 0.1) + 1.0)
    try:
        code, text = run(args)
    except RangeError as err:
        code, text = Severity.UNKNOWN.value, f"{name} UNKNOWN - bad threshold: {err}"
    except CheckError as err:
        msg = f"no answer within {args.timeout:g}s" if str(err) == "timeout" else str(err)
        code, text = Severity.UNKNOWN.value, f"{name} UNKNOWN - {msg}".replace("|", "/")
    finally:
        if guard:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    print(text)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
