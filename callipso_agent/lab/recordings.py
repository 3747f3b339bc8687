"""Device recordings (``.snmprec``, and net-snmp ``.snmpwalk`` output) read the way snmpsim reads them.

A ``.snmprec`` line is ``oid|tag|value``: the tag is an ASN.1 type number (2 INTEGER, 4 OCTET STRING, 5 NULL,
6 OID, 64 IpAddress, 65 Counter32, 66 Gauge32, 67 TimeTicks, 68 Opaque, 70 Counter64, 128-130 the
exceptions), with ``x`` for a hexadecimal value or ``e`` for an escaped one (``4x|414243``), and may name a
variation module (``2:numeric|scale=5,min=100,max=300``). Blank lines and ``#`` comments are skipped; the
line is stripped, as snmpsim does (a trailing space of a string value is lost).

Values are evaluated by snmpsim's own grammar, so a recording means the same here as under snmpsim, broken
values included: a value snmpsim cannot evaluate is kept as a *broken* record, which snmpsim serves as
noSuchInstance to a GET and as endOfMibView to a GETNEXT landing on it.

Variation modules: ``numeric`` (a value moving with time: ``function``, ``rate``, ``scale``, ``offset``,
``initial``, ``min``, ``max``, ``wrap``, ``deviation``, ``cumulative``, ``atime``, as snmpsim's module) is
supported; records using any other module (delay, error, notification, writecache, sql, redis,
subprocess, multiplex...) are skipped and counted in :attr:`Records.skipped`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callipso_agent.transports import ber
from callipso_agent.transports.snmp import SnmpValue, decode_value

NUMERIC_KINDS = {"2": "integer", "65": "counter", "66": "gauge", "67": "timeticks", "70": "counter64"}
_LIMITS = {"integer": (-(2**31), 2**31 - 1), "counter": (0, 2**32 - 1), "gauge": (0, 2**32 - 1),
           "timeticks": (0, 2**32 - 1), "counter64": (0, 2**64 - 1)}


class RecordingError(ValueError):
    """A recording snmpsim would refuse as a whole (a line that is not ``oid|tag|value``)."""


@dataclass(frozen=True)
class Numeric:
    """snmpsim's ``numeric`` variation: a number computed from the time at each request."""

    kind: str  # integer, counter, gauge, timeticks, counter64
    settings: dict[str, Any]

    @classmethod
    def parse(cls, tag: str, text: str) -> Numeric:
        if tag not in NUMERIC_KINDS:
            raise ValueError(f"numeric variation on tag {tag}")
        settings: dict[str, Any] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, _, raw = item.partition("=")
            key = key.strip()
            settings[key] = raw.strip() if key == "function" else float(raw)
        settings.setdefault("min", 0)
        settings.setdefault("max", 2**64 - 1 if tag == "70" else 2**32 - 1)
        settings.setdefault("rate", 1)
        return cls(NUMERIC_KINDS[tag], settings)

    def value(self, elapsed: float, now: float, state: dict[str, Any], rng: random.Random) -> SnmpValue | None:
        """The value ``elapsed`` seconds after the simulator started (``now``: wall clock, for ``atime``;
        ``state``: per-device memory for ``cumulative``). None when it falls outside its type."""
        s = self.settings
        boot = now - elapsed
        t = now if "atime" in s else elapsed
        old_value, old_time = s.get("initial", s["min"]), boot
        if "cumulative" in s:
            old_value, old_time = state.setdefault("value", (old_value, boot))
        fn: Callable[..., float] = lambda x: x  # noqa: E731 - snmpsim's default function
        args: list[float] = []
        if "function" in s:
            name, *params = str(s["function"]).split("%")
            fn = getattr(math, name)
            args = [t * s["rate"] if p == "<time>" else float(p) for p in params]
        v = fn(*(args or [t * s["rate"]]))
        if "scale" in s:
            v *= s["scale"]
        if "offset" in s:
            v += s["offset"] * (now - old_time) * s["rate"] if "cumulative" in s else s["offset"]
        deviation = s.get("deviation")
        if deviation:
            v += rng.randrange(-int(deviation), int(deviation))
        if "cumulative" in s:
            v = max(v, 0)
        v += old_value
        if v < s["min"]:
            v = s["min"]
        elif v > s["max"]:
            if "wrap" in s:
                v %= s["max"]
                v += s["min"]
            else:
                v = s["max"]
        if "cumulative" in s:
            state["value"] = (v, now)
        number = int(v)
        low, high = _LIMITS[self.kind]
        if not low <= number <= high:
            return None
        return SnmpValue(self.kind, number)


Value = SnmpValue | Numeric | None  # None: a value snmpsim cannot evaluate (a broken record)


@dataclass(frozen=True)
class Record:
    line: int
    oid: tuple[int, ...]
    value: Value
    offset: int = -1  # of its line in the file (-1: not from the file)


@dataclass
class Records:
    """The records of one file, in file order, with what is needed to search the file as snmpsim does."""

    path: Path
    records: list[Record] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # variation module -> records skipped
    text: bytes = b""  # the file
    lines: dict[int, tuple[int, ...]] = field(default_factory=dict)  # offset of every record line -> its OID

    def search(self, oid: tuple[int, ...]) -> int:
        """The offset snmpsim's GETNEXT lands on for an OID absent from the file: its binary search over the
        file's bytes, each probe moved back to the start of its line and on to the next record line. On a
        sorted file this is the first line above ``oid``; on an unsorted one, wherever the search ends."""
        text = self.text
        size = len(text)
        lo = mid = 0
        hi = size
        previous = -1
        while lo < hi:
            mid = text.rfind(b"\n", 0, (lo + hi) // 2) + 1
            if mid == previous:
                break
            if mid >= size:
                return size
            line_start = self._next_line(mid)
            if line_start >= size:
                return hi
            found = self.lines[line_start]
            if found < oid:
                lo = text.find(b"\n", line_start) + 1 or size
            elif found > oid:
                hi = mid
            else:
                return mid
            previous = mid
        return lo if lo == mid else hi

    def _next_line(self, offset: int) -> int:
        """The start of the first record line at or after ``offset`` (a line start)."""
        text, size = self.text, len(self.text)
        while offset < size and offset not in self.lines:
            offset = text.find(b"\n", offset) + 1 or size
        return offset


def _oid(text: str, path: Path, line: int) -> tuple[int, ...]:
    try:
        arcs = tuple(int(p) for p in text.strip().strip(".").split("."))
        ber.oid_content(arcs)
    except ValueError:
        raise RecordingError(f"{path}:{line}: invalid OID {text!r}") from None
    return arcs


def _lines(path: Path, out: Records) -> Iterator[tuple[int, int, bytes]]:
    """(line number, offset, line) of the record lines; keeps the file's text in ``out``."""
    out.text = path.read_bytes()
    offset = 0
    for n, raw in enumerate(out.text.split(b"\n"), 1):
        stripped = raw.strip()
        if stripped and not stripped.startswith(b"#"):
            yield n, offset, raw + b"\n"
        offset += len(raw) + 1


def _encodable(value: SnmpValue) -> SnmpValue | None:
    try:
        ber.encode_value(value)
    except ValueError:
        return None  # e.g. an empty OID: snmpsim fails to encode its answer
    return value


class UnsupportedVariation(ValueError):
    """A record using a variation module other than ``numeric``."""


def snmprec_value(oid: str, tag: str, text: str) -> Value:
    """The value of the ``tag|text`` part of a ``.snmprec`` line, as snmpsim evaluates it (None: broken).
    Raises UnsupportedVariation for a variation module other than ``numeric``."""
    from snmpsim.record.snmprec import SnmprecRecord

    if ":" in tag:
        tag, _, module = tag.partition(":")
        if module != "numeric":
            raise UnsupportedVariation(module)
        try:
            return Numeric.parse(tag, text)
        except (ValueError, AttributeError):
            return None
    try:
        _, _, pyasn1_value = SnmprecRecord().evaluate_value(oid, tag, text)
        return _encodable(decode_value(pyasn1_value))
    except Exception:
        return None  # snmpsim: "data error", served as noSuchInstance / endOfMibView


def _snmprec(path: Path) -> Records:
    out = Records(path)
    for n, offset, raw in _lines(path, out):
        parts = raw.decode("iso-8859-1").strip().split("|", 2)
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise RecordingError(f"{path}:{n}: not an oid|tag|value record")
        text_oid, tag, text = parts
        oid = _oid(text_oid, path, n)
        out.lines[offset] = oid
        try:
            value = snmprec_value(text_oid, tag, text)
        except UnsupportedVariation as skip:
            out.skipped[str(skip)] = out.skipped.get(str(skip), 0) + 1
            continue
        out.records.append(Record(n, oid, value, offset))
    return out


def _snmpwalk(path: Path) -> Records:
    from snmpsim.record.walk import WalkRecord

    evaluator = WalkRecord()
    out = Records(path)
    for n, offset, raw in _lines(path, out):
        try:
            text_oid, tag, text = evaluator.grammar.parse(raw)
        except Exception:
            raise RecordingError(f"{path}:{n}: not a net-snmp walk line") from None
        oid = _oid(text_oid, path, n)
        out.lines[offset] = oid
        value: Value
        try:
            _, _, pyasn1_value = evaluator.evaluate_value(text_oid, tag, text)
            value = _encodable(decode_value(pyasn1_value))
        except Exception:
            value = None
        out.records.append(Record(n, oid, value, offset))
    return out


def load_records(path: Path) -> Records:
    """Read a ``.snmprec`` or ``.snmpwalk`` file. Raises RecordingError (file:line) or OSError."""
    if path.suffix == ".snmprec":
        return _snmprec(path)
    if path.suffix == ".snmpwalk":
        return _snmpwalk(path)
    raise RecordingError(f"{path}: unknown recording format (.snmprec or .snmpwalk)")
