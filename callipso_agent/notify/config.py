"""The ``notifications:`` file: channels, routing rules, quiet hours, storms, rate limits, escalation.

Loaded from ``<config>/outputs/notifications.yaml`` (a sub-folder, so the inventory loader, which reads
the top-level ``*.yaml`` files, leaves it alone). Every model forbids unknown keys and every error
names its file, line and field.

Example::

    notifications:
      language: fr
      link: "https://callipso.example/incidents/{id}"
      nights: {start: "20:00", end: "08:00"}
      quiet_hours: {start: "22:00", end: "07:00", allow: [P1]}
      storm: {threshold: 5, window_minutes: 10}
      rate_limit: {max_per_hour: 30}
      channels:
        mail-noc: {type: email, smtp: {host: smtp.example, port: 587, username: callipso,
                   password: {env: SMTP_PASSWORD}}, sender: callipso@example.org, to: [noc@example.org]}
        sms-astreinte: {type: sms, url: "https://eu.linkmobility.io", username: cd13,
                        password: {env: LINK_PASSWORD}, platform_id: COMMON_API, platform_partner_id: "1234",
                        source: CALLIPSO, to: ["+33612345678"]}
        teams-noc: {type: teams, flavour: workflow, url_secret: {env: TEAMS_WORKFLOW_URL}}
      routes:
        - name: p1-astreinte
          match: {priorities: [P1], when: [outside_working_hours]}
          notify: [sms-astreinte, teams-noc]
          escalation:
            - {after_minutes: 15, notify: [sms-chef]}
        - name: p3-heures-ouvrees
          match: {priorities: [P3], when: [working_hours]}
          notify: [mail-noc]
          defer: true          # outside the window: sent at the next opening instead of dropped
"""

from __future__ import annotations

import enum
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from callipso_agent.config.secrets import SecretRef
from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.incidents.contract import CalendarSettings
from callipso_agent.yamlload import line_of, load_yaml, validation_errors

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Priority = Annotated[str, Field(pattern=r"^P[1-4]$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _wall(v: Any) -> Any:
    if not isinstance(v, (str, time)):
        raise ValueError("write the time as a quoted 'HH:MM' string, e.g. '22:00'")
    return v


class Window(_Model):
    """A daily wall-clock window; ``end`` before ``start`` wraps over midnight."""

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, v: Any) -> Any:
        return _wall(v)

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class QuietHours(Window):
    allow: list[Priority] = Field(default_factory=lambda: ["P1"], description="priorities never deferred")
    channels: list[str] | None = Field(default=None, description="channels it applies to (default: all)")


class Storm(_Model):
    threshold: Annotated[int, Field(ge=1, description="more than this many incidents ...")] = 5
    window_minutes: Annotated[
        int, Field(ge=1, le=1440, description="... within this many minutes on one site")
    ] = 10
    bypass: list[Priority] = Field(default_factory=list, description="priorities still notified one by one")
    notify: list[str] | None = Field(
        default=None, description="channels of the grouped message (default: those of the incident's route)"
    )


class RateLimit(_Model):
    max_per_hour: Annotated[int, Field(ge=1)] = 30


class SmtpSettings(_Model):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    starttls: bool = True
    tls: bool = Field(default=False, description="implicit TLS (port 465)")
    username: str | None = None
    password: SecretRef | None = None
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    verify_tls: bool = True
    ca_file: str | None = None

    @model_validator(mode="after")
    def _modes(self) -> SmtpSettings:
        if self.tls and self.starttls:
            raise ValueError("choose 'tls' (implicit, port 465) or 'starttls', not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("'username' and 'password' go together")
        return self


class EmailChannel(_Model):
    type: Literal["email"]
    smtp: SmtpSettings
    sender: str
    to: Annotated[list[str], Field(min_length=1)]
    language: Literal["fr", "en"] | None = None


class SmsChannel(_Model):
    """LINK Mobility "common" SMS REST API: ``POST <url>/sms/send`` with HTTP Basic."""

    type: Literal["sms"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    username: str
    password: SecretRef
    platform_id: str
    platform_partner_id: str
    source: str = "CALLIPSO"
    source_ton: Literal["ALPHANUMERIC", "MSISDN", "SHORTNUMBER"] = "ALPHANUMERIC"
    gate_id: str | None = Field(default=None, description="delivery-report gate (enables delivery reports)")
    timeout: Annotated[float, Field(gt=0, le=120)] = 15.0
    to: Annotated[list[Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")]], Field(min_length=1)]
    language: Literal["fr", "en"] | None = None


class TeamsChannel(_Model):
    type: Literal["teams"]
    flavour: Literal["workflow", "connector"] = "workflow"
    url: Annotated[str | None, Field(pattern=r"^https?://")] = None
    url_secret: SecretRef | None = Field(
        default=None, description="the webhook URL is a credential: prefer this"
    )
    timeout: Annotated[float, Field(gt=0, le=120)] = 15.0
    language: Literal["fr", "en"] | None = None

    @model_validator(mode="after")
    def _one_url(self) -> TeamsChannel:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("give exactly one of 'url' and 'url_secret'")
        return self


class WebhookChannel(_Model):
    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)
    timeout: Annotated[float, Field(gt=0, le=120)] = 15.0
    language: Literal["fr", "en"] | None = None


Channel = Annotated[EmailChannel | SmsChannel | TeamsChannel | WebhookChannel, Field(discriminator="type")]


class When(enum.StrEnum):
    ALWAYS = "always"
    WORKING_HOURS = "working_hours"  # the business calendar is open
    OUTSIDE_WORKING_HOURS = "outside_working_hours"
    NIGHTS = "nights"  # the 'nights' window
    DAYS = "days"
    WEEKENDS = "weekends"  # Saturday and Sunday
    HOLIDAYS = "holidays"  # public holidays of the calendar


class Event(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    NOTE = "note"
    RESOLVED = "resolved"


class Match(_Model):
    priorities: list[Priority] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    when: list[When] = Field(default_factory=lambda: [When.ALWAYS])


class EscalationLevel(_Model):
    after_minutes: Annotated[int, Field(ge=1, le=10080)]
    notify: Annotated[list[str], Field(min_length=1)]


class Route(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    match: Match = Field(default_factory=Match)
    events: list[Event] = Field(default_factory=lambda: [Event.OPENED, Event.RESOLVED])
    notify: Annotated[list[str], Field(min_length=1)]
    defer: bool = Field(default=False, description="outside 'when': send when the window next opens")
    continue_: bool = Field(default=False, alias="continue", description="also try the next routes")
    escalation: list[EscalationLevel] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _levels(self) -> Route:
        minutes = [lvl.after_minutes for lvl in self.escalation]
        if minutes != sorted(set(minutes)):
            raise ValueError("escalation levels must have strictly increasing 'after_minutes'")
        return self


class NotificationsConfig(_Model):
    language: Literal["fr", "en"] = "fr"
    timezone: str = "Europe/Paris"
    link: str | None = Field(default=None, description="incident link template, {id} and {key} replaced")
    calendar: CalendarSettings | None = Field(default=None, description="default: the contract's calendar")
    nights: Window = Field(default_factory=lambda: Window(start=time(20, 0), end=time(8, 0)))
    quiet_hours: QuietHours | None = None
    storm: Storm | None = None
    rate_limit: RateLimit | None = None
    channels: dict[Annotated[str, Field(pattern=NAME)], Channel] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class NotificationsFile(_Model):
    notifications: NotificationsConfig


def cross_check(cfg: NotificationsConfig, data: Any, file: str) -> list[ConfigError]:
    """Channel names used by routes, escalations, quiet hours and storms must exist."""
    errors: list[ConfigError] = []
    known = set(cfg.channels)

    def check(names: list[str] | None, loc: tuple[str | int, ...]) -> None:
        for i, name in enumerate(names or []):
            if name not in known:
                errors.append(
                    ConfigError(
                        f"unknown channel {name!r}; known channels: {', '.join(sorted(known)) or '(none)'}",
                        file=file,
                        line=line_of(data, (*loc, i)),
                        field=_dotted((*loc, i)),
                    )
                )

    for r, route in enumerate(cfg.routes):
        check(route.notify, ("notifications", "routes", r, "notify"))
        for lvl, level in enumerate(route.escalation):
            check(level.notify, ("notifications", "routes", r, "escalation", lvl, "notify"))
    if cfg.quiet_hours is not None:
        check(cfg.quiet_hours.channels, ("notifications", "quiet_hours", "channels"))
    if cfg.storm is not None:
        check(cfg.storm.notify, ("notifications", "storm", "notify"))
    names = [r.name for r in cfg.routes]
    for r, name in enumerate(names):
        if names.index(name) != r:
            errors.append(
                ConfigError(
                    f"duplicate route name {name!r}",
                    file=file,
                    line=line_of(data, ("notifications", "routes", r, "name")),
                    field=f"notifications.routes[{r}].name",
                )
            )
    return errors


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Errors:
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self._errors = errors

    def errors(self) -> list[dict[str, Any]]:
        return self._errors


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts the discriminator value into the location of a channel's errors: drop it."""
    if len(loc) > 3 and loc[:2] == ("notifications", "channels") and loc[3] in CHANNEL_TYPES:
        return (*loc[:3], *loc[4:])
    return loc


CHANNEL_TYPES = ("email", "sms", "teams", "webhook")


def parse_notifications(data: Any, file: str) -> NotificationsConfig:
    """Validate loaded YAML data; raise ConfigErrors naming file, line and field."""
    try:
        model = NotificationsFile.model_validate(data)
    except ValidationError as err:
        cleaned = [dict(e, loc=_strip_union_tags(tuple(e["loc"]))) for e in err.errors()]
        raise validation_errors(_Errors(cleaned), data, file) from None  # type: ignore[arg-type]
    errors = cross_check(model.notifications, data, file)
    if errors:
        raise ConfigErrors(errors)
    return model.notifications


def notifications_path(config_path: Path) -> Path:
    """``<config folder>/outputs/notifications.yaml`` (beside a single config file as well)."""
    folder = config_path if config_path.is_dir() else config_path.parent
    return folder / "outputs" / "notifications.yaml"


def load_notifications(path: Path) -> NotificationsConfig:
    try:
        data = load_yaml(path)
    except ConfigError as err:
        raise ConfigErrors([err]) from None
    return parse_notifications(data, str(path))
