"""The ``meteo:`` settings: recipients, SMTP, schedule, and where the checklist and planned changes are.

They live in ``<config folder>/meteo/meteo.yaml`` (a mapping with one key, ``meteo``), beside the planned
changes file ``<config folder>/meteo/changes.yaml``. The sub-folder keeps them out of the inventory
loader, which reads every ``*.yaml`` at the top of the configuration folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time as wall_time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callipso_agent.config.secrets import SecretRef
from callipso_agent.errors import ConfigError
from callipso_agent.yamlload import LineDict, load_yaml, parse_model

ADDRESS = r"^[^@\s<>,;]+@[^@\s<>,;]+$"
SETTINGS_DIR = "meteo"
SETTINGS_FILE = "meteo.yaml"
CHANGES_FILE = "changes.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpSettings(_Model):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (port 587), tls (implicit TLS, port 465) or none (relay on loopback)",
    )
    username: str | None = None
    password: SecretRef | None = None
    ca_file: str | None = Field(
        default=None, description="CA bundle to verify the server (default: the system's)"
    )
    verify: bool = True
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    local_hostname: str | None = None


class MeteoSettings(_Model):
    enabled: bool = True
    language: Literal["fr", "en"] | None = Field(default=None, description="default: the agent's language")
    sender: Annotated[str, Field(pattern=ADDRESS)] = "callipso-agent@localhost"
    sender_name: str = "Supervision Callipso"
    recipients: list[Annotated[str, Field(pattern=ADDRESS)]] = Field(default_factory=list)
    cc: list[Annotated[str, Field(pattern=ADDRESS)]] = Field(default_factory=list)
    reply_to: Annotated[str, Field(pattern=ADDRESS)] | None = None
    time: str = Field(
        default="08:30", description='when to send, wall-clock time in `timezone` (quoted: "08:30")'
    )
    timezone: str = "Europe/Paris"
    working_days_only: bool = Field(default=True, description="skip days the contract's calendar closes")
    contract: str | None = Field(
        default=None, description="contract file for the calendar (default: shipped)"
    )
    checklist: str | None = Field(
        default=None, description="météo checklist (default: shipped checks/meteo.yaml)"
    )
    changes_file: str = Field(default=CHANGES_FILE, description="planned changes, relative to this folder")
    horizon_days: Annotated[int, Field(ge=0, le=60)] = 7
    incident_prefix: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{0,9}$")] = "CAL"
    retries: Annotated[int, Field(ge=0, le=20)] = 4
    retry_backoff: Annotated[float, Field(gt=0)] = 30.0
    retry_backoff_max: Annotated[float, Field(gt=0)] = 900.0
    api_url: str | None = Field(default=None, description="agent API for the CLI (default: from agent.http)")
    api_token: SecretRef | None = None
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)

    @field_validator("time", mode="before")
    @classmethod
    def _wall_time(cls, v: Any) -> Any:
        if isinstance(v, int):  # YAML 1.1 reads an unquoted 08:30 as a sexagesimal number
            raise ValueError('quote the time, e.g. time: "08:30"')
        if not isinstance(v, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("expected HH:MM")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @property
    def send_time(self) -> wall_time:
        h, m = self.time.split(":")
        return wall_time(int(h), int(m))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class _SettingsFile(_Model):
    meteo: MeteoSettings = Field(default_factory=MeteoSettings)


@dataclass(frozen=True)
class LoadedMeteoSettings:
    settings: MeteoSettings
    base_dir: Path  # the folder the settings' relative paths start from
    file: Path | None  # None: no settings file, defaults

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def changes_path(self) -> Path:
        return self.path(self.settings.changes_file)


def settings_dir(config_path: Path) -> Path:
    base = config_path if config_path.is_dir() else config_path.parent
    return base / SETTINGS_DIR


def load_meteo_settings(config_path: str | Path) -> LoadedMeteoSettings:
    """Read ``<config folder>/meteo/meteo.yaml`` (defaults when absent). Errors name file, line and field."""
    folder = settings_dir(Path(config_path))
    file = folder / SETTINGS_FILE
    if not file.is_file():
        return LoadedMeteoSettings(MeteoSettings(), folder, None)
    data = load_yaml(file)
    if data is None:
        return LoadedMeteoSettings(MeteoSettings(), folder, file)
    if not isinstance(data, LineDict):
        raise ConfigError(
            "expected a mapping with a 'meteo' section", file=str(file), line=getattr(data, "line", 1)
        )
    parsed = parse_model(_SettingsFile, data, str(file))
    return LoadedMeteoSettings(parsed.meteo, folder, file)
