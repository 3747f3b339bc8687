"""Pure evaluation of profile declarations over hand-made raw data (SYNTHETIC values, no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callipso_agent.model import Severity
from callipso_agent.profiles.engine import RawData, build, evaluate_value, system_info
from callipso_agent.profiles.loader import Identity, ResolvedProfile
from callipso_agent.profiles.schema import MetricSpec, Profile, SystemField
from callipso_agent.transports.snmp import SnmpValue

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def I(n: int) -> SnmpValue:  # noqa: E743 - short constructors keep the tables readable
    return SnmpValue("integer", n)


def S(t: str) -> SnmpValue:
    return SnmpValue("octets", t.encode())


def O(t: str) -> SnmpValue:  # noqa: E743
    return SnmpValue("oid", t)


NULL = SnmpValue("null", None)


def profile(*metrics: dict[str, Any], system: dict[str, Any] | None = None) -> ResolvedProfile:
    p = Profile.model_validate({"name": "t", "abstract": True, "metrics": list(metrics)})
    sys_fields = {k: (SystemField.model_validate(v),) for k, v in (system or {}).items()}
    return ResolvedProfile(profile=p, metrics=p.metrics, system=sys_fields, file="<test>")


def run(
    p: ResolvedProfile,
    scalars: dict[str, SnmpValue] | None = None,
    columns: dict[str, dict[str, SnmpValue]] | None = None,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    ms = build("dev", p, RawData(scalars or {}, columns or {}), AT)
    return {(m.name, tuple(sorted(m.labels.items()))): m for m in ms}


def test_scale_offset_sentinel_and_bounds() -> None:
    spec = MetricSpec(name="t", oid="1.3.6.1.9", scale=0.1, offset=-1, none_values=[65535], min=0)
    assert evaluate_value(spec, I(250))[0] == pytest.approx(24.0)
    assert evaluate_value(spec, I(65535)) == (None, Severity.OK, None)
    assert evaluate_value(spec, I(5))[0] is None  # 0.5 - 1 < min
    assert evaluate_value(spec, NULL) == (None, Severity.OK, None)
    assert evaluate_value(spec, S(""))[:2] == (None, Severity.OK)


def test_text_states_and_unknown_state() -> None:
    spec = MetricSpec.model_validate(
        {
            "name": "a",
            "column": "1.3.6.1.9",
            "type": "state",
            "unknown_state": "warning",
            "states": {
                ".1.3.6.1.4.1.534.1.7.3": {"label": "onBattery", "severity": "critical", "value": 1},
                "Connected": {"label": "up", "value": 1},
            },
        }
    )
    assert evaluate_value(spec, O("1.3.6.1.4.1.534.1.7.3")) == (1, Severity.CRITICAL, "onBattery")
    assert evaluate_value(spec, S("connected")) == (1, Severity.OK, "up")  # case-insensitive
    assert evaluate_value(spec, O("1.3.6.1.4.1.534.1.7.99"))[1:] == (
        Severity.WARNING,
        "unknown(1.3.6.1.4.1.534.1.7.99)",
    )


def test_scale_by_per_row_unit_and_keep_if() -> None:
    p = profile(
        {
            "name": "temp",
            "column": "1.1.6",
            "index": [{"label": "i"}],
            "keep_if": [{"column": "1.1.9", "values": [0, 1]}],
            "scale_by": {
                "column": "1.1.9",
                "cases": {0: {"scale": 0.1}, 1: {"scale": 0.0555555556, "offset": -17.7777777778}},
            },
        }
    )
    out = run(
        p,
        columns={
            "1.1.6": {"1": I(250), "2": I(770), "3": I(400)},
            "1.1.9": {"1": I(0), "2": I(1), "3": I(3)},
        },
    )
    assert out[("temp", (("i", "1"),))].value == pytest.approx(25.0)
    assert out[("temp", (("i", "2"),))].value == pytest.approx(25.0, abs=1e-6)
    assert ("temp", (("i", "3"),)) not in out  # unit 3 is not a temperature


def test_skip_groups_and_min_index() -> None:
    p = profile(
        {
            "name": "v",
            "column": "1.2.2",
            "index": [{"label": "phase"}],
            "skip_if": [
                {"column": "1.2.3", "values": [0], "min_index": 2},
                [{"values": [7]}, {"oid": "1.9.9", "values": [1]}],
            ],
        }
    )
    cols = {
        "1.2.2": {"1.0": I(229), "2.0": I(0), "3.0": I(7)},
        "1.2.3": {"1.0": I(0), "2.0": I(0), "3.0": I(50)},
    }
    out = run(p, scalars={"1.9.9": I(1)}, columns=cols)
    # phase 1 kept although its frequency is 0 (min_index 2); phase 2 dropped;
    # phase 3 dropped by the AND group
    assert set(out) == {("v", (("phase", "1"),))}
    out = run(p, scalars={"1.9.9": I(2)}, columns=cols)
    assert ("v", (("phase", "3"),)) in out


def test_suffix_tables_and_lookups() -> None:
    p = profile(
        {
            "name": "t",
            "column": "1.3",
            "suffix": "3.0",
            "index": [{"label": "group"}],
            "lookups": [{"label": "sensor", "column": "1.3", "suffix": "1.0"}],
        }
    )
    cols = {"1.3": {"1.1.0": S("Group 1"), "1.3.0": S("54.3"), "2.1.0": S("Group 2"), "2.3.0": S("-999.9")}}
    out = run(p, columns=cols)
    assert out[("t", (("group", "1"), ("sensor", "Group 1")))].value == pytest.approx(54.3)
    assert out[("t", (("group", "2"), ("sensor", "Group 2")))].value == pytest.approx(-999.9)


def test_first_source_with_a_value_wins() -> None:
    p = profile(
        {"name": "runtime", "oid": "1.4.1", "none_values": [65535]},
        {"name": "runtime", "oid": "1.4.2", "scale": 60},
    )
    assert run(p, scalars={"1.4.1": I(65535), "1.4.2": I(18)})[("runtime", ())].value == 1080
    assert run(p, scalars={"1.4.1": I(1132), "1.4.2": I(18)})[("runtime", ())].value == 1132
    # a sentinel nothing replaces is not reported
    assert run(p, scalars={"1.4.1": I(65535)}) == {}


def test_rows_limit_and_skip_index_part() -> None:
    p = profile(
        {"name": "v", "column": "1.5.2", "index": [{"label": "phase"}], "rows_limit": ["1.5.9", "1.5.8"]},
        {"name": "f", "column": "1.5.3", "index": [{"label": "phase", "type": "skip"}]},
    )
    cols = {"1.5.2": {"1": I(230), "2": I(230), "3": I(230)}, "1.5.3": {"1": I(500), "2": I(499)}}
    out = run(p, scalars={"1.5.8": I(1)}, columns=cols)
    assert {k for k in out if k[0] == "v"} == {("v", (("phase", "1"),))}
    assert out[("f", ())].value == 500  # first row, no phase label
    out = run(p, columns=cols)  # no phase count served: all rows
    assert len([k for k in out if k[0] == "v"]) == 3


def test_aggregate_count_with_fill() -> None:
    spec = {
        "name": "alarms",
        "column": "1.6.8",
        "index": [{"label": "seq"}],
        "lookups": [{"label": "severity", "column": "1.6.8", "states": {4: "major", 5: "critical"}}],
        "aggregate": {
            "op": "count",
            "by": ["severity"],
            "fill": {"severity": ["critical", "major", "minor"]},
        },
    }
    out = run(profile(spec), columns={"1.6.8": {"1": I(4), "2": I(4), "7": I(5)}})
    assert {k[1][0][1]: m.value for k, m in out.items()} == {"major": 2, "critical": 1, "minor": 0}
    out = run(profile(spec))  # empty table: zeros, not absence
    assert {m.value for m in out.values()} == {0}


def test_system_info_fallback_and_factory_default() -> None:
    p = profile(
        system={
            "model": {"oid": "1.7.1"},
            "date": {"oid": "1.7.2", "none_texts": ["2001-01-01"]},
            "serial": {"oid": "1.7.3", "regex": r"ID: (\w+)"},
        }
    )
    p2 = ResolvedProfile(
        profile=p.profile,
        metrics=(),
        file="x",
        system={
            "model": (SystemField(oid="1.7.1"), SystemField(oid="1.7.9")),
            **{k: v for k, v in p.system.items() if k != "model"},
        },
    )
    info = system_info(
        p2,
        RawData({"1.7.9": S("9PX"), "1.7.2": S("2001-01-01"), "1.7.3": S("ID: GA10 , x")}, {}),
        Identity("1.3.6.1.4.1.705.1", "Eaton"),
    )
    assert info["model"] == "9PX" and info["serial"] == "GA10" and "date" not in info
