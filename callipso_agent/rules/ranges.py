"""Nagios/Monitoring-Plugins threshold ranges: ``[@][start:][end]``.

``10`` alerts outside 0..10, ``10:`` below 10, ``~:10`` above 10, ``10:20`` outside 10..20 and
``@10:20`` inside 10..20 (bounds included). ``~`` is minus infinity; a missing end is plus infinity.
See https://www.monitoring-plugins.org/doc/guidelines.html#THRESHOLDFORMAT
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^(?P<at>@)?(?:(?P<start>~|{_NUMBER})?(?P<colon>:))?(?P<end>{_NUMBER})?$")


class RangeError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Range:
    start: float = 0.0
    end: float = math.inf
    inside: bool = False  # '@': alert when the value is inside [start, end]
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Range:
        s = text.strip()
        m = _RANGE.match(s)
        if not s or m is None or (m["colon"] is None and m["end"] is None):
            raise RangeError(
                f"invalid range {text!r}: expected [@][start:][end], e.g. 10, 10:, ~:10, 10:20, @10:20"
            )
        if m["colon"] is not None and not m["start"] and m["end"] is None:
            raise RangeError(f"invalid range {text!r}: ':' needs a start or an end")
        if m["colon"] is None:
            start, end = 0.0, float(m["end"])
        else:
            raw_start = m["start"]
            start = -math.inf if raw_start == "~" else (float(raw_start) if raw_start else 0.0)
            end = float(m["end"]) if m["end"] is not None else math.inf
        if start > end:
            raise RangeError(f"invalid range {text!r}: start {start:g} is greater than end {end:g}")
        return cls(start=start, end=end, inside=bool(m["at"]), text=s)

    def alerts(self, value: float) -> bool:
        """True when ``value`` raises the alert this range describes."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def __str__(self) -> str:
        return self.text or (("@" if self.inside else "") + f"{self.start:g}:{self.end:g}")
