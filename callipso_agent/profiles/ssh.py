"""SSH command profiles (``collectors/ssh/*.yaml``): schema, cross-checks and loading.

A profile is data: the platform (prompt, paging, failure markers, shell or exec mode) plus the
commands to run, each with a declarative regex-table parser (see :mod:`callipso_agent.parsers.table`).
Every model forbids unknown keys; every error names the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from callipso_agent.errors import ConfigError, ConfigErrors, NoProfile, ProfileError
from callipso_agent.model import MetricKind, Severity
from callipso_agent.paths import collectors_dir
from callipso_agent.transports.ssh import SessionSpec
from callipso_agent.yamlload import dotted_path, line_of, load_yaml, parse_model

METRIC_NAME = r"^[a-z_][a-z0-9_]*$"
LABEL_NAME = r"^[a-z_][a-z0-9_]*$"
DEFAULT_KEY = "*"


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"invalid regular expression: {err}") from None
    return value


Regex = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateValue(_Model):
    """What one vendor text means: a normalised label, a numeric value and a severity."""

    label: Annotated[str, Field(min_length=1)]
    value: float
    severity: Annotated[
        Severity, WithJsonSchema({"type": "string", "enum": ["ok", "warning", "critical", "unknown"]})
    ] = Severity.OK

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> Any:
        return Severity.parse(v) if isinstance(v, str) else v


class PlatformSpec(_Model):
    mode: Literal["shell", "exec"] = "shell"
    prompt_pattern: str | None = Field(
        default=None, description="regex matching the prompt at the end of output"
    )
    paging_off: list[str] = Field(default_factory=list, description="commands sent once after login")
    pager_pattern: str | None = Field(
        default=None, description="regex of a pager prompt still answered with a space"
    )
    failed_when_contains: list[str] = Field(default_factory=list)
    line_ending: str = "\n"
    term_width: Annotated[int, Field(ge=40, le=1000)] = 250
    term_height: Annotated[int, Field(ge=0, le=1000)] = 48

    @field_validator("prompt_pattern", "pager_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return None if v is None else _check_regex(v)

    @model_validator(mode="after")
    def _shell_needs_prompt(self) -> PlatformSpec:
        if self.mode == "shell" and not self.prompt_pattern:
            raise ValueError("a shell-mode platform needs a prompt_pattern")
        return self

    def session_spec(self) -> SessionSpec:
        return SessionSpec(
            mode=self.mode,
            prompt_pattern=self.prompt_pattern,
            paging_off=tuple(self.paging_off),
            pager_pattern=self.pager_pattern,
            failed_when_contains=tuple(self.failed_when_contains),
            line_ending=self.line_ending,
            term_size=(self.term_width, self.term_height),
        )


class FieldSpec(_Model):
    """How to type one named group of the record regexes."""

    type: Literal["str", "int", "float", "state", "tokens", "timestamp"] = "str"
    scale: float = 1.0
    offset: float = 0.0
    states: str | None = Field(default=None, description="name of a table under the profile's 'states'")
    strip: str | None = Field(default=None, description="characters stripped from both ends (besides spaces)")
    case: Literal["lower", "upper"] | None = None
    format: str | None = Field(default=None, description="strptime format of a timestamp")
    tz: str = Field(default="UTC", description="time zone of a timestamp that carries none")
    separator: str | None = Field(default=None, description="tokens separator; default: whitespace")
    ignore: list[str] = Field(default_factory=list, description="tokens to skip")

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.type in ("state", "tokens") and not self.states:
            raise ValueError(f"a '{self.type}' field needs 'states' (a table name)")
        if self.type == "timestamp" and not self.format:
            raise ValueError("a 'timestamp' field needs a strptime 'format'")
        return self


class MeasurementSpec(_Model):
    name: Annotated[str, Field(pattern=METRIC_NAME)]
    help: str = ""
    unit: str = ""
    kind: MetricKind = MetricKind.GAUGE
    value: str | None = Field(default=None, description="field giving the value (state field for kind=state)")
    const: float | None = Field(default=None, description="constant value, e.g. 1 for an info metric")
    text: str | None = Field(default=None, description="field kept as the measurement text")
    labels: dict[Annotated[str, Field(pattern=LABEL_NAME)], str] = Field(default_factory=dict)
    static_labels: dict[Annotated[str, Field(pattern=LABEL_NAME)], str] = Field(default_factory=dict)
    aggregate: Literal["none", "count", "sum", "min", "max"] = "none"
    zero_fill: dict[str, list[str]] = Field(default_factory=dict)
    divide_by: str | None = Field(default=None, description="field the value is divided by (ratios)")
    multiply: float = 1.0
    relative_to_now: bool = Field(
        default=False, description="value minus the collection time (epoch seconds)"
    )
    system: str | None = Field(default=None, description="also report this value's text under system.<key>")
    required: bool = Field(default=True, description="UNKNOWN when no record carries this measurement")
    where: dict[str, list[str]] = Field(
        default_factory=dict, description="keep only records whose field text is one of these"
    )

    @model_validator(mode="after")
    def _consistent(self) -> MeasurementSpec:
        if self.aggregate == "count":
            if self.value is not None or self.const is not None:
                raise ValueError("a 'count' aggregate counts records: give no 'value' nor 'const'")
        elif self.value is None and self.const is None:
            raise ValueError("a measurement needs a 'value' field or a 'const'")
        if self.value is not None and self.const is not None:
            raise ValueError("give 'value' or 'const', not both")
        for label in self.zero_fill:
            if label not in self.labels:
                raise ValueError(f"zero_fill names label {label!r}, which is not in 'labels'")
        if self.zero_fill and self.aggregate != "count":
            raise ValueError("zero_fill only applies to a 'count' aggregate")
        return self

    def referenced_fields(self) -> Iterator[tuple[str, str]]:
        """(where, field) pairs this measurement reads."""
        if self.value:
            yield "value", self.value
        if self.text:
            yield "text", self.text
        if self.divide_by:
            yield "divide_by", self.divide_by
        for label, fname in self.labels.items():
            yield f"labels.{label}", fname
        for fname in self.where:
            yield f"where.{fname}", fname


class ParserSpec(_Model):
    require: list[Regex] = Field(
        default_factory=list,
        description="patterns the output must contain, else every measurement is UNKNOWN",
    )
    records: Annotated[list[Regex], Field(min_length=1)]
    block_start: Regex | None = Field(default=None, description="a line starting a multi-line record")
    strict: bool = Field(
        default=False,
        description="a non-blank line matching no record nor 'ignore' "
        "makes every measurement UNKNOWN (garbage, truncation)",
    )
    ignore: list[Regex] = Field(default_factory=list, description="lines skipped in strict mode (headers)")
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    measurements: Annotated[list[MeasurementSpec], Field(min_length=1)]

    @field_validator("require", "records", "ignore")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for r in v:
            _check_regex(r)
        return v

    @field_validator("block_start")
    @classmethod
    def _block(cls, v: str | None) -> str | None:
        return None if v is None else _check_regex(v)

    def group_names(self) -> set[str]:
        names: set[str] = set()
        for r in [*self.records, *([self.block_start] if self.block_start else [])]:
            names.update(re.compile(r).groupindex)
        return names


class CommandSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    command: Annotated[str, Field(min_length=1)]
    description: str = ""
    timeout: Annotated[float | None, Field(gt=0)] = None
    parser: ParserSpec


StateTable = dict[str, StateValue]


class SshProfile(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    family: str
    description: str = ""
    platform: PlatformSpec
    states: dict[str, StateTable] = Field(default_factory=dict)
    commands: Annotated[list[CommandSpec], Field(min_length=1)]

    def command(self, name: str) -> CommandSpec:
        for c in self.commands:
            if c.name == name:
                return c
        raise KeyError(name)


def cross_check(profile: SshProfile, data: Any, file: str) -> list[ConfigError]:
    """References between parts of a profile: groups, fields, state tables, labels."""
    errors: list[ConfigError] = []

    def err(loc: tuple[str | int, ...], msg: str) -> None:
        errors.append(
            ProfileError(msg, file=file, line=line_of(data, loc), field=dotted_path(loc))
        )

    names: set[str] = set()
    for ci, cmd in enumerate(profile.commands):
        base: tuple[str | int, ...] = ("commands", ci)
        if cmd.name in names:
            err((*base, "name"), f"duplicate command name {cmd.name!r}")
        names.add(cmd.name)
        groups = cmd.parser.group_names()
        listed = ", ".join(sorted(groups))
        if not groups:
            err((*base, "parser", "records"), "the record regexes define no named group (?P<name>...)")
        for fname, fspec in cmd.parser.fields.items():
            if fname not in groups:
                err(
                    (*base, "parser", "fields", fname),
                    f"field {fname!r} is not a named group of the record regexes; groups: {listed}",
                )
            if fspec.states and fspec.states not in profile.states:
                known = ", ".join(sorted(profile.states)) or "none"
                err(
                    (*base, "parser", "fields", fname, "states"),
                    f"unknown state table {fspec.states!r}; known: {known}",
                )
        for mi, m in enumerate(cmd.parser.measurements):
            for where, fname in m.referenced_fields():
                if fname not in groups:
                    err(
                        (*base, "parser", "measurements", mi, *where.split(".")),
                        f"{fname!r} is not a named group of the record regexes; groups: {listed}",
                    )
            if m.kind == MetricKind.STATE and m.value:
                f = cmd.parser.fields.get(m.value)
                if f is None or f.type not in ("state", "tokens"):
                    err(
                        (*base, "parser", "measurements", mi, "value"),
                        f"a 'state' measurement needs a value field of type 'state' (got {m.value!r})",
                    )
            tokens = [f for f, s in cmd.parser.fields.items() if s.type == "tokens"]
            if len(tokens) > 1:
                err((*base, "parser", "fields"), "at most one 'tokens' field per command")
    return errors


def load_ssh_profile_file(path: Path) -> SshProfile:
    data = load_yaml(path)
    file = str(path)
    if not isinstance(data, dict):
        raise ConfigErrors(
            [
                ProfileError(
                    "expected a mapping (name, family, platform, commands)",
                    file=file,
                    line=getattr(data, "line", 1),
                )
            ]
        )
    profile = parse_model(SshProfile, data, file, cls=ProfileError)
    problems = cross_check(profile, data, file)
    if problems:
        raise ConfigErrors(problems)
    return profile


def ssh_profiles_dir() -> Path:
    return collectors_dir() / "ssh"


def available_ssh_profiles(directory: Path | None = None) -> list[str]:
    d = directory or ssh_profiles_dir()
    return sorted(p.stem for p in d.glob("*.yaml"))


def load_ssh_profile(name_or_path: str | Path, directory: Path | None = None) -> SshProfile:
    """Load a profile by name (``oxe``) from ``collectors/ssh/`` or from an explicit path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return load_ssh_profile_file(p)
    d = directory or ssh_profiles_dir()
    path = d / f"{name_or_path}.yaml"
    if not path.is_file():
        names = available_ssh_profiles(d)
        raise NoProfile(
            f"no SSH profile named {str(name_or_path)!r}; known: {', '.join(names)}", candidates=names
        )
    return load_ssh_profile_file(path)


def ssh_profile_json_schema() -> dict[str, Any]:
    """JSON Schema of a profile file, for editors and CI (``collectors/ssh/schema.json``)."""
    schema = SshProfile.model_json_schema()
    schema["$id"] = "https://github.com/callipso-agent/callipso-agent/collectors/ssh/schema.json"
    schema["title"] = "callipso-agent SSH command profile"
    return schema
