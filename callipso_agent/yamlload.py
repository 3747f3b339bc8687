"""YAML loading that remembers where every key came from, so errors name file, line and field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from callipso_agent.errors import ConfigError, ConfigErrors

M = TypeVar("M", bound=BaseModel)


class LineDict(dict[Any, Any]):
    """A mapping that knows the line of itself and of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines = []


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # merged pairs ('<<: *anchor') come first; explicit keys override them
    merged = len(node.value) - own
    result = LineDict()
    result.line = node.start_mark.line + 1
    explicit: set[object] = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark)
        if i >= merged:
            if key in explicit:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            explicit.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {err.problem or err}", file=file, line=line) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}", file=file) from err


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read file: {err.strerror}", file=str(path)) from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"file is not UTF-8: {err}", file=str(path)) from err
    return load_yaml_text(text, str(path))


def line_of(data: Any, loc: Sequence[str | int]) -> int | None:
    """Best line for a pydantic error location inside data loaded by this module."""
    line = getattr(data, "line", None)
    node = data
    for part in loc:
        if isinstance(node, LineDict) and str(part) in node.key_lines:
            line = node.key_lines[str(part)]
            node = node[part] if part in node else node.get(str(part))
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def clean_loc(data: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drop the parts pydantic adds for unions (a member's class name) that are not keys of the data."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and isinstance(part, str) and part not in node
                and (part[:1].isupper() or "[" in part)):
            continue  # a union member's class name, e.g. 'Threshold' or 'list[Threshold]'

        out.append(part)
        if isinstance(node, dict):
            node = node.get(part, node.get(str(part)))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _describe(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown field (misspelt?)"
    if kind == "missing":
        return "required field is missing"
    inp = err.get("input")
    if kind not in ("missing",) and inp is not None and not isinstance(inp, (dict, list)):
        text = repr(inp)
        if len(text) > 60:
            text = text[:57] + "..."
        return f"{msg} (got {text})"
    return msg


def dotted_path(loc: Sequence[str | int]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validation_errors(err: ValidationError, data: Any, file: str, prefix: Iterable[str | int] = (),
                      *, cls: type[ConfigError] = ConfigError) -> ConfigErrors:
    """Turn a pydantic ValidationError into ConfigErrors with file, line and dotted field."""
    prefix = tuple(prefix)
    out: list[ConfigError] = []
    for e in err.errors():
        raw_loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = clean_loc(data, raw_loc)
        # discriminated unions add the tag name into loc; drop non-key strings that are not in the data
        field = dotted_path((*prefix, *loc))
        out.append(cls(_describe(dict(e)), file=file, line=line_of(data, loc), field=field or None))
    return ConfigErrors(out)


def parse_model(model: type[M], data: Any, file: str, *,
                              context: dict[str, Any] | None = None,
                              cls: type[ConfigError] = ConfigError) -> M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as err:
        raise validation_errors(err, data, file, cls=cls) from None
