"""Committed JSON Schemas are up to date; shipped profiles and trap maps validate; errors point at lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callipso_agent.errors import ConfigErrors
from callipso_agent.profiles.jsonschema import main as schema_main
from callipso_agent.profiles.jsonschema import targets
from callipso_agent.profiles.loader import load_profiles
from callipso_agent.traps import load_trap_rules
from tests.helpers.polling import COLLECTORS


def test_committed_schemas_are_current() -> None:
    for path, text in targets(COLLECTORS).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: python -m callipso_agent.profiles.jsonschema"
        )
    assert schema_main(["--check", "--dir", str(COLLECTORS)]) == 0


def test_schema_check_detects_staleness(tmp_path: Path) -> None:
    (tmp_path / "traps").mkdir()
    (tmp_path / "schema.json").write_text("{}\n", encoding="utf-8")
    assert schema_main(["--check", "--dir", str(tmp_path)]) == 1
    assert schema_main(["--dir", str(tmp_path)]) == 0
    schema = json.loads((tmp_path / "schema.json").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False and "metrics" in schema["properties"]


def test_all_shipped_profiles_load() -> None:
    ps = load_profiles(COLLECTORS)
    for name in (
        "eaton-xups",
        "mge-ups",
        "ups-mib",
        "ups-mib-delta-mini",
        "audiocodes-sbc",
        "audiocodes-mp",
        "oxe",
        "akcp-sensorprobe",
        "hwg",
        "netbotz",
        "geist",
        "avtech",
        "comet",
        "papouch",
        "sensatronics",
        "serverscheck",
        "jacarta",
        "vutlan",
    ):
        p = ps.get(name)
        # every detectable profile includes snmp-base (uptime, interfaces)
        assert any(m.name == "device_uptime_seconds" for m in p.metrics), name
    assert len(load_trap_rules(COLLECTORS / "traps").rules) > 50


def test_profile_errors_carry_file_line_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nfamilies: [x]\ndetect: {sys_object_id: [1.3.6.1.4.1.1]}\nmetrics:\n"
        "  - name: x_total\n    oid: 1.3.6.1.2.1.1.3\n    type: counter\n    sacle: 2\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigErrors) as info:
        load_profiles(tmp_path)
    err = info.value.errors[0]
    assert err.line == 8 and err.field == "metrics[0].sacle" and "unknown field" in err.message


def test_trap_map_errors(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("name: t\ntraps:\n  - event: x\n    severity: major\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_trap_rules(tmp_path)
    fields = {e.field for e in info.value.errors}
    assert "traps[0].severity" in fields
