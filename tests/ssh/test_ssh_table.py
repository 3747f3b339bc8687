"""The regex-table engine, pure: tables of (output, expected measurements)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callipso_agent.model import MetricKind, Severity
from callipso_agent.parsers.table import Context, convert, extract_records, lookup_state, measure
from callipso_agent.profiles.ssh import FieldSpec, ParserSpec, StateValue

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CTX = Context(device="dev", at=AT, command="cmd")
STATES = {
    "role": {
        "MAIN": StateValue(label="main", value=1),
        "STANDBY": StateValue(label="standby", value=0),
        "*": StateValue(label="stopped", value=-1, severity=Severity.CRITICAL),
    },
    "chan": {"F": StateValue(label="free", value=0), "B": StateValue(label="busy", value=1)},
    "strict_only": {"OK": StateValue(label="ok", value=1)},
}


def spec(**kw: object) -> ParserSpec:
    return ParserSpec.model_validate(kw)


@pytest.mark.parametrize(
    ("raw", "field", "number", "text", "error"),
    [
        (" 42 ", {"type": "int"}, 42.0, "42", None),
        ("4x2", {"type": "int"}, None, None, "not a number"),
        ("1,5", {"type": "float"}, 1.5, "1,5", None),
        ("10", {"type": "int", "scale": 1024}, 10240.0, "10", None),
        ("20", {"type": "float", "scale": 0.1, "offset": -1}, 1.0, "20", None),
        ("..H..", {"type": "str", "strip": "."}, None, "H", None),
        ("Major", {"type": "str", "case": "lower"}, None, "major", None),
        ("main", {"type": "state", "states": "role"}, 1.0, "main", None),
        ("  STANDBY ", {"type": "state", "states": "role"}, 0.0, "standby", None),
        ("ABSENT", {"type": "state", "states": "role"}, -1.0, "stopped", None),  # default "*"
        ("BAD", {"type": "state", "states": "strict_only"}, None, None, "unmapped state"),
        (
            "05/01/26 02:00:05",
            {"type": "timestamp", "format": "%d/%m/%y %H:%M:%S", "tz": "Europe/Paris"},
            datetime(2026, 1, 5, 1, 0, 5, tzinfo=UTC).timestamp(),
            "05/01/26 02:00:05",
            None,
        ),
        (
            "Jun  1 00:00:00 2030",
            {"type": "timestamp", "format": "%b %d %H:%M:%S %Y"},
            datetime(2030, 6, 1, tzinfo=UTC).timestamp(),
            "Jun  1 00:00:00 2030",
            None,
        ),
        ("yesterday", {"type": "timestamp", "format": "%Y"}, None, None, "not a timestamp"),
    ],
)
def test_convert(
    raw: str, field: dict[str, object], number: float | None, text: str | None, error: str | None
) -> None:
    v = convert(raw, FieldSpec.model_validate(field), STATES)
    assert v.number == number
    if error:
        assert v.error is not None and error in v.error
    else:
        assert v.error is None
        assert v.label_text == text


def test_state_lookup_ignores_case_and_spacing() -> None:
    table = {"SWITCHOVER IN PROGRESS": StateValue(label="in_progress", value=1)}
    assert lookup_state(table, "switchover   in progress") == table["SWITCHOVER IN PROGRESS"]
    assert lookup_state(table, "other") is None


def test_blocks_merge_lines_until_next_start() -> None:
    s = spec(
        block_start=r"^group (?P<g>\d+)$",
        records=[r"^name (?P<name>\w+)$", r"^state (?P<st>.*)$"],
        measurements=[{"name": "x", "aggregate": "count"}],
    )
    recs = extract_records(s, "noise\ngroup 1\nname a\nstate F B\ngroup 2\nname b\n")
    assert [dict(r.groups) for r in recs] == [{"g": "1", "name": "a", "st": "F B"}, {"g": "2", "name": "b"}]


def test_tokens_explode_and_zero_fill() -> None:
    s = spec(
        block_start=r"^group (?P<g>\w+)$",
        records=[r"^state (?P<ch>.*)$"],
        fields={"ch": {"type": "tokens", "states": "chan", "ignore": ["--"]}},
        measurements=[
            {
                "name": "chans",
                "aggregate": "count",
                "labels": {"group": "g", "state": "ch"},
                "zero_fill": {"state": ["free", "busy", "out"]},
            }
        ],
    )
    ms = measure(s, STATES, "group a\nstate F F B -- F\ngroup b\nstate B\n", CTX)
    got = {(m.labels["group"], m.labels["state"]): m.value for m in ms}
    assert got == {
        ("a", "free"): 3,
        ("a", "busy"): 1,
        ("a", "out"): 0,
        ("b", "free"): 0,
        ("b", "busy"): 1,
        ("b", "out"): 0,
    }


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("", {"critical": 0, "major": 0}),
        ("1 major\n2 major\n3 critical\n", {"critical": 1, "major": 2}),
        ("1 minor\n", {"critical": 0, "major": 0, "minor": 1}),
    ],
)
def test_count_with_zero_fill(output: str, expected: dict[str, float]) -> None:
    s = spec(
        records=[r"^(?P<seq>\d+) (?P<sev>\w+)$"],
        measurements=[
            {
                "name": "alarms",
                "aggregate": "count",
                "labels": {"severity": "sev"},
                "zero_fill": {"severity": ["critical", "major"]},
            }
        ],
    )
    ms = measure(s, STATES, output, CTX)
    assert {m.labels["severity"]: m.value for m in ms} == expected
    assert all(m.state == Severity.OK for m in ms)


def test_state_measurement_carries_severity_and_label() -> None:
    s = spec(
        records=[r"^cpu (?P<cpu>\w) (?P<role>\w+)$"],
        fields={"role": {"type": "state", "states": "role"}},
        measurements=[{"name": "pbx_cpu_role", "kind": "state", "value": "role", "labels": {"cpu": "cpu"}}],
    )
    ms = {m.labels["cpu"]: m for m in measure(s, STATES, "cpu A MAIN\ncpu B STOPPED\n", CTX)}
    assert (ms["A"].value, ms["A"].state, ms["A"].text) == (1, Severity.OK, "main")
    assert (ms["B"].value, ms["B"].state, ms["B"].text) == (-1, Severity.CRITICAL, "stopped")
    assert ms["A"].kind == MetricKind.STATE and ms["A"].at == AT and ms["A"].device == "dev"


def test_bad_number_gives_unknown_with_the_line() -> None:
    s = spec(
        records=[r"^(?P<mount>/\S*) (?P<pct>\S+)%$"],
        fields={"pct": {"type": "int"}},
        measurements=[{"name": "fs", "value": "pct", "labels": {"mount": "mount"}}],
    )
    ms = {m.labels["mount"]: m for m in measure(s, STATES, "/ 43%\n/var x1%\n", CTX)}
    assert ms["/"].value == 43 and ms["/"].state == Severity.OK
    assert ms["/var"].value is None and ms["/var"].state == Severity.UNKNOWN
    assert ms["/var"].text is not None and "/var x1%" in ms["/var"].text


@pytest.mark.parametrize(
    "output",
    [
        "%$#@!\x7f garbage ~~ 12\n((((\n",
        "cpu A MAIN\n&&&& noise\n",
    ],
)
def test_strict_mode_turns_unexpected_lines_into_unknown(output: str) -> None:
    s = spec(
        strict=True,
        ignore=[r"^Header"],
        records=[r"^cpu (?P<cpu>\w) (?P<role>\w+)$"],
        measurements=[{"name": "roles", "aggregate": "count", "labels": {"cpu": "cpu"}}],
    )
    ms = measure(s, STATES, output, CTX)
    assert len(ms) == 1 and ms[0].state == Severity.UNKNOWN and ms[0].value is None
    assert ms[0].text is not None and "unexpected line" in ms[0].text
    assert measure(s, STATES, "Header line\ncpu A MAIN\n", CTX)[0].value == 1


def test_require_missing_keeps_truncated_raw_text() -> None:
    s = spec(
        require=[r"^Total:"],
        records=[r"^(?P<n>\d+)$"],
        fields={"n": {"type": "int"}},
        measurements=[{"name": "n", "value": "n"}],
    )
    raw = "1\n" * 2000
    [m] = measure(s, STATES, raw, CTX)
    assert m.state == Severity.UNKNOWN and m.value is None
    assert m.text is not None and "lacks expected pattern" in m.text and "more characters" in m.text
    assert len(m.text) < len(raw)


def test_required_measurement_without_records_is_unknown_optional_is_absent() -> None:
    s = spec(
        records=[r"^a=(?P<a>\d+)$", r"^b=(?P<b>\d+)$"],
        fields={"a": {"type": "int"}, "b": {"type": "int"}},
        measurements=[{"name": "a", "value": "a"}, {"name": "b", "value": "b", "required": False}],
    )
    ms = measure(s, STATES, "c=3\n", CTX)
    assert [(m.name, m.state) for m in ms] == [("a", Severity.UNKNOWN)]


@pytest.mark.parametrize(
    ("output", "value", "state"),
    [
        ("Mem: 200 50\n", 25.0, Severity.OK),
        ("Mem: 0 50\n", None, Severity.UNKNOWN),  # division by zero
    ],
)
def test_ratio(output: str, value: float | None, state: Severity) -> None:
    s = spec(
        records=[r"^Mem: (?P<total>\d+) (?P<used>\d+)$"],
        fields={"total": {"type": "int"}, "used": {"type": "int"}},
        measurements=[{"name": "mem", "value": "used", "divide_by": "total", "multiply": 100}],
    )
    [m] = measure(s, STATES, output, CTX)
    assert (m.value, m.state) == (value, state)


def test_relative_to_now_and_where_filter_and_max() -> None:
    s = spec(
        records=[r"^(?P<when>\d+) (?P<result>\w+)$"],
        fields={"when": {"type": "int"}, "result": {"type": "str", "case": "lower"}},
        measurements=[
            {"name": "last_ok", "aggregate": "max", "value": "when", "where": {"result": ["ok"]}},
            {"name": "age", "aggregate": "max", "value": "when", "relative_to_now": True},
        ],
    )
    now = AT.timestamp()
    out = f"{int(now) - 300} OK\n{int(now) - 100} FAILED\n{int(now) - 200} ok\n"
    ms = {m.name: m.value for m in measure(s, STATES, out, CTX)}
    assert ms == {"last_ok": now - 200, "age": -100.0}


def test_last_record_wins_for_same_series() -> None:
    s = spec(
        records=[r"^(?P<result>\w+)$"],
        fields={"result": {"type": "state", "states": "role"}},
        measurements=[{"name": "latest", "kind": "state", "value": "result"}],
    )
    [m] = measure(s, STATES, "MAIN\nSTANDBY\n", CTX)
    assert m.text == "standby"
