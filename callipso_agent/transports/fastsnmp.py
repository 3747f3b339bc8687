"""SNMP v1/v2c transport on a pure-Python BER codec and one UDP socket per address family.

:class:`FastSnmpEngine` is shared by every device of the process: one non-blocking socket per address family,
read by the event loop, answers matched to requests by request-id. A datagram that does not match an
outstanding request (unknown or finished request-id, another source address or port, another version or
community, not a RESPONSE) is dropped and counted in :attr:`EngineStats.ignored`, so a late or stray answer
never lands in another device's poll. A malformed datagram is dropped and counted too, unless its request-id
(read leniently) and source match an outstanding request: that request then fails with ParseError.

:class:`FastSnmpClient` implements :class:`~callipso_agent.transports.snmp.SnmpClient` with the semantics of
:class:`~callipso_agent.transports.snmp.PysnmpClient` (same chunks, v1 fallbacks, walk bounds and errors),
for v1 and v2c only; SNMPv3 stays on pysnmp.

Errors: Timeout when no answer comes after ``retries`` retransmissions (each waits ``timeout`` seconds);
Unreachable when the address does not resolve, the kernel refuses to send (no route, network down) or, on
Linux, an ICMP error comes back for the request (port or host unreachable: the socket asks for them with
IP_RECVERR and reads the request they quote, so they are matched by request-id like answers; pysnmp never
sees them and waits for its timeout); ParseError for malformed answers and error-status values other than
noSuchName.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from callipso_agent.config.models import SnmpV2Credential
from callipso_agent.config.secrets import Secret
from callipso_agent.errors import ParseError, Timeout, Unreachable
from callipso_agent.transports import ber
from callipso_agent.transports.snmp import SnmpValue, Varbinds

log = structlog.get_logger()

WALK_LIMIT = 200_000
GET_CHUNK = 32
_RECV_SIZE = 65535
_READS_PER_WAKEUP = 256
_RCVBUF = 4 * 1024 * 1024
# Linux: queue ICMP errors on the socket (the socket module does not always export the constants)
_RECVERR: dict[int, tuple[int, int]] = {socket.AF_INET: (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)),
            socket.AF_INET6: (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25))}
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_END_OF_MIB_VIEW = SnmpValue("endofmibview", None)
# An answering device answers within milliseconds on a LAN and well under a second across a WAN: a request
# unanswered after this long gives its concurrency slot back (it still waits for its timeout and retries)
SLOT_HOLD = 1.0


@dataclass
class EngineStats:
    """Counters of one engine (exported as self-metrics)."""

    requests: int = 0  # request datagrams sent, retransmissions included
    retransmissions: int = 0
    responses: int = 0  # answers delivered to a waiting request
    timeouts: int = 0  # requests that got no answer at all
    ignored: int = 0  # datagrams matching no outstanding request (late, stray, wrong source/community)
    malformed: int = 0  # datagrams that are not SNMP v1/v2c messages (also counted in ignored if unmatched)
    send_errors: int = 0
    icmp_errors: int = 0  # ICMP errors (port or host unreachable) quoting one of our requests
    slots_given_back: int = 0  # requests still unanswered after slot_hold, which gave their slot back


class _Pending:
    __slots__ = ("address", "community", "data", "engine", "future", "host", "request_id", "retries_left",
                 "sock", "timeout", "timer", "version")

    def __init__(self, engine: FastSnmpEngine, request_id: int, sock: socket.socket, address: tuple[str, int],
                 version: int, community: bytes, data: bytes, host: str, timeout: float, retries: int,
                 future: asyncio.Future[ber.Message]) -> None:
        self.engine = engine
        self.request_id = request_id
        self.sock = sock
        self.address = address
        self.version = version
        self.community = community
        self.data = data
        self.host = host
        self.timeout = timeout
        self.retries_left = retries
        self.future = future
        self.timer: asyncio.TimerHandle | None = None

    def on_timer(self) -> None:
        if self.future.done():
            return
        if self.retries_left > 0:
            self.retries_left -= 1
            self.engine.stats.retransmissions += 1
            self.engine._send(self)
            return
        self.engine.stats.timeouts += 1
        self.future.set_exception(Timeout(f"{self.host}: no SNMP response (timeout; wrong community or unreachable)"))


class _Slot:
    """One request's slot of the concurrency semaphore, given back once (early or at the end)."""

    __slots__ = ("held", "semaphore", "stats")

    def __init__(self, semaphore: asyncio.Semaphore, stats: EngineStats) -> None:
        self.semaphore = semaphore
        self.stats = stats
        self.held = True

    def release(self, early: bool = False) -> None:
        if self.held:
            self.held = False
            if early:
                self.stats.slots_given_back += 1
            self.semaphore.release()


class FastSnmpEngine:
    """The SNMP v1/v2c engine of the process: sockets, request-ids, retransmissions, concurrency limit.

    ``semaphore`` may be shared with another engine (e.g. the pysnmp one for SNMPv3) so that the global
    concurrency limit holds across both. ``bind_v4``/``bind_v6``: local addresses of the sockets.
    ``slot_hold``: how long an unanswered request keeps its slot of the semaphore (see :meth:`exchange`).
    """

    def __init__(self, max_concurrency: int = 64, *, semaphore: asyncio.Semaphore | None = None,
                 bind_v4: str = "0.0.0.0", bind_v6: str = "::", rng: random.Random | None = None,  # noqa: S104 - a client socket, bound to any address like pysnmp's
                 slot_hold: float = SLOT_HOLD) -> None:
        self.semaphore = semaphore or asyncio.Semaphore(max_concurrency)
        self.slot_hold = slot_hold
        self.stats = EngineStats()
        self._bind: dict[int, str] = {socket.AF_INET: bind_v4, socket.AF_INET6: bind_v6}
        self._sockets: dict[int, socket.socket] = {}
        self._pending: dict[int, _Pending] = {}
        self._rng = rng or random.Random()  # noqa: S311 - request-ids, not secrets
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- sockets ------------------------------------------------------------------------------------
    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is not None:
            return sock
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("FastSnmpEngine used from two event loops")
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            if sys.platform.startswith("linux"):
                with contextlib.suppress(OSError):
                    sock.setsockopt(*_RECVERR[family], 1)
            sock.bind((self._bind[family], 0))
            loop.add_reader(sock.fileno(), self._on_readable, sock)
        except BaseException:
            sock.close()
            raise
        self._sockets[family] = sock
        return sock

    def local_address(self, family: int = socket.AF_INET) -> tuple[Any, ...] | None:
        sock = self._sockets.get(family)
        return sock.getsockname() if sock is not None else None

    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # an ICMP error: its details are on the error queue
                self._icmp_errors(sock, err)
                continue
            self._dispatch(data, addr)

    def _icmp_errors(self, sock: socket.socket, err: OSError) -> None:
        """Fail the requests quoted by the queued ICMP errors (Linux, IP_RECVERR); drop the others."""
        for _ in range(_READS_PER_WAKEUP):
            try:
                quoted, ancillary, _, addr = sock.recvmsg(_RECV_SIZE, 1024, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.debug("snmp_socket_error", error=str(err))
                return
            errno = int.from_bytes(ancillary[0][2][:4], "little") if ancillary and len(ancillary[0][2]) >= 4 else 0
            rid = ber.peek_request_id(quoted)
            pending = self._pending.get(rid) if rid is not None else None
            if pending is None or pending.future.done() or addr is None or not _same_source(pending.address, addr):
                self.stats.ignored += 1
                continue
            self.stats.icmp_errors += 1
            reason = os.strerror(errno) if errno else str(err)
            pending.future.set_exception(Unreachable(f"{pending.host}: unreachable (ICMP: {reason})"))

    def _dispatch(self, data: bytes, addr: Any) -> None:
        try:
            msg = ber.decode_message(data)
        except ber.BerError as err:
            self.stats.malformed += 1
            rid = ber.peek_request_id(data)
            pending = self._pending.get(rid) if rid is not None else None
            if pending is not None and _same_source(pending.address, addr) and not pending.future.done():
                pending.future.set_exception(ParseError(f"{pending.host}: malformed SNMP response: {err}"))
            else:
                self.stats.ignored += 1
            return
        pdu = msg.pdu
        pending = self._pending.get(pdu.request_id) if pdu.tag == ber.RESPONSE else None  # type: ignore[union-attr]
        if (pending is None or pending.future.done() or not _same_source(pending.address, addr)
                or msg.version != pending.version or msg.community != pending.community):
            self.stats.ignored += 1
            return
        self.stats.responses += 1
        pending.future.set_result(msg)

    def _send(self, pending: _Pending) -> None:
        self.stats.requests += 1
        try:
            pending.sock.sendto(pending.data, pending.address)
        except (BlockingIOError, InterruptedError):
            self.stats.send_errors += 1  # socket buffer full: as if lost, the timer retransmits
        except OSError as err:
            self.stats.send_errors += 1
            if not pending.future.done():
                pending.future.set_exception(
                    Unreachable(f"{pending.host}: cannot send SNMP request ({err.strerror or err})"))
            return
        assert self._loop is not None
        pending.timer = self._loop.call_later(pending.timeout, pending.on_timer)

    def _request_id(self) -> int:
        while True:
            rid = self._rng.randrange(1, 0x7FFFFFFF)
            if rid not in self._pending:
                return rid

    # ---- one exchange -------------------------------------------------------------------------------
    async def exchange(self, family: int, address: tuple[str, int], version: int, community: bytes, tag: int,
                       oids: Sequence[str], *, host: str, timeout: float, retries: int,  # noqa: ASYNC109 - the SNMP per-request timeout
                       non_repeaters: int = 0, max_repetitions: int = 0) -> ber.Pdu:
        """Send one request and wait for its answer (retransmitting), under the global semaphore.

        The request holds its slot of the semaphore until its answer comes, or for ``slot_hold`` seconds at
        most: a request still unanswered by then (a silent, late or unreachable device) goes on waiting for
        its answer and retransmitting without a slot, so silent devices cannot take every slot for their whole
        timeout and starve the devices that answer."""
        await self.semaphore.acquire()
        slot = _Slot(self.semaphore, self.stats)
        hold: asyncio.TimerHandle | None = None
        try:
            sock = self._socket(family)
            assert self._loop is not None
            rid = self._request_id()
            try:
                data = ber.encode_request(version, community, tag, rid, list(oids), non_repeaters, max_repetitions)
            except ValueError as err:
                raise ParseError(f"{host}: cannot encode SNMP request: {err}") from err
            future: asyncio.Future[ber.Message] = self._loop.create_future()
            pending = _Pending(self, rid, sock, address, version, community, data, host, timeout, retries, future)
            self._pending[rid] = pending
            try:
                self._send(pending)
                if not future.done():
                    hold = self._loop.call_later(min(self.slot_hold, timeout), slot.release, True)
                msg = await future
            finally:
                del self._pending[rid]
                if pending.timer is not None:
                    pending.timer.cancel()
        finally:
            if hold is not None:
                hold.cancel()
            slot.release()
        pdu = msg.pdu
        assert isinstance(pdu, ber.Pdu)
        return pdu

    def close(self) -> None:
        for rid, pending in list(self._pending.items()):
            if not pending.future.done():
                pending.future.set_exception(Unreachable(f"{pending.host}: SNMP engine closed"))
            if pending.timer is not None:
                pending.timer.cancel()
            self._pending.pop(rid, None)
        for sock in self._sockets.values():
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()


def _same_source(expected: tuple[str, int], addr: Any) -> bool:
    host = addr[0]
    if "%" in host:
        host = host.split("%", 1)[0]
    return bool(addr[1] == expected[1] and host == expected[0])


class FastSnmpClient:
    """SnmpClient for one v1/v2c device over a :class:`FastSnmpEngine`."""

    def __init__(self, engine: FastSnmpEngine, host: str, port: int, credential: SnmpV2Credential,
                 secrets: dict[str, Secret], *, timeout: float = 5.0, retries: int = 1,
                 max_repetitions: int = 25) -> None:
        if not isinstance(credential, SnmpV2Credential):
            raise TypeError("FastSnmpClient speaks SNMP v1 and v2c only")
        self._engine = engine
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.max_repetitions = max_repetitions
        self.version = credential.version
        self._version = ber.VERSION_1 if credential.version == "1" else ber.VERSION_2C
        community = secrets["community"].reveal()
        try:
            self._community = community.encode("iso-8859-1")
        except UnicodeEncodeError:
            self._community = community.encode("utf-8")
        self._target: tuple[int, tuple[str, int]] | None = None

    def __repr__(self) -> str:
        return f"FastSnmpClient({self.host}:{self.port}, v{self.version})"

    async def _target_(self) -> tuple[int, tuple[str, int]]:
        if self._target is None:
            try:
                ip = ipaddress.ip_address(self.host.strip("[]").split("%", 1)[0])
            except ValueError:
                ip = None
            if ip is not None:
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                self._target = (family, (str(ip), self.port))
            else:
                loop = asyncio.get_running_loop()
                try:
                    infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
                except (OSError, UnicodeError) as err:
                    raise Unreachable(f"{self.host}: cannot resolve address ({err})") from err
                if not infos:
                    raise Unreachable(f"{self.host}: cannot resolve address (no address)")
                infos.sort(key=lambda i: i[0] != socket.AF_INET)  # IPv4 first, like pysnmp's UDP target
                family, _, _, _, sockaddr = infos[0]
                self._target = (int(family), (str(sockaddr[0]), int(sockaddr[1])))
        return self._target

    async def _call(self, tag: int, oids: Sequence[str], max_repetitions: int = 0) -> ber.Pdu | None:
        """The response PDU, or None when the agent said noSuchName (v1: absent / end of MIB)."""
        family, address = await self._target_()
        try:
            pdu = await self._engine.exchange(family, address, self._version, self._community, tag, oids,
                                              host=self.host, timeout=self.timeout, retries=self.retries,
                                              max_repetitions=max_repetitions)
        except OSError as err:  # socket creation (e.g. no IPv6 on this host)
            raise Unreachable(f"{self.host}: {err}") from err
        if pdu.error_status:
            if pdu.error_status == 2:
                return None
            raise ParseError(f"{self.host}: SNMP error-status {ber.error_status_name(pdu.error_status)} "
                             f"at index {pdu.error_index}")
        if not pdu.varbinds and tag != ber.GET:
            raise ParseError(f"{self.host}: empty SNMP response")
        return pdu

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        out: dict[str, SnmpValue] = {}
        for i in range(0, len(oids), GET_CHUNK):
            chunk = oids[i : i + GET_CHUNK]
            pdu = await self._call(ber.GET, [o.strip(".") for o in chunk])
            if (pdu is None or not pdu.varbinds) and self.version == "1" and len(chunk) > 1:
                # v1 fails the whole PDU on one missing OID: ask one by one
                for o in chunk:
                    out.update(await self.get([o]))
                continue
            if pdu is None:
                continue
            for name, value in pdu.varbinds:
                if not value.is_empty:
                    out[name] = value
        return out

    async def next(self, oids: Sequence[str]) -> Varbinds:
        """GETNEXT of each OID; an OID past the end of the MIB gives an ``endofmibview`` value."""
        if not oids:
            return []
        pdu = await self._call(ber.GETNEXT, [o.strip(".") for o in oids])
        if pdu is None:
            if self.version == "1" and len(oids) > 1:
                # v1 fails the whole PDU when one OID is past the end: ask one by one
                out: Varbinds = []
                for o in oids:
                    out.extend(await self.next([o]) or [(o, _END_OF_MIB_VIEW)])
                return out
            return [(o, _END_OF_MIB_VIEW) for o in oids]
        return list(pdu.varbinds)

    async def walk(self, root: str, start: str | None = None, end: str | None = None) -> Varbinds:
        """All varbinds under ``root`` (GETBULK for v2c, GETNEXT for v1), stopping at the subtree end.

        ``start``/``end`` narrow the walk to a range of sub-OIDs of ``root``: it begins at ``start`` and
        stops after the last OID under ``end``.
        """
        root = root.strip(".")
        below = root + "."
        end_key = ber.oid_key(ber.oid_content(end)) if end else None
        out: Varbinds = []
        append = out.append
        key_of = ber.oid_key
        current = start.strip(".") if start else root
        last_key = b""
        bulk = self.version != "1"
        while True:
            if bulk:
                pdu = await self._call(ber.GETBULK, [current], self.max_repetitions)
            else:
                pdu = await self._call(ber.GETNEXT, [current])
            if pdu is None:
                return out
            for (oid, value), name in zip(pdu.varbinds, pdu.names, strict=True):
                if value.type == "endofmibview" or not (oid.startswith(below) or oid == root):
                    return out
                key = key_of(name)
                if end_key is not None and key > end_key and not key.startswith(end_key):
                    return out
                if key <= last_key:
                    # a broken agent answering out of order would loop for ever: keep what we have
                    log.warning("snmp_walk_not_increasing", host=self.host, root=root, oid=oid)
                    return out
                last_key = key
                append((oid, value))
                current = oid
            if len(out) > WALK_LIMIT:
                raise ParseError(f"{self.host}: walk of {root} returned more than {WALK_LIMIT} varbinds")

    def close(self) -> None:
        self._target = None
