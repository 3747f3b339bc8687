"""Nagios threshold ranges, table-tested: (range, value, alerts?) with no I/O."""

from __future__ import annotations

import math

import pytest

from callipso_agent.rules.ranges import Range, RangeError

CASES = [
    # plain end: 0..end is fine
    ("10", -1, True),
    ("10", 0, False),
    ("10", 5.5, False),
    ("10", 10, False),
    ("10", 10.01, True),
    # start: -> start..+inf is fine
    ("10:", 9.99, True),
    ("10:", 10, False),
    ("10:", 1e9, False),
    # ~: -> -inf..end is fine
    ("~:10", -1e9, False),
    ("~:10", 10, False),
    ("~:10", 11, True),
    # start:end
    ("10:20", 9, True),
    ("10:20", 10, False),
    ("10:20", 20, False),
    ("10:20", 21, True),
    # @ inverts, bounds included
    ("@10:20", 9, False),
    ("@10:20", 10, True),
    ("@10:20", 15, True),
    ("@10:20", 20, True),
    ("@10:20", 21, False),
    ("@0:0", 0, True),
    ("@0:0", 1, False),
    ("@5", 0, True),
    ("@5", 6, False),
    # negatives, decimals, exponent
    ("-10:-5", -7, False),
    ("-10:-5", -4, True),
    ("0.5:1.5", 0.4, True),
    ("1e3", 999, False),
    ("1e3", 1001, True),
    ("~:", -1e12, False),
    ("~:", 1e12, False),
    # "0": anything but zero alerts (counts of P1 incidents: -c 0)
    ("0", 0, False),
    ("0", 1, True),
]


@pytest.mark.parametrize(("spec", "value", "alerts"), CASES)
def test_alerts_table(spec: str, value: float, alerts: bool) -> None:
    r = Range.parse(spec)
    assert r.alerts(value) is alerts
    assert r.match(value) is not alerts


@pytest.mark.parametrize(
    ("spec", "start", "end", "inside"),
    [
        ("10", 0, 10, False),
        ("10:", 10, math.inf, False),
        ("~:10", -math.inf, 10, False),
        (":10", 0, 10, False),
        ("@10:20", 10, 20, True),
        (" 5:7 ", 5, 7, False),
        ("+3", 0, 3, False),
    ],
)
def test_parsed_bounds(spec: str, start: float, end: float, inside: bool) -> None:
    r = Range.parse(spec)
    assert (r.start, r.end, r.inside) == (start, end, inside)


@pytest.mark.parametrize(
    "bad", ["", " ", "@", ":", "@:", "abc", "10:5", "1:2:3", "~", "@@1", "10-20", "nan", "1,5", "~:~"]
)
def test_invalid_ranges_are_refused_with_the_syntax_in_the_message(bad: str) -> None:
    with pytest.raises(RangeError) as err:
        Range.parse(bad)
    assert "range" in str(err.value)


def test_text_and_violation() -> None:
    assert str(Range.parse("@10:20")) == "@10:20"
    assert Range.parse("10:20").violation == "outside range 10:20"
    assert Range.parse("@1:2").violation == "inside range @1:2"
    assert str(Range(start=-math.inf, end=10)) == "~:10"
    assert str(Range(start=0, end=10)) == "10"
    assert str(Range(start=5)) == "5:"
    assert Range.optional(None) is None and Range.optional("") is None
    assert Range.optional("3") == Range.parse("3")
