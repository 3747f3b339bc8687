"""Profiles load from collectors/, and a broken profile is refused with file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callipso_agent.errors import ConfigErrors
from callipso_agent.paths import collectors_dir
from callipso_agent.profiles import load_profiles
from callipso_agent.profiles.loader import Identity


def test_shipped_profiles_load_and_resolve_includes() -> None:
    ps = load_profiles(collectors_dir())
    ups = ps.get("ups-mib")
    names = {m.name for m in ups.metrics}
    assert "device_uptime_seconds" in names  # included from snmp-base
    assert {"ups_battery_charge_percent", "ups_on_battery", "ups_input_voltage_volts"} <= names


def test_generic_ups_detected_by_mib_presence() -> None:
    ps = load_profiles(collectors_dir())
    ident = Identity(sys_object_id="1.3.6.1.4.1.99999.1", sys_descr="Some unseen UPS card",
                     present=frozenset({"1.3.6.1.2.1.33.1"}))
    assert ps.detect(ident).name in {p.name for p in ps.detectable("ups-mib")}


def _broken(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "collectors"
    shutil.copytree(collectors_dir(), d, ignore=shutil.ignore_patterns("ssh", "traps"))
    (d / "broken.yaml").write_text(text)
    return d


def test_misspelt_key_in_profile(tmp_path: Path) -> None:
    d = _broken(tmp_path, "name: broken\nfamilies: [ups-mib]\ndetect: {requires: [1.3.6.1.2.1.33]}\n"
                          "metrics:\n  - name: ups_x\n    oid: 1.3.6.1.2.1.33.1.2.4\n    scael: 10\n")
    with pytest.raises(ConfigErrors) as exc:
        load_profiles(d)
    (e,) = exc.value.errors
    assert e.file == str(d / "broken.yaml") and e.line == 7 and e.field == "metrics[0].scael"


def test_bad_oid_and_unknown_include(tmp_path: Path) -> None:
    d = _broken(tmp_path, "name: broken\nfamilies: [ups-mib]\ndetect: {requires: [1.3.6.1.2.1.33]}\n"
                          "metrics:\n  - {name: ups_x, oid: 'iso.3.6'}\n")
    with pytest.raises(ConfigErrors) as exc:
        load_profiles(d)
    assert exc.value.errors[0].field == "metrics[0].oid" and exc.value.errors[0].line == 5
    d2 = _broken(tmp_path / "b", "name: broken\nfamilies: [ups-mib]\ninclude: [nope]\n"
                                 "detect: {requires: [1.3.6.1.2.1.33]}\n")
    with pytest.raises(ConfigErrors, match="unknown included profile 'nope'"):
        load_profiles(d2)


def test_a_profile_works_out_what_it_asks_once() -> None:
    from callipso_agent.profiles.engine import fetch_plan

    ups = load_profiles(collectors_dir()).get("ups-mib")
    plan = fetch_plan(ups)
    assert fetch_plan(ups) is plan  # kept with the loaded profile
    assert plan.instances == tuple(o + ".0" for o in plan.scalars)
    assert list(plan.scalars) == sorted(plan.scalars, key=lambda o: tuple(int(p) for p in o.split(".")))
    walked = {first for _parent, first, _last, _count in plan.walks}
    assert "1.3.6.1.2.1.33.1.3.3.1.3" in walked or any(  # upsInputVoltage, alone or with its siblings
        p == "1.3.6.1.2.1.33.1.3.3.1" for p, *_ in plan.walks)
    assert fetch_plan(load_profiles(collectors_dir()).get("ups-mib")) is not plan  # a reload: a new plan
