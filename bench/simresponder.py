"""A small pre-encoding SNMPv2c responder for the bench estate: every device on its own loopback address.

Stand-in until ``callipso_agent.lab.udpsim`` is available (``bench.run`` prefers it): it answers GET,
GETNEXT and GETBULK from each device's recording, with every varbind BER-encoded once at start (devices
sharing a recording share its table), one UDP socket per device bound to the device's address, and plays the
lab's faults (``lab.yaml``) on chosen devices. It does only what the bench needs: v2c, one community, no SET.

Run as ``python -m bench.simresponder ESTATE_DIR``; commands on stdin, one JSON object a line:
``{"fault": "on_battery", "devices": [...]}`` (``"fault": null`` clears), answered ``{"ok": true}``.
"""

from __future__ import annotations

import bisect
import json
import selectors
import socket
import sys
from pathlib import Path

from bench.estate import Estate
from callipso_agent.lab.estate import apply_edits, load_lab_spec

OidT = tuple[int, ...]
GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
NO_SUCH_INSTANCE = b"\x81\x00"
END_OF_MIB = b"\x82\x00"
MAX_RESPONSE = 65000


# ------------------------------------------------------------------------------------------ BER bits


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def enc_int(tag: int, v: int) -> bytes:
    n = max(1, (v.bit_length() + 8) // 8)
    return tlv(tag, v.to_bytes(n, "big", signed=True))


def enc_uint(tag: int, v: int) -> bytes:
    n = max(1, (v.bit_length() + 8) // 8)
    return tlv(tag, v.to_bytes(n, "big", signed=False))


def enc_oid(oid: OidT) -> bytes:
    if len(oid) < 2:
        oid = (*oid, 0, 0)[:2]
    out = bytearray([oid[0] * 40 + oid[1]])
    for sub in oid[2:]:
        if sub < 0x80:
            out.append(sub)
            continue
        chunk = []
        while sub:
            chunk.append(sub & 0x7F)
            sub >>= 7
        for i, c in enumerate(reversed(chunk)):
            out.append(c | (0x80 if i < len(chunk) - 1 else 0))
    return tlv(0x06, bytes(out))


def dec_len(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def dec_oid(body: bytes) -> OidT:
    if not body:
        return ()
    out = [body[0] // 40, body[0] % 40]
    v = 0
    for b in body[1:]:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            out.append(v)
            v = 0
    return tuple(out)


def parse_oid(text: str) -> OidT:
    return tuple(int(p) for p in text.strip().strip(".").split(".") if p)


def encode_value(tag: str, value: str) -> bytes:
    kind = tag.split(":", 1)[0]
    try:
        if kind == "2":
            return enc_int(0x02, int(value))
        if kind == "4":
            return tlv(0x04, value.encode("utf-8", errors="surrogateescape"))
        if kind == "4x":
            return tlv(0x04, bytes.fromhex(value))
        if kind == "5":
            return b"\x05\x00"
        if kind == "6":
            return enc_oid(parse_oid(value))
        if kind == "64":
            return tlv(0x40, bytes(int(x) for x in value.split(".")))
        if kind == "64x":
            return tlv(0x40, bytes.fromhex(value))
        if kind in ("65", "66", "67"):
            return enc_uint(0x41 + int(kind) - 65, int(value))
        if kind == "68":
            return tlv(0x44, bytes.fromhex(value))
        if kind == "70":
            return enc_uint(0x46, int(value))
    except ValueError:
        pass
    return tlv(0x04, value.encode("utf-8", errors="surrogateescape"))


class Table:
    """A recording: sorted OIDs and each one's encoded varbind."""

    def __init__(self, lines: list[str]) -> None:
        rows: dict[OidT, bytes] = {}
        for line in lines:
            parts = line.split("|", 2)
            if len(parts) != 3:
                continue
            try:
                oid = parse_oid(parts[0])
            except ValueError:
                continue
            rows[oid] = tlv(0x30, enc_oid(oid) + encode_value(parts[1], parts[2]))
        self.oids = sorted(rows)
        self.vbs = [rows[o] for o in self.oids]
        self.by_oid = rows

    def next_index(self, oid: OidT) -> int:
        return bisect.bisect_right(self.oids, oid)


# ------------------------------------------------------------------------------------------ serving


class Server:
    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        self.community = estate.devices[0].community.encode() if estate.devices else b""
        self._shared: dict[str, Table] = {}
        self.tables: dict[int, Table] = {}  # socket fd -> table
        self.name_fd: dict[str, int] = {}
        self.socks: list[socket.socket] = []
        self.oid_cache: dict[bytes, OidT] = {}
        self.faults = load_lab_spec().faults
        self.sel = selectors.DefaultSelector()

    def _lines(self, rec: str) -> list[str]:
        path = self.estate.recording_path(next(d for d in self.estate.devices if d.recording == rec))
        return path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()

    def start(self) -> None:
        for dev in self.estate.devices:
            table = self._shared.get(dev.recording)
            if table is None:
                table = self._shared[dev.recording] = Table(self._lines(dev.recording))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((dev.address, dev.port))
            s.setblocking(False)
            self.socks.append(s)
            self.tables[s.fileno()] = table
            self.name_fd[dev.name] = s.fileno()
            self.sel.register(s, selectors.EVENT_READ, s)

    def set_fault(self, names: list[str], fault: str | None) -> None:
        by_name = {d.name: d for d in self.estate.devices}
        for name in names:
            dev = by_name[name]
            if fault is None:
                self.tables[self.name_fd[name]] = self._shared[dev.recording]
            else:
                spec = self.faults[fault]
                lines, _ = apply_edits(self._lines(dev.recording), spec.set, spec.insert)
                self.tables[self.name_fd[name]] = Table(lines)

    def answer(self, data: bytes, table: Table) -> bytes | None:
        """The response to one request, or None for what is not a v2c request of our community."""
        try:
            if data[0] != 0x30:
                return None
            _, pos = dec_len(data, 1)
            if data[pos] != 0x02:
                return None
            n, pos = dec_len(data, pos + 1)
            version = int.from_bytes(data[pos : pos + n], "big")
            pos += n
            if data[pos] != 0x04:
                return None
            n, pos = dec_len(data, pos + 1)
            if data[pos : pos + n] != self.community:
                return None
            pos += n
            pdu_type = data[pos]
            _, pos = dec_len(data, pos + 1)
            ints = []
            for _ in range(3):
                n, pos2 = dec_len(data, pos + 1)
                ints.append((data[pos2 : pos2 + n], int.from_bytes(data[pos2 : pos2 + n], "big", signed=True)))
                pos = pos2 + n
            _, pos = dec_len(data, pos + 1)  # varbind list
            oids: list[OidT] = []
            end = len(data)
            while pos < end:
                _, pos = dec_len(data, pos + 1)  # varbind
                n, p2 = dec_len(data, pos + 1)
                raw = data[p2 : p2 + n]
                oid = self.oid_cache.get(raw)
                if oid is None:
                    oid = self.oid_cache[raw] = dec_oid(raw)
                oids.append(oid)
                pos = p2 + n
                n, p3 = dec_len(data, pos + 1)  # value (NULL)
                pos = p3 + n
        except (IndexError, ValueError):
            return None
        out: list[bytes] = []
        if pdu_type == GET:
            for oid in oids:
                vb = table.by_oid.get(oid)
                out.append(vb if vb is not None else tlv(0x30, enc_oid(oid) + NO_SUCH_INSTANCE))
        elif pdu_type == GETNEXT:
            for oid in oids:
                i = table.next_index(oid)
                out.append(table.vbs[i] if i < len(table.vbs) else tlv(0x30, enc_oid(oid) + END_OF_MIB))
        elif pdu_type == GETBULK:
            non_rep, max_rep = max(ints[1][1], 0), max(ints[2][1], 0)
            size = 0
            for oid in oids[:non_rep]:
                i = table.next_index(oid)
                out.append(table.vbs[i] if i < len(table.vbs) else tlv(0x30, enc_oid(oid) + END_OF_MIB))
            rep = oids[non_rep:]
            idx = [table.next_index(o) for o in rep]
            for _ in range(max_rep):
                if not rep:
                    break
                done = True
                for k, i in enumerate(idx):
                    if i < len(table.vbs):
                        vb = table.vbs[i]
                        idx[k] = i + 1
                        done = False
                    else:
                        vb = tlv(0x30, enc_oid(rep[k]) + END_OF_MIB)
                    out.append(vb)
                    size += len(vb)
                if done or size > MAX_RESPONSE - 2000:
                    break
        else:
            return None
        rid = tlv(0x02, ints[0][0])
        body = rid + b"\x02\x01\x00\x02\x01\x00" + tlv(0x30, b"".join(out))
        return tlv(0x30, enc_int(0x02, version) + tlv(0x04, self.community) + tlv(RESPONSE, body))

    def serve(self) -> None:
        stdin = sys.stdin.buffer
        self.sel.register(stdin, selectors.EVENT_READ, None)
        print(json.dumps({"ready": True, "devices": len(self.socks)}), flush=True)
        while True:
            for key, _ in self.sel.select():
                s = key.data
                if s is None:
                    line = stdin.readline()
                    if not line:
                        return
                    cmd = json.loads(line)
                    self.set_fault(cmd.get("devices", []), cmd.get("fault"))
                    print(json.dumps({"ok": True}), flush=True)
                    continue
                table = self.tables[s.fileno()]
                for _ in range(64):
                    try:
                        data, addr = s.recvfrom(65535)
                    except BlockingIOError:
                        break
                    resp = self.answer(data, table)
                    if resp is not None:
                        s.sendto(resp, addr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    server = Server(Estate.load(Path(args[0])))
    server.start()
    server.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
