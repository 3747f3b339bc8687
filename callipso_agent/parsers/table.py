"""A small declarative regex-table engine: command output -> records -> typed fields -> Measurements.

Pure: no I/O, no clock (the collection time is passed in). Garbage never raises: what cannot be read
becomes a Measurement with value None, state UNKNOWN and the offending text kept.

1. Lines are matched against ``records`` regexes (named groups). Without ``block_start`` each matching
   line is one record; with it, a line matching ``block_start`` opens a record and later matching lines
   add their groups to it (multi-line blocks, e.g. one trunk group).
2. Groups are typed by ``fields`` (str, int, float with scale/offset, state via a state table, timestamp,
   or tokens: one record per token, e.g. one per trunk channel).
3. Each measurement spec takes the records carrying all the fields it reads, then emits one measurement
   per record (``aggregate: none``) or one per distinct label set (count, sum, min, max).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from callipso_agent.model import Measurement, MetricKind, Severity
from callipso_agent.profiles.ssh import (
    DEFAULT_KEY,
    FieldSpec,
    MeasurementSpec,
    ParserSpec,
    StateTable,
    StateValue,
)

RAW_KEEP = 1000  # characters of raw output kept in an UNKNOWN measurement


@dataclass(frozen=True, slots=True)
class Record:
    groups: Mapping[str, str]
    line: str


@dataclass(frozen=True, slots=True)
class Value:
    raw: str
    number: float | None = None
    text: str | None = None
    state: StateValue | None = None
    error: str | None = None

    @property
    def label_text(self) -> str:
        if self.state is not None:
            return self.state.label
        if self.text is not None:
            return self.text
        return self.raw.strip()


def truncate(text: str, limit: int = RAW_KEEP) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def lookup_state(table: StateTable, raw: str) -> StateValue | None:
    key = _norm(raw)
    for vendor, value in table.items():
        if vendor != DEFAULT_KEY and _norm(vendor) == key:
            return value
    return table.get(DEFAULT_KEY)


def unexpected_line(spec: ParserSpec, output: str) -> str | None:
    """In strict mode, the first non-blank line that no record, block start or ignore pattern matches."""
    patterns = [
        re.compile(r)
        for r in [*spec.records, *spec.ignore, *([spec.block_start] if spec.block_start else [])]
    ]
    for line in output.replace("\r", "").split("\n"):
        if line.strip() and not any(p.search(line) for p in patterns):
            return line
    return None


def extract_records(spec: ParserSpec, output: str) -> list[Record]:
    regexes = [re.compile(r) for r in spec.records]
    start = re.compile(spec.block_start) if spec.block_start else None
    records: list[Record] = []
    block: dict[str, str] | None = None
    block_lines: list[str] = []

    def flush() -> None:
        nonlocal block, block_lines
        if block is not None:
            records.append(Record(dict(block), "\n".join(block_lines)))
        block, block_lines = None, []

    for line in output.replace("\r", "").split("\n"):
        if start is not None:
            m = start.search(line)
            if m:
                flush()
                block = {k: v for k, v in m.groupdict().items() if v is not None}
                block_lines = [line]
                continue
        for rx in regexes:
            m = rx.search(line)
            if not m:
                continue
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            if block is not None:
                block.update(groups)
                block_lines.append(line)
            else:
                records.append(Record(groups, line))
            break
    flush()
    return records


def _clean(raw: str, f: FieldSpec) -> str:
    text = raw.strip()
    if f.strip:
        text = text.strip(f.strip + " \t")
    if f.case == "lower":
        text = text.lower()
    elif f.case == "upper":
        text = text.upper()
    return text


def convert(raw: str, f: FieldSpec | None, states: Mapping[str, StateTable]) -> Value:
    """Type one captured text (not for 'tokens', see :func:`split_tokens`)."""
    if f is None:
        return Value(raw, text=raw.strip())
    text = _clean(raw, f)
    if f.type == "str":
        return Value(raw, text=text)
    if f.type in ("int", "float"):
        try:
            n = float(int(text)) if f.type == "int" else float(text.replace(",", "."))
        except ValueError:
            return Value(raw, error=f"not a number: {raw.strip()!r}")
        return Value(raw, number=n * f.scale + f.offset, text=text)
    if f.type == "timestamp":
        assert f.format is not None
        try:
            when = datetime.strptime(" ".join(text.split()), f.format)
        except ValueError:
            return Value(raw, error=f"not a timestamp in format {f.format!r}: {raw.strip()!r}")
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(f.tz))
        return Value(raw, number=when.timestamp() * f.scale + f.offset, text=text)
    # state
    assert f.states is not None
    state = lookup_state(states[f.states], text)
    if state is None:
        return Value(raw, error=f"unmapped state {text!r} (table {f.states})")
    return Value(raw, number=state.value, text=state.label, state=state)


def split_tokens(raw: str, f: FieldSpec, states: Mapping[str, StateTable]) -> list[Value]:
    assert f.states is not None
    parts = raw.split(f.separator) if f.separator else raw.split()
    out: list[Value] = []
    for part in parts:
        token = part.strip()
        if not token or token in f.ignore:
            continue
        state = lookup_state(states[f.states], _clean(token, f))
        if state is None:
            out.append(Value(token, error=f"unmapped token {token!r} (table {f.states})"))
        else:
            out.append(Value(token, number=state.value, text=state.label, state=state))
    return out


def type_records(
    spec: ParserSpec, records: Iterable[Record], states: Mapping[str, StateTable]
) -> list[tuple[dict[str, Value], str]]:
    """Typed records; a 'tokens' field explodes its record into one record per token."""
    typed: list[tuple[dict[str, Value], str]] = []
    for rec in records:
        values: dict[str, Value] = {}
        token_field: str | None = None
        for name, raw in rec.groups.items():
            f = spec.fields.get(name)
            if f is not None and f.type == "tokens":
                token_field = name
                continue
            values[name] = convert(raw, f, states)
        if token_field is None:
            typed.append((values, rec.line))
            continue
        f = spec.fields[token_field]
        for tok in split_tokens(rec.groups[token_field], f, states):
            typed.append(({**values, token_field: tok}, rec.line))
    return typed


@dataclass(frozen=True, slots=True)
class Context:
    device: str
    at: datetime
    command: str


def _base(
    m: MeasurementSpec,
    ctx: Context,
    labels: Mapping[str, str],
    *,
    value: float | None,
    state: Severity = Severity.OK,
    text: str | None = None,
) -> Measurement:
    return Measurement(
        device=ctx.device,
        name=m.name,
        at=ctx.at,
        unit=m.unit,
        help=m.help,
        kind=m.kind,
        # device output is untrusted: a runaway field (a 200 kB "hostname") stays bounded
        labels={**m.static_labels, **{k: truncate(v) for k, v in labels.items()}},
        value=value,
        state=state,
        text=None if text is None else truncate(text),
    )


def unknown(
    m: MeasurementSpec, ctx: Context, text: str, labels: Mapping[str, str] | None = None
) -> Measurement:
    return _base(m, ctx, labels or {}, value=None, state=Severity.UNKNOWN, text=text)  # _base bounds it


def _number(m: MeasurementSpec, values: Mapping[str, Value], ctx: Context) -> tuple[float | None, str | None]:
    """(value, error) of one record for a measurement."""
    if m.const is not None:
        base = m.const
    else:
        assert m.value is not None
        v = values[m.value]
        if v.error:
            return None, v.error
        if v.number is None:
            return None, f"field {m.value!r} is not numeric: {v.raw.strip()!r}"
        base = v.number
    if m.divide_by:
        d = values[m.divide_by]
        if d.error or d.number is None:
            return None, d.error or f"field {m.divide_by!r} is not numeric"
        if d.number == 0:
            return None, f"division by zero ({m.divide_by} = 0)"
        base = base / d.number
    base *= m.multiply
    if m.relative_to_now:
        base -= ctx.at.timestamp()
    return base, None


def _one(m: MeasurementSpec, values: Mapping[str, Value], line: str, ctx: Context) -> Measurement:
    labels = {label: values[f].label_text for label, f in m.labels.items()}
    number, error = _number(m, values, ctx)
    if error:
        return unknown(m, ctx, f"{error} in line: {line}", labels)
    state = Severity.OK
    text: str | None = None
    if m.kind == MetricKind.STATE and m.value:
        sv = values[m.value].state
        if sv is not None:
            state, text = sv.severity, sv.label
    if m.text:
        text = values[m.text].label_text
    elif m.kind == MetricKind.INFO and m.value:
        text = values[m.value].label_text
    return _base(m, ctx, labels, value=number, state=state, text=text)


def _aggregate(
    m: MeasurementSpec, rows: Sequence[tuple[dict[str, Value], str]], ctx: Context
) -> list[Measurement]:
    groups: dict[tuple[tuple[str, str], ...], list[tuple[dict[str, Value], str]]] = {}
    for values, line in rows:
        key = tuple(
            (label, values[f].label_text if not values[f].error else "unknown")
            for label, f in m.labels.items()
        )
        groups.setdefault(key, []).append((values, line))
    if m.aggregate == "count":
        counts = {key: float(len(items)) for key, items in groups.items()}
        if m.zero_fill:
            free = [label for label in m.labels if label not in m.zero_fill]
            seen_free = {tuple(dict(k)[label] for label in free) for k in counts} or (
                {()} if not free else set()
            )
            for combo in seen_free:
                fixed = dict(zip(free, combo, strict=True))
                choices = [m.zero_fill[label] for label in m.labels if label in m.zero_fill]
                filled = [label for label in m.labels if label in m.zero_fill]
                for picked in itertools.product(*choices):
                    labels = {**fixed, **dict(zip(filled, picked, strict=True))}
                    key = tuple((label, labels[label]) for label in m.labels)
                    counts.setdefault(key, 0.0)
        return [_base(m, ctx, dict(key), value=n) for key, n in sorted(counts.items())]
    out: list[Measurement] = []
    for key, items in sorted(groups.items()):
        numbers: list[float] = []
        error: str | None = None
        for values, line in items:
            n, err = _number(m, values, ctx)
            if err:
                error = f"{err} in line: {line}"
                break
            assert n is not None
            numbers.append(n)
        if error:
            out.append(unknown(m, ctx, error, dict(key)))
            continue
        out.append(_base(m, ctx, dict(key), value=float(_AGGREGATES[m.aggregate](numbers))))
    return out


_AGGREGATES: dict[str, Callable[[list[float]], float]] = {"sum": sum, "min": min, "max": max}


def _fields_of(m: MeasurementSpec) -> list[str]:
    return [f for _, f in m.referenced_fields()]


def measure(
    spec: ParserSpec, states: Mapping[str, StateTable], output: str, ctx: Context
) -> list[Measurement]:
    """Parse one command's output into measurements; never raises on bad output."""
    missing = [r for r in spec.require if not re.search(r, output, re.MULTILINE)]
    if missing:
        reason = f"output of {ctx.command!r} lacks expected pattern {missing[0]!r}: "
        return [unknown(m, ctx, reason + output) for m in spec.measurements]
    if spec.strict and (bad := unexpected_line(spec, output)) is not None:
        reason = f"unexpected line in output of {ctx.command!r}: {bad!r}; output: "
        return [unknown(m, ctx, reason + output) for m in spec.measurements]
    rows = type_records(spec, extract_records(spec, output), states)
    out: list[Measurement] = []
    for m in spec.measurements:
        need = _fields_of(m)
        mine = [
            (v, line)
            for v, line in rows
            if all(f in v for f in need)
            and all(v[f].label_text in accepted for f, accepted in m.where.items())
        ]
        if m.aggregate == "none":
            by_key: dict[tuple[tuple[str, str], ...], Measurement] = {}
            for values, line in mine:
                meas = _one(m, values, line, ctx)
                by_key[tuple(meas.labels.items())] = meas
            out.extend(by_key.values())
            if not mine and m.required:
                out.append(unknown(m, ctx, f"no line of {ctx.command!r} carries {m.name}: {output}"))
        else:
            got = _aggregate(m, mine, ctx)
            if not got and m.required:
                got = [unknown(m, ctx, f"no line of {ctx.command!r} carries {m.name}: {output}")]
            out.extend(got)
    return out


def all_unknown(spec: ParserSpec, ctx: Context, text: str) -> list[Measurement]:
    """Every measurement of a command as UNKNOWN (command failed, timed out, or was refused)."""
    return [unknown(m, ctx, text) for m in spec.measurements]
