"""The check machinery, after nagiosplugin's split: a resource acquires :class:`Metric` values, contexts
evaluate them into :class:`Result` values, a summary renders the Monitoring Plugins output.

Output: ``<NAME> <STATE> - <summary> | <perfdata>`` on the first line, then long output (one line per result
with ``-v``). Perfdata is ``'label'=value[UOM];warn;crit;min;max`` in base units. The exit code is the worst
state (CRITICAL > UNKNOWN > WARNING > OK, as Nagios aggregates), and any :class:`CheckError` is UNKNOWN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from callipso_agent.model import Severity
from callipso_agent.rules.ranges import Range


class CheckError(Exception):
    """Anything that prevents an answer: the plugin exits UNKNOWN with this message."""


TEXTS = {
    "fr": {
        "outside": "hors de la plage",
        "inside": "dans la plage",
        "no_data": "aucune donnée",
        "all_ok": "tout est nominal",
    },
    "en": {
        "outside": "outside range",
        "inside": "inside range",
        "no_data": "no data",
        "all_ok": "all nominal",
    },
}


def text(lang: str, key: str) -> str:
    return TEXTS.get(lang, TEXTS["en"])[key]


@dataclass(frozen=True, slots=True)
class Metric:
    """One value to evaluate; ``state`` and ``state_text`` are set for states the profile already mapped."""

    name: str  # perfdata label and display name
    value: float | None
    uom: str = ""  # Monitoring Plugins UOM: "", s, %, B, c
    context: str = "default"
    min: float | None = None
    max: float | None = None
    state: Severity | None = None
    state_text: str | None = None
    display: str = ""  # value as shown to operators, when not the number itself

    def shown(self) -> str:
        if self.display:
            return self.display
        if self.value is None:
            return "n/a"
        return f"{self.value:g}{self.uom if self.uom in ('%', 's') else ''}"


@dataclass(frozen=True, slots=True)
class Result:
    state: Severity
    hint: str
    metric: Metric | None = None


class Context(Protocol):
    name: str

    def evaluate(self, metric: Metric, lang: str) -> Result: ...

    def performance(self, metric: Metric) -> str | None: ...


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if math.isinf(x):
        return ""
    return f"{x:g}"


def perf_label(name: str) -> str:
    """Quote a perfdata label; a quote inside is doubled."""
    return "'" + name.replace("'", "''") + "'"


def perfdata(metric: Metric, warning: Range | None = None, critical: Range | None = None) -> str | None:
    if metric.value is None or (isinstance(metric.value, float) and math.isnan(metric.value)):
        return None
    fields = [
        f"{perf_label(metric.name)}={_num(metric.value)}{metric.uom}",
        str(warning or ""),
        str(critical or ""),
        _num(metric.min),
        _num(metric.max),
    ]
    while fields and fields[-1] == "":
        fields.pop()
    return ";".join(fields)


@dataclass
class ScalarContext:
    """Critical range checked first, then warning (nagiosplugin's ScalarContext)."""

    name: str
    warning: Range | None = None
    critical: Range | None = None

    def evaluate(self, metric: Metric, lang: str) -> Result:
        if metric.value is None:
            return Result(Severity.UNKNOWN, f"{metric.name} {text(lang, 'no_data')}", metric)
        for state, rng in ((Severity.CRITICAL, self.critical), (Severity.WARNING, self.warning)):
            if rng is not None and rng.alerts(metric.value):
                where = text(lang, "inside" if rng.inside else "outside")
                return Result(state, f"{metric.name} {metric.shown()} ({where} {rng})", metric)
        return Result(Severity.OK, f"{metric.name} {metric.shown()}", metric)

    def performance(self, metric: Metric) -> str | None:
        return perfdata(metric, self.warning, self.critical)


@dataclass
class StateContext:
    """A vendor state whose severity the profile already decided; its raw value goes to perfdata."""

    name: str = "state"

    def evaluate(self, metric: Metric, lang: str) -> Result:
        state = metric.state if metric.state is not None else Severity.UNKNOWN
        return Result(state, f"{metric.name} {metric.state_text or metric.shown()}", metric)

    def performance(self, metric: Metric) -> str | None:
        return None  # enum codes graph badly; the state is in the text


@dataclass
class Outcome:
    name: str
    results: list[Result] = field(default_factory=list)
    perf: list[str] = field(default_factory=list)
    summary_prefix: str = ""
    lang: str = "fr"

    @property
    def state(self) -> Severity:
        return Severity.worst(r.state for r in self.results) if self.results else Severity.UNKNOWN

    def render(self, verbose: int = 0) -> str:
        state = self.state
        problems = [r for r in self.results if r.state is not Severity.OK]
        # the worst first, like nagiosplugin's Summary.problem()
        order = {Severity.CRITICAL: 0, Severity.UNKNOWN: 1, Severity.WARNING: 2, Severity.OK: 3}
        problems.sort(key=lambda r: order[r.state])
        if problems:
            summary = ", ".join(r.hint for r in problems[: 3 if verbose == 0 else len(problems)])
            if verbose == 0 and len(problems) > 3:
                summary += f" (+{len(problems) - 3})"
        elif self.results:
            summary = ", ".join(r.hint for r in (self.results if verbose else self.results[:3]))
        else:
            summary = text(self.lang, "no_data")
        if self.summary_prefix:
            summary = f"{self.summary_prefix}: {summary}"
        first = f"{self.name} {state.name} - {summary}".replace("|", "/")
        perf = " ".join(self.perf)
        lines = [first + (f" | {perf}" if perf else "")]
        if verbose:
            lines += [f"{r.state.name}: {r.hint}".replace("|", "/") for r in self.results]
        return "\n".join(lines)


def evaluate(
    name: str,
    metrics: Iterable[Metric],
    contexts: Sequence[Context],
    *,
    lang: str = "fr",
    prefix: str = "",
    extra: Iterable[Result] = (),
) -> Outcome:
    by_name = {c.name: c for c in contexts}
    out = Outcome(name=name, summary_prefix=prefix, lang=lang)
    for m in metrics:
        ctx = by_name.get(m.context)
        if ctx is None:
            raise CheckError(f"no context {m.context!r} (known: {', '.join(sorted(by_name))})")
        out.results.append(ctx.evaluate(m, lang))
        p = ctx.performance(m)
        if p:
            out.perf.append(p)
    out.results.extend(extra)
    return out
