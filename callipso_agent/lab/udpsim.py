"""udpsim: a fast SNMP v1/v2c responder simulating many devices from recordings, for load tests and benchmarks.

Each recording (``.snmprec`` or ``.snmpwalk``, read as snmpsim reads it: see
:mod:`callipso_agent.lab.recordings`) is loaded once and shared by every device simulated from it: its
varbinds are BER-encoded at load time, so an answer is a dictionary lookup (GET) or a bisection (GETNEXT,
GETBULK) followed by a concatenation of pre-encoded bytes. A device costs under a kilobyte; 10,000 devices
fit in one process (about 85 MB). Devices are told apart by community (as with snmpsim, the community is the
device's name by default) on a shared UDP port, and/or by address and port (e.g. one loopback address each).

It answers like snmpsim on the same recording (an equivalence test walks every fixture through both):
GETNEXT follows the file order (the record after the last copy of the requested OID, a bisection when the
OID is not in the file), a GET of an absent OID gives noSuchInstance, a broken value is served as
noSuchInstance (GET) or endOfMibView (GETNEXT), GETBULK repeats at most 64 varbinds in all, and v1 requests
get noSuchName and never see Counter64 values (skipped by GETNEXT), as pysnmp's RFC 2576 translation does.
An OID absent from an unsorted recording is searched in the file's bytes as snmpsim does. Not emulated: the
variation modules other than ``numeric`` (their records are skipped), SET, SNMPv3. sysUpTime is the
recorded value unless the device was restarted (or ``live_uptime``): it then counts from the restart (from
the recorded value).

Programmatic use::

    sim = UdpSim(host="127.0.0.1")
    rec = sim.load(Path("tests/fixtures/snmp/mge/eaton-mgeups_9pxle.snmprec"))
    for i in range(10_000):
        sim.add_device(f"ups-{i:05d}", rec, port=16100)        # community "ups-00000"... on one port
    sim.add_device("probe-a", sim.load(probe_path), port=0)    # a port of its own (sim.endpoint("probe-a"))
    sim.add_device("sbc-b", sbc_path, host="127.20.0.7", port=161)  # an address of its own
    await sim.start()                                           # in the running event loop
    sim.set_faults("ups-00042", drop=1.0)                       # no answer at all
    sim.set_faults("ups-00043", delay=7.5)                      # answers 7.5 s late
    sim.set_faults("ups-00044", malformed="truncated")          # answers cut short ("garbage": random bytes)
    sim.set_faults("ups-00045", wrong_community="other")        # answers community "other" only
    sim.set_faults("ups-00046", error_status=5)                 # genErr to every request
    sim.set_faults("ups-00047", drop=0.1)                       # loses 10 % of the requests
    sim.restart("ups-00048")                                    # sysUpTime back to 0, growing again
    sim.set_values("ups-00049", {"1.3.6.1.2.1.33.1.4.1.0": "2|5"})  # on battery (the lab's edits; None removes)
    sim.reset_values("ups-00049")
    sim.clear_faults("ups-00042")
    print(sim.stats, sim.device("ups-00047").requests)
    await sim.stop()

Faults can be switched at any time, from the event loop's thread. From the command line (benchmarks)::

    python -m callipso_agent.lab.udpsim --recordings tests/fixtures/snmp --devices 10000 --port 16100
    python -m callipso_agent.lab.udpsim --estate devices.csv --control   # name,community,host,port,recording

With ``--control``, JSON commands on stdin switch faults from another process (see :func:`control`), e.g.
``{"devices": ["ups-00042"], "faults": {"drop": 1.0}}`` or ``{"devices": [...], "values": {"1.3.6.1.2.1.33.1.4.1.0":
"2|5"}}``; the first stdout line says where the devices listen.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import structlog

from callipso_agent.lab.recordings import Numeric, Record, Records, Value, load_records, snmprec_value
from callipso_agent.transports import ber
from callipso_agent.transports.snmp import SnmpValue

log = structlog.get_logger()

SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
MAX_BULK_VARBINDS = 64  # pysnmp's command responder (snmpsim) repeats at most 64 varbinds in all
MAX_RESPONSE = 65000
_READS_PER_WAKEUP = 512
_SOCKET_BUFFER = 8 * 1024 * 1024

# per-record flags (v2c slow path)
_DYNAMIC = 1  # numeric variation: computed at each request
_BROKEN = 2  # snmpsim cannot evaluate the value
_SKIP_NEXT = 4  # recorded endOfMibView: snmpsim's GETNEXT steps over it
_EXCEPTION = 8  # recorded noSuchObject / noSuchInstance / endOfMibView (v1: noSuchName)

_NO_SUCH_INSTANCE = b"\x81\x00"
_END_OF_MIB_VIEW = b"\x82\x00"
_NO_SUCH_NAME = 2
_GEN_ERR = 5
_TOO_BIG = 1


def _varbind(name: bytes, value: bytes) -> bytes:
    oid = b"\x06" + ber.encode_length(len(name)) + name
    return b"\x30" + ber.encode_length(len(oid) + len(value)) + oid + value


class Recording:
    """The pre-encoded records of one file, shared by all the devices simulated from it."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.path = records.path
        self.name = records.path.stem
        self.skipped = dict(records.skipped)
        recs = records.records
        self.size = len(recs)
        self.keys: list[tuple[int, ...]] = [r.oid for r in recs]  # file order, for the bisection
        self.names: list[bytes] = [ber.oid_content(r.oid) for r in recs]
        self.vbs: list[bytes | None] = []
        self.values: list[SnmpValue | None] = []
        self.flags = bytearray(self.size)
        self.counter64 = bytearray(self.size)
        self.numeric: dict[int, Numeric] = {}
        for i, r in enumerate(recs):
            value = r.value
            if isinstance(value, Numeric):
                self.flags[i] = _DYNAMIC
                self.numeric[i] = value
                self.counter64[i] = value.kind == "counter64"
                self.vbs.append(None)
                self.values.append(None)
            elif value is None:
                self.flags[i] = _BROKEN
                self.vbs.append(None)
                self.values.append(None)
            else:
                if value.type == "endofmibview":
                    self.flags[i] = _SKIP_NEXT | _EXCEPTION
                elif value.type in ("nosuchobject", "nosuchinstance"):
                    self.flags[i] = _EXCEPTION
                self.counter64[i] = value.type == "counter64"
                self.vbs.append(_varbind(self.names[i], ber.encode_value(value)))
                self.values.append(value)
        # GET and an exact GETNEXT use the last copy of an OID (snmpsim's index)
        self.exact: dict[bytes, int] = {name: i for i, name in enumerate(self.names)}
        # the record a GETNEXT of record i's OID serves: the one after the last copy of that OID
        self.succ: list[int] = [self.exact[name] + 1 for name in self.names]
        uptime = self.exact.get(ber.oid_content(SYS_UPTIME))
        self.uptime_index = -1 if uptime is None else uptime
        # snmpsim searches an unsorted file its own way: follow it there (a sorted file bisects the same)
        self._file_search = self.keys != sorted(self.keys) and bool(records.lines)
        self._by_offset = {r.offset: i for i, r in enumerate(recs) if r.offset >= 0}
        self._offsets = sorted(self._by_offset)
        recorded = self.values[uptime] if uptime is not None else None
        self.recorded_uptime = int(recorded.value) if recorded is not None and recorded.type == "timeticks" \
            and isinstance(recorded.value, int) else 0

    def next_index(self, name: bytes) -> int:
        """The record a GETNEXT of ``name`` lands on (``size`` past the end)."""
        i = self.exact.get(name)
        if i is not None:
            return self.succ[i]
        if self._file_search:
            at = bisect.bisect_left(self._offsets, self.records.search(ber.oid_tuple_of(name)))
            return self._by_offset[self._offsets[at]] if at < len(self._offsets) else self.size
        return bisect.bisect_left(self.keys, ber.oid_tuple_of(name))

    def with_values(self, values: Mapping[str, SnmpValue | str | None]) -> Recording:
        """A copy with some values replaced: an OID maps to a value, to the ``tag|value`` of a ``.snmprec``
        line (``"2|5"``), or to None to remove it. OIDs the recording lacks are inserted before the first
        greater one, like the lab's edits (:func:`callipso_agent.lab.estate.apply_edits`). Raises ValueError
        on an invalid OID or ``tag|value``."""
        changes: dict[tuple[int, ...], Value] = {}
        removed: set[tuple[int, ...]] = set()
        for text, v in values.items():
            oid = tuple(int(p) for p in text.strip(".").split("."))
            ber.oid_content(oid)
            if v is None:
                removed.add(oid)
            elif isinstance(v, str):
                tag, sep, rest = v.partition("|")
                if not sep:
                    raise ValueError(f"{text}: expected 'tag|value', got {v!r}")
                changes[oid] = snmprec_value(text, tag, rest)
            else:
                ber.encode_value(v)
                changes[oid] = v
        out: list[Record] = []
        for r in self.records.records:
            if r.oid in removed:
                continue
            out.append(Record(r.line, r.oid, changes[r.oid], r.offset) if r.oid in changes else r)
        present = {r.oid for r in self.records.records}
        for oid in sorted(set(changes) - present):
            at = next((i for i, r in enumerate(out) if r.oid > oid), len(out))
            out.insert(at, Record(0, oid, changes[oid]))
        edited = Records(self.path, out, dict(self.skipped))
        if not (set(changes) - present) and not removed:  # same lines: snmpsim would search the same file
            edited.text, edited.lines = self.records.text, self.records.lines
        return Recording(edited)

    def __repr__(self) -> str:
        return f"Recording({self.name}, {self.size} records)"


@dataclass
class Faults:
    """What a device does wrong. ``drop``: probability of not answering (1.0: never answers); ``delay``:
    seconds before answering; ``malformed``: ``truncated`` (the answer cut short, its header intact) or
    ``garbage`` (random bytes); ``wrong_community``: the only community answered; ``error_status``: the
    error-status of every answer (e.g. 5 genErr), index 1, varbinds echoed."""

    drop: float = 0.0
    delay: float = 0.0
    malformed: Literal["truncated", "garbage"] | None = None
    wrong_community: str | None = None
    error_status: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop <= 1.0:
            raise ValueError("drop is a probability between 0 and 1")
        if self.delay < 0:
            raise ValueError("delay is a number of seconds")
        if self.malformed not in (None, "truncated", "garbage"):
            raise ValueError("malformed is 'truncated' or 'garbage'")
        if not 0 <= self.error_status <= 18:
            raise ValueError("error_status is an SNMP error-status (0-18)")

    @property
    def active(self) -> bool:
        return bool(self.drop or self.delay or self.malformed or self.error_status)


@dataclass(eq=False)
class Device:
    name: str
    community: bytes
    recording: Recording  # the shared one, or an edited copy (set_values)
    host: str
    port: int
    base: Recording | None = None  # the shared recording while ``recording`` is an edited copy
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    # live sysUpTime: record index (-1: the recorded value), start time and ticks at that time
    uptime_index: int = -1
    uptime_base: float = 0.0
    uptime_offset: int = 0
    state: dict[int, dict[str, Any]] = field(default_factory=dict)  # cumulative numeric variations


@dataclass
class SimStats:
    requests: int = 0  # datagrams received
    responses: int = 0  # answers sent (late ones included)
    dropped: int = 0  # requests left unanswered by a drop fault
    unknown_community: int = 0
    malformed_requests: int = 0
    unsupported: int = 0  # SET, traps, GETBULK in v1...
    send_errors: int = 0


class _Port:
    __slots__ = ("devices", "host", "port", "sock")

    def __init__(self, sock: socket.socket, host: str, port: int) -> None:
        self.sock = sock
        self.host = host
        self.port = port
        self.devices: dict[bytes, Device] = {}


class UdpSim:
    """The responder. Not thread-safe: use it from its event loop's thread."""

    def __init__(self, host: str = "127.0.0.1", *, live_uptime: bool = False,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, reuse_port: bool = False) -> None:
        self.host = host
        self.live_uptime = live_uptime
        self.stats = SimStats()
        self._clock = clock
        self._wall = wall_clock
        self._rng = rng or random.Random()  # noqa: S311 - simulated losses, not secrets
        self._reuse_port = reuse_port
        self._boot = clock()
        self._recordings: dict[Path, Recording] = {}
        self._devices: dict[str, Device] = {}
        self._ports: dict[tuple[str, int], _Port] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delayed: set[asyncio.TimerHandle] = set()

    # ---- building ----------------------------------------------------------------------------------
    def load(self, path: Path) -> Recording:
        """The recording of ``path``, loaded and encoded once (raises RecordingError naming file:line)."""
        key = path.resolve()
        rec = self._recordings.get(key)
        if rec is None:
            rec = Recording(load_records(path))
            if rec.skipped:
                log.warning("udpsim_records_skipped", recording=str(path), variation_modules=rec.skipped)
            self._recordings[key] = rec
        return rec

    def _port(self, host: str, port: int) -> _Port:
        if port and (host, port) in self._ports:
            return self._ports[(host, port)]
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        entry = _Port(sock, host, sock.getsockname()[1])
        self._ports[(host, entry.port)] = entry
        if self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._on_readable, entry)
        return entry

    def add_device(self, name: str, recording: Recording | Path, *, port: int = 16100,
                   community: str | None = None, host: str | None = None) -> Device:
        """A device answering ``community`` (default: its name) on ``host`` (default: the simulator's) and
        ``port`` (0: a new port of its own). The socket is bound at once; the device answers once
        :meth:`start` ran (at once if it did). Many devices may share an address and port (told apart by
        community), or each have its own address (e.g. 127.20.x.y) or port."""
        if name in self._devices:
            raise ValueError(f"device {name!r} already exists")
        rec = recording if isinstance(recording, Recording) else self.load(recording)
        key = (community if community is not None else name).encode("utf-8")
        entry = self._port(host or self.host, port)
        if key in entry.devices:
            raise ValueError(f"community {key.decode(errors='replace')!r} already used on "
                             f"{entry.host} port {entry.port}")
        dev = Device(name, key, rec, entry.host, entry.port)
        if self.live_uptime and rec.uptime_index >= 0:
            dev.uptime_index, dev.uptime_base, dev.uptime_offset = rec.uptime_index, self._boot, rec.recorded_uptime
        entry.devices[key] = dev
        self._devices[name] = dev
        return dev

    def device(self, name: str) -> Device:
        return self._devices[name]

    @property
    def devices(self) -> dict[str, Device]:
        return dict(self._devices)

    @property
    def ports(self) -> list[int]:
        return sorted({port for _, port in self._ports})

    def endpoint(self, name: str) -> tuple[str, int]:
        dev = self._devices[name]
        return dev.host, dev.port

    # ---- faults ------------------------------------------------------------------------------------
    def set_faults(self, name: str, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace a device's faults (``faults``), or change some of them (keywords); returns the new set."""
        dev = self._devices[name]
        new = faults if faults is not None else replace(dev.faults, **changes)
        entry = self._ports[(dev.host, dev.port)]
        old_key = (dev.faults.wrong_community.encode("utf-8") if dev.faults.wrong_community is not None
                   else dev.community)
        new_key = new.wrong_community.encode("utf-8") if new.wrong_community is not None else dev.community
        if new_key != old_key:
            if new_key in entry.devices:
                raise ValueError(f"community {new.wrong_community!r} already used on port {dev.port}")
            del entry.devices[old_key]
            entry.devices[new_key] = dev
        dev.faults = new
        return new

    def clear_faults(self, name: str) -> None:
        self.set_faults(name, Faults())

    def set_values(self, name: str, values: Mapping[str, SnmpValue | str | None]) -> None:
        """Change some of a device's values (e.g. the lab's ``on_battery`` fault: ``{oid: "2|5"}``), on a
        copy of its recording (see :meth:`Recording.with_values`); the changes replace earlier ones."""
        dev = self._devices[name]
        base = dev.base or dev.recording
        dev.recording = base.with_values(values)
        dev.base = base
        if dev.uptime_index >= 0:
            dev.uptime_index = dev.recording.uptime_index
        dev.state.clear()

    def reset_values(self, name: str) -> None:
        """Back to the shared recording's values."""
        dev = self._devices[name]
        if dev.base is not None:
            dev.recording, dev.base = dev.base, None
            if dev.uptime_index >= 0:
                dev.uptime_index = dev.recording.uptime_index
            dev.state.clear()

    def restart(self, name: str) -> None:
        """The device restarts: its sysUpTime starts again from 0 (if its recording has one)."""
        dev = self._devices[name]
        dev.uptime_index = dev.recording.uptime_index
        dev.uptime_base = self._clock()
        dev.uptime_offset = 0
        dev.state.clear()

    # ---- running -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        for entry in self._ports.values():
            self._loop.add_reader(entry.sock.fileno(), self._on_readable, entry)
        log.info("udpsim_started", host=self.host, sockets=len(self._ports), devices=len(self._devices),
                 recordings=len(self._recordings))

    async def stop(self) -> None:
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        for entry in self._ports.values():
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(entry.sock.fileno())
            entry.sock.close()
        self._ports.clear()
        self._loop = None

    async def __aenter__(self) -> UdpSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_readable(self, entry: _Port) -> None:
        sock = entry.sock
        handle = self._handle
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            handle(entry, data, addr)

    def _handle(self, entry: _Port, data: bytes, addr: Any) -> None:
        stats = self.stats
        stats.requests += 1
        try:
            req = ber.decode_request(data)
        except ber.BerError:
            stats.malformed_requests += 1
            return
        dev = entry.devices.get(req.community)
        if dev is None:
            stats.unknown_community += 1
            return
        dev.requests += 1
        if req.tag not in (ber.GET, ber.GETNEXT, ber.GETBULK) or (req.tag == ber.GETBULK and req.version == 0):
            stats.unsupported += 1
            return
        faults = dev.faults
        if faults.active:
            self._faulty(entry, dev, faults, req, addr)
            return
        self._send(entry.sock, self.answer(dev, req), addr)

    def _send(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            self.stats.send_errors += 1
            return
        self.stats.responses += 1

    def _faulty(self, entry: _Port, dev: Device, faults: Faults, req: ber.Request, addr: Any) -> None:
        if faults.drop and (faults.drop >= 1.0 or self._rng.random() < faults.drop):
            self.stats.dropped += 1
            return
        if faults.error_status:
            data = ber.encode_response(req.version, req.community, req.request_id, faults.error_status, 1,
                                       req.varbinds)
        else:
            data = self.answer(dev, req)
        if faults.malformed == "truncated":
            data = data[: max(len(data) - 3, 1)]
        elif faults.malformed == "garbage":
            data = self._rng.randbytes(len(data))
        if faults.delay and self._loop is not None:
            holder: list[asyncio.TimerHandle] = []

            def later() -> None:
                self._delayed.discard(holder[0])
                if entry.sock.fileno() >= 0:
                    self._send(entry.sock, data, addr)

            holder.append(self._loop.call_later(faults.delay, later))
            self._delayed.add(holder[0])
            return
        self._send(entry.sock, data, addr)

    # ---- answers -----------------------------------------------------------------------------------
    def answer(self, dev: Device, req: ber.Request) -> bytes:
        """The RESPONSE to a GET, GETNEXT or GETBULK request, as snmpsim would give it."""
        if req.version == ber.VERSION_1:
            status, index, varbinds = self._answer_v1(dev, req)
        elif req.tag == ber.GET:
            status, index, varbinds = 0, 0, self._get(dev, req.names)
        elif req.tag == ber.GETNEXT:
            status, index, varbinds = 0, 0, b"".join([self._next(dev, n)[0] for n in req.names])
        else:
            status, index, varbinds = self._bulk(dev, req)
        if len(varbinds) > MAX_RESPONSE:
            status, index, varbinds = _TOO_BIG, 0, b""
        return ber.encode_response(req.version, req.community, req.request_id, status, index, varbinds)

    def _get(self, dev: Device, names: list[bytes]) -> bytes:
        rec = dev.recording
        exact, vbs, uptime = rec.exact, rec.vbs, dev.uptime_index
        parts = []
        for name in names:
            i = exact.get(name)
            if i is None:
                parts.append(_varbind(name, _NO_SUCH_INSTANCE))
                continue
            vb = vbs[i]
            if vb is None or i == uptime:
                vb = self._dynamic(dev, i)
                if vb is None:
                    vb = _varbind(name, _NO_SUCH_INSTANCE)
            parts.append(vb)
        return b"".join(parts)

    def _dynamic(self, dev: Device, i: int) -> bytes | None:
        """The varbind of record ``i`` computed now (numeric variation, live sysUpTime); None if broken."""
        rec = dev.recording
        if i == dev.uptime_index:
            ticks = (dev.uptime_offset + int((self._clock() - dev.uptime_base) * 100)) % 2**32
            return _varbind(rec.names[i], ber.encode_integer(ticks, ber.TIMETICKS))
        numeric = rec.numeric.get(i)
        if numeric is None:
            return rec.vbs[i]
        now = self._clock()
        value = numeric.value(now - self._boot, self._wall(), dev.state.setdefault(i, {}), self._rng)
        return None if value is None else _varbind(rec.names[i], ber.encode_value(value))

    def _next(self, dev: Device, name: bytes) -> tuple[bytes, bytes, int]:
        """(varbind, OID content, record index) of a GETNEXT of ``name``; past the end or on a broken
        record: endOfMibView at ``name`` and index -1."""
        rec = dev.recording
        p = rec.next_index(name)
        size = rec.size
        while p < size:
            flags = rec.flags[p]
            if not flags and p != dev.uptime_index:
                return rec.vbs[p], rec.names[p], p  # type: ignore[return-value]
            if flags & _SKIP_NEXT:
                p += 1
                continue
            if flags & _BROKEN:
                break
            vb = self._dynamic(dev, p)
            if vb is None:
                break
            return vb, rec.names[p], p
        return _varbind(name, _END_OF_MIB_VIEW), name, -1

    def _bulk(self, dev: Device, req: ber.Request) -> tuple[int, int, bytes]:
        names = req.names
        n = min(max(req.field1, 0), len(names))
        m = max(req.field2, 0)
        r = len(names) - n
        if r:
            m = min(m, MAX_BULK_VARBINDS // r)
        parts = [self._next(dev, name)[0] for name in names[:n]]
        size = sum(len(p) for p in parts)
        current = names[n:] if r else []
        rec = dev.recording
        if r == 1:  # one column, the common walk: follow the records directly
            p = rec.next_index(current[0])
            name = current[0]
            flags, vbs, succ, uptime, total = rec.flags, rec.vbs, rec.succ, dev.uptime_index, rec.size
            for _ in range(m):
                if p < total and not flags[p] and p != uptime:
                    vb: bytes = vbs[p]  # type: ignore[assignment]
                    name = rec.names[p]
                    p = succ[p]
                else:
                    vb, name, _ = self._next(dev, name)
                    p = rec.next_index(name)
                if size + len(vb) > MAX_RESPONSE:
                    break
                parts.append(vb)
                size += len(vb)
        else:
            for _ in range(m):
                following = []
                for name in current:
                    vb, served, _ = self._next(dev, name)
                    parts.append(vb)
                    size += len(vb)
                    following.append(served)
                current = following
                if size > MAX_RESPONSE:
                    break
        if not parts:
            return _GEN_ERR, 1, req.varbinds
        return 0, 0, b"".join(parts)

    def _answer_v1(self, dev: Device, req: ber.Request) -> tuple[int, int, bytes]:
        """v1 as snmpsim answers it through pysnmp's RFC 2576 translation: noSuchName (index of the
        first failing varbind, varbinds echoed) for absent OIDs, exceptions and Counter64 values; GETNEXT
        steps over Counter64 values."""
        rec = dev.recording
        served: list[tuple[bytes, bool, bool]] = []  # varbind, is an exception, is a Counter64
        if req.tag == ber.GET:
            for name in req.names:
                i = rec.exact.get(name)
                if i is None or rec.flags[i] & (_BROKEN | _EXCEPTION):
                    served.append((b"", True, False))
                    continue
                vb = rec.vbs[i] if not rec.flags[i] and i != dev.uptime_index else self._dynamic(dev, i)
                served.append((vb or b"", vb is None, bool(rec.counter64[i])))
        else:
            for name in req.names:
                while True:
                    vb, name, p = self._next(dev, name)
                    if p >= 0 and rec.counter64[p]:
                        continue  # Counter64 is invisible to v1: ask for the next one
                    served.append((vb, p < 0 or bool(rec.flags[p] & _EXCEPTION), False))
                    break
        status, index = 0, 0
        for idx in range(len(served) - 1, -1, -1):
            _, exception, counter64 = served[idx]
            if counter64:
                status, index = _NO_SUCH_NAME, idx + 1
                break
            if exception:
                status, index = _NO_SUCH_NAME, idx + 1
        if status:
            return status, index, req.varbinds
        return 0, 0, b"".join(vb for vb, _, _ in served)


# ------------------------------------------------------------------------------------------------ CLI


def recordings_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix in (".snmprec", ".snmpwalk") and p.is_file())


def populate(sim: UdpSim, recordings: Iterable[Path], devices: int, port: int, *,
             port_per_device: bool = False) -> list[Device]:
    """``devices`` devices over the recordings in turn: the first ones are named (and answer the
    community) after their recording, like snmpsim; the next rounds get ``-1``, ``-2``... suffixes. All on
    ``port`` (0: a free one), or on ``port``, ``port + 1``... with ``port_per_device`` (0: free ones)."""
    recs = [sim.load(p) for p in recordings]
    if not recs:
        raise ValueError("no recording")
    out = []
    for i in range(devices):
        rec = recs[i % len(recs)]
        rnd = i // len(recs)
        name = rec.name if rnd == 0 else f"{rec.name}-{rnd}"
        if port_per_device:
            out.append(sim.add_device(name, rec, port=port + i if port else 0))
        else:
            out.append(sim.add_device(name, rec, port=port))
            port = out[-1].port
    return out


def load_estate(sim: UdpSim, path: Path) -> list[Device]:
    """Devices from a CSV file of ``name,community,host,port,recording`` lines (``#`` comments allowed)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or not parts[3].isdigit():
            raise ValueError(f"{path}:{n}: expected name,community,host,port,recording")
        name, community, host, port, recording = parts
        out.append(sim.add_device(name, Path(recording), community=community, host=host, port=int(port)))
    return out


def control(sim: UdpSim, line: str) -> dict[str, Any]:
    """One command of the ``--control`` channel: a JSON object naming ``devices`` and one action:
    ``{"faults": {"drop": 1.0, ...}}`` (replaces the faults; ``{}`` clears them), ``{"values": {oid: "tag|value"
    or null}}`` (see :meth:`UdpSim.set_values`), ``{"reset_values": true}``, ``{"restart": true}``, or
    ``{"stats": true}`` (devices may then be omitted). Answers ``{"ok": true, ...}`` or ``{"ok": false,
    "error": ...}``."""
    import json

    try:
        cmd = json.loads(line)
        names = cmd.get("devices", [])
        if cmd.get("stats"):
            return {"ok": True, "stats": vars(sim.stats),
                    "requests": {n: sim.device(n).requests for n in names}}
        for name in names:
            if "faults" in cmd:
                sim.set_faults(name, Faults(**cmd["faults"]))
            elif "values" in cmd:
                sim.set_values(name, cmd["values"])
            elif cmd.get("reset_values"):
                sim.reset_values(name)
            elif cmd.get("restart"):
                sim.restart(name)
            else:
                raise ValueError("no action (faults, values, reset_values, restart or stats)")
        return {"ok": True}
    except (ValueError, KeyError, TypeError) as err:
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callipso_agent.lab.udpsim",
                                     description="Fast SNMP v1/v2c responder simulating many devices")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--recordings", type=Path, help="folder of .snmprec/.snmpwalk files")
    source.add_argument("--estate", type=Path, help="CSV file of name,community,host,port,recording lines")
    parser.add_argument("--devices", type=int, default=0, help="number of devices (default: one per recording)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=16100,
                        help="UDP port, 0 for a free one (the first one with --port-per-device)")
    parser.add_argument("--port-per-device", action="store_true", help="one port per device instead of one port")
    parser.add_argument("--live-uptime", action="store_true", help="sysUpTime grows from the recorded value")
    parser.add_argument("--map", type=Path, help="write 'community,port,recording' lines to this file")
    parser.add_argument("--control", action="store_true",
                        help="read JSON commands on stdin (faults, values, restart, stats), one answer line each; "
                             "stops at the end of stdin")
    args = parser.parse_args(argv)
    from callipso_agent.logs import configure

    configure("info")  # logs on stderr, the status lines on stdout

    async def run() -> None:
        import json

        sim = UdpSim(args.host, live_uptime=args.live_uptime)
        if args.estate:
            devices = load_estate(sim, args.estate)
        else:
            paths = recordings_in(args.recordings)
            devices = populate(sim, paths, args.devices or len(paths), args.port,
                               port_per_device=args.port_per_device)
        if args.map:
            args.map.write_text("".join(f"{d.community.decode()},{d.port},{d.recording.path}\n" for d in devices))
        await sim.start()
        ports = sim.ports
        hosts = sorted({d.host for d in devices})
        where = hosts[0] if len(hosts) == 1 else f"{len(hosts)} addresses"
        print(f"udpsim: {len(devices)} devices from {len(sim._recordings)} recordings on {where} "
              f"port{'s' if len(ports) > 1 else ''} {ports[0]}{'-' + str(ports[-1]) if len(ports) > 1 else ''}",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.control:
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

            async def commands() -> None:
                while line := await reader.readline():
                    if line.strip():
                        print(json.dumps(control(sim, line.decode())), flush=True)
                stop.set()

            task = loop.create_task(commands())
        await stop.wait()
        if args.control:
            task.cancel()
        await sim.stop()
        print(f"udpsim: {sim.stats}", flush=True)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
