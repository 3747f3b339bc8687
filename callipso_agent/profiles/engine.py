"""Evaluate a profile over an SNMP client: fetch what it declares, turn raw values into Measurements.

Fetching: scalars by batched GET of ``oid.0`` (then the bare OID, then GETNEXT, for agents that
register scalars without ``.0``); table columns by GETBULK walks. Evaluation is pure and table-tested.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from callipso_agent.model import Measurement, MetricKind, Severity
from callipso_agent.profiles.loader import Identity, ProfileSet, ResolvedProfile
from callipso_agent.profiles.schema import Lookup, MetricSpec, RowCondition, ScaleBy, StateSpec
from callipso_agent.transports.snmp import SnmpClient, SnmpValue, in_subtree, oid_tuple

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
_PROBE_CHUNK = 16


@dataclass
class RawData:
    """What was read from the device: scalars by requested OID, columns by walked root → {suffix: value}."""

    scalars: dict[str, SnmpValue]
    columns: dict[str, dict[str, SnmpValue]]


async def identify(client: SnmpClient, profiles: ProfileSet, family: str | None = None) -> Identity:
    got = await client.get([SYS_DESCR, SYS_OBJECT_ID])
    present: set[str] = set()
    probes = profiles.probe_oids(family)
    for i in range(0, len(probes), _PROBE_CHUNK):
        chunk = probes[i : i + _PROBE_CHUNK]
        nxt = await client.next(chunk)
        for probe, (oid, value) in zip(chunk, nxt, strict=False):
            if value.type != "endofmibview" and in_subtree(oid, probe):
                present.add(probe)
    descr = got.get(SYS_DESCR)
    soid = got.get(SYS_OBJECT_ID)
    return Identity(
        sys_object_id=soid.text.strip().lstrip(".") if soid else "",
        sys_descr=printable(descr) if descr else "",
        present=frozenset(present),
    )


def printable(v: SnmpValue) -> str:
    if isinstance(v.value, bytes):
        try:
            text = v.value.decode("utf-8")
        except UnicodeDecodeError:
            text = v.value.decode("latin-1")
        return text.replace("\x00", "").strip()
    return v.text.strip()




# --------------------------------------------------------------------------------------------- fetch


def _sources(profile: ResolvedProfile) -> tuple[set[str], set[str]]:
    """Scalar OIDs and column OIDs a profile reads."""
    scalars: set[str] = {f.oid for fields in profile.system.values() for f in fields}
    columns: set[str] = set()
    for m in profile.metrics:
        companions: list[Lookup | RowCondition | ScaleBy] = [*m.lookups, *m.skip_conditions, *m.keep_if]
        if m.scale_by is not None:
            companions.append(m.scale_by)
        if m.oid:
            scalars.add(m.oid)
        else:
            columns.add(m.column or "")
        scalars.update(m.rows_limit)
        for c in companions:
            if c.oid:
                scalars.add(c.oid)
            elif c.column:
                columns.add(c.column)
    return scalars, columns


def _walk_roots(columns: Iterable[str]) -> list[str]:
    roots = sorted(set(columns), key=oid_tuple)
    out: list[str] = []
    for r in roots:
        if not any(in_subtree(r, o) for o in out):
            out.append(r)
    return out


@dataclass(frozen=True, slots=True)
class FetchPlan:
    scalars: tuple[str, ...]  # in OID order
    instances: tuple[str, ...]  # the same with ".0", asked first
    walks: tuple[tuple[str, str, str, int], ...]  # see _walk_plan


def fetch_plan(profile: ResolvedProfile) -> FetchPlan:
    """What a poll of ``profile`` asks, worked out once per loaded profile (profiles are immutable: a reload
    makes new ones). Kept in the instance's ``__dict__``, as ``functools.cached_property`` does."""
    plan: FetchPlan | None = profile.__dict__.get("_fetch_plan")
    if plan is None:
        scalar_set, column_set = _sources(profile)
        scalars = tuple(sorted(scalar_set, key=oid_tuple))
        plan = FetchPlan(scalars, tuple(o + ".0" for o in scalars), tuple(_walk_plan(column_set)))
        profile.__dict__["_fetch_plan"] = plan
    return plan


async def fetch(client: SnmpClient, profile: ResolvedProfile) -> RawData:
    plan = fetch_plan(profile)
    scalar_oids = plan.scalars
    scalars: dict[str, SnmpValue] = {}
    if scalar_oids:
        got = await client.get(list(plan.instances))
        missing = []
        for o in scalar_oids:
            v = got.get(o + ".0")
            if v is not None:
                scalars[o] = v
            else:
                missing.append(o)
        if missing:
            exact = await client.get(missing)
            still = []
            for o in missing:
                if o in exact:
                    scalars[o] = exact[o]
                else:
                    still.append(o)
            for i in range(0, len(still), _PROBE_CHUNK):
                chunk = still[i : i + _PROBE_CHUNK]
                for o, (noid, val) in zip(chunk, await client.next(chunk), strict=False):
                    # only the scalar itself (o or o.0): a GETNEXT landing deeper is a table, not this scalar
                    if not val.is_empty and noid in (o, o + ".0"):
                        scalars[o] = val
    columns: dict[str, dict[str, SnmpValue]] = {}
    for parent, first, last, count in plan.walks:
        if count == 1:
            rows = columns.setdefault(first, {})
            for oid, val in await client.walk(first):
                rows[oid[len(first) + 1 :]] = val
            continue
        # several columns of one table: one walk over the column range, split per column
        for oid, val in await client.walk(parent, start=first, end=last):
            rest = oid[len(parent) + 1 :]
            col_id, _, index = rest.partition(".")
            columns.setdefault(f"{parent}.{col_id}", {})[index] = val
    return RawData(scalars, columns)


def _walk_plan(column_set: Iterable[str]) -> list[tuple[str, str, str, int]]:
    """Walks to do: (parent, first column, last column, number of requested columns). Sibling columns
    of a table are walked together when they are dense enough (span at most twice their number)."""
    roots = _walk_roots(column_set)
    by_parent: dict[str, list[str]] = {}
    for r in roots:
        parent = r.rsplit(".", 1)[0] if "." in r else r
        by_parent.setdefault(parent, []).append(r)
    plan: list[tuple[str, str, str, int]] = []
    for parent, cols in by_parent.items():
        ids = sorted(cols, key=oid_tuple)
        span = oid_tuple(ids[-1])[-1] - oid_tuple(ids[0])[-1] + 1
        if len(ids) >= 2 and span <= 2 * len(ids):
            plan.append((parent, ids[0], ids[-1], len(ids)))
        else:
            plan.extend((c, c, c, 1) for c in ids)
    return plan


# ------------------------------------------------------------------------------------------ evaluate


def column_values(raw: RawData, column: str, suffix: str | None = None) -> dict[str, SnmpValue]:
    """The rows of a column: index → value (with ``suffix`` stripped when the table puts it last)."""
    rows: dict[str, SnmpValue] | None = raw.columns.get(column)
    if rows is None:
        rows = {}
        for root, all_rows in raw.columns.items():
            if in_subtree(column, root):
                rel = column[len(root) + 1 :] + "."
                rows = {k[len(rel) :]: v for k, v in all_rows.items() if k.startswith(rel)}
                break
    if suffix:
        tail = "." + suffix
        return {k[: -len(tail)]: v for k, v in rows.items() if k.endswith(tail) and len(k) > len(tail)}
    return rows




def _index_key(index: str) -> list[int]:
    return [int(x) for x in index.split(".") if x.isdigit()]


def _index_labels(spec: MetricSpec, index: str) -> dict[str, str] | None:
    if not spec.index:
        return {"index": index} if index else {}
    parts = [int(p) for p in index.split(".") if p]
    labels: dict[str, str] = {}
    for part in spec.index:
        if not parts:
            return None
        if part.type == "integer":
            labels[part.label] = str(parts.pop(0) + part.offset)
        elif part.type == "skip":
            parts.pop(0)
        elif part.type == "ipaddress":
            if len(parts) < 4:
                return None
            labels[part.label] = ".".join(str(parts.pop(0)) for _ in range(4))
        elif part.type == "string":
            n = parts.pop(0)
            chars, parts = parts[:n], parts[n:]
            labels[part.label] = bytes(c & 0xFF for c in chars).decode("latin-1")
        else:  # oid: the rest
            labels[part.label] = ".".join(str(p) for p in parts)
            parts = []
    return labels


def _number(v: SnmpValue) -> float | None:
    if v.is_empty:
        return None
    return v.number


def _text(v: SnmpValue) -> str:
    if v.type == "oid":
        return v.text.strip().lstrip(".")
    return printable(v)


def _raw_number(spec: MetricSpec, v: SnmpValue) -> float | None:
    if v.is_empty:
        return None
    if spec.regex is not None:
        m = re.search(spec.regex, printable(v))
        if not m:
            return None
        try:
            number = float(m.group(1).replace(",", "."))
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return v.number


def _state_for(spec: MetricSpec, raw: float | None, text: str) -> StateSpec | None:
    states = spec.states or {}
    if raw is not None and raw == int(raw) and int(raw) in states:
        return states[int(raw)]
    if text in states:
        return states[text]
    low = text.lower()
    for k, s in states.items():
        if isinstance(k, str) and k.lower() == low:
            return s
    return None


def evaluate_value(
    spec: MetricSpec, v: SnmpValue, scale: float | None = None, offset: float | None = None
) -> tuple[float | None, Severity, str | None]:
    """Raw value → (value in base units or None, state from the profile's state map, text)."""
    if v.is_empty:
        return None, Severity.OK, None
    text_raw = _text(v)
    if (spec.none_texts and text_raw in spec.none_texts) or (v.type == "octets" and not text_raw):
        return None, Severity.OK, None
    if spec.type == MetricKind.INFO:
        text = (spec.text_map or {}).get(text_raw, text_raw) if text_raw else None
        return (1.0 if text else None), Severity.OK, text
    raw = _raw_number(spec, v)
    if raw is not None and raw in spec.none_values:
        return None, Severity.OK, None
    label: str | None = None
    state = Severity.OK
    if spec.states is not None:
        st = _state_for(spec, raw, text_raw)
        if st is None:
            state = Severity.parse(spec.unknown_state)
            shown = (str(int(raw)) if raw == int(raw) else str(raw)) if raw is not None else text_raw
            label = f"unknown({shown})"
        else:
            state, label = st.sev, st.label
            if st.value is not None:
                return st.value, state, label
        if raw is None:
            return None, state, label
    if raw is None:
        return None, Severity.UNKNOWN, text_raw or None
    if spec.value_map is not None:
        key = int(raw) if raw == int(raw) else None
        if key is not None and key in spec.value_map:
            return spec.value_map[key], state, label
        return spec.default, state, label
    value = round(
        raw * (spec.scale if scale is None else scale) + (spec.offset if offset is None else offset), 9
    )
    if not math.isfinite(value):  # 1e308 scaled past the float range
        return None, Severity.UNKNOWN, text_raw or None
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        return None, Severity.OK, None
    return value, state, label


class _Row:
    """Reads companion values for one row (or for a scalar metric: index '')."""

    def __init__(self, raw: RawData, spec: MetricSpec, index: str, own: SnmpValue) -> None:
        self.raw = raw
        self.spec = spec
        self.index = index
        self.own = own

    def value(self, oid: str | None, column: str | None, suffix: str | None) -> SnmpValue | None:
        if oid is not None:
            return self.raw.scalars.get(oid)
        if column is None and suffix is None:
            return self.own
        col = column or self.spec.column or ""
        return column_values(
            self.raw, col, suffix if suffix is not None else (self.spec.suffix if column is None else None)
        ).get(self.index)

    def holds(self, cond: RowCondition) -> bool:
        if cond.min_index is not None:
            first = _index_key(self.index)[:1]
            if not first or first[0] < cond.min_index:
                return False
        v = self.value(cond.oid, cond.column, cond.suffix)
        if v is None or v.is_empty:
            return False
        text = _text(v)
        if cond.regex is not None and re.search(cond.regex, text):
            return True
        n = v.number
        for want in cond.values:
            if isinstance(want, str):
                if text == want:
                    return True
            elif n is not None and n == want:
                return True
        return False

    def lookup(self, lk: Lookup) -> str | None:
        v = self.value(lk.oid, lk.column, lk.suffix)
        if v is None or v.is_empty:
            return None
        text = _text(v)
        if lk.states and v.number is not None and v.number == int(v.number):
            text = lk.states.get(int(v.number), text)
        if lk.map:
            text = lk.map.get(text, text)
        if lk.regex:
            m = re.search(lk.regex, text)
            if not m:
                return None
            text = m.group(1)
        return text or None

    def scaling(self, sb: ScaleBy) -> tuple[float, float] | None:
        """(scale, offset), or None to drop the value."""
        v = self.value(sb.oid, sb.column, sb.suffix)
        n = v.number if v is not None and not v.is_empty else None
        case = None
        if n is not None and n == int(n) and int(n) in sb.cases:
            case = sb.cases[int(n)]
        elif v is not None and not v.is_empty:
            text = _text(v)
            case = sb.cases.get(text) or next(
                (c for k, c in sb.cases.items() if isinstance(k, str) and k.lower() == text.lower()), None
            )
        if case is not None:
            return case.scale, case.offset
        if sb.otherwise == "metric":
            return self.spec.scale, self.spec.offset
        return None


def _rows_limit(raw: RawData, spec: MetricSpec) -> float | None:
    for oid in spec.rows_limit:
        v = raw.scalars.get(oid)
        n = v.number if v is not None and not v.is_empty else None
        if n is not None and n > 0:
            return n
    return None


def build(device: str, profile: ResolvedProfile, raw: RawData, at: datetime) -> list[Measurement]:
    """Turn raw data into Measurements; the first metric giving a value for a series wins."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], Measurement] = {}

    def emit(
        spec: MetricSpec, labels: Mapping[str, str], value: float | None, state: Severity, text: str | None
    ) -> None:
        m = Measurement(
            device=device,
            name=spec.name,
            value=value,
            at=at,
            unit=spec.unit,
            labels={**spec.labels, **labels},
            kind=spec.type,
            state=state,
            text=text,
            help=spec.help,
        )
        key = (m.name, tuple(m.labels.items()))
        prev = out.get(key)
        if prev is None or (prev.value is None and value is not None):
            out[key] = m

    for spec in profile.metrics:
        if spec.oid is not None:
            v = raw.scalars.get(spec.oid)
            if v is None or v.is_empty:
                continue
            rows = {"": v}
        else:
            rows = column_values(raw, spec.column or "", spec.suffix)
            if not rows and not (spec.aggregate and spec.aggregate.fill):
                continue
        limit = _rows_limit(raw, spec)
        groups: dict[tuple[tuple[str, str], ...], tuple[float | None, Severity]] = {}
        for index, v in sorted(rows.items(), key=lambda kv: _index_key(kv[0])):
            if v.is_empty:
                continue
            if limit is not None and (_index_key(index)[:1] or [0])[0] > limit:
                continue
            row = _Row(raw, spec, index, v)
            if any(all(row.holds(c) for c in group) for group in spec.skip_groups):
                continue
            if spec.keep_if and not all(row.holds(c) for c in spec.keep_if):
                continue
            labels = _index_labels(spec, index) if spec.column is not None else {}
            if labels is None:
                continue
            for lk in spec.lookups:
                text = row.lookup(lk)
                if text is not None:
                    labels[lk.label] = text
            scale = offset = None
            if spec.scale_by is not None:
                so = row.scaling(spec.scale_by)
                if so is None:
                    continue
                scale, offset = so
            value, state, text = evaluate_value(spec, v, scale, offset)
            if spec.sum_rows or spec.aggregate:
                by = spec.aggregate.by if spec.aggregate else []
                key = tuple((b, labels.get(b, "")) for b in by)
                total, worst = groups.get(key, (None, Severity.OK))
                add = 1.0 if (spec.aggregate and spec.aggregate.op == "count") else value
                if add is not None:
                    total = (total or 0.0) + add
                groups[key] = (total, Severity.worst([worst, state]))
                continue
            emit(spec, labels, value, state, text)
        if spec.sum_rows or spec.aggregate:
            if spec.aggregate:
                for label, values in spec.aggregate.fill.items():
                    for fv in values:
                        key = tuple((b, fv if b == label else "") for b in spec.aggregate.by)
                        groups.setdefault(key, (0.0, Severity.OK))
            for key, (total, worst) in groups.items():
                if total is not None or spec.aggregate:
                    emit(spec, dict(key), total if total is not None else 0.0, worst, None)
    # a sentinel ('no sensor', factory default) that no other source replaced says nothing: drop it
    return [m for m in out.values() if m.value is not None or m.text is not None or m.state != Severity.OK]


def system_info(profile: ResolvedProfile, raw: RawData, ident: Identity) -> dict[str, str]:
    """Identity fields (model, firmware, serial...): for each key, the first declared source with a value."""
    info = {"sys_descr": ident.sys_descr, "sys_object_id": ident.sys_object_id}
    for key, fields in profile.system.items():
        for f in fields:
            v = raw.scalars.get(f.oid)
            if v is None or v.is_empty:
                continue
            text = _text(v)
            if f.regex:
                m = re.search(f.regex, text)
                if not m:
                    continue
                text = (m.group(1) if m.groups() else m.group(0)).strip()
            if text and text not in f.none_texts:
                info[key] = text
                break
    return info
