"""``callipso-agent lab`` (the simulated estate), ``lab fault``/``lab clear`` (its switch) and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".lab"


def _v3_devices(text: str) -> Any:
    from callipso_agent.lab.estate import parse_v3_setups

    try:
        return parse_v3_setups(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def register(sub: Any) -> None:
    lab = sub.add_parser("lab", help="run the built-in lab (simulated devices on loopback), or switch its faults")
    lab.add_argument("--dir", default=DEFAULT_DIR, help="lab working folder (default: %(default)s)")
    lab.add_argument("--interval", type=float, default=30.0, help="poll interval of lab devices, seconds")
    lab.add_argument("--http-port", type=int, default=9730, help="HTTP port the agent will use")
    lab.add_argument("--control-port", type=int, default=9731, help="HTTP port of the lab's fault switch")
    lab.add_argument("--sites", help="only these sites of the example estate (comma-separated codes)")
    lab.add_argument("--overlay", help="folder merged into the lab configuration: agent.yaml (agent settings), "
                     "outputs/ (EasyVista, notifications) and their secret files")
    lab.add_argument("--snmpv3", metavar="DEVICES", type=_v3_devices, default={},
                     help="devices polled in SNMPv3 authPriv with random keys, and whose v3 traps the agent accepts: "
                     "DEVICE[:AUTH/PRIV][:MISMATCH],... (default sha/aes; MISMATCH: wrong_auth_key, "
                     "wrong_priv_key, unknown_user)")
    lab.add_argument("--random-communities", action="store_true",
                     help="serve SNMP v2c devices under random communities instead of their names")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    fault = lab_sub.add_parser("fault", help="inject a fault into a running lab")
    fault.add_argument("fault", help="fault name (see 'lab status')")
    fault.add_argument("target", help="device or site code")
    clear = lab_sub.add_parser("clear", help="clear faults in a running lab")
    clear.add_argument("target", help="device or site code")
    clear.add_argument("fault", nargs="?", default=None)
    lab_sub.add_parser("status", help="show the running lab's devices and faults")
    lab.set_defaults(func=cmd_lab)

    demo = sub.add_parser("demo", help="run the lab and the agent together, and print where to look")
    demo.add_argument("--dir", default=DEFAULT_DIR, help="lab working folder (default: %(default)s)")
    demo.add_argument("--interval", type=float, default=30.0, help="poll interval of lab devices, seconds")
    demo.add_argument("--http-port", type=int, default=9730)
    demo.add_argument("--control-port", type=int, default=9731)
    demo.add_argument("--sites", help="only these sites of the example estate (comma-separated codes)")
    demo.add_argument("--overlay", help="folder merged into the lab configuration: agent.yaml (agent settings), "
                      "outputs/ (EasyVista, notifications) and their secret files")
    demo.add_argument("--snmpv3", metavar="DEVICES", type=_v3_devices, default={},
                     help="devices polled in SNMPv3 authPriv with random keys, and whose v3 traps the agent accepts: "
                     "DEVICE[:AUTH/PRIV][:MISMATCH],... (default sha/aes; MISMATCH: wrong_auth_key, "
                     "wrong_priv_key, unknown_user)")
    demo.add_argument("--random-communities", action="store_true",
                     help="serve SNMP v2c devices under random communities instead of their names")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    demo.set_defaults(func=cmd_demo)


def _control_call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as rsp:  # noqa: S310 - loopback only
            return rsp.status, json.loads(rsp.read() or b"null")
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"error": text}


def cmd_lab(args: argparse.Namespace) -> int:
    if args.lab_command in ("fault", "clear", "status"):
        try:
            if args.lab_command == "fault":
                status, out = _control_call(args.control_port, "POST", "/lab/faults",
                                            {"target": args.target, "fault": args.fault})
            elif args.lab_command == "clear":
                status, out = _control_call(args.control_port, "DELETE", "/lab/faults",
                                            {"target": args.target, "fault": args.fault})
            else:
                status, out = _control_call(args.control_port, "GET", "/lab")
        except OSError as err:
            print(f"error: no lab answering on 127.0.0.1:{args.control_port} ({err})", file=sys.stderr)
            return 2
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0 if status < 300 else 2
    return asyncio.run(_run_lab(args, with_agent=False))


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_run_lab(args, with_agent=True))


async def _run_lab(args: argparse.Namespace, *, with_agent: bool) -> int:
    from callipso_agent import logs
    from callipso_agent.lab.control import LabControl
    from callipso_agent.lab.estate import Lab

    logs.configure(getattr(args, "log_level", "info"))
    sites = [s for s in (args.sites or "").split(",") if s] or None
    overlay = Path(args.overlay) if getattr(args, "overlay", None) else None
    lab = Lab(Path(args.dir), interval=args.interval, http_port=args.http_port, sites=sites, overlay=overlay,
              snmpv3=args.snmpv3, random_communities=args.random_communities)
    control = LabControl(lab, port=args.control_port)
    try:
        config_dir = await lab.build()
        await asyncio.to_thread(lab.start)
        await control.start()
    except BaseException:
        # a lab that fails to start stops what it already started (snmpsim runs in its own session)
        lab.stop()
        await lab.close_emulators()
        raise
    app = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if with_agent:
            from callipso_agent.daemon import App

            app = App(config_dir)
            await app.start()
            reloads: set[asyncio.Task[bool]] = set()

            def _hup() -> None:
                assert app is not None
                t = loop.create_task(app.reload())
                reloads.add(t)
                t.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGHUP, _hup)
        base = f"http://127.0.0.1:{args.http_port}"
        lines = [
            "",
            f"Lab: {len(lab.devices)} simulated devices (snmpsim on 127.0.0.1 ports "
            f"{', '.join(map(str, lab.snmp_ports))}, SSH emulators) "
            f"(configuration in {config_dir})",
            f"Fault switch: callipso-agent lab fault on_battery ups-aubagne-mds   "
            f"(faults: {', '.join(sorted(lab.spec.faults))})",
        ]
        if with_agent:
            lines += [
                f"Agent health:  {base}/healthz   readiness: {base}/readyz",
                f"Devices:       {base}/api/v1/devices",
                f"Metrics:       {base}/metrics",
                f"Measurements:  {base}/api/v1/measurements?name=ups_battery_charge_percent",
                "Logs: this terminal. Stop with Ctrl-C.",
            ]
        else:
            lines += [f"Run the agent on it: callipso-agent run --config {config_dir}", "Stop with Ctrl-C."]
        print("\n".join(lines), flush=True)
        duration = getattr(args, "duration", None)
        if duration:
            try:
                await asyncio.wait_for(stop.wait(), timeout=duration)
            except TimeoutError:
                pass
        else:
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if app is not None:
            await app.stop()
        await control.stop()
        lab.stop()
        await lab.close_emulators()
    return 0
