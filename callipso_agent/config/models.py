"""Pydantic models of the agent configuration and the estate inventory.

Every model forbids unknown fields, so a misspelt key is an error that names its file and line.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.config.secrets import SecretRef

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Criticality(enum.StrEnum):
    CERCLE0 = "cercle0"
    SENSITIVE = "sensitive"
    STANDARD = "standard"


class Wan(enum.StrEnum):
    DUAL = "dual"
    SINGLE = "single"


class Vip(enum.StrEnum):
    NONE = "none"
    VIP = "vip"
    VVIP = "vvip"


class Hours(enum.StrEnum):
    ALWAYS = "24x7"
    BUSINESS = "business"


class SiteKind(enum.StrEnum):
    DATACENTER = "datacenter"
    REMOTE = "remote"


class Site(_Model):
    code: Annotated[str, Field(pattern=NAME, description="Short unique site code, e.g. HD13")]
    name: str
    kind: SiteKind = SiteKind.REMOTE
    criticality: Criticality = Criticality.STANDARD
    wan: Wan = Wan.SINGLE
    users: Annotated[int, Field(ge=0)] = 0
    vip: Vip = Vip.NONE
    hours: Hours = Hours.BUSINESS
    external_users: bool = False
    required_autonomy_minutes: Annotated[int | None, Field(ge=0)] = None
    address: str | None = None
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)


class SnmpV2Credential(_Model):
    type: Literal["snmp"] = "snmp"
    version: Literal["1", "2c"]
    community: SecretRef

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class AuthProtocol(enum.StrEnum):
    MD5 = "md5"
    SHA = "sha"
    SHA224 = "sha224"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"


class PrivProtocol(enum.StrEnum):
    """AES-192/256 need a longer key than SHA-1 or MD5 give, and two key extensions exist: ``aes192``/``aes256``
    use Reeder's (Cisco; net-snmp's AES-192C/AES-256C), ``aes192-blumenthal``/``aes256-blumenthal`` the
    Blumenthal draft's (net-snmp's AES-192/AES-256, most other agents). With an authentication hash as long as
    the key (SHA-256 and up for AES-256) the two are the same."""

    DES = "des"
    DES3 = "3des"
    AES = "aes"
    AES192 = "aes192"
    AES256 = "aes256"
    AES192_BLUMENTHAL = "aes192-blumenthal"
    AES256_BLUMENTHAL = "aes256-blumenthal"


class SnmpV3Credential(_Model):
    type: Literal["snmp"] = "snmp"
    version: Literal["3"]
    user: str
    auth_protocol: AuthProtocol | None = None
    auth_key: SecretRef | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key: SecretRef | None = None
    context: str = ""
    engine_id: str | None = Field(default=None, pattern=r"^(0x)?[0-9a-fA-F]{10,64}$",
                                  description="the sender's SNMP engine ID (hex), needed to accept its v3 traps")

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _levels(self) -> SnmpV3Credential:
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise ValueError("auth_protocol and auth_key go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise ValueError("priv_protocol and priv_key go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy (priv_protocol) needs authentication (auth_protocol)")
        return self

    @property
    def security_level(self) -> str:
        if self.priv_protocol:
            return "authPriv"
        return "authNoPriv" if self.auth_protocol else "noAuthNoPriv"


class SshCredential(_Model):
    type: Literal["ssh"]
    username: str
    password: SecretRef | None = None
    key_file: str | None = None
    passphrase: SecretRef | None = None
    known_hosts: str | None = Field(
        default=None, description="known_hosts file; default: the agent's state_dir/known_hosts")
    trust_on_first_use: bool = False
    legacy_algorithms: bool = False

    @model_validator(mode="after")
    def _auth(self) -> SshCredential:
        if self.password is None and self.key_file is None:
            raise ValueError("an ssh credential needs a password or a key_file")
        return self


class HttpCredential(_Model):
    type: Literal["http"]
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    verify_tls: bool = True


def _credential_discriminator(v: Any) -> str:
    if isinstance(v, dict):
        kind = v.get("type", "snmp")
        if kind == "snmp":
            return "snmp3" if str(v.get("version", "")) == "3" else "snmp2"
        return str(kind)
    if isinstance(v, SnmpV3Credential):
        return "snmp3"
    if isinstance(v, SnmpV2Credential):
        return "snmp2"
    return str(getattr(v, "type", "snmp"))


from pydantic import Discriminator, Tag  # noqa: E402

Credential = Annotated[
    Annotated[SnmpV2Credential, Tag("snmp2")]
    | Annotated[SnmpV3Credential, Tag("snmp3")]
    | Annotated[SshCredential, Tag("ssh")]
    | Annotated[HttpCredential, Tag("http")],
    Discriminator(_credential_discriminator),
]


class Device(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    site: str
    family: str
    address: str
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    profile: str = Field(default="auto", description="collector profile name, or 'auto' to detect it")
    snmp: str | None = Field(default=None, description="name of an SNMP credential")
    ssh: str | None = Field(default=None, description="name of an SSH credential")
    ssh_port: Annotated[int, Field(ge=1, le=65535)] = 22
    interval: Annotated[float, Field(ge=1, le=86400)] = 60.0
    timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    services: list[str] = Field(default_factory=list)
    role: Literal["main", "standby", "backup", "primary", "secondary"] | None = None
    description: str = ""
    enabled: bool = True
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            # a host name: letters, digits, dots and hyphens
            import re

            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", v):
                raise ValueError("expected an IP address or a host name") from None
        return v


class StoreSettings(_Model):
    url: str = Field(default="sqlite+aiosqlite:///{state_dir}/callipso.sqlite",
                     description="SQLAlchemy URL; {state_dir} is replaced")


class ApiToken(_Model):
    name: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    scopes: list[Literal["read", "write", "admin"]] = Field(default_factory=lambda: ["read", "write"])  # type: ignore[arg-type]


class HttpSettings(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9730
    tokens: list[ApiToken] = Field(default_factory=list)
    open_reads: bool = Field(default=True, description="read endpoints need no token from loopback")


class TrapSettings(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 10162
    communities: list[str] = Field(default_factory=list, description="names of SNMP v1/v2c credentials accepted")
    v3_users: list[str] = Field(default_factory=list, description="names of SNMPv3 credentials accepted")


class SnmpSettings(_Model):
    client: Literal["fast", "pysnmp"] = Field(default="fast", description=(
        "SNMP v1/v2c client: fast (built-in BER codec, about ten times less CPU) or pysnmp; "
        "SNMPv3 always uses pysnmp"))
    max_concurrency: Annotated[int, Field(ge=1, le=10000)] = 64
    max_repetitions: Annotated[int, Field(ge=1, le=200)] = 25
    backoff_max: Annotated[float, Field(ge=1)] = 600.0


class SshSettings(_Model):
    max_concurrency: Annotated[int, Field(ge=1, le=1000)] = 16
    command_timeout: Annotated[float, Field(gt=0)] = 30.0
    session_timeout: Annotated[float, Field(gt=0)] = 120.0


class OutboxSettings(_Model):
    """Retries of outbound deliveries (EasyVista tickets, notifications) while a peer is down."""

    retry_base: Annotated[float, Field(gt=0, le=3600, description="seconds before the first retry")] = 5.0
    retry_max: Annotated[float, Field(gt=0, le=86400, description=(
        "longest wait between two attempts: a peer back after an outage is caught up within this"))] = 900.0
    max_attempts: Annotated[int, Field(ge=1, le=10000, description="attempts before a job is given up (dead)")] = 25

    @model_validator(mode="after")
    def _order(self) -> OutboxSettings:
        if self.retry_max < self.retry_base:
            raise ValueError("retry_max must be at least retry_base")
        return self


class AgentSettings(_Model):
    name: str = "callipso"
    language: Literal["fr", "en"] = "fr"
    timezone: str = "Europe/Paris"
    state_dir: str = "var"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    jitter: Annotated[float, Field(ge=0, le=0.5, description="fraction of the interval")] = 0.1
    lease_ttl: Annotated[float, Field(gt=0, le=3600, description=(
        "seconds a device lease lives without renewal, when several agents share a PostgreSQL store; "
        "keep it under two thirds of the poll interval so a dead agent's devices are taken over in one"))] = 40.0
    store: StoreSettings = Field(default_factory=StoreSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    traps: TrapSettings = Field(default_factory=TrapSettings)
    snmp: SnmpSettings = Field(default_factory=SnmpSettings)
    ssh: SshSettings = Field(default_factory=SshSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)


class ServiceLine(_Model):
    key: Annotated[str, Field(pattern=NAME)]
    name: str
    description: str = ""
    cercle0: bool = False
    users: Annotated[int, Field(ge=0)] = 0
    external_users: bool = False


class AgentConfig(_Model):
    """The whole configuration: agent settings plus the inventory."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    credentials: dict[str, Credential] = Field(default_factory=dict)
    sites: list[Site] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    services: list[ServiceLine] = Field(default_factory=list)

    def site(self, code: str) -> Site:
        for s in self.sites:
            if s.code == code:
                return s
        raise KeyError(code)

    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)
