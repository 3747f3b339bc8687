"""The real network path: SNMPv3 USM against snmpsim users, wrong credentials, garbage and silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from callipso_agent.config.models import AuthProtocol, PrivProtocol, SnmpV3Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.errors import AuthFailed, ParseError, Timeout, TransportError
from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.poll import poll_snmp
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine
from tests.helpers.polling import V2C, poll, value
from tests.helpers.snmp import recording, serve

pytestmark = [pytest.mark.system, pytest.mark.asyncio(loop_scope="module")]

USERS = [
    {
        "user": "sha-aes",
        "auth_key": "authpass-sha-1",
        "auth_proto": "SHA",
        "priv_key": "privpass-aes-1",
        "priv_proto": "AES",
    },
    {
        "user": "sha256-aes256",
        "auth_key": "authpass-sha256",
        "auth_proto": "SHA256",
        "priv_key": "privpass-aes256",
        "priv_proto": "AES256",
    },
    {
        "user": "sha-aes256b",
        "auth_key": "authpass-sha-2",
        "auth_proto": "SHA",
        "priv_key": "privpass-aes256b",
        "priv_proto": "AES256BLMT",
    },
    {
        "user": "md5-des",
        "auth_key": "authpass-md5-1",
        "auth_proto": "MD5",
        "priv_key": "privpass-des-1",
        "priv_proto": "DES",
    },
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSimulator]:
    with serve([recording("generex-ups_cs141")], tmp_path_factory.mktemp("v3"), v3_users=USERS) as simulator:
        yield simulator


def _v3(user: str, auth: AuthProtocol, priv: PrivProtocol) -> SnmpV3Credential:
    # snmpsim selects the recording by the v3 context name (the file stem)
    return SnmpV3Credential(
        version="3",
        user=user,
        auth_protocol=auth,
        auth_key=SecretRef(env="UNUSED"),
        priv_protocol=priv,
        priv_key=SecretRef(env="UNUSED"),
        context="generex-ups_cs141",
    )


@pytest.mark.parametrize(
    ("user", "auth", "priv"),
    [
        ("sha-aes", AuthProtocol.SHA, PrivProtocol.AES),
        ("sha256-aes256", AuthProtocol.SHA256, PrivProtocol.AES256),
        ("sha-aes256b", AuthProtocol.SHA, PrivProtocol.AES256_BLUMENTHAL),
        ("md5-des", AuthProtocol.MD5, PrivProtocol.DES),
    ],
)
async def test_v3_auth_priv(
    sim: SnmpSimulator,
    profiles: ProfileSet,
    engine: PysnmpEngine,
    user: str,
    auth: AuthProtocol,
    priv: PrivProtocol,
) -> None:
    u = next(x for x in USERS if x["user"] == user)
    r = await poll_snmp(
        sim.host,
        sim.port,
        credential=_v3(user, auth, priv),
        secrets={"auth_key": Secret(u["auth_key"]), "priv_key": Secret(u["priv_key"])},
        profiles=profiles,
        timeout=2,
        retries=0,
        engine=engine,
    )
    assert r["profile"] == "ups-mib"
    # 1.3.6.1.2.1.33.1.3.3.1.3.3|2|235 read through the encrypted session
    assert value(r, "ups_input_voltage_volts", phase="3") == 235


@pytest.mark.parametrize(
    ("user", "auth_key", "priv_key", "reason"),
    [
        ("sha-aes", "not-the-key-1", "privpass-aes-1", "wrong authentication key or protocol (usmStatsWrongDigests)"),
        ("sha-aes", "authpass-sha-1", "not-the-key-2", "wrong privacy key or protocol (usmStatsDecryptionErrors)"),
        ("nobody", "authpass-sha-1", "privpass-aes-1", "unknown user (usmStatsUnknownUserNames)"),
    ],
    ids=["wrong-auth-key", "wrong-priv-key", "unknown-user"],
)
async def test_v3_refusals_name_their_usm_reason(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine, user: str, auth_key: str, priv_key: str,
    reason: str,
) -> None:
    """The agent's REPORT from snmpsim (RFC 3414 usmStats*) becomes auth_failed with the counter's name, at once
    (not a timeout), and the message carries no key."""
    with pytest.raises(AuthFailed) as info:
        await poll_snmp(
            sim.host,
            sim.port,
            credential=_v3(user, AuthProtocol.SHA, PrivProtocol.AES),
            secrets={"auth_key": Secret(auth_key), "priv_key": Secret(priv_key)},
            profiles=profiles,
            timeout=5,
            retries=0,
            engine=engine,
        )
    text = str(info.value)
    assert info.value.kind == "auth_failed" and text.endswith(reason), text
    assert auth_key not in text and priv_key not in text


async def test_wrong_community_times_out(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    with pytest.raises(Timeout) as info:
        await poll(sim, "not-a-community", profiles, timeout=0.5, retries=0, engine=engine)
    assert "timeout" in str(info.value).lower()


class _Junk(asyncio.DatagramProtocol):
    """Answers every datagram with bytes that are not SNMP; counts what it got."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.seen = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        if self.reply is not None and self.transport is not None:
            self.transport.sendto(self.reply, addr)


@pytest_asyncio.fixture(loop_scope="module")
async def junk_server() -> AsyncIterator[tuple[int, _Junk]]:
    loop = asyncio.get_running_loop()
    proto = _Junk(b"\x30\x03\x02\x01\x07garbage-not-snmp\xff\x00")
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], proto
    transport.close()


@pytest_asyncio.fixture(loop_scope="module")
async def silent_server() -> AsyncIterator[tuple[int, _Junk]]:
    loop = asyncio.get_running_loop()
    proto = _Junk(None)
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], proto
    transport.close()


async def test_garbage_answer(
    junk_server: tuple[int, _Junk], profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    port, proto = junk_server
    with pytest.raises((TransportError, ParseError)):
        await poll_snmp(
            "127.0.0.1",
            port,
            credential=V2C,
            secrets={"community": Secret("public")},
            profiles=profiles,
            timeout=0.5,
            retries=0,
            engine=engine,
        )
    assert proto.seen >= 1


async def test_silent_server(silent_server: tuple[int, _Junk], engine: PysnmpEngine) -> None:
    port, proto = silent_server
    client = PysnmpClient(
        engine, "127.0.0.1", port, V2C, {"community": Secret("public")}, timeout=0.3, retries=1
    )
    with pytest.raises(Timeout):
        await client.get(["1.3.6.1.2.1.1.1.0"])
    assert proto.seen == 2  # the request and its one retry


async def test_unresolvable_host(engine: PysnmpEngine) -> None:
    client = PysnmpClient(
        engine, "no-such-host.invalid", 161, V2C, {"community": Secret("public")}, timeout=0.3
    )
    with pytest.raises(TransportError):
        await client.get(["1.3.6.1.2.1.1.1.0"])
