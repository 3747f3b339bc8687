"""Load the configuration from a file or a directory of YAML files.

A directory holds any number of ``*.yaml`` files; each is a mapping of sections (``agent``,
``credentials``, ``sites``, ``devices``, ``services``). List sections may be split across files;
``agent`` may appear once. Errors are collected and reported together, each with file, line and field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callipso_agent.config.models import AgentConfig, SnmpV2Credential, SnmpV3Credential, SshCredential
from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.yamlload import LineDict, LineList, load_yaml, validation_errors

SECTIONS = ("agent", "credentials", "sites", "devices", "services")
LIST_SECTIONS = ("sites", "devices", "services")


@dataclass
class Origin:
    file: str
    line: int | None


@dataclass
class LoadedConfig:
    config: AgentConfig
    base_dir: Path
    files: list[Path]
    origins: dict[tuple[str, int | str], Origin] = field(default_factory=dict)

    def origin(self, section: str, index: int | str) -> Origin:
        return self.origins.get((section, index), Origin(str(self.base_dir), None))

    @property
    def state_dir(self) -> Path:
        p = Path(self.config.agent.state_dir)
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def config_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigErrors([ConfigError("no *.yaml file in this directory", file=str(path))])
        return files
    if path.is_file():
        return [path]
    raise ConfigErrors([ConfigError("no such file or directory", file=str(path))])


def load_config(path: str | Path, *, families: Iterable[str] | None = None,
                profiles: Iterable[str] | None = None) -> LoadedConfig:
    """Load and validate; raise ConfigErrors listing every problem found."""
    path = Path(path)
    files = config_files(path)
    errors: list[ConfigError] = []
    merged: dict[str, Any] = {}
    # where each merged item came from: (section, index or key) -> (file, data-node, index-in-node)
    where: dict[tuple[str, int | str], tuple[str, Any, int | str]] = {}
    section_file: dict[str, str] = {}

    for f in files:
        try:
            data = load_yaml(f)
        except ConfigError as err:
            errors.append(err)
            continue
        if data is None:
            continue
        if not isinstance(data, LineDict):
            errors.append(ConfigError("expected a mapping of sections (agent, credentials, sites, devices, services)",
                                      file=str(f), line=getattr(data, "line", 1)))
            continue
        for key, value in data.items():
            line = data.key_lines.get(str(key))
            if key not in SECTIONS:
                errors.append(ConfigError(f"unknown section; expected one of {', '.join(SECTIONS)}",
                                          file=str(f), line=line, field=str(key)))
                continue
            if key in LIST_SECTIONS:
                if value is None:
                    continue
                if not isinstance(value, LineList):
                    errors.append(ConfigError("expected a list", file=str(f), line=line, field=str(key)))
                    continue
                items = merged.setdefault(key, LineList())
                for i, item in enumerate(value):
                    where[(key, len(items))] = (str(f), value, i)
                    items.append(item)
                    items.item_lines.append(value.item_lines[i])
            elif key == "credentials":
                if value is None:
                    continue
                if not isinstance(value, LineDict):
                    errors.append(ConfigError("expected a mapping name -> credential", file=str(f), line=line,
                                              field=str(key)))
                    continue
                target = merged.setdefault(key, LineDict())
                for name, cred in value.items():
                    if name in target:
                        errors.append(ConfigError("credential defined twice", file=str(f),
                                                  line=value.key_lines.get(str(name)), field=f"credentials.{name}"))
                        continue
                    target[name] = cred
                    target.key_lines[str(name)] = value.key_lines.get(str(name), 0)
                    where[(key, str(name))] = (str(f), value, str(name))
            else:  # agent
                if key in section_file:
                    errors.append(ConfigError(f"section already given in {section_file[key]}", file=str(f),
                                              line=line, field=str(key)))
                    continue
                section_file[key] = str(f)
                merged[key] = value
                where[(key, 0)] = (str(f), data, key)

    if errors:
        raise ConfigErrors(errors)

    try:
        config = AgentConfig.model_validate(merged)
    except Exception as exc:  # pydantic ValidationError
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        raise _split_errors(exc, merged, where) from None

    base_dir = path if path.is_dir() else path.parent
    loaded = LoadedConfig(config=config, base_dir=base_dir.resolve(), files=files)
    for (section, idx), (file, node, sub) in where.items():
        if isinstance(node, LineList) and isinstance(sub, int):
            loaded.origins[(section, idx)] = Origin(file, node.item_lines[sub])
        elif isinstance(node, LineDict):
            loaded.origins[(section, idx)] = Origin(file, node.key_lines.get(str(sub)))
    cross = cross_check(loaded, families=families, profiles=profiles)
    if cross:
        raise ConfigErrors(cross)
    return loaded


def _split_errors(exc: Any, merged: dict[str, Any],
                  where: dict[tuple[str, int | str], tuple[str, Any, int | str]]) -> ConfigErrors:
    """Re-anchor each pydantic error on the file that held the offending item."""
    out: list[ConfigError] = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        key: tuple[str, int | str] | None = None
        rest: tuple[Any, ...] = ()
        if loc and loc[0] in LIST_SECTIONS and len(loc) > 1 and isinstance(loc[1], int):
            key, rest = (str(loc[0]), loc[1]), loc[2:]
        elif loc and loc[0] == "credentials" and len(loc) > 1:
            key, rest = ("credentials", str(loc[1])), loc[2:]
            # drop the union tag pydantic inserts
            if rest and rest[0] in ("snmp2", "snmp3", "ssh", "http"):
                rest = rest[1:]
        elif loc and loc[0] == "agent":
            key, rest = ("agent", 0), loc[1:]
        if key is not None and key in where:
            file, node, sub = where[key]
            item = node[sub]
            errs = validation_errors(_Fake([dict(e, loc=rest)]), item, file,  # type: ignore[arg-type]
                                     prefix=(loc[0], loc[1]) if key[0] != "agent" else ("agent",))
            if not rest:
                line = node.item_lines[int(sub)] if isinstance(node, LineList) else node.key_lines.get(str(sub))
                for ce in errs.errors:
                    ce.line = line
            out.extend(errs.errors)
        else:
            out.append(ConfigError(str(e.get("msg")), field=".".join(map(str, loc)) or None))
    return ConfigErrors(out)


class _Fake:
    """Adapter giving validation_errors() the errors() of a sub-location."""

    def __init__(self, errs: list[Any]) -> None:
        self._errs = errs

    def errors(self) -> list[dict[str, Any]]:
        return self._errs


def cross_check(loaded: LoadedConfig, *, families: Iterable[str] | None,
                profiles: Iterable[str] | None) -> list[ConfigError]:
    cfg = loaded.config
    errors: list[ConfigError] = []

    def err(section: str, idx: int | str, field: str, msg: str) -> None:
        o = loaded.origin(section, idx)
        errors.append(ConfigError(msg, file=o.file, line=o.line, field=field))

    site_codes: set[str] = set()
    for i, s in enumerate(cfg.sites):
        if s.code in site_codes:
            err("sites", i, f"sites[{i}].code", f"duplicate site code {s.code!r}")
        site_codes.add(s.code)
    service_keys = {s.key for s in cfg.services}
    known_families = sorted(set(families)) if families is not None else None
    known_profiles = set(profiles) if profiles is not None else None
    names: set[str] = set()
    for i, d in enumerate(cfg.devices):
        f = f"devices[{i}]"
        if d.name in names:
            err("devices", i, f"{f}.name", f"duplicate device name {d.name!r}")
        names.add(d.name)
        if d.site not in site_codes:
            err("devices", i, f"{f}.site", f"unknown site {d.site!r}; known sites: {', '.join(sorted(site_codes))}")
        if known_families is not None and d.family not in known_families:
            err("devices", i, f"{f}.family",
                f"unknown device family {d.family!r}; known families: {', '.join(known_families)}")
        if known_profiles is not None and d.profile != "auto" and d.profile not in known_profiles:
            err("devices", i, f"{f}.profile",
                f"unknown profile {d.profile!r}; known profiles: auto, {', '.join(sorted(known_profiles))}")
        if d.snmp is not None:
            c = cfg.credentials.get(d.snmp)
            if c is None:
                err("devices", i, f"{f}.snmp", f"unknown credential {d.snmp!r}")
            elif not isinstance(c, (SnmpV2Credential, SnmpV3Credential)):
                err("devices", i, f"{f}.snmp", f"credential {d.snmp!r} is not an SNMP credential")
        if d.ssh is not None:
            c = cfg.credentials.get(d.ssh)
            if c is None:
                err("devices", i, f"{f}.ssh", f"unknown credential {d.ssh!r}")
            elif not isinstance(c, SshCredential):
                err("devices", i, f"{f}.ssh", f"credential {d.ssh!r} is not an SSH credential")
        if d.snmp is None and d.ssh is None:
            err("devices", i, f, "a device needs an 'snmp' or an 'ssh' credential to be polled")
        for svc in d.services:
            if service_keys and svc not in service_keys:
                known = ", ".join(sorted(service_keys))
                err("devices", i, f"{f}.services", f"unknown service line {svc!r}; known: {known}")
    for name in cfg.agent.traps.communities:
        if not isinstance(cfg.credentials.get(name), SnmpV2Credential):
            err("agent", 0, "agent.traps.communities", f"{name!r} is not an SNMP v1/v2c credential")
    for name in cfg.agent.traps.v3_users:
        if not isinstance(cfg.credentials.get(name), SnmpV3Credential):
            err("agent", 0, "agent.traps.v3_users", f"{name!r} is not an SNMPv3 credential")
    return errors
