"""A small, strict BER codec for SNMP v1/v2c messages (RFC 1157, RFC 3416, RFC 3417).

Covers what a poller and a simulated agent exchange: the message header (version, community), the PDUs
GET, GETNEXT, RESPONSE, SET, GETBULK, INFORM, SNMPv2-TRAP, REPORT and the SNMPv1 Trap, and the value types
INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER, IpAddress, Counter32, Gauge32, TimeTicks, Opaque, Counter64
and the exceptions noSuchObject, noSuchInstance and endOfMibView.

Decoding takes untrusted datagrams: whatever the input, it returns or raises :class:`BerError` (a
:class:`~callipso_agent.errors.ParseError`), nothing else. The structure of an SNMP message is flat (no
recursion), every length is checked against the bytes that are really there, and the size of a message is
capped, so decoding is linear in the size of the datagram. What is refused:

* lengths in the indefinite form, with more than four length octets, or running past their container;
* constructed encodings of primitive types, high tag numbers, unknown tags, trailing bytes;
* sub-identifiers encoded with a leading 0x80, above 2**32-1 or running past the OID; OIDs of more than
  128 sub-identifiers (RFC 2578 section 3.5) or empty;
* NULL and exceptions with content, IpAddress of other than four octets, INTEGER of more than 9 octets,
  Counter32/Gauge32/TimeTicks outside 0..2**32-1 and Counter64 outside 0..2**64-1.

Non-minimal INTEGER encodings and non-minimal long-form lengths are accepted, as RFC 3417 allows the latter
and many agents send the former.

Values decode straight to :class:`~callipso_agent.transports.snmp.SnmpValue` with the ``type`` strings and
Python value kinds the pysnmp transport gives: octets and opaque as ``bytes``, ipaddress as a dotted ``str``,
oid as a dotted ``str`` without a leading dot, numbers as ``int``, null and the exceptions as ``None``.

Speed matters (a walk decodes millions of varbinds a day): OID strings come from a table of sub-identifier
strings when every sub-identifier is below 128, which is nearly always; OID encodings are memoised; lengths
are read inline in the varbind loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from callipso_agent.errors import ParseError
from callipso_agent.transports.snmp import SnmpValue

# ------------------------------------------------------------------------------------------------ tags

INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IPADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

GET = 0xA0
GETNEXT = 0xA1
RESPONSE = 0xA2
SET = 0xA3
TRAP_V1 = 0xA4
GETBULK = 0xA5
INFORM = 0xA6
TRAP_V2 = 0xA7
REPORT = 0xA8

PDU_NAMES = {
    GET: "get", GETNEXT: "getnext", RESPONSE: "response", SET: "set", TRAP_V1: "trap",
    GETBULK: "getbulk", INFORM: "inform", TRAP_V2: "trapv2", REPORT: "report",
}

VERSION_1 = 0
VERSION_2C = 1

MAX_MESSAGE_SIZE = 65535
MAX_SUBIDS = 128
MAX_SUBID = 0xFFFFFFFF

#: RFC 3416 error-status names (pysnmp prints the same names)
ERROR_STATUS_NAMES = (
    "noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
    "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue", "resourceUnavailable",
    "commitFailed", "undoFailed", "authorizationError", "notWritable", "inconsistentName",
)


def error_status_name(status: int) -> str:
    return ERROR_STATUS_NAMES[status] if 0 <= status < len(ERROR_STATUS_NAMES) else str(status)


class BerError(ParseError):
    """A datagram that is not a well-formed SNMP v1/v2c message. The only error decoding raises."""

    kind = "parse_error"


# ------------------------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Pdu:
    """Any PDU but the SNMPv1 Trap. For GETBULK, ``error_status`` and ``error_index`` hold non-repeaters and
    max-repetitions (also readable under those names). ``names`` holds the BER content of each varbind's
    OID when the PDU was decoded (see :func:`oid_key`)."""

    tag: int
    request_id: int
    error_status: int = 0
    error_index: int = 0
    varbinds: list[tuple[str, SnmpValue]] = field(default_factory=list)
    names: list[bytes] = field(default_factory=list, compare=False, repr=False)

    @property
    def non_repeaters(self) -> int:
        return self.error_status

    @property
    def max_repetitions(self) -> int:
        return self.error_index


@dataclass(slots=True)
class TrapV1Pdu:
    enterprise: str
    agent_address: str
    generic_trap: int
    specific_trap: int
    time_stamp: int
    varbinds: list[tuple[str, SnmpValue]] = field(default_factory=list)
    names: list[bytes] = field(default_factory=list, compare=False, repr=False)
    tag: int = TRAP_V1


@dataclass(slots=True)
class Message:
    version: int
    community: bytes
    pdu: Pdu | TrapV1Pdu


# ------------------------------------------------------------------------------------------- decoding

_SUBID_TEXT = tuple(str(i) for i in range(128))
_FIRST_TEXT = tuple(f"{0 if b < 40 else 1 if b < 80 else 2}.{b if b < 40 else b - 40 if b < 80 else b - 80}"
                    for b in range(128))

# SnmpValue is a frozen dataclass: its __init__ goes through object.__setattr__ for each field, which costs
# more than the rest of a varbind's decoding. The decoders fill the two slots directly instead.
_new = object.__new__
_set_type = SnmpValue.__dict__["type"].__set__
_set_value = SnmpValue.__dict__["value"].__set__


def _value(kind: str, value: int | str | bytes | None) -> SnmpValue:
    v: SnmpValue = _new(SnmpValue)
    _set_type(v, kind)
    _set_value(v, value)
    return v


# shared values without content (SnmpValue is immutable)
_NULL = SnmpValue("null", None)
_NO_SUCH_OBJECT = SnmpValue("nosuchobject", None)
_NO_SUCH_INSTANCE = SnmpValue("nosuchinstance", None)
_END_OF_MIB_VIEW = SnmpValue("endofmibview", None)


def _subids(c: bytes) -> list[int]:
    """The sub-identifiers of an OID's BER content (first two arcs split), checked."""
    if not c:
        raise BerError("empty OBJECT IDENTIFIER")
    out: list[int] = []
    v = 0
    n = 0
    for b in c:
        if n == 0 and b == 0x80:
            raise BerError("OBJECT IDENTIFIER sub-identifier with a leading 0x80 octet")
        v = (v << 7) | (b & 0x7F)
        n += 1
        if b < 0x80:
            out.append(v)
            v = 0
            n = 0
        elif n >= 5:
            raise BerError("OBJECT IDENTIFIER sub-identifier too large")
    if n:
        raise BerError("truncated OBJECT IDENTIFIER sub-identifier")
    first = out[0]
    if first < 40:
        arcs = [0, first]
    elif first < 80:
        arcs = [1, first - 40]
    else:
        arcs = [2, first - 80]
    arcs.extend(out[1:])
    if len(arcs) > MAX_SUBIDS:
        raise BerError(f"OBJECT IDENTIFIER of more than {MAX_SUBIDS} sub-identifiers")
    for a in arcs:
        if a > MAX_SUBID:
            raise BerError("OBJECT IDENTIFIER sub-identifier above 2**32-1")
    return arcs


_ASCII = bytes(range(128))


@lru_cache(maxsize=8192)
def _prefix(prefix: bytes) -> tuple[str, bytes, int]:
    """(text, order key, sub-identifier count) of an OID content ending with a multi-octet sub-identifier.
    Consecutive OIDs of a walk share it (``1.3.6.1.4.1.705`` ...), hence the memo."""
    arcs = _subids(prefix)
    key = bytearray()
    for a in arcs[2:]:
        if a < 0x80:
            key.append(a)
        else:
            n = (a.bit_length() + 7) // 8
            key.append(0x80 | n)
            key += a.to_bytes(n, "big")
    first = arcs[0] * 40 + arcs[1]
    if first < 0x80:
        head = bytes((first,))
    else:
        n = (first.bit_length() + 7) // 8
        head = bytes((0x80 | n,)) + first.to_bytes(n, "big")
    return ".".join(map(str, arcs)), head + bytes(key), len(arcs)


@lru_cache(maxsize=16384)
def oid_text(c: bytes) -> str:
    """Dotted text (no leading dot) of an OID's BER content. Memoised: a poller decodes the same OIDs at
    every poll, and devices of one model answer the same OIDs."""
    if c.isascii():  # every sub-identifier < 128: one octet each
        if not c:
            raise BerError("empty OBJECT IDENTIFIER")
        if len(c) >= MAX_SUBIDS:
            raise BerError(f"OBJECT IDENTIFIER of more than {MAX_SUBIDS} sub-identifiers")
        if len(c) == 1:
            return _FIRST_TEXT[c[0]]
        return _FIRST_TEXT[c[0]] + "." + ".".join(map(_SUBID_TEXT.__getitem__, c[1:]))
    cut = len(c.rstrip(_ASCII)) + 1  # the end of the last multi-octet sub-identifier
    text, _, count = _prefix(c[:cut])
    if cut >= len(c):
        return text
    if count + len(c) - cut > MAX_SUBIDS:
        raise BerError(f"OBJECT IDENTIFIER of more than {MAX_SUBIDS} sub-identifiers")
    return text + "." + ".".join(map(_SUBID_TEXT.__getitem__, c[cut:]))


def oid_tuple_of(c: bytes) -> tuple[int, ...]:
    """Sub-identifiers of an OID's BER content."""
    return tuple(_subids(c))


@lru_cache(maxsize=16384)
def oid_key(c: bytes) -> bytes:
    """An order-preserving key of an OID's BER content: comparing keys compares the OIDs sub-identifier by
    sub-identifier, and ``key(a).startswith(key(b))`` when ``b`` is a prefix of ``a`` (``b`` having at least
    two arcs). Each sub-identifier below 128 is its own octet (so the key of an OID whose sub-identifiers are
    all below 128 is its content); a larger one is an octet 0x80 + n followed by its n big-endian octets."""
    if c.isascii():
        return c
    cut = len(c.rstrip(_ASCII)) + 1
    return _prefix(c[:cut])[1] + c[cut:]


def _long_length(data: bytes, pos: int, first: int) -> tuple[int, int]:
    n = first & 0x7F
    if n == 0:
        raise BerError("indefinite length form")
    if n > 4:
        raise BerError("length of more than four octets")
    raw = data[pos : pos + n]
    if len(raw) != n:
        raise BerError("truncated length")
    return int.from_bytes(raw, "big"), pos + n


def _tlv(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Check the tag at ``pos`` and return (content start, content end) within ``end``."""
    if pos + 2 > end:
        raise BerError(f"truncated {what}")
    if data[pos] != tag:
        raise BerError(f"{what}: expected tag 0x{tag:02x}, got 0x{data[pos]:02x}")
    ln = data[pos + 1]
    pos += 2
    if ln & 0x80:
        ln, pos = _long_length(data, pos, ln)
    stop = pos + ln
    if stop > end:
        raise BerError(f"{what} runs past its container")
    return pos, stop


def _integer(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    start, stop = _tlv(data, pos, end, INTEGER, what)
    n = stop - start
    if n == 0 or n > 5:
        raise BerError(f"{what}: INTEGER of {n} octets")
    value = int.from_bytes(data[start:stop], "big", signed=True)
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise BerError(f"{what}: {value} is not an Integer32")
    return value, stop


def _unsigned(c: bytes, limit: int, octets: int, what: str) -> int:
    n = len(c)
    if n == 0 or n > octets:
        raise BerError(f"{what} of {n} octets")
    value = int.from_bytes(c, "big", signed=True)
    if value < 0 or value > limit:
        raise BerError(f"{what} {value} out of range")
    return value


# values of one-octet contents, shared (SnmpValue is immutable and building one costs more than a lookup)
_ONE_OCTET = {
    kind: tuple(SnmpValue(kind, b - 256 if b >= 0x80 else b) for b in range(256))
    for kind in ("integer", "counter", "gauge", "timeticks", "counter64")
}
_SMALL_INTEGER = _ONE_OCTET["integer"]


def _v_integer(c: bytes) -> SnmpValue:
    n = len(c)
    if n == 1:
        return _SMALL_INTEGER[c[0]]
    if n == 0 or n > 9:
        raise BerError(f"INTEGER of {n} octets")
    v: SnmpValue = _new(SnmpValue)
    _set_type(v, "integer")
    _set_value(v, int.from_bytes(c, "big", signed=True))
    return v


def _v_octets(c: bytes) -> SnmpValue:
    v: SnmpValue = _new(SnmpValue)
    _set_type(v, "octets")
    _set_value(v, c)
    return v


def _v_null(c: bytes) -> SnmpValue:
    if c:
        raise BerError("NULL with content")
    return _NULL


def _v_oid(c: bytes) -> SnmpValue:
    return _value("oid", oid_text(c))


def _v_ipaddress(c: bytes) -> SnmpValue:
    if len(c) != 4:
        raise BerError(f"IpAddress of {len(c)} octets")
    return _value("ipaddress", f"{c[0]}.{c[1]}.{c[2]}.{c[3]}")


def _unsigned_decoder(kind: str, limit: int, octets: int, what: str):  # type: ignore[no-untyped-def]
    small = _ONE_OCTET[kind]

    def decode(c: bytes) -> SnmpValue:
        if len(c) == 1 and c[0] < 0x80:
            return small[c[0]]
        v: SnmpValue = _new(SnmpValue)
        _set_type(v, kind)
        _set_value(v, _unsigned(c, limit, octets, what))
        return v

    return decode


_v_counter = _unsigned_decoder("counter", 0xFFFFFFFF, 5, "Counter32")
_v_gauge = _unsigned_decoder("gauge", 0xFFFFFFFF, 5, "Gauge32")
_v_timeticks = _unsigned_decoder("timeticks", 0xFFFFFFFF, 5, "TimeTicks")


def _v_opaque(c: bytes) -> SnmpValue:
    return _value("opaque", c)


_v_counter64 = _unsigned_decoder("counter64", 0xFFFFFFFFFFFFFFFF, 9, "Counter64")


def _exception(value: SnmpValue, what: str):  # type: ignore[no-untyped-def]
    def decode(c: bytes) -> SnmpValue:
        if c:
            raise BerError(f"{what} with content")
        return value

    return decode


_VALUE_DECODERS = {
    INTEGER: _v_integer,
    OCTET_STRING: _v_octets,
    NULL: _v_null,
    OBJECT_IDENTIFIER: _v_oid,
    IPADDRESS: _v_ipaddress,
    COUNTER32: _v_counter,
    GAUGE32: _v_gauge,
    TIMETICKS: _v_timeticks,
    OPAQUE: _v_opaque,
    COUNTER64: _v_counter64,
    NO_SUCH_OBJECT: _exception(_NO_SUCH_OBJECT, "noSuchObject"),
    NO_SUCH_INSTANCE: _exception(_NO_SUCH_INSTANCE, "noSuchInstance"),
    END_OF_MIB_VIEW: _exception(_END_OF_MIB_VIEW, "endOfMibView"),
}


def _varbinds(data: bytes, pos: int, end: int) -> tuple[list[tuple[str, SnmpValue]], list[bytes]]:
    """Decode a VarBindList whose content is ``data[pos:end]``."""
    out: list[tuple[str, SnmpValue]] = []
    names: list[bytes] = []
    decoders = _VALUE_DECODERS
    append = out.append
    append_name = names.append
    text_of = oid_text
    while pos < end:
        if data[pos] != SEQUENCE:
            raise BerError("varbind is not a SEQUENCE")
        ln = data[pos + 1]
        pos += 2
        if ln & 0x80:
            ln, pos = _long_length(data, pos, ln)
        vb_end = pos + ln
        if vb_end > end:
            raise BerError("varbind runs past the varbind list")
        if data[pos] != OBJECT_IDENTIFIER:
            raise BerError("varbind name is not an OBJECT IDENTIFIER")
        ln = data[pos + 1]
        pos += 2
        if ln & 0x80:
            ln, pos = _long_length(data, pos, ln)
        stop = pos + ln
        if stop > vb_end:
            raise BerError("varbind name runs past the varbind")
        name = data[pos:stop]
        tag = data[stop]
        ln = data[stop + 1]
        pos = stop + 2
        if ln & 0x80:
            ln, pos = _long_length(data, pos, ln)
        stop = pos + ln
        if stop != vb_end:
            raise BerError("varbind value does not end with its varbind")
        decoder = decoders.get(tag)
        if decoder is None:
            raise BerError(f"unknown value tag 0x{tag:02x}")
        append((text_of(name), decoder(data[pos:stop])))
        append_name(name)
        pos = stop
    return out, names


def _header(data: bytes) -> tuple[int, bytes, int, int, int]:
    """(version, community, pdu tag, pdu content start, pdu content end) of a whole message."""
    size = len(data)
    if size > MAX_MESSAGE_SIZE:
        raise BerError(f"message of {size} octets")
    pos, end = _tlv(data, 0, size, SEQUENCE, "message")
    if end != size:
        raise BerError("bytes after the end of the message")
    version, pos = _integer(data, pos, end, "version")
    if version not in (VERSION_1, VERSION_2C):
        raise BerError(f"unsupported SNMP version {version}")
    start, stop = _tlv(data, pos, end, OCTET_STRING, "community")
    community = data[start:stop]
    pos = stop
    if pos + 2 > end:
        raise BerError("truncated PDU")
    tag = data[pos]
    if tag not in PDU_NAMES:
        raise BerError(f"unknown PDU tag 0x{tag:02x}")
    start, stop = _tlv(data, pos, end, tag, "PDU")
    if stop != end:
        raise BerError("bytes after the end of the PDU")
    return version, community, tag, start, stop


def _decode_message(data: bytes) -> Message:
    version, community, tag, pos, end = _header(data)
    if tag == TRAP_V1:
        start, stop = _tlv(data, pos, end, OBJECT_IDENTIFIER, "enterprise")
        enterprise = oid_text(data[start:stop])
        start, stop = _tlv(data, stop, end, IPADDRESS, "agent-addr")
        address = _v_ipaddress(data[start:stop]).value
        generic, pos = _integer(data, stop, end, "generic-trap")
        specific, pos = _integer(data, pos, end, "specific-trap")
        start, stop = _tlv(data, pos, end, TIMETICKS, "time-stamp")
        stamp = _unsigned(data[start:stop], 0xFFFFFFFF, 5, "TimeTicks")
        start, stop = _tlv(data, stop, end, SEQUENCE, "varbind list")
        if stop != end:
            raise BerError("bytes after the varbind list")
        varbinds, names = _varbinds(data, start, stop)
        assert isinstance(address, str)
        return Message(version, community,
                       TrapV1Pdu(enterprise, address, generic, specific, stamp, varbinds, names))
    request_id, pos = _integer(data, pos, end, "request-id")
    status, pos = _integer(data, pos, end, "error-status")
    index, pos = _integer(data, pos, end, "error-index")
    start, stop = _tlv(data, pos, end, SEQUENCE, "varbind list")
    if stop != end:
        raise BerError("bytes after the varbind list")
    varbinds, names = _varbinds(data, start, stop)
    return Message(version, community, Pdu(tag, request_id, status, index, varbinds, names))


def decode_message(data: bytes) -> Message:
    """Decode one SNMP v1/v2c message. Raises :class:`BerError` and nothing else."""
    try:
        return _decode_message(data)
    except BerError:
        raise
    except Exception as err:  # indexing past the end, a non-bytes input...
        raise BerError(f"malformed SNMP message ({type(err).__name__})") from None


@dataclass(slots=True)
class Request:
    """A request as a responder needs it: OIDs as BER content, values skipped. ``varbinds`` is the raw
    content of the varbind list (to echo it in an error response)."""

    version: int
    community: bytes
    tag: int
    request_id: int
    field1: int  # error-status, or non-repeaters for GETBULK
    field2: int  # error-index, or max-repetitions for GETBULK
    names: list[bytes]
    varbinds: bytes


def decode_request(data: bytes) -> Request:
    """Decode a message's header and varbind names only. Raises :class:`BerError` and nothing else."""
    try:
        version, community, tag, pos, end = _header(data)
        if tag == TRAP_V1:
            raise BerError("SNMPv1 Trap is not a request")
        request_id, pos = _integer(data, pos, end, "request-id")
        f1, pos = _integer(data, pos, end, "error-status")
        f2, pos = _integer(data, pos, end, "error-index")
        start, stop = _tlv(data, pos, end, SEQUENCE, "varbind list")
        if stop != end:
            raise BerError("bytes after the varbind list")
        names: list[bytes] = []
        pos = start
        while pos < stop:
            vstart, vstop = _tlv(data, pos, stop, SEQUENCE, "varbind")
            nstart, nstop = _tlv(data, vstart, vstop, OBJECT_IDENTIFIER, "varbind name")
            if nstop + 2 > vstop:
                raise BerError("varbind without a value")
            if data[nstop] & 0x20 or data[nstop] & 0x1F == 0x1F:
                raise BerError("constructed or high-tag varbind value")
            _, value_stop = _tlv(data, nstop, vstop, data[nstop], "varbind value")
            if value_stop != vstop:
                raise BerError("varbind value does not end with its varbind")
            name = data[nstart:nstop]
            if name.isascii():
                if not name or len(name) >= MAX_SUBIDS:
                    raise BerError("empty or too long OBJECT IDENTIFIER")
            else:
                _subids(name)
            names.append(name)
            pos = vstop
        return Request(version, community, tag, request_id, f1, f2, names, data[start:stop])
    except BerError:
        raise
    except Exception as err:
        raise BerError(f"malformed SNMP message ({type(err).__name__})") from None


def peek_request_id(data: bytes) -> int | None:
    """The request-id of a message that may be truncated or malformed further on, or None. Lenient on the
    outer lengths on purpose: used only to tell which request a broken answer was meant for."""
    try:
        pos = 0
        if data[pos] != SEQUENCE:
            return None
        ln = data[pos + 1]
        pos += 2
        if ln & 0x80:
            _, pos = _long_length(data, pos, ln)
        for tag in (INTEGER, OCTET_STRING):
            if data[pos] != tag:
                return None
            ln = data[pos + 1]
            pos += 2
            if ln & 0x80:
                ln, pos = _long_length(data, pos, ln)
            pos += ln
        if data[pos] not in PDU_NAMES or data[pos] == TRAP_V1:
            return None
        ln = data[pos + 1]
        pos += 2
        if ln & 0x80:
            _, pos = _long_length(data, pos, ln)
        if data[pos] != INTEGER:
            return None
        ln = data[pos + 1]
        raw = data[pos + 2 : pos + 2 + ln]
        if not 1 <= ln <= 5 or len(raw) != ln:
            return None
        return int.from_bytes(raw, "big", signed=True)
    except Exception:
        return None


# ------------------------------------------------------------------------------------------- encoding

_SHORT_LENGTHS = tuple(bytes((i,)) for i in range(128))


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return _SHORT_LENGTHS[n]
    if n < 0x100:
        return b"\x81" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\x82" + n.to_bytes(2, "big")
    if n < 0x1000000:
        return b"\x83" + n.to_bytes(3, "big")
    return b"\x84" + n.to_bytes(4, "big")


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(content)) + content


def _int_content(value: int) -> bytes:
    return value.to_bytes(((value if value >= 0 else ~value).bit_length() // 8) + 1, "big", signed=True)


def encode_integer(value: int, tag: int = INTEGER) -> bytes:
    return tlv(tag, _int_content(value))


def _split_oid(oid: str | tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(oid, str):
        try:
            arcs = tuple(int(p) for p in oid.strip().strip(".").split("."))
        except ValueError:
            raise ValueError(f"invalid OID {oid!r}") from None
    else:
        arcs = tuple(oid)
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or len(arcs) > MAX_SUBIDS:
        raise ValueError(f"invalid OID {oid!r}")
    if any(a < 0 or a > MAX_SUBID for a in arcs):
        raise ValueError(f"invalid OID {oid!r}: sub-identifier out of range")
    return arcs


def _subid_bytes(v: int, out: bytearray) -> None:
    if v < 0x80:
        out.append(v)
        return
    chunk = []
    while v:
        chunk.append(v & 0x7F)
        v >>= 7
    chunk.reverse()
    for i, c in enumerate(chunk):
        out.append(c | 0x80 if i < len(chunk) - 1 else c)


@lru_cache(maxsize=65536)
def oid_content(oid: str | tuple[int, ...]) -> bytes:
    """BER content of an OID given as dotted text (a leading dot is allowed) or a tuple."""
    arcs = _split_oid(oid)
    out = bytearray()
    _subid_bytes(arcs[0] * 40 + arcs[1], out)
    for a in arcs[2:]:
        _subid_bytes(a, out)
    return bytes(out)


@lru_cache(maxsize=65536)
def encode_oid(oid: str | tuple[int, ...]) -> bytes:
    """Whole OBJECT IDENTIFIER TLV (memoised)."""
    return tlv(OBJECT_IDENTIFIER, oid_content(oid))


_UNSIGNED = {"counter": (COUNTER32, 0xFFFFFFFF), "gauge": (GAUGE32, 0xFFFFFFFF),
             "timeticks": (TIMETICKS, 0xFFFFFFFF), "counter64": (COUNTER64, 0xFFFFFFFFFFFFFFFF)}
_EMPTY = {"null": b"\x05\x00", "nosuchobject": b"\x80\x00", "nosuchinstance": b"\x81\x00",
          "endofmibview": b"\x82\x00"}


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(f"not bytes: {value!r}")


def encode_value(value: SnmpValue) -> bytes:
    """TLV of a value (raises ValueError on a value its type cannot hold)."""
    kind, v = value.type, value.value
    if kind in _EMPTY:
        return _EMPTY[kind]
    if kind == "integer":
        if not isinstance(v, int) or not -(2**63) <= v < 2**63:
            raise ValueError(f"invalid integer {v!r}")
        return encode_integer(v)
    if kind in _UNSIGNED:
        tag, limit = _UNSIGNED[kind]
        if not isinstance(v, int) or not 0 <= v <= limit:
            raise ValueError(f"invalid {kind} {v!r}")
        return encode_integer(v, tag)
    if kind == "octets":
        return tlv(OCTET_STRING, _as_bytes(v))
    if kind == "opaque":
        return tlv(OPAQUE, _as_bytes(v))
    if kind == "oid":
        if not isinstance(v, str):
            raise ValueError(f"invalid oid {v!r}")
        return encode_oid(v)
    if kind == "ipaddress":
        if isinstance(v, bytes) and len(v) == 4:
            return tlv(IPADDRESS, v)
        try:
            octets = bytes(int(p) for p in str(v).split("."))
        except ValueError:
            raise ValueError(f"invalid ipaddress {v!r}") from None
        if len(octets) != 4:
            raise ValueError(f"invalid ipaddress {v!r}")
        return tlv(IPADDRESS, octets)
    raise ValueError(f"unknown SNMP value type {kind!r}")


def encode_varbind(oid: str | tuple[int, ...], value: SnmpValue) -> bytes:
    return tlv(SEQUENCE, encode_oid(oid) + encode_value(value))


_NULL_VALUE = b"\x05\x00"


@lru_cache(maxsize=65536)
def _null_varbind(oid: str) -> bytes:
    return tlv(SEQUENCE, encode_oid(oid) + _NULL_VALUE)


def _message(version: int, community: bytes, pdu: bytes) -> bytes:
    return tlv(SEQUENCE, encode_integer(version) + tlv(OCTET_STRING, community) + pdu)


def encode_request(version: int, community: bytes, tag: int, request_id: int, oids: list[str] | tuple[str, ...],
                   non_repeaters: int = 0, max_repetitions: int = 0) -> bytes:
    """A GET / GETNEXT / GETBULK (NULL values). For other tags the two integers are error-status/index."""
    vbl = b"".join([_null_varbind(o) for o in oids])
    body = (encode_integer(request_id) + encode_integer(non_repeaters) + encode_integer(max_repetitions)
            + tlv(SEQUENCE, vbl))
    return _message(version, community, tlv(tag, body))


def encode_response(version: int, community: bytes, request_id: int, error_status: int, error_index: int,
                    varbinds: bytes, tag: int = RESPONSE) -> bytes:
    """A RESPONSE around already encoded varbinds (the concatenated varbind TLVs)."""
    body = (encode_integer(request_id) + encode_integer(error_status) + encode_integer(error_index)
            + tlv(SEQUENCE, varbinds))
    return _message(version, community, tlv(tag, body))


def encode_message(message: Message) -> bytes:
    """Any message this module decodes."""
    pdu = message.pdu
    vbl = b"".join(encode_varbind(o, v) for o, v in pdu.varbinds)
    if isinstance(pdu, TrapV1Pdu):
        body = (encode_oid(pdu.enterprise) + encode_value(SnmpValue("ipaddress", pdu.agent_address))
                + encode_integer(pdu.generic_trap) + encode_integer(pdu.specific_trap)
                + encode_integer(pdu.time_stamp, TIMETICKS) + tlv(SEQUENCE, vbl))
        return _message(message.version, message.community, tlv(TRAP_V1, body))
    body = (encode_integer(pdu.request_id) + encode_integer(pdu.error_status) + encode_integer(pdu.error_index)
            + tlv(SEQUENCE, vbl))
    return _message(message.version, message.community, tlv(pdu.tag, body))
