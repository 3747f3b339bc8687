"""Real SNMPv2c traps sent over UDP from the devices' own addresses, for the trap → incident latency."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

from pyasn1.codec.ber import encoder
from pysnmp.proto import api

from bench.estate import BenchDevice

UPS_TRAP_LOW_BATTERY = "1.3.6.1.4.1.534.1.11.4.1.0.4"  # XUPS xupstdLowBattery (collectors/traps/xups.yaml)
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"


def encode_trap(community: str, trap_oid: str, request_id: int) -> bytes:
    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = p.SNMPv2TrapPDU()
    p.apiTrapPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, request_id)
    p.apiPDU.set_varbinds(pdu, [
        (SYS_UPTIME, p.TimeTicks(12345)),
        (SNMP_TRAP_OID, p.ObjectIdentifier(trap_oid)),
        ("1.3.6.1.2.1.33.1.2.3.0", p.Integer(9)),  # upsEstimatedMinutesRemaining
        ("1.3.6.1.2.1.33.1.2.2.0", p.Integer(240)),  # upsSecondsOnBattery
    ])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


class TrapSender:
    """Sends one trap per device, from the device's address, every ``period`` seconds, in a thread; notes the
    monotonic time of each send (CLOCK_MONOTONIC is shared by the processes of the machine)."""

    def __init__(self, devices: Sequence[BenchDevice], community: str, receiver: tuple[str, int],
                 period: float) -> None:
        self.devices = list(devices)
        self.receiver = receiver
        self.period = period
        self.datagrams = [encode_trap(community, UPS_TRAP_LOW_BATTERY, 1000 + i) for i in range(len(self.devices))]
        self.sent: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="trap-sender", daemon=True)
        self._stop = threading.Event()

    def _run(self) -> None:
        socks: dict[str, socket.socket] = {}
        try:
            for dev, data in zip(self.devices, self.datagrams, strict=True):
                if self._stop.is_set():
                    return
                s = socks.get(dev.address)
                if s is None:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.bind((dev.address, 0))
                    socks[dev.address] = s
                self.sent[dev.name] = time.monotonic()
                s.sendto(data, self.receiver)
                self._stop.wait(self.period)
        finally:
            for s in socks.values():
                s.close()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
