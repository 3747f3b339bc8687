"""The lab's network in front of snmpsim: one UDP port per simulated device, relayed to the snmpsim shard
serving its recording, with network faults played per device on the wire.

snmpsim keeps answering every community; a device that is "cut off" is silenced here, like a router
dropping its traffic, so snmpsim never sees a request it cannot answer. Modes per device:

* ``pass`` — requests and answers are relayed;
* ``drop`` — requests (and answers still in flight) are dropped: the device is unreachable;
* ``late`` — requests are relayed after ``delay`` seconds: answers arrive after the poller gave up;
* ``truncated`` — answers are cut in half: the poller gets malformed SNMP messages.

The relay runs in its own process (``python -m callipso_agent.lab.udpfront``) so that it neither competes
with the agent's event loop in ``callipso-agent demo`` nor hides the agent's own delays. The parent talks to
it with JSON lines: the route table on stdin first, ``{"ready": {device: port}}`` back on stdout, then one
request line per command (``mode``, ``stats``) and one answer line each. End of stdin stops the relay, so
it never outlives the lab, even after ``kill -9``.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("pass", "drop", "late", "truncated")
IDLE_SECONDS = 120.0  # a client's upstream socket is closed after this long without traffic
MAX_DATAGRAM = 65535


@dataclass
class Route:
    device: str
    upstream: tuple[str, int]
    listen_port: int = 0
    mode: str = "pass"
    delay: float = 0.0
    sock: socket.socket | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "answers": 0, "dropped": 0})


@dataclass
class _Flow:
    """One client of one device: its own socket towards snmpsim, so answers find their way back."""

    route: Route
    client: tuple[str, int]
    sock: socket.socket
    last_used: float


class UdpFront:
    """The relay itself (runs in the child process, on its own event loop)."""

    def __init__(self, routes: list[Route], loop: asyncio.AbstractEventLoop, *,
                 monotonic: Callable[[], float] = time.monotonic, idle: float = IDLE_SECONDS) -> None:
        self.routes = {r.device: r for r in routes}
        self.loop = loop
        self.monotonic = monotonic
        self.idle = idle
        self.flows: dict[tuple[str, tuple[str, int]], _Flow] = {}

    def start(self, host: str = "127.0.0.1") -> dict[str, int]:
        for route in self.routes.values():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((host, route.listen_port))
            route.sock = sock
            route.listen_port = sock.getsockname()[1]
            self.loop.add_reader(sock.fileno(), self._on_request, route)
        return {r.device: r.listen_port for r in self.routes.values()}

    def close(self) -> None:
        for flow in list(self.flows.values()):
            self._close_flow(flow)
        for route in self.routes.values():
            if route.sock is not None:
                self.loop.remove_reader(route.sock.fileno())
                route.sock.close()
                route.sock = None

    def set_mode(self, device: str, mode: str, delay: float = 0.0) -> None:
        if device not in self.routes:
            raise KeyError(f"unknown device {device!r}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        route = self.routes[device]
        route.mode, route.delay = mode, max(0.0, delay)

    def stats(self) -> dict[str, Any]:
        return {"devices": {d: dict(r.counts, mode=r.mode) for d, r in self.routes.items()},
                "flows": len(self.flows)}

    # ---- datapath ---------------------------------------------------------------------------------
    def _on_request(self, route: Route) -> None:
        assert route.sock is not None
        while True:
            try:
                data, client = route.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            route.counts["requests"] += 1
            if route.mode == "drop":
                route.counts["dropped"] += 1
                continue
            if route.mode == "late" and route.delay > 0:
                self.loop.call_later(route.delay, self._forward, route, client, data)
            else:
                self._forward(route, client, data)

    def _forward(self, route: Route, client: tuple[str, int], data: bytes) -> None:
        if route.mode == "drop" or route.sock is None:
            route.counts["dropped"] += 1
            return
        flow = self._flow(route, client)
        flow.last_used = self.monotonic()
        try:
            flow.sock.send(data)
        except OSError:
            route.counts["dropped"] += 1

    def _flow(self, route: Route, client: tuple[str, int]) -> _Flow:
        key = (route.device, client)
        flow = self.flows.get(key)
        if flow is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(route.upstream)
            flow = _Flow(route, client, sock, self.monotonic())
            self.flows[key] = flow
            self.loop.add_reader(sock.fileno(), self._on_answer, flow)
        return flow

    def _on_answer(self, flow: _Flow) -> None:
        route = flow.route
        while True:
            try:
                data = flow.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # snmpsim not listening (ICMP port unreachable on a connected socket)
                return
            flow.last_used = self.monotonic()
            if route.mode == "drop" or route.sock is None:
                route.counts["dropped"] += 1
                continue
            if route.mode == "truncated":
                data = data[: max(1, len(data) // 2)]
            try:
                route.sock.sendto(data, flow.client)
                route.counts["answers"] += 1
            except OSError:
                route.counts["dropped"] += 1

    def sweep(self) -> int:
        """Close the upstream sockets of clients idle for ``idle`` seconds; returns how many."""
        now = self.monotonic()
        old = [f for f in self.flows.values() if now - f.last_used > self.idle]
        for flow in old:
            self._close_flow(flow)
        return len(old)

    def _close_flow(self, flow: _Flow) -> None:
        self.flows.pop((flow.route.device, flow.client), None)
        try:
            self.loop.remove_reader(flow.sock.fileno())
        except (ValueError, OSError):
            pass
        flow.sock.close()


# ---- child process ------------------------------------------------------------------------------------
def _handle(front: UdpFront, line: bytes) -> dict[str, Any]:
    try:
        cmd = json.loads(line)
        if cmd.get("op") == "mode":
            front.set_mode(str(cmd["device"]), str(cmd["mode"]), float(cmd.get("delay", 0.0)))
            return {"ok": True}
        if cmd.get("op") == "stats":
            return {"ok": True, "stats": front.stats()}
        return {"ok": False, "error": f"unknown op {cmd.get('op')!r}"}
    except (ValueError, KeyError, TypeError) as err:
        return {"ok": False, "error": str(err)}


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    table = json.loads(await reader.readline())
    routes = [Route(d, (str(r["upstream"][0]), int(r["upstream"][1])), int(r.get("listen", 0)))
              for d, r in table["routes"].items()]
    front = UdpFront(routes, loop, idle=float(table.get("idle", IDLE_SECONDS)))
    ports = front.start(str(table.get("host", "127.0.0.1")))
    out = sys.stdout.buffer

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj).encode() + b"\n")
        out.flush()

    reply({"ready": ports})

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(max(1.0, front.idle / 4))
            front.sweep()

    sweeping = loop.create_task(sweeper())
    try:
        while line := await reader.readline():
            reply(_handle(front, line))
    finally:
        sweeping.cancel()
        front.close()


def main() -> int:
    asyncio.run(_serve())
    return 0


# ---- parent side --------------------------------------------------------------------------------------
class FrontProcess:
    """The relay as a child process of the lab. ``start()`` returns the device -> UDP port map."""

    def __init__(self, upstreams: dict[str, tuple[str, int]], *, log_file: Path,
                 host: str = "127.0.0.1", reply_timeout: float = 10.0) -> None:
        if not host.startswith("127."):
            raise ValueError("the lab only listens on loopback")
        self.upstreams = dict(upstreams)
        self.log_file = log_file
        self.host = host
        self.reply_timeout = reply_timeout
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""

    def start(self) -> dict[str, int]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        src = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
        with self.log_file.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callipso_agent.lab.udpfront"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True)
        table = {"host": self.host, "routes": {d: {"upstream": list(u)} for d, u in self.upstreams.items()}}
        self._send(table)
        ready = self._receive()
        self.ports = {str(k): int(v) for k, v in ready["ready"].items()}
        return self.ports

    def set_mode(self, device: str, mode: str, delay: float = 0.0) -> None:
        out = self._call({"op": "mode", "device": device, "mode": mode, "delay": delay})
        if not out.get("ok"):
            raise ValueError(str(out.get("error")))

    def stats(self) -> dict[str, Any]:
        out = self._call({"op": "stats"})
        return dict(out["stats"])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # end of input: the relay exits
            except OSError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def _call(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._send(obj)
        return self._receive()

    def _send(self, obj: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise RuntimeError("the lab's UDP front is not running")
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.reply_timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"the lab's UDP front did not answer (exit code {self.proc.poll()}); "
                                   f"see {self.log_file}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"the lab's UDP front exited; see {self.log_file}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return dict(json.loads(line))


if __name__ == "__main__":
    raise SystemExit(main())
