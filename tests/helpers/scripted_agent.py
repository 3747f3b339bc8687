"""A UDP peer on loopback whose answers a test scripts: for protocol corner cases that a well-behaved agent
(snmpsim, udpsim) never produces, such as answers with another request-id or from another port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callipso_agent.transports import ber
from callipso_agent.transports.snmp import SnmpValue

Reply = tuple[bytes, float, "socket.socket | None"]  # datagram, delay, socket to send from (None: the agent's)
Script = Callable[[ber.Request, "ScriptedAgent"], list[Reply]]


def response(req: ber.Request, varbinds: list[tuple[str, SnmpValue]], *, status: int = 0, index: int = 0,
             request_id: int | None = None, community: bytes | None = None) -> bytes:
    vbs = b"".join(ber.encode_varbind(o, v) for o, v in varbinds)
    return ber.encode_response(req.version, req.community if community is None else community,
                               req.request_id if request_id is None else request_id, status, index, vbs)


def echo(req: ber.Request, value: SnmpValue, **kwargs: Any) -> bytes:
    """Answer every requested OID with ``value``."""
    return response(req, [(ber.oid_text(n), value) for n in req.names], **kwargs)


@dataclass
class ScriptedAgent:
    script: Script
    host: str = "127.0.0.1"
    requests: list[ber.Request] = field(default_factory=list)
    port: int = 0
    _transport: asyncio.DatagramTransport | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _other: socket.socket | None = None

    async def start(self) -> ScriptedAgent:
        loop = asyncio.get_running_loop()
        agent = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                agent._received(data, addr)

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=(self.host, 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def other_socket(self) -> socket.socket:
        """A second socket on another port of the same host, to send answers from the wrong source."""
        if self._other is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self._other = socket.socket(family, socket.SOCK_DGRAM)
            self._other.bind((self.host, 0))
        return self._other

    def _received(self, data: bytes, addr: Any) -> None:
        req = ber.decode_request(data)
        self.requests.append(req)
        for datagram, delay, sock in self.script(req, self):
            if delay:
                task = asyncio.get_running_loop().create_task(self._later(datagram, delay, sock, addr))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._send(datagram, sock, addr)

    async def _later(self, datagram: bytes, delay: float, sock: socket.socket | None, addr: Any) -> None:
        await asyncio.sleep(delay)
        self._send(datagram, sock, addr)

    def _send(self, datagram: bytes, sock: socket.socket | None, addr: Any) -> None:
        if sock is not None:
            sock.sendto(datagram, addr)
        elif self._transport is not None:
            self._transport.sendto(datagram, addr)

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._transport is not None:
            self._transport.close()
        if self._other is not None:
            self._other.close()
