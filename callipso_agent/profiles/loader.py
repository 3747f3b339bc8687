"""Load ``collectors/*.yaml`` profiles, resolve includes, and detect the profile of a device."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from callipso_agent.errors import ConfigErrors, NoProfile, ProfileError
from callipso_agent.profiles.schema import MetricSpec, Profile, SystemField
from callipso_agent.transports.snmp import oid_tuple
from callipso_agent.yamlload import load_yaml, parse_model


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile with its includes flattened: own metrics first, then the included ones."""

    profile: Profile
    metrics: tuple[MetricSpec, ...]
    system: Mapping[str, tuple[SystemField, ...]]  # per key: own source first, then the included ones
    file: str

    @property
    def name(self) -> str:
        return self.profile.name


@dataclass(frozen=True)
class Identity:
    sys_object_id: str = ""
    sys_descr: str = ""
    present: frozenset[str] = frozenset()  # 'requires' subtrees seen


@dataclass
class ProfileSet:
    profiles: dict[str, ResolvedProfile] = field(default_factory=dict)

    @property
    def families(self) -> set[str]:
        return {f for p in self.profiles.values() for f in p.profile.families}

    def names(self) -> list[str]:
        return sorted(self.profiles)

    def get(self, name: str) -> ResolvedProfile:
        try:
            return self.profiles[name]
        except KeyError:
            raise NoProfile(f"unknown profile {name!r}", candidates=self.names()) from None

    def detectable(self, family: str | None = None) -> list[ResolvedProfile]:
        return [
            p
            for p in self.profiles.values()
            if not p.profile.abstract and (family is None or family in p.profile.families)
        ]

    def probe_oids(self, family: str | None = None) -> list[str]:
        """Subtrees whose presence detection needs to know."""
        return sorted(
            {
                o
                for p in self.detectable(family)
                for o in (*p.profile.detect.requires, *p.profile.detect.requires_any)
            }
        )

    def rank(self, ident: Identity, family: str | None = None) -> list[tuple[int, ResolvedProfile]]:
        scored: list[tuple[int, ResolvedProfile]] = []
        soid = ident.sys_object_id.strip().lstrip(".")
        for p in self.detectable(family):
            d = p.profile.detect
            score = 0
            for prefix in d.sys_object_id:
                if soid == prefix or soid.startswith(prefix + "."):
                    score = max(score, 1000 * len(oid_tuple(prefix)))
            if any(re.search(r, ident.sys_descr, re.IGNORECASE) for r in d.sys_descr):
                score += 500
            if d.requires or d.requires_any:
                all_ok = all(r in ident.present for r in d.requires)
                any_ok = not d.requires_any or any(r in ident.present for r in d.requires_any)
                if all_ok and any_ok:
                    score += 100 * (len(d.requires) + (1 if d.requires_any else 0))
                elif score == 0:
                    continue
            if score == 0:
                continue
            scored.append((score + d.priority, p))
        scored.sort(key=lambda sp: (-sp[0], sp[1].name))
        return scored

    def detect(self, ident: Identity, family: str | None = None) -> ResolvedProfile:
        ranked = self.rank(ident, family)
        if not ranked:
            cands = [p.name for p in self.detectable(family)]
            raise NoProfile(
                f"no profile matches sysObjectID {ident.sys_object_id or '?'}"
                f" / sysDescr {ident.sys_descr[:60]!r}"
                + (f" in family {family!r}" if family else ""),
                candidates=cands,
            )
        return ranked[0][1]


def load_profiles(directory: Path, extra: Iterable[Path] = ()) -> ProfileSet:
    """Load every ``*.yaml`` in ``directory`` (not recursive: sub-folders hold other kinds of profile;
    files whose name starts with ``_`` hold shared declarations, not profiles)."""
    files = sorted(p for p in directory.glob("*.yaml") if p.is_file() and not p.name.startswith("_")) + list(extra)
    raw: dict[str, tuple[Profile, str, int]] = {}
    errors: list[ProfileError] = []
    for f in files:
        try:
            data = load_yaml(f)
            profile = parse_model(Profile, data, str(f), cls=ProfileError)
        except ConfigErrors as errs:
            errors.extend(
                ProfileError(e.message, file=e.file, line=e.line, field=e.field) for e in errs.errors
            )
            continue
        except ProfileError as err:
            errors.append(err)
            continue
        except Exception as err:  # a ConfigError from YAML parsing
            from callipso_agent.errors import ConfigError

            if isinstance(err, ConfigError):
                errors.append(ProfileError(err.message, file=err.file, line=err.line, field=err.field))
                continue
            raise
        if profile.name in raw:
            errors.append(
                ProfileError(
                    f"profile name {profile.name!r} already used by {raw[profile.name][1]}",
                    file=str(f),
                    line=getattr(data, "key_lines", {}).get("name"),
                    field="name",
                )
            )
            continue
        raw[profile.name] = (profile, str(f), getattr(data, "key_lines", {}).get("include", 1))
    if errors:
        raise ConfigErrors(list(errors))

    resolved: dict[str, ResolvedProfile] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> ResolvedProfile:
        if name in resolved:
            return resolved[name]
        profile, file, line = raw[name]
        metrics: list[MetricSpec] = list(profile.metrics)
        system: dict[str, tuple[SystemField, ...]] = {k: (f,) for k, f in profile.system.items()}
        for inc in profile.include:
            if inc not in raw:
                raise ConfigErrors(
                    [
                        ProfileError(
                            f"unknown included profile {inc!r}; known: {', '.join(sorted(raw))}",
                            file=file,
                            line=line,
                            field="include",
                        )
                    ]
                )
            if inc in stack:
                raise ConfigErrors(
                    [
                        ProfileError(
                            f"include cycle: {' -> '.join((*stack, inc))}",
                            file=file,
                            line=line,
                            field="include",
                        )
                    ]
                )
            sub = resolve(inc, (*stack, inc))
            metrics.extend(sub.metrics)
            for k, fields in sub.system.items():
                system[k] = (*system.get(k, ()), *(f for f in fields if f not in system.get(k, ())))
        rp = ResolvedProfile(profile=profile, metrics=tuple(metrics), system=system, file=file)
        resolved[name] = rp
        return rp

    for name in raw:
        resolve(name, (name,))
    return ProfileSet(resolved)
