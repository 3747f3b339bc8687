"""Evaluate a profile over an SNMP client: fetch what it declares, turn raw values into Measurements.

Fetching: scalars by batched GET of ``oid.0`` (then the bare OID, then GETNEXT, for agents that
register scalars without ``.0``); table columns by GETBULK walks. Evaluation is pure and table-tested.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from callipso_agent.model import Measurement, MetricKind, Severity
from callipso_agent.profiles.loader import Identity, ProfileSet, ResolvedProfile
from callipso_agent.profiles.schema import MetricSpec
from callipso_agent.transports.snmp import SnmpClient, SnmpValue, in_subtree

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"


@dataclass
class RawData:
    """What was read from the device: scalars by requested OID, columns by column OID → {index: value}."""

    scalars: dict[str, SnmpValue]
    columns: dict[str, dict[str, SnmpValue]]


async def identify(client: SnmpClient, profiles: ProfileSet, family: str | None = None) -> Identity:
    got = await client.get([SYS_DESCR, SYS_OBJECT_ID])
    present: set[str] = set()
    probes = profiles.probe_oids(family)
    if probes:
        nxt = await client.next(probes)
        for probe, (oid, value) in zip(probes, nxt, strict=False):
            if not value.is_empty and in_subtree(oid, probe):
                present.add(probe)
    descr = got.get(SYS_DESCR)
    soid = got.get(SYS_OBJECT_ID)
    return Identity(
        sys_object_id=soid.text if soid else "",
        sys_descr=_printable(descr) if descr else "",
        present=frozenset(present),
    )


def _printable(v: SnmpValue) -> str:
    if isinstance(v.value, bytes):
        try:
            text = v.value.decode("utf-8")
        except UnicodeDecodeError:
            text = v.value.decode("latin-1")
        return text.replace("\x00", "").strip()
    return v.text.strip()


def _walk_roots(metrics: Iterable[MetricSpec]) -> list[str]:
    cols: set[str] = set()
    for m in metrics:
        if m.column:
            cols.add(m.column)
            cols.update(lk.column for lk in m.lookups)
            if m.skip_if and m.skip_if.column:
                cols.add(m.skip_if.column)
    roots = sorted(cols, key=lambda o: tuple(int(x) for x in o.split(".")))
    out: list[str] = []
    for r in roots:
        if not any(in_subtree(r, o) for o in out):
            out.append(r)
    return out


async def fetch(client: SnmpClient, profile: ResolvedProfile) -> RawData:
    scalar_oids = sorted({m.oid for m in profile.metrics if m.oid} |
                         {f.oid for f in profile.system.values() if hasattr(f, "oid")})  # type: ignore[attr-defined]
    scalars: dict[str, SnmpValue] = {}
    if scalar_oids:
        got = await client.get([o + ".0" for o in scalar_oids])
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
            if still:
                for o, (noid, val) in zip(still, await client.next(still), strict=False):
                    if not val.is_empty and in_subtree(noid, o):
                        scalars[o] = val
    columns: dict[str, dict[str, SnmpValue]] = {}
    for root in _walk_roots(profile.metrics):
        for oid, val in await client.walk(root):
            # file under the column it belongs to: the longest requested column that is a prefix
            col, idx = _split_column(oid, root)
            columns.setdefault(col, {})[idx] = val
    return RawData(scalars, columns)


def _split_column(oid: str, root: str) -> tuple[str, str]:
    """Walk results are stored per requested root; metrics look columns up by prefix."""
    return root, oid[len(root) + 1:]


def _column_values(raw: RawData, column: str) -> dict[str, SnmpValue]:
    if column in raw.columns:
        return raw.columns[column]
    # the column was fetched as part of a larger walk
    for root, rows in raw.columns.items():
        if in_subtree(column, root):
            rel = column[len(root) + 1:]
            return {k[len(rel) + 1:]: v for k, v in rows.items() if k.startswith(rel + ".")}
    return {}


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


def _raw_number(spec: MetricSpec, v: SnmpValue) -> float | None:
    if v.is_empty:
        return None
    if spec.regex is not None:
        m = re.search(spec.regex, _printable(v))
        if not m:
            return None
        try:
            return float(m.group(1).replace(",", "."))
        except ValueError:
            return None
    return v.number


def evaluate_value(spec: MetricSpec, v: SnmpValue) -> tuple[float | None, Severity, str | None]:
    """Raw value → (value in base units or None, state from the profile's state map, text)."""
    if spec.type == MetricKind.INFO:
        text = _printable(v) if not v.is_empty else None
        return (1.0 if text else None), Severity.OK, text
    raw = _raw_number(spec, v)
    if raw is None:
        return None, Severity.UNKNOWN, (_printable(v) or None) if not v.is_empty else None
    if raw in spec.none_values:
        return None, Severity.OK, None
    text: str | None = None
    state = Severity.OK
    if spec.states is not None:
        st = spec.states.get(int(raw)) if raw == int(raw) else None
        if st is None:
            state = Severity.parse(spec.unknown_state)
            text = f"unknown({int(raw) if raw == int(raw) else raw})"
        else:
            state, text = st.sev, st.label
            if st.value is not None:
                return st.value, state, text
    if spec.value_map is not None:
        key = int(raw) if raw == int(raw) else None
        if key is not None and key in spec.value_map:
            return spec.value_map[key], state, text
        return spec.default, state, text
    value = round(raw * spec.scale + spec.offset, 9)
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        return None, Severity.OK, None
    return value, state, text


def build(device: str, profile: ResolvedProfile, raw: RawData, at: datetime) -> list[Measurement]:
    """Turn raw data into Measurements; the first metric giving a value for a series wins."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], Measurement] = {}

    def emit(spec: MetricSpec, labels: Mapping[str, str], value: float | None, state: Severity,
             text: str | None) -> None:
        m = Measurement(device=device, name=spec.name, value=value, at=at, unit=spec.unit,
                        labels={**spec.labels, **labels}, kind=spec.type, state=state, text=text, help=spec.help)
        key = (m.name, tuple(m.labels.items()))
        prev = out.get(key)
        if prev is None or (prev.value is None and value is not None):
            out[key] = m

    for spec in profile.metrics:
        if spec.oid is not None:
            v = raw.scalars.get(spec.oid)
            if v is None:
                continue
            value, state, text = evaluate_value(spec, v)
            emit(spec, {}, value, state, text)
            continue
        rows = _column_values(raw, spec.column or "")
        if not rows:
            continue
        lookups = {lk.label: (_column_values(raw, lk.column), lk) for lk in spec.lookups}
        skip_rows = _column_values(raw, spec.skip_if.column) if spec.skip_if and spec.skip_if.column else None
        total: float | None = None
        worst = Severity.OK
        for index, v in sorted(rows.items(), key=lambda kv: [int(x) for x in kv[0].split(".") if x.isdigit()]):
            if spec.skip_if is not None:
                probe = skip_rows.get(index) if skip_rows is not None else v
                if probe is not None and _matches(probe, spec.skip_if.values):
                    continue
            labels = _index_labels(spec, index)
            if labels is None:
                continue
            for label, (lrows, lk) in lookups.items():
                lv = lrows.get(index)
                if lv is not None and not lv.is_empty:
                    if lk.states and lv.number is not None:
                        labels[label] = lk.states.get(int(lv.number), str(int(lv.number)))
                    else:
                        labels[label] = _printable(lv)
            value, state, text = evaluate_value(spec, v)
            if spec.sum_rows:
                if value is not None:
                    total = (total or 0.0) + value
                worst = Severity.worst([worst, state])
                continue
            emit(spec, labels, value, state, text)
        if spec.sum_rows and (total is not None):
            emit(spec, {}, total, worst, None)
    return list(out.values())


def _matches(v: SnmpValue, values: list[int | float | str]) -> bool:
    n = v.number
    for want in values:
        if isinstance(want, str):
            if _printable(v) == want:
                return True
        elif n is not None and n == want:
            return True
    return False


def system_info(profile: ResolvedProfile, raw: RawData, ident: Identity) -> dict[str, str]:
    info = {"sys_descr": ident.sys_descr, "sys_object_id": ident.sys_object_id}
    for key, f in profile.system.items():
        v = raw.scalars.get(f.oid)  # type: ignore[attr-defined]
        if v is None or v.is_empty:
            continue
        text = _printable(v)
        rx = getattr(f, "regex", None)
        if rx:
            m = re.search(rx, text)
            if not m:
                continue
            text = m.group(1) if m.groups() else m.group(0)
        if text:
            info[key] = text
    return info
