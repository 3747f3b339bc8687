"""Load and validate the rule files (``checks/rules/*.yaml``) into a :class:`RuleSet`.

Every problem is reported at once, each with its file, line and field; unknown keys are errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from callipso_agent.errors import ConfigError, ConfigErrors, RuleError
from callipso_agent.paths import checks_dir
from callipso_agent.rules.schema import KINDS, AnyRule, Rule, SiteRule
from callipso_agent.yamlload import LineDict, LineList, load_yaml, validation_errors

_RULE = TypeAdapter(AnyRule)


class _Errors:
    """validation_errors() wants an object with errors(); this one carries re-anchored locations."""

    def __init__(self, errs: list[dict[str, Any]]) -> None:
        self._errs = errs

    def errors(self) -> list[dict[str, Any]]:
        return self._errs


class RuleSet:
    """The loaded rules by name, with where each came from."""

    def __init__(
        self, rules: Iterable[Rule], origins: Mapping[str, tuple[str, int | None]] | None = None
    ) -> None:
        self._rules: dict[str, Rule] = {}
        for r in rules:
            if r.name in self._rules:
                raise RuleError(f"duplicate rule name {r.name!r}", field="name")
            self._rules[r.name] = r
        self._origins = MappingProxyType(dict(origins or {}))
        self._by_family: dict[str, tuple[Rule, ...]] = {}

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules.values())

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def __getitem__(self, name: str) -> Rule:
        try:
            return self._rules[name]
        except KeyError:
            raise KeyError(f"unknown rule {name!r}; known rules: {', '.join(sorted(self._rules))}") from None

    def get(self, name: str) -> Rule | None:
        return self._rules.get(name)

    def origin(self, name: str) -> tuple[str, int | None]:
        return self._origins.get(name, ("<rules>", None))

    def for_family(self, family: str) -> tuple[Rule, ...]:
        """Rules that apply to a device of ``family`` (a rule without families applies to all)."""
        found = self._by_family.get(family)
        if found is None:
            found = tuple(r for r in self._rules.values() if not r.families or family in r.families)
            self._by_family[family] = found
        return found

    def site_rules(self) -> tuple[SiteRule, ...]:
        return tuple(r for r in self._rules.values() if isinstance(r, SiteRule))

    def site_rule_for(self, child: str) -> SiteRule | None:
        for r in self.site_rules():
            if child in r.children:
                return r
        return None


def default_rules_dir() -> Path:
    return checks_dir() / "rules"


def _parse_rule(item: Any, file: str, index: int, items: LineList) -> Rule | list[ConfigError]:
    try:
        return _RULE.validate_python(item)
    except ValidationError as err:
        kind = item.get("kind") if isinstance(item, dict) else None
        errs: list[dict[str, Any]] = []
        for e in err.errors():
            loc = tuple(e["loc"])
            if loc and loc[0] == kind and kind in KINDS:
                loc = loc[1:]  # drop the union tag pydantic inserts
            errs.append(dict(e, loc=loc))
        out = validation_errors(
            cast(ValidationError, _Errors(errs)), item, file, prefix=("rules", index), cls=RuleError
        ).errors
        for ce in out:
            if ce.line is None:
                ce.line = items.item_lines[index]
        return out


def load_rules(path: str | Path | None = None, *, runbooks: Path | None = None) -> RuleSet:
    """Load every ``*.yaml`` of a folder (``checks/rules`` by default) or one file.

    With ``runbooks`` (a folder), a rule naming a runbook file that does not exist is an error too.
    Raises ConfigErrors listing every problem.
    """
    base = Path(path) if path is not None else default_rules_dir()
    if base.is_dir():
        files = sorted(p for p in base.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    elif base.is_file():
        files = [base]
    else:
        raise ConfigErrors([RuleError("no such file or directory", file=str(base))])
    errors: list[ConfigError] = []
    rules: list[Rule] = []
    origins: dict[str, tuple[str, int | None]] = {}
    for f in files:
        try:
            data = load_yaml(f)
        except ConfigError as err:
            errors.append(err)
            continue
        if data is None:
            continue
        if not isinstance(data, LineDict):
            errors.append(
                RuleError(
                    "expected a mapping with a 'rules' list", file=str(f), line=getattr(data, "line", 1)
                )
            )
            continue
        for key in data:
            if key != "rules":
                errors.append(
                    RuleError(
                        "unknown section; a rule file holds only 'rules'",
                        file=str(f),
                        line=data.key_lines.get(str(key)),
                        field=str(key),
                    )
                )
        items = data.get("rules")
        if items is None:
            continue
        if not isinstance(items, LineList):
            errors.append(
                RuleError(
                    "expected a list of rules", file=str(f), line=data.key_lines.get("rules"), field="rules"
                )
            )
            continue
        for i, item in enumerate(items):
            parsed = _parse_rule(item, str(f), i, items)
            if isinstance(parsed, list):
                errors.extend(parsed)
                continue
            line = items.item_lines[i]
            if parsed.name in origins:
                other_file, other_line = origins[parsed.name]
                errors.append(
                    RuleError(
                        f"duplicate rule name {parsed.name!r} (first defined at {other_file}:{other_line})",
                        file=str(f),
                        line=line,
                        field=f"rules[{i}].name",
                    )
                )
                continue
            origins[parsed.name] = (str(f), line)
            rules.append(parsed)
    by_name = {r.name: r for r in rules}
    for r in rules:
        file, rule_line = origins[r.name]
        if isinstance(r, SiteRule):
            for child in r.children:
                target = by_name.get(child)
                if target is None:
                    errors.append(
                        RuleError(
                            f"unknown child rule {child!r}",
                            file=file,
                            line=rule_line,
                            field=f"{r.name}.children",
                        )
                    )
                elif target.correlate != "site":
                    errors.append(
                        RuleError(
                            f"child rule {child!r} must declare correlate: site",
                            file=file,
                            line=rule_line,
                            field=f"{r.name}.children",
                        )
                    )
        elif r.correlate == "site" and not any(
            isinstance(s, SiteRule) and r.name in s.children for s in rules
        ):
            errors.append(
                RuleError(
                    "correlate: site, but no site rule lists this rule in its children",
                    file=file,
                    line=rule_line,
                    field=f"{r.name}.correlate",
                )
            )
        if runbooks is not None and not (runbooks / r.runbook).is_file():
            errors.append(
                RuleError(
                    f"runbook {r.runbook!r} not found in {runbooks}",
                    file=file,
                    line=rule_line,
                    field=f"{r.name}.runbook",
                )
            )
    if errors:
        raise ConfigErrors(errors)
    return RuleSet(rules, origins)
