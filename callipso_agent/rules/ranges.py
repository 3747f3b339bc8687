"""Nagios / Monitoring Plugins threshold ranges: ``[@][start:][end]``, parsed once into a value.

* ``10``     alert when the value is < 0 or > 10
* ``10:``    alert when < 10
* ``~:10``   alert when > 10 (``~`` is minus infinity)
* ``10:20``  alert when outside 10..20
* ``@10:20`` alert when inside 10..20 (bounds included)

A missing start is 0, a missing end is plus infinity. Used by the check plugins' ``-w``/``-c`` options and
by the rules' thresholds (``checks/``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SYNTAX = re.compile(rf"^(?P<inside>@)?(?:(?P<start>~|{_NUM})?:)?(?P<end>{_NUM})?$")


class RangeError(ValueError):
    """A range string that does not follow ``[@][start:][end]``."""


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True, slots=True)
class Range:
    start: float = 0.0
    end: float = math.inf
    inside: bool = False  # '@': the alert is raised when the value is inside [start, end]
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Range:
        spec = text.strip()
        m = _SYNTAX.match(spec)
        if m is None or (m["start"] is None and m["end"] is None):
            raise RangeError(
                f"invalid range {text!r}: expected [@][start:][end], e.g. 10, 10:, ~:10, 10:20, @10:20"
            )
        has_colon = ":" in spec
        if has_colon:
            raw = m["start"]
            start = -math.inf if raw == "~" else float(raw) if raw else 0.0
            end = float(m["end"]) if m["end"] is not None else math.inf
        else:
            start, end = 0.0, float(m["end"])
        if math.isnan(start) or math.isnan(end):
            raise RangeError(f"invalid range {text!r}: not a number")
        if start > end:
            raise RangeError(f"invalid range {text!r}: start {_fmt(start)} is greater than end {_fmt(end)}")
        return cls(start=start, end=end, inside=bool(m["inside"]), text=spec)

    @classmethod
    def optional(cls, text: str | None) -> Range | None:
        return None if text is None or not text.strip() else cls.parse(text)

    def alerts(self, value: float) -> bool:
        """True when ``value`` raises the alert this range describes."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def match(self, value: float) -> bool:
        """True when ``value`` is fine with respect to this range (the opposite of :meth:`alerts`)."""
        return not self.alerts(value)

    @property
    def violation(self) -> str:
        """How a value that :meth:`alerts` violates the range, e.g. ``outside range 10:20``."""
        return ("inside" if self.inside else "outside") + f" range {self}"

    def __str__(self) -> str:
        """The canonical text, as written in perfdata (``10``, ``10:``, ``~:10``, ``@10:20``)."""
        if self.text:
            return self.text
        start = "~" if self.start == -math.inf else _fmt(self.start)
        end = "" if self.end == math.inf else _fmt(self.end)
        body = end if start == "0" and end else f"{start}:{end}"
        return ("@" if self.inside else "") + body
