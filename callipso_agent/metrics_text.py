"""Prometheus text exposition written directly, without prometheus-client's per-sample objects.

Two formats are written, byte for byte as prometheus-client writes them for the names and labels the agent
uses (legacy-valid metric and label names): text format 0.0.4 and OpenMetrics 1.0. Their sample lines are
the same; only the HELP/TYPE headers differ (text names a counter ``x_total`` and an info ``x_info`` typed
``gauge``; OpenMetrics names the family ``x`` and also escapes quotes in HELP) and OpenMetrics ends with
``# EOF``.

A :class:`Family` keeps its samples as rendered lines (or chunks of several lines: one device's lines of the
family); :class:`Families` keeps the families in the order they were first asked for, one per name, and
renders each one with all its samples under its one HELP/TYPE header, as the format requires.
"""

from __future__ import annotations

import functools
import math
import re
from array import array
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import escape_label_name
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

INF = math.inf
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DEFAULT_SUFFIX = {"counter": "_total", "info": "_info"}


def go_float(value: float) -> str:
    """``value`` as prometheus-client writes it (``floatToGoString``): Python's ``repr`` of the float,
    ``+Inf``/``-Inf``/``NaN``, and Go's exponent form from 1e6 up (``1.7e+09`` for a timestamp)."""
    v = value if value.__class__ is float else float(value)
    if -INF < v < 1e6:  # false for NaN and the infinities too
        return repr(v)
    if 1e6 <= v < INF:
        text = repr(v)
        dot = text.find(".")
        if dot > 6:  # not already in exponent form (from 1e16 up)
            digits = (text[:dot] + text[dot + 1 :]).rstrip("0")
            mantissa = f"{digits[0]}.{digits[1:]}" if len(digits) > 1 else digits
            return f"{mantissa}e+{dot - 1:02d}"
        return text
    return str(floatToGoString(v))  # type: ignore[no-untyped-call]


class FloatText:
    """Values formatted as :func:`go_float` does, remembered by value: a float's ``repr`` is slow (the
    shortest round-tripping digits), and many values repeat between devices and between polls. At most
    ``limit`` values are kept (all are forgotten past it, see :meth:`trim`). Not thread-safe."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._memo: dict[float, str] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def texts(self, values: list[Any]) -> list[str | None]:
        """Each value's text; ``None`` for a ``None`` or NaN value (a sample left out)."""
        memo = self._memo
        out: list[str | None] = list(map(memo.get, values))
        if None in out:
            i = out.index(None)
            while True:
                v = values[i]
                if v is not None and v == v:
                    text = out[i] = go_float(v)
                    memo[v] = text if v else "0.0"  # -0.0 is corrected below
                try:
                    i = out.index(None, i + 1)
                except ValueError:
                    break
        if 0.0 in values and _negative_zero(values):  # 0.0 and -0.0 are one key, but print differently
            i = values.index(0.0)
            while True:
                if math.copysign(1.0, values[i]) < 0:
                    out[i] = "-0.0"
                try:
                    i = values.index(0.0, i + 1)
                except ValueError:
                    break
        return out

    def trim(self) -> None:
        """Forget every value once more than ``limit`` are kept (counters make new values at each poll)."""
        if len(self._memo) > self.limit:
            self._memo.clear()


_NEGATIVE_ZERO = array("d", [-0.0]).tobytes()


def _negative_zero(values: list[Any]) -> bool:
    """Whether ``values`` may hold a -0.0 (its bytes, checked at C speed; a false hit only costs time)."""
    try:
        return _NEGATIVE_ZERO in array("d", values).tobytes()
    except TypeError:  # a None
        return True


def escape_label_value(value: str) -> str:
    """Backslash, newline and double quote escaped, as in both formats."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


@functools.lru_cache(maxsize=4096)
def label_key(name: str) -> str:
    """A label name as the client writes it (invalid characters as ``_``; the agent's names are valid)."""
    if _LEGACY_LABEL.fullmatch(name):
        return name
    return str(escape_label_name(name))


def labels_text(labels: Mapping[str, str]) -> str:
    """``{a="1",b="2"}`` with the labels sorted by name, or ``""`` without labels."""
    if not labels:
        return ""
    return "{" + ",".join([f'{label_key(k)}="{escape_label_value(v)}"' for k, v in sorted(labels.items())]) + "}"


def family_base(name: str, typ: str) -> str:
    """The family's name without the ``_total`` of a counter or the ``_info`` of an info."""
    if typ == "counter" and name.endswith("_total"):
        return name[:-6]
    if typ == "info" and name.endswith("_info"):
        return name[:-5]
    return name


def header(base: str, doc: str, typ: str, *, openmetrics: bool) -> bytes:
    """The HELP and TYPE lines of a family, in either format."""
    if openmetrics:
        doc = doc.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        return f"# HELP {base} {doc}\n# TYPE {base} {typ}\n".encode()
    name = base
    if typ == "counter":
        name += "_total"
    elif typ == "info":
        name, typ = name + "_info", "gauge"
    elif typ == "unknown":
        typ = "untyped"
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {typ}\n".encode()


class Family:
    """One metric family under construction; samples may carry different label sets."""

    __slots__ = ("base", "doc", "lines", "suffix", "typ")

    def __init__(self, name: str, doc: str, typ: str) -> None:
        self.base = family_base(name, typ)
        self.doc = doc or self.base
        self.typ = typ
        self.suffix = _DEFAULT_SUFFIX.get(typ, "")
        #: rendered sample lines (UTF-8), or chunks of lines (a device's samples of this family)
        self.lines: list[bytes] = []

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> None:
        """One sample (``suffix`` defaults to ``_total`` for a counter, ``_info`` for an info); a ``None``
        or NaN value is left out."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self.lines.append(f"{self.base}{suffix or self.suffix}{labels_text(labels)} {go_float(value)}\n".encode())

    @property
    def shown(self) -> bool:
        return bool(self.lines) or self.typ == "histogram"

    def metric(self) -> Metric:
        """The family as a prometheus-client :class:`Metric` (for registries rendering through the client)."""
        metric = Metric(self.base, self.doc, self.typ)
        for parsed in text_string_to_metric_families(b"".join(self.lines).decode()):
            for s in parsed.samples:
                metric.add_sample(s.name, s.labels, s.value)
        return metric


class Families:
    """Families by name, in the order they were first asked for."""

    def __init__(self) -> None:
        #: the families by name, in creation order (add through :meth:`get`)
        self.by_name: dict[str, Family] = {}

    def get(self, name: str, doc: str, typ: str) -> Family | None:
        """The family called ``name``, created on first use; ``None`` when it exists with another type
        (two profiles disagree on a metric's kind: the first kind seen keeps the name)."""
        fam = self.by_name.get(name)
        if fam is None:
            fam = self.by_name[name] = Family(name, doc, typ)
        elif fam.typ != typ:
            return None
        return fam

    def shown(self) -> Iterator[Family]:
        return (fam for fam in self.by_name.values() if fam.shown)

    def metrics(self) -> Iterator[Metric]:
        for fam in self.shown():
            yield fam.metric()

    def render_into(self, out: list[bytes], *, openmetrics: bool) -> None:
        """Append every family with samples (and every histogram), header first, to ``out``."""
        for fam in self.shown():
            out.append(header(fam.base, fam.doc, fam.typ, openmetrics=openmetrics))
            out.extend(fam.lines)

    def merge(self, other: Families) -> None:
        """Add ``other``'s families after these (samples of a name already here join its family)."""
        for name, fam in other.by_name.items():
            mine = self.get(name, fam.doc, fam.typ)
            if mine is not None:
                mine.lines.extend(fam.lines)


def render_text(families: Families, *, openmetrics: bool) -> str:
    """The families in text format 0.0.4 or OpenMetrics (without the ``# EOF`` line)."""
    out: list[bytes] = []
    families.render_into(out, openmetrics=openmetrics)
    return b"".join(out).decode()
