"""SNMP trap receiver: v1/v2c communities and v3 USM users, trap OID → Event through YAML rules.

The mapping lives in ``collectors/traps/*.yaml`` (schema: :class:`TrapMapFile`); this module only
interprets it. Each trap becomes a :class:`~callipso_agent.model.Event` for the device resolved from
the sender's address (or the v1 agent-addr / snmpTrapAddress), with that device's labels, handed to an
injected async callback or queue. Unknown traps become ``trap_unknown`` events; malformed datagrams and
rejected messages (bad community, USM failures) are counted and never raise. Repeated traps (the UPS-MIB
resends upsTrapOnBattery every minute) are debounced per rule on a sliding window.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.clock import Clock, SystemClock
from callipso_agent.config.models import AuthProtocol, PrivProtocol
from callipso_agent.config.secrets import Secret
from callipso_agent.errors import ConfigError, ConfigErrors, ProfileError
from callipso_agent.model import Event, Severity
from callipso_agent.transports.snmp import SnmpValue, decode_value, in_subtree
from callipso_agent.yamlload import load_yaml, parse_model

log = structlog.get_logger()

OID = r"^\.?[0-2](\.\d+)+$"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
SNMP_TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"
_ENVELOPE = (SYS_UPTIME, SNMP_TRAP_OID, SNMP_TRAP_ADDRESS, SNMP_TRAP_COMMUNITY, SNMP_TRAP_ENTERPRISE)
SeverityName = Literal["ok", "warning", "critical", "unknown"]


def _oid(v: str | None) -> str | None:
    return v.strip().lstrip(".") if v else v


# ------------------------------------------------------------------------------------------ schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VarbindRef(_Model):
    """A varbind of the trap (matched by prefix: the instance suffix may follow), optionally mapped."""

    varbind: Annotated[str, Field(pattern=OID)]
    map: dict[str, str] | None = Field(default=None, description="raw text (or OID) → text")

    _n = field_validator("varbind")(_oid)

    @field_validator("map")
    @classmethod
    def _keys(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return (
            {(k.strip().lstrip(".") if re.fullmatch(OID, k.strip()) else k): t for k, t in v.items()}
            if v
            else v
        )


class SeverityFrom(_Model):
    varbind: Annotated[str, Field(pattern=OID)]
    map: dict[str, SeverityName | Literal["clear"]] = Field(
        description="varbind value (as text) → severity, or 'clear' for the end of the condition"
    )
    default: SeverityName = "warning"

    _n = field_validator("varbind")(_oid)

    @field_validator("map", mode="before")
    @classmethod
    def _text_keys(cls, v: Any) -> Any:
        return {str(k): s for k, s in v.items()} if isinstance(v, dict) else v


class When(_Model):
    varbind: Annotated[str, Field(pattern=OID)]
    values: list[int | str] = Field(default_factory=list)
    regex: str | None = None

    _n = field_validator("varbind")(_oid)

    @model_validator(mode="after")
    def _some(self) -> When:
        if not self.values and self.regex is None:
            raise ValueError("a 'when' condition needs values or a regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"invalid regex {self.regex!r}: {err}") from err
        return self


class TrapRule(_Model):
    oid: Annotated[
        str | None,
        Field(
            pattern=OID,
            description="notification OID (v2 form; v1 traps are "
            "translated to enterprise.0.specific as RFC 3584 says)",
        ),
    ] = None
    oid_prefix: Annotated[str | None, Field(pattern=OID, description="any notification under this OID")] = (
        None
    )
    event: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    severity: SeverityName = "warning"
    clear: bool = Field(default=False, description="the trap ends the condition raised under the same event")
    severity_from: SeverityFrom | None = None
    source_from: list[VarbindRef] = Field(default_factory=list, description="first present varbind → source")
    text: str = Field(default="", description="text when no text_from varbind is present")
    text_from: list[VarbindRef] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    labels_from: dict[str, VarbindRef] = Field(default_factory=dict)
    when: list[When] = Field(default_factory=list, description="all must hold for this rule to apply")
    debounce_seconds: Annotated[float, Field(ge=0)] = Field(
        default=0, description="a repeat of the same event within this window of the previous one is dropped"
    )

    _n = field_validator("oid", "oid_prefix")(_oid)

    @model_validator(mode="after")
    def _one(self) -> TrapRule:
        if (self.oid is None) == (self.oid_prefix is None):
            raise ValueError("a trap rule needs exactly one of 'oid' or 'oid_prefix'")
        return self


class TrapMapFile(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    description: str = ""
    mibs: list[str] = Field(default_factory=list)
    traps: list[TrapRule] = Field(min_length=1)


# ------------------------------------------------------------------------------------- rule lookup


@dataclass(frozen=True)
class TrapRules:
    rules: tuple[TrapRule, ...] = ()

    def candidates(self, trap_oid: str) -> list[TrapRule]:
        """Rules for a notification OID: exact matches first, then the longest prefixes. An SNMPv1 trap of
        an SMIv2 notification whose OID has no '.0.' (UPS-MIB upsTrapOnBattery 1.3.6.1.2.1.33.2.1, sent as
        enterprise 1.3.6.1.2.1.33.2 / specific 1) arrives translated as enterprise.0.specific (RFC 3584
        3.1); it is matched under both forms."""
        forms = [trap_oid]
        parts = trap_oid.split(".")
        if len(parts) > 2 and parts[-2] == "0":
            forms.append(".".join(parts[:-2] + parts[-1:]))
        exact = [r for f in forms for r in self.rules if r.oid == f]
        prefix = sorted(
            (r for r in self.rules if r.oid_prefix and any(in_subtree(f, r.oid_prefix) for f in forms)),
            key=lambda r: -len(r.oid_prefix or ""),
        )
        return exact + prefix


def load_trap_rules(directory: Path) -> TrapRules:
    """Load every ``*.yaml`` of a trap-rule directory; all errors are reported at once."""
    rules: list[TrapRule] = []
    errors: list[ConfigError] = []
    for f in sorted(directory.glob("*.yaml")):
        try:
            data = load_yaml(f)
            rules.extend(parse_model(TrapMapFile, data, str(f), cls=ProfileError).traps)
        except ConfigErrors as errs:
            errors.extend(errs.errors)
        except ConfigError as err:
            errors.append(err)
    if errors:
        raise ConfigErrors(errors)
    return TrapRules(tuple(rules))


# ---------------------------------------------------------------------------------- interpretation

Varbind = tuple[str, SnmpValue]


def _text(v: SnmpValue) -> str:
    if v.type == "oid":
        return v.text.strip().lstrip(".")
    if isinstance(v.value, bytes):
        try:
            return v.value.decode("utf-8").replace("\x00", "").strip()
        except UnicodeDecodeError:
            return v.value.decode("latin-1").strip()
    return v.text.strip()


def _find(varbinds: Sequence[Varbind], oid: str) -> SnmpValue | None:
    for name, value in varbinds:
        if in_subtree(name, oid):
            return value
    return None


def _ref(varbinds: Sequence[Varbind], ref: VarbindRef) -> str | None:
    v = _find(varbinds, ref.varbind)
    if v is None or v.is_empty:
        return None
    text = _text(v)
    return (ref.map or {}).get(text, text)


def _holds(varbinds: Sequence[Varbind], cond: When) -> bool:
    v = _find(varbinds, cond.varbind)
    if v is None or v.is_empty:
        return False
    text = _text(v)
    if cond.regex is not None and re.search(cond.regex, text):
        return True
    return any(str(want) == text for want in cond.values)


@dataclass(frozen=True, slots=True)
class Interpretation:
    event: str
    severity: Severity
    clear: bool
    source: str
    text: str
    labels: Mapping[str, str]
    rule: TrapRule | None


def interpret(
    rules: TrapRules,
    trap_oid: str,
    varbinds: Sequence[Varbind],
    unknown_severity: Severity = Severity.WARNING,
) -> Interpretation:
    """Pure: apply the first rule whose OID and conditions match; ``trap_unknown`` otherwise."""
    body = [(n, v) for n, v in varbinds if n not in _ENVELOPE]
    for rule in rules.candidates(trap_oid):
        if not all(_holds(body, c) for c in rule.when):
            continue
        severity, clear = Severity.parse(rule.severity), rule.clear
        if rule.severity_from is not None:
            v = _find(body, rule.severity_from.varbind)
            key = _text(v) if v is not None and not v.is_empty else None
            mapped = (
                rule.severity_from.map.get(key, rule.severity_from.default)
                if key is not None
                else rule.severity_from.default
            )
            if mapped == "clear":
                severity, clear = Severity.OK, True
            else:
                severity = Severity.parse(mapped)
        source = next((s for s in (_ref(body, r) for r in rule.source_from) if s), "")
        text = next((t for t in (_ref(body, r) for r in rule.text_from) if t), rule.text)
        labels = dict(rule.labels)
        for label, ref in rule.labels_from.items():
            value = _ref(body, ref)
            if value is not None:
                labels[label] = value
        return Interpretation(rule.event, severity, clear, source, text, labels, rule)
    return Interpretation(
        "trap_unknown", unknown_severity, False, "", f"unknown trap {trap_oid}", {"trap_oid": trap_oid}, None
    )


# ---------------------------------------------------------------------------------------- receiver


@dataclass(frozen=True)
class DeviceRef:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrapV3User:
    """A USM user allowed to send traps. Traps are authenticated with the *sender's* engine ID, which
    must therefore be known (``engine_id``, hex); informs use the receiver's and need none."""

    user: str
    auth_protocol: AuthProtocol | None = None
    auth_key: Secret | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key: Secret | None = None
    engine_id: str | None = None
    #: the one device this user (and engine ID) belongs to: its traps are that device's, whatever their source
    #: address (behind NAT, or several devices behind one address)
    device: DeviceRef | None = None

    def __repr__(self) -> str:  # keys are Secrets already; keep the repr short
        return f"TrapV3User({self.user!r}, engine_id={self.engine_id!r})"


def _engine_hex(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    return value.lower().removeprefix("0x").replace(":", "")


@dataclass
class TrapCounters:
    received: int = 0  # datagrams that reached the receiver
    notifications: int = 0  # authenticated notifications decoded
    events: int = 0  # events handed to the output
    unknown: int = 0  # notifications no rule matched (emitted as trap_unknown)
    debounced: int = 0  # repeats dropped by a rule's debounce window
    malformed: int = 0  # datagrams that are not SNMP messages
    errors: int = 0  # unexpected failures while handling one notification


Emit = Callable[[Event], Awaitable[None]] | asyncio.Queue[Event]

#: (MIB module, counter, reason label) of the messages the receiving engine refuses
REJECTION_COUNTERS = (
    ("__SNMPv2-MIB", "snmpInBadCommunityNames", "bad_community"),
    ("__SNMPv2-MIB", "snmpInASNParseErrs", "parse_error"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames", "unknown_user"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests", "wrong_digest"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors", "decryption_error"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs", "unknown_engine_id"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows", "not_in_time_window"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels", "unsupported_security_level"),
)


def _ber_length(data: bytes, pos: int) -> tuple[int, int]:
    """(length, position after the length octets) of a BER definite length at ``pos``."""
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(data):
        raise ValueError("unsupported BER length")
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def looks_like_snmp(data: bytes) -> bool:
    """Cheap envelope check: SEQUENCE spanning the datagram, starting with INTEGER version 0, 1 or 3."""
    try:
        if len(data) < 8 or data[0] != 0x30:
            return False
        length, pos = _ber_length(data, 1)
        if pos + length != len(data) or data[pos] != 0x02:
            return False
        vlen, vpos = _ber_length(data, pos + 1)
        return 1 <= vlen <= 4 and int.from_bytes(data[vpos : vpos + vlen], "big") in (0, 1, 3)
    except (IndexError, ValueError):
        return False


class _CountingUdpTransport:
    """Factory for a pysnmp UDP transport that drops and counts non-BER datagrams before pysnmp sees them."""

    @staticmethod
    def make(counters: TrapCounters) -> Any:
        from pysnmp.carrier.asyncio.dgram import udp

        class Transport(udp.UdpTransport):  # type: ignore[misc]
            def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:
                counters.received += 1
                if not looks_like_snmp(datagram):
                    counters.malformed += 1
                    return
                callback = self._callback_function
                if callback is None:
                    counters.malformed += 1
                    return

                # pysnmp decodes in a loop callback: an exception there (e.g. pyasn1's OverflowError on a
                # length field of 2**63) would reach the event loop's handler, one traceback per datagram
                # any host can send. Count it as malformed instead.
                def decode() -> None:
                    try:
                        callback(self, transportAddress, datagram)
                    except Exception as err:
                        counters.malformed += 1
                        log.debug("trap_decode_failed", error=f"{type(err).__name__}: {err}"[:200])

                self.loop.call_soon(decode)

        return Transport()


class TrapReceiver:
    """Listen for notifications on ``host:port`` (UDP) and turn them into Events."""

    def __init__(
        self,
        rules: TrapRules,
        emit: Emit,
        *,
        host: str = "127.0.0.1",
        port: int = 10162,
        communities: Iterable[Secret | str] = (),
        v3_users: Iterable[TrapV3User] = (),
        devices: Mapping[str, DeviceRef | str] | None = None,
        clock: Clock | None = None,
        unknown_severity: Severity = Severity.WARNING,
    ) -> None:
        self.rules = rules
        self._emit = emit
        self.host = host
        self.port = port
        self._communities = [c.reveal() if isinstance(c, Secret) else c for c in communities]
        self._v3_users = list(v3_users)
        self._devices = {
            a: (d if isinstance(d, DeviceRef) else DeviceRef(d)) for a, d in (devices or {}).items()
        }
        self.clock = clock or SystemClock()
        self.unknown_severity = unknown_severity
        self.counters = TrapCounters()
        self._last: dict[tuple[str, str, str, bool], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._engine: Any = None
        self._transport: Any = None
        self._receiver: Any = None

    # -- device and debounce ---------------------------------------------------------------------
    def set_devices(self, devices: Mapping[str, DeviceRef | str]) -> None:
        self._devices = {a: (d if isinstance(d, DeviceRef) else DeviceRef(d)) for a, d in devices.items()}

    def resolve(self, address: str, agent_address: str | None = None) -> DeviceRef:
        for candidate in (address, agent_address):
            if candidate and candidate in self._devices:
                return self._devices[candidate]
        return DeviceRef(address, {"address": address})

    def _debounced(self, key: tuple[str, str, str, bool], window: float) -> bool:
        now = self.clock.monotonic()
        if key[3]:  # a clear ends the condition: the next raise is news again
            self._last.pop((key[0], key[1], key[2], False), None)
        last = self._last.get(key)
        self._last[key] = now
        return window > 0 and last is not None and now - last < window

    # -- pure-ish entry point, used by the pysnmp callback and by tests ------------------------------
    def handle(
        self,
        address: str,
        varbinds: Sequence[Varbind],
        *,
        version: str = "",
        security_name: str = "",
        device: DeviceRef | None = None,
    ) -> Event | None:
        """Interpret one notification; return the Event, or None when debounced. ``device``: the device the
        notification's credential belongs to, which wins over its addresses."""
        self.counters.notifications += 1
        trap_oid_value = _find(varbinds, SNMP_TRAP_OID)
        trap_oid = _text(trap_oid_value) if trap_oid_value is not None else ""
        agent = _find(varbinds, SNMP_TRAP_ADDRESS)
        if device is None:
            device = self.resolve(address, _text(agent) if agent is not None else None)
        it = interpret(self.rules, trap_oid, varbinds, self.unknown_severity)
        if it.rule is None:
            self.counters.unknown += 1
        window = it.rule.debounce_seconds if it.rule is not None else 0.0
        if self._debounced((device.name, it.event, it.source, it.clear), window):
            self.counters.debounced += 1
            return None
        raw = {name: _text(value) for name, value in varbinds if not value.is_empty}
        raw.update(
            {"trap_oid": trap_oid, "address": address, "version": version, "security_name": security_name}
        )
        labels = {**device.labels, **it.labels}
        return Event(
            device=device.name,
            name=it.event,
            severity=it.severity,
            at=self.clock.now(),
            source=it.source,
            text=it.text,
            clear=it.clear,
            labels=labels,
            raw=raw,
        )

    async def _deliver(self, event: Event) -> None:
        try:
            if isinstance(self._emit, asyncio.Queue):
                await self._emit.put(event)
            else:
                await self._emit(event)
            self.counters.events += 1
        except Exception as err:
            self.counters.errors += 1
            log.error("trap_emit_failed", error=str(err), event=event.name, device=event.device)

    # -- pysnmp wiring -----------------------------------------------------------------------------
    def _on_notification(
        self,
        snmp_engine: Any,
        state_reference: Any,
        context_engine_id: Any,
        context_name: Any,
        varbinds: Any,
        cb_ctx: Any,
    ) -> None:
        try:
            _domain, addr = snmp_engine.message_dispatcher.get_transport_info(state_reference)
            address = str(addr[0])
            decoded = [(str(name), decode_value(value)) for name, value in varbinds]
            event = self.handle(
                address,
                decoded,
                version=self._last_version,
                security_name=self._last_security,
                device=self._v3_device() if self._last_version == "3" else None,
            )
        except Exception as err:
            self.counters.errors += 1
            log.error("trap_handling_failed", error=str(err))
            return
        if event is not None:
            log.info(
                "trap_received",
                device=event.device,
                trap=event.name,
                severity=event.severity.label,
                clear=event.clear,
            )
            task = asyncio.get_running_loop().create_task(self._deliver(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    _last_version = ""
    _last_security = ""
    _last_engine = ""

    def _observe(self, snmp_engine: Any, execpoint: str, variables: Mapping[str, Any], cb_ctx: Any) -> None:
        self._last_version = {0: "1", 1: "2c", 3: "3"}.get(
            int(variables.get("messageProcessingModel", -1)), ""
        )
        self._last_security = str(variables.get("securityName", ""))

    def _observe_usm(self, snmp_engine: Any, execpoint: str, variables: Mapping[str, Any], cb_ctx: Any) -> None:
        # only the authoritative engine ID is kept: the same context also carries the localized keys
        engine_id = variables.get("securityEngineId")
        self._last_engine = _engine_hex(bytes(engine_id)) if engine_id is not None else ""

    def _v3_device(self) -> DeviceRef | None:
        """The device of the v3 user that authenticated the notification being handled, if it has one."""
        for u in self._v3_users:
            if u.device is None or u.user != self._last_security:
                continue
            if u.engine_id is None or _engine_hex(u.engine_id) == self._last_engine:
                return u.device
        return None

    async def start(self) -> None:
        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import ntfrcv
        from pysnmp.proto.api import v2c  # noqa: F401 - loads the v2c PDU types the receiver needs

        from callipso_agent.transports.snmp import _AUTH, _PRIV

        snmp_engine = engine.SnmpEngine()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        transport = _CountingUdpTransport.make(self.counters)
        config.add_transport(snmp_engine, udp.DOMAIN_NAME, transport.open_server_mode(sock=sock))
        for i, community in enumerate(self._communities):
            config.add_v1_system(snmp_engine, f"callipso-community-{i}", community)
        for u in self._v3_users:
            kwargs: dict[str, Any] = {}
            if u.auth_protocol is not None and u.auth_key is not None:
                kwargs["authProtocol"] = _AUTH[u.auth_protocol]
                kwargs["authKey"] = u.auth_key.reveal()
            if u.priv_protocol is not None and u.priv_key is not None:
                kwargs["privProtocol"] = _PRIV[u.priv_protocol]
                kwargs["privKey"] = u.priv_key.reveal()
            if u.engine_id:
                from pysnmp.proto import rfc1902

                kwargs["securityEngineId"] = rfc1902.OctetString(hexValue=u.engine_id.replace(":", ""))
            config.add_v3_user(snmp_engine, u.user, **kwargs)
        snmp_engine.observer.register_observer(self._observe, "rfc3412.receiveMessage:request")
        snmp_engine.observer.register_observer(self._observe_usm, "rfc3414.processIncomingMsg")
        self._receiver = ntfrcv.NotificationReceiver(snmp_engine, self._on_notification)
        self._engine = snmp_engine
        self._transport = transport
        await asyncio.sleep(0)  # let the datagram endpoint come up
        log.info("trap_receiver_started", host=self.host, port=self.port)

    @property
    def rejected(self) -> int:
        """Messages pysnmp refused: bad community, unknown user, wrong digest, decryption, time window."""
        return sum(self.rejected_by_reason().values())

    def rejected_by_reason(self) -> dict[str, int]:
        """Messages pysnmp refused, by reason (the SNMPv2-MIB and USM counters of the receiving engine)."""
        if self._engine is None:
            return {}
        builder = self._engine.get_mib_builder()
        out: dict[str, int] = {}
        for module, name, reason in REJECTION_COUNTERS:
            try:
                (sym,) = builder.import_symbols(module, name)
                out[reason] = int(sym.syntax)
            except Exception:  # noqa: S112 - a counter this pysnmp does not keep
                continue
        return out

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._engine is not None:
            try:
                if self._receiver is not None:
                    self._receiver.close(self._engine)
                self._engine.transport_dispatcher.close_dispatcher()
            except Exception as err:
                log.warning("trap_receiver_close_failed", error=str(err))
        self._engine = None
        log.info("trap_receiver_stopped", **vars(self.counters))

    async def __aenter__(self) -> TrapReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
