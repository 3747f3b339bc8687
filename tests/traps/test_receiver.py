"""Trap receiver on a loopback port, fed by real senders: pysnmp's notification originator (v1, v2c,
v3 authPriv) and net-snmp's snmptrap when installed. Trap contents are SYNTHETIC, built from the MIBs."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA,
    USM_PRIV_CFB128_AES,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    send_notification,
)
from pysnmp.proto import rfc1902

from callipso_agent.clock import ManualClock
from callipso_agent.config.models import AuthProtocol, PrivProtocol
from callipso_agent.config.secrets import Secret
from callipso_agent.model import Event, Severity
from callipso_agent.traps import DeviceRef, TrapReceiver, TrapV3User, load_trap_rules
from tests.helpers.polling import COLLECTORS
from tests.helpers.system import require_binary

COMMUNITY = "trap-community"
ENGINE_ID = "80001f8880aabbccdd01"  # the sender's engine (traps are authenticated with it)
V3_USER = TrapV3User(
    "trapper",
    AuthProtocol.SHA,
    Secret("trap-auth-key1"),
    PrivProtocol.AES,
    Secret("trap-priv-key1"),
    engine_id=ENGINE_ID,
)
DEVICE = DeviceRef("ups-hd13-01", {"site": "HD13", "family": "ups"})

XUPS_ON_BATTERY = "1.3.6.1.4.1.534.1.11.4.1.0.3"
XUPS_POWER_RESTORED = "1.3.6.1.4.1.534.1.11.4.1.0.5"
XUPS_MESSAGE = "1.3.6.1.4.1.534.1.11.3.0"
UPS_TRAP_ON_BATTERY = "1.3.6.1.2.1.33.2.1"
AC_ETHERNET_LINK = "1.3.6.1.4.1.5003.9.10.1.21.2.0.10"
AC_GLOBALS = "1.3.6.1.4.1.5003.9.10.1.21.1"
CMIP_TRAP = "1.3.6.1.4.1.637.64.0.10.1.2.0.3"
CMIP_ARG = "1.3.6.1.4.1.637.64.0.10.1.1"


Rx = tuple[TrapReceiver, asyncio.Queue[Event], ManualClock]


@pytest_asyncio.fixture
async def rx() -> AsyncIterator[Rx]:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    clock = ManualClock()
    receiver = TrapReceiver(
        load_trap_rules(COLLECTORS / "traps"),
        queue,
        host="127.0.0.1",
        port=0,
        communities=[Secret(COMMUNITY)],
        v3_users=[V3_USER],
        devices={"127.0.0.1": DEVICE},
        clock=clock,
    )
    await receiver.start()
    try:
        yield receiver, queue, clock
    finally:
        await receiver.stop()


def _vb(oid: str, value: Any) -> ObjectType:
    return ObjectType(ObjectIdentity(oid), value)


class Sender:
    """pysnmp notification originator; one engine per SNMP version (its first send costs a second)."""

    def __init__(self) -> None:
        self.engines: dict[str, SnmpEngine] = {}

    async def send(
        self,
        port: int,
        trap_oid: str,
        varbinds: Sequence[tuple[str, Any]] = (),
        *,
        version: str = "2c",
        community: str = COMMUNITY,
        auth_key: str = "trap-auth-key1",
        priv_key: str = "trap-priv-key1",
    ) -> None:
        slot = f"{version}/{auth_key}/{priv_key}"  # an engine keeps the keys it first used
        engine = self.engines.get(slot)
        if engine is None:
            engine = (
                SnmpEngine(snmpEngineID=rfc1902.OctetString(hexValue=ENGINE_ID))
                if version == "3"
                else SnmpEngine()
            )
            self.engines[slot] = engine
        if version == "3":
            auth: Any = UsmUserData(
                V3_USER.user,
                auth_key,
                priv_key,
                authProtocol=USM_AUTH_HMAC96_SHA,
                privProtocol=USM_PRIV_CFB128_AES,
            )
        else:
            auth = CommunityData(community, mpModel=0 if version == "1" else 1)
        target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=0)
        vbs = [
            _vb("1.3.6.1.2.1.1.3.0", rfc1902.TimeTicks(4242)),
            _vb("1.3.6.1.6.3.1.1.4.1.0", rfc1902.ObjectIdentifier(trap_oid)),
            *(_vb(o, v) for o, v in varbinds),
        ]
        error, *_ = await send_notification(engine, auth, target, ContextData(), "trap", *vbs)
        assert not error, error

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close_dispatcher()


@pytest_asyncio.fixture
async def sender() -> AsyncIterator[Sender]:
    s = Sender()
    yield s
    s.close()


async def next_event(queue: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(queue.get(), timeout=5)


async def settle(receiver: TrapReceiver, notifications: int) -> None:
    """Wait until the receiver has handled that many notifications (events or debounced)."""
    for _ in range(200):
        if receiver.counters.notifications >= notifications:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"only {receiver.counters.notifications} notifications handled")


async def test_v2c_xups_on_battery_and_restore(sender: Sender, rx: Rx) -> None:
    receiver, queue, _ = rx
    await sender.send(receiver.port, XUPS_ON_BATTERY, [(XUPS_MESSAGE, rfc1902.OctetString("UPS on battery"))])
    e = await next_event(queue)
    assert (e.device, e.name, e.severity, e.clear, e.text) == (
        "ups-hd13-01",
        "ups_on_battery",
        Severity.CRITICAL,
        False,
        "UPS on battery",
    )
    assert e.labels["site"] == "HD13" and e.raw["version"] == "2c" and e.raw["trap_oid"] == XUPS_ON_BATTERY
    await sender.send(receiver.port, XUPS_POWER_RESTORED)
    e = await next_event(queue)
    assert (e.name, e.clear, e.severity, e.text) == ("ups_on_battery", True, Severity.OK, "Retour secteur")


async def test_v1_rfc1628_on_battery_debounced(sender: Sender, rx: Rx) -> None:
    receiver, queue, clock = rx
    minutes = [("1.3.6.1.2.1.33.1.2.3.0", rfc1902.Integer32(12))]
    # SNMPv1: enterprise upsTraps 1.3.6.1.2.1.33.2 / specific 1, translated to …33.2.0.1 on receipt
    await sender.send(receiver.port, UPS_TRAP_ON_BATTERY, minutes, version="1")
    e = await next_event(queue)
    assert (e.name, e.severity, e.raw["version"]) == ("ups_on_battery", Severity.CRITICAL, "1")
    assert e.labels["minutes_remaining"] == "12"
    # the UPS resends the trap every minute while on battery: one event only
    for _ in range(2):
        clock.advance(60)
        await sender.send(receiver.port, UPS_TRAP_ON_BATTERY, minutes, version="1")
    await settle(receiver, 3)
    assert queue.empty() and receiver.counters.debounced == 2
    # after a quiet period longer than the window, it is news again
    clock.advance(600)
    await sender.send(receiver.port, UPS_TRAP_ON_BATTERY, minutes, version="1")
    assert (await next_event(queue)).name == "ups_on_battery"


async def test_v3_audiocodes_raise_and_clear(sender: Sender, rx: Rx) -> None:
    receiver, queue, _ = rx

    def ac(severity: int) -> list[tuple[str, Any]]:
        return [
            (f"{AC_GLOBALS}.1.0", rfc1902.OctetString("Ethernet link alarm")),
            (f"{AC_GLOBALS}.2.0", rfc1902.OctetString("Ethernet link down on port 1")),
            (f"{AC_GLOBALS}.3.0", rfc1902.OctetString("Board#1/EthernetLink#1")),
            (f"{AC_GLOBALS}.4.0", rfc1902.Integer32(severity)),
            (f"{AC_GLOBALS}.5.0", rfc1902.Integer32(77)),
        ]

    await sender.send(receiver.port, AC_ETHERNET_LINK, ac(4), version="3")
    raised = await next_event(queue)
    assert (raised.name, raised.severity, raised.clear, raised.source) == (
        "audiocodes_ethernet_link_alarm",
        Severity.CRITICAL,
        False,
        "Board#1/EthernetLink#1",
    )
    assert raised.text == "Ethernet link down on port 1" and raised.labels["unique_id"] == "77"
    assert raised.raw["version"] == "3" and raised.raw["security_name"] == "trapper"
    await sender.send(receiver.port, AC_ETHERNET_LINK, ac(0), version="3")
    cleared = await next_event(queue)
    assert (cleared.name, cleared.source, cleared.clear, cleared.severity) == (
        raised.name,
        raised.source,
        True,
        Severity.OK,
    )


async def test_v3_credential_names_the_device_and_bad_keys_are_counted(sender: Sender) -> None:
    """Every device behind one address: the v3 user (and engine ID) that authenticated the trap names it.
    Traps with a wrong key are refused, counted by reason, and the receiver goes on."""
    queue: asyncio.Queue[Event] = asyncio.Queue()
    sbc = DeviceRef("sbc-hd13", {"site": "HD13", "family": "audiocodes-sbc"})
    receiver = TrapReceiver(
        load_trap_rules(COLLECTORS / "traps"),
        queue,
        port=0,
        v3_users=[dataclasses.replace(V3_USER, device=sbc)],
        devices={"127.0.0.1": DEVICE},
    )
    async with receiver:
        await sender.send(receiver.port, AC_ETHERNET_LINK, version="3", auth_key="not-the-auth-key")
        await sender.send(receiver.port, AC_ETHERNET_LINK, version="3", priv_key="not-the-priv-key")
        for _ in range(200):
            if receiver.rejected >= 2:
                break
            await asyncio.sleep(0.025)
        assert receiver.rejected_by_reason()["wrong_digest"] == 1
        assert receiver.rejected_by_reason()["decryption_error"] == 1
        assert receiver.counters.notifications == 0 and queue.empty()
        await sender.send(receiver.port, AC_ETHERNET_LINK, version="3")
        event = await next_event(queue)
    assert (event.device, event.labels["family"]) == ("sbc-hd13", "audiocodes-sbc")


async def test_oxe_incident_through_nmc_proxy(sender: Sender, rx: Rx) -> None:
    receiver, queue, _ = rx

    def incident(number: int, severity: int) -> list[tuple[str, Any]]:
        return [
            (f"{CMIP_ARG}.5.0", rfc1902.Integer32(severity)),
            (f"{CMIP_ARG}.8.0", rfc1902.Integer32(number)),
            (f"{CMIP_ARG}.9.0", rfc1902.OctetString(f"incident {number} T2 link")),
        ]

    await sender.send(receiver.port, CMIP_TRAP, incident(310, 3), version="1")
    e = await next_event(queue)
    assert (e.name, e.severity, e.labels["incident"]) == ("oxe_t2_link", Severity.CRITICAL, "310")
    await sender.send(receiver.port, CMIP_TRAP, incident(311, 6), version="1")
    e = await next_event(queue)
    assert (e.name, e.clear) == ("oxe_t2_link", True)
    await sender.send(receiver.port, CMIP_TRAP, incident(5107, 4))
    e = await next_event(queue)
    assert (e.name, e.severity, e.labels["incident"]) == ("oxe_incident", Severity.WARNING, "5107")


async def test_unknown_trap_kept_and_counted(sender: Sender, rx: Rx) -> None:
    receiver, queue, _ = rx
    await sender.send(
        receiver.port, "1.3.6.1.4.1.99999.0.42", [("1.3.6.1.4.1.99999.1.0", rfc1902.OctetString("x"))]
    )
    e = await next_event(queue)
    assert e.name == "trap_unknown" and e.labels["trap_oid"] == "1.3.6.1.4.1.99999.0.42"
    assert receiver.counters.unknown == 1


async def test_garbage_and_bad_community(sender: Sender, rx: Rx) -> None:
    receiver, queue, _ = rx
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (
            b"",
            b"\x00\x01garbage",
            b"\x30\x82\xff\xff\x02\x01\x01",
            b"\x30\x05\x02\x01\x09\x04\x00",
        ):
            s.sendto(junk, ("127.0.0.1", receiver.port))
    await sender.send(receiver.port, XUPS_ON_BATTERY, community="not-the-community")
    # a well-formed trap after all this still goes through
    await sender.send(receiver.port, XUPS_POWER_RESTORED)
    e = await next_event(queue)
    assert e.name == "ups_on_battery" and e.clear
    assert receiver.counters.malformed >= 3  # the empty datagram may never reach the socket callback
    assert receiver.rejected >= 1
    assert queue.empty() and receiver.counters.errors == 0


async def test_unknown_sender_address(sender: Sender) -> None:
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    receiver = TrapReceiver(
        load_trap_rules(COLLECTORS / "traps"),
        collect,
        port=0,
        communities=[COMMUNITY],
        devices={"192.0.2.7": "other-ups"},
    )
    async with receiver:
        await sender.send(receiver.port, XUPS_ON_BATTERY)
        for _ in range(200):
            if events:
                break
            await asyncio.sleep(0.025)
    assert events and events[0].device == "127.0.0.1" and events[0].labels["address"] == "127.0.0.1"


async def test_failing_output_is_counted(sender: Sender) -> None:
    async def broken(event: Event) -> None:
        raise RuntimeError("queue full")

    receiver = TrapReceiver(load_trap_rules(COLLECTORS / "traps"), broken, port=0, communities=[COMMUNITY])
    async with receiver:
        await sender.send(receiver.port, XUPS_ON_BATTERY)
        await sender.send(receiver.port, XUPS_POWER_RESTORED)
        for _ in range(200):
            if receiver.counters.errors >= 2:
                break
            await asyncio.sleep(0.025)
    assert receiver.counters.errors == 2 and receiver.counters.events == 0


@pytest.mark.system
@pytest.mark.parametrize("version", ["1", "2c", "3"])
async def test_net_snmp_snmptrap(rx: Rx, version: str) -> None:
    snmptrap = require_binary("snmptrap")
    receiver, queue, _ = rx
    target = f"udp:127.0.0.1:{receiver.port}"
    text = ["1.3.6.1.4.1.534.1.11.3.0", "s", f"net-snmp v{version}"]
    if version == "1":
        argv = [
            snmptrap,
            "-v",
            "1",
            "-c",
            COMMUNITY,
            target,
            "1.3.6.1.4.1.534.1.11.4.1",
            "127.0.0.1",
            "6",
            "3",
            "",
            *text,
        ]
    elif version == "2c":
        argv = [snmptrap, "-v", "2c", "-c", COMMUNITY, target, "", XUPS_ON_BATTERY, *text]
    else:
        argv = [
            snmptrap,
            "-v",
            "3",
            "-e",
            f"0x{ENGINE_ID}",
            "-u",
            V3_USER.user,
            "-l",
            "authPriv",
            "-a",
            "SHA",
            "-A",
            "trap-auth-key1",
            "-x",
            "AES",
            "-X",
            "trap-priv-key1",
            target,
            "",
            XUPS_ON_BATTERY,
            *text,
        ]
    env = dict(os.environ, MIBS="", MIBDIRS="")
    proc = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    e = await next_event(queue)
    assert (e.name, e.device, e.text) == ("ups_on_battery", "ups-hd13-01", f"net-snmp v{version}")
    assert e.raw["version"] == version
