"""SNMP transport on pysnmp 7 (asyncio): GET, GETNEXT and GETBULK walks, v1/v2c/v3.

Knows nothing of vendors. Values come back as :class:`SnmpValue`, independent of pysnmp, so the
transport can be swapped (e.g. for a C-binding library) behind the :class:`SnmpClient` protocol.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as _auth
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi.rfc1902 import ObjectIdentity, ObjectType

from callipso_agent.config.models import (
    AuthProtocol,
    PrivProtocol,
    SnmpV2Credential,
    SnmpV3Credential,
)
from callipso_agent.config.secrets import Secret
from callipso_agent.errors import AuthFailed, ParseError, Timeout, TransportError, Unreachable

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class SnmpValue:
    """A decoded varbind value: ``type`` is one of integer, gauge, counter, counter64, timeticks,
    octets, oid, ipaddress, opaque, null, nosuchobject, nosuchinstance, endofmibview."""

    type: str
    value: int | str | bytes | None

    @property
    def number(self) -> float | None:
        if isinstance(self.value, int):
            try:
                return float(self.value)
            except OverflowError:
                return None
        if isinstance(self.value, (bytes, str)):
            text = self.value.decode("latin-1") if isinstance(self.value, bytes) else self.value
            try:
                number = float(text.strip())
            except ValueError:
                return None
            # "inf", "nan", "1e400" from a device are not measurements
            return number if math.isfinite(number) else None
        return None

    @property
    def text(self) -> str:
        if isinstance(self.value, bytes):
            try:
                return self.value.decode("utf-8")
            except UnicodeDecodeError:
                return self.value.decode("latin-1")
        return "" if self.value is None else str(self.value)

    @property
    def is_empty(self) -> bool:
        return self.type in ("null", "nosuchobject", "nosuchinstance", "endofmibview")


Varbinds = list[tuple[str, SnmpValue]]


class SnmpClient(Protocol):
    """What a collector needs from SNMP. One client talks to one device."""

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]: ...

    async def next(self, oids: Sequence[str]) -> Varbinds: ...

    async def walk(self, root: str, start: str | None = None, end: str | None = None) -> Varbinds: ...

    def close(self) -> None: ...


_AUTH = {
    AuthProtocol.MD5: _auth.USM_AUTH_HMAC96_MD5,
    AuthProtocol.SHA: _auth.USM_AUTH_HMAC96_SHA,
    AuthProtocol.SHA224: _auth.USM_AUTH_HMAC128_SHA224,
    AuthProtocol.SHA256: _auth.USM_AUTH_HMAC192_SHA256,
    AuthProtocol.SHA384: _auth.USM_AUTH_HMAC256_SHA384,
    AuthProtocol.SHA512: _auth.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    PrivProtocol.DES: _auth.USM_PRIV_CBC56_DES,
    PrivProtocol.DES3: _auth.USM_PRIV_CBC168_3DES,
    PrivProtocol.AES: _auth.USM_PRIV_CFB128_AES,
    PrivProtocol.AES192: _auth.USM_PRIV_CFB192_AES,
    PrivProtocol.AES256: _auth.USM_PRIV_CFB256_AES,
    PrivProtocol.AES192_BLUMENTHAL: _auth.USM_PRIV_CFB192_AES_BLUMENTHAL,
    PrivProtocol.AES256_BLUMENTHAL: _auth.USM_PRIV_CFB256_AES_BLUMENTHAL,
}


def decode_value(v: Any) -> SnmpValue:
    """Translate a pysnmp value into an :class:`SnmpValue`."""
    if isinstance(v, rfc1905.NoSuchObject):
        return SnmpValue("nosuchobject", None)
    if isinstance(v, rfc1905.NoSuchInstance):
        return SnmpValue("nosuchinstance", None)
    if isinstance(v, rfc1905.EndOfMibView):
        return SnmpValue("endofmibview", None)
    if isinstance(v, rfc1902.Counter64):
        return SnmpValue("counter64", int(v))
    if isinstance(v, rfc1902.Counter32):
        return SnmpValue("counter", int(v))
    if isinstance(v, rfc1902.TimeTicks):
        return SnmpValue("timeticks", int(v))
    if isinstance(v, rfc1902.Gauge32) or isinstance(v, rfc1902.Unsigned32):
        return SnmpValue("gauge", int(v))
    if isinstance(v, rfc1902.Integer32) or isinstance(v, rfc1902.Integer):
        return SnmpValue("integer", int(v))
    if isinstance(v, rfc1902.IpAddress):
        return SnmpValue("ipaddress", ".".join(str(b) for b in v.asNumbers()))
    if isinstance(v, rfc1902.Opaque):
        return SnmpValue("opaque", bytes(v))
    if isinstance(v, rfc1902.OctetString):
        return SnmpValue("octets", bytes(v))
    if isinstance(v, rfc1902.ObjectName) or type(v).__name__ == "ObjectIdentifier":
        return SnmpValue("oid", str(v))
    if type(v).__name__ == "Null":
        return SnmpValue("null", None)
    # SNMPv1 (RFC 1155) classes and other ASN.1 subtypes, e.g. in traps translated from v1
    names = {cls.__name__ for cls in type(v).__mro__}
    for name, kind in (
        ("TimeTicks", "timeticks"),
        ("Counter64", "counter64"),
        ("Counter", "counter"),
        ("Counter32", "counter"),
        ("Gauge", "gauge"),
        ("Gauge32", "gauge"),
        ("Unsigned32", "gauge"),
    ):
        if name in names:
            return SnmpValue(kind, int(v))
    if "IpAddress" in names or "NetworkAddress" in names:
        try:
            return SnmpValue("ipaddress", ".".join(str(b) for b in bytes(v)))
        except Exception:
            inner = v.getComponent() if hasattr(v, "getComponent") else v
            return SnmpValue("ipaddress", ".".join(str(b) for b in bytes(inner)))
    if "Integer" in names:
        return SnmpValue("integer", int(v))
    if "OctetString" in names:
        return SnmpValue("octets", bytes(v))
    if "ObjectIdentifier" in names:
        return SnmpValue("oid", str(v))
    if "Null" in names:
        return SnmpValue("null", None)
    raise ParseError(f"unsupported SNMP value type {type(v).__name__}")


def oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.strip(".").split(".") if p)


def in_subtree(oid: str, root: str) -> bool:
    return oid == root or oid.startswith(root + ".")


#: pysnmp's USM errors (REPORT PDUs of RFC 3414 3.2, or the same checks on our side) -> what the operator reads.
#: Every one is an authentication failure (kind ``auth_failed``); the text names the USM counter.
USM_REASONS = {
    "WrongDigest": "wrong authentication key or protocol (usmStatsWrongDigests)",
    "DecryptionError": "wrong privacy key or protocol (usmStatsDecryptionErrors)",
    "UnknownUserName": "unknown user (usmStatsUnknownUserNames)",
    "UnsupportedSecurityLevel": "security level not allowed for this user (usmStatsUnsupportedSecLevels)",
    "NotInTimeWindow": "engine time outside the window (usmStatsNotInTimeWindows)",
    "UnknownEngineID": "unknown engine ID (usmStatsUnknownEngineIDs)",
    "UnknownSecurityName": "unknown security name",
}


def _translate(indication: Any, host: str) -> TransportError:
    text = str(indication)
    low = text.lower()
    reason = USM_REASONS.get(type(indication).__name__)
    if reason is not None:
        return AuthFailed(f"{host}: SNMPv3 authentication failed: {reason}")
    if "timeout" in low or "no snmp response" in low:
        return Timeout(f"{host}: no SNMP response (timeout; wrong community or unreachable)")
    if any(
        k in low
        for k in (
            "unknown user",
            "unknown usm user",
            "unknownusername",
            "wrong digest",
            "digest",
            "decryption",
            "ciphertext",
            "unsupportedsecuritylevel",
            "unsupported security level",
            "notintimewindow",
            "not in time window",
            "authentication",
            "usm",
        )
    ):
        return AuthFailed(f"{host}: SNMPv3 authentication failed ({text})")
    return Unreachable(f"{host}: {text}")


class PysnmpEngine:
    """The one pysnmp engine of the process, shared by every client, with a global concurrency limit."""

    def __init__(self, max_concurrency: int = 64) -> None:
        self.engine = SnmpEngine()
        self.semaphore = asyncio.Semaphore(max_concurrency)

    def close(self) -> None:
        try:
            self.engine.close_dispatcher()
        except Exception:  # noqa: S110 - closing a dispatcher that never opened
            pass


class PysnmpClient:
    """SnmpClient over pysnmp for one device."""

    def __init__(
        self,
        engine: PysnmpEngine,
        host: str,
        port: int,
        credential: SnmpV2Credential | SnmpV3Credential,
        secrets: dict[str, Secret],
        *,
        timeout: float = 5.0,
        retries: int = 1,
        max_repetitions: int = 25,
    ) -> None:
        self._engine = engine
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.max_repetitions = max_repetitions
        self.version = credential.version
        self._auth = self._auth_data(credential, secrets)
        self._context = ContextData(
            contextName=credential.context if isinstance(credential, SnmpV3Credential) else ""
        )
        self._target: Any = None

    @staticmethod
    def _auth_data(cred: SnmpV2Credential | SnmpV3Credential, secrets: dict[str, Secret]) -> Any:
        if isinstance(cred, SnmpV2Credential):
            return CommunityData(secrets["community"].reveal(), mpModel=0 if cred.version == "1" else 1)
        kwargs: dict[str, Any] = {}
        if cred.auth_protocol is not None:
            kwargs["authKey"] = secrets["auth_key"].reveal()
            kwargs["authProtocol"] = _AUTH[cred.auth_protocol]
        if cred.priv_protocol is not None:
            kwargs["privKey"] = secrets["priv_key"].reveal()
            kwargs["privProtocol"] = _PRIV[cred.priv_protocol]
        # the security level is the inventory's choice (authPriv recommended); it is not enforced here
        return UsmUserData(cred.user, **kwargs)  # noqa: S509

    def __repr__(self) -> str:
        return f"PysnmpClient({self.host}:{self.port}, v{self.version})"

    async def _target_(self) -> Any:
        if self._target is None:
            cls = Udp6TransportTarget if ":" in self.host else UdpTransportTarget
            try:
                self._target = await cls.create(
                    (self.host, self.port), timeout=self.timeout, retries=self.retries
                )
            except Exception as err:  # name resolution
                raise Unreachable(f"{self.host}: cannot resolve address ({err})") from err
        return self._target

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        target = await self._target_()
        async with self._engine.semaphore:
            try:
                result = await fn(
                    self._engine.engine, self._auth, target, self._context, *args, lookupMib=False, **kwargs
                )
            except TransportError:
                raise
            except Exception as err:
                raise ParseError(f"{self.host}: SNMP exchange failed: {err}") from err
        indication, status, index, varbinds = result
        if indication:
            raise _translate(indication, self.host)
        if status:
            # noSuchName (v1) on GET/GETNEXT means absent / end of MIB
            if int(status) == 2:
                return []
            raise ParseError(f"{self.host}: SNMP error-status {status.prettyPrint()} at index {index}")
        return varbinds

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        out: dict[str, SnmpValue] = {}
        for i in range(0, len(oids), 32):
            chunk = oids[i : i + 32]
            vbs = await self._call(get_cmd, *[ObjectType(ObjectIdentity(o)) for o in chunk])
            if not vbs and self.version == "1" and len(chunk) > 1:
                # v1 fails the whole PDU on one missing OID: ask one by one
                for o in chunk:
                    out.update(await self.get([o]))
                continue
            for name, value in vbs:
                dv = decode_value(value)
                if not dv.is_empty:
                    out[str(name)] = dv
        return out

    async def next(self, oids: Sequence[str]) -> Varbinds:
        """GETNEXT of each OID; an OID past the end of the MIB gives an ``endofmibview`` value."""
        if not oids:
            return []
        vbs = await self._call(next_cmd, *[ObjectType(ObjectIdentity(o)) for o in oids])
        if not vbs:
            if self.version == "1" and len(oids) > 1:
                # v1 fails the whole PDU when one OID is past the end: ask one by one
                out: Varbinds = []
                for o in oids:
                    out.extend(await self.next([o]) or [(o, SnmpValue("endofmibview", None))])
                return out
            return [(o, SnmpValue("endofmibview", None)) for o in oids]
        return [(str(n), decode_value(v)) for n, v in vbs]

    async def walk(self, root: str, start: str | None = None, end: str | None = None) -> Varbinds:
        """All varbinds under ``root`` (GETBULK for v2c/v3, GETNEXT for v1), stopping at the subtree end.

        ``start``/``end`` narrow the walk to a range of sub-OIDs of ``root`` (e.g. columns 2 to 5 of a
        table entry): it begins at ``start`` and stops after the last OID under ``end``.
        """
        root = root.strip(".")
        end_t = oid_tuple(end) if end else None
        out: Varbinds = []
        current = start.strip(".") if start else root
        seen_last: tuple[int, ...] = ()
        while True:
            if self.version == "1":
                vbs = await self._call(next_cmd, ObjectType(ObjectIdentity(current)))
            else:
                vbs = await self._call(bulk_cmd, 0, self.max_repetitions, ObjectType(ObjectIdentity(current)))
            if not vbs:
                return out
            for name, value in vbs:
                oid = str(name)
                dv = decode_value(value)
                if dv.type == "endofmibview" or not in_subtree(oid, root):
                    return out
                t = oid_tuple(oid)
                if end_t is not None and t[: len(end_t)] > end_t:
                    return out
                if seen_last and t <= seen_last:
                    # a broken agent answering out of order would loop for ever: keep what we have
                    log.warning("snmp_walk_not_increasing", host=self.host, root=root, oid=oid)
                    return out
                seen_last = t
                out.append((oid, dv))
                current = oid
            if len(out) > 200_000:
                raise ParseError(f"{self.host}: walk of {root} returned more than 200000 varbinds")

    def close(self) -> None:
        self._target = None


def resolve_snmp_secrets(
    cred: SnmpV2Credential | SnmpV3Credential, base_dir: Any = None
) -> dict[str, Secret]:
    if isinstance(cred, SnmpV2Credential):
        return {"community": cred.community.resolve(base_dir)}
    out: dict[str, Secret] = {}
    if cred.auth_key is not None:
        out["auth_key"] = cred.auth_key.resolve(base_dir)
    if cred.priv_key is not None:
        out["priv_key"] = cred.priv_key.resolve(base_dir)
    return out
