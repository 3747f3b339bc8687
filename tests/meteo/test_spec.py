"""The checklist files: the shipped ones load and match the example estate; mistakes are reported with file,
line and field. The broken checklists are SYNTHETIC, written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from callipso_agent.daemon import known_families
from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.meteo.spec import cross_check, load_meteo_spec
from tests.meteo.estate import example_config, shipped_spec

CONTRACT_LINES = [
    "INFRASTRUCTURE TOIP CALLIPSO",
    "CENTRE D'APPEL ISI-COM",
    "VISIO",
    "SMS LINK MOBILITY",
    "SMS MAIL CYCOS",
    "ANNUAIRE",
    "GUIDES VOCAUX DE FERMETURE (CDS/APA/MDPH)",
    "TOIP VIP/VVIP",
]


def test_shipped_checklist_covers_the_contract_and_matches_the_example_estate() -> None:
    spec = shipped_spec()
    config = example_config()
    names = {s.key: s.name for s in config.services}
    assert [names[s.key] for s in spec.services] == CONTRACT_LINES
    assert [s.site for s in spec.sites] == ["HD13", "ARENC", "ST-SEBASTIEN"]
    assert spec.remote is not None and [c.id for c in spec.remote.categories] == [
        "unreachable",
        "on_ups",
        "degraded",
    ]
    assert cross_check(spec, config, families=known_families()) == []
    categories = {c.category for c in spec.checks}
    assert {"backups", "directory", "oxe", "sbc", "ups", "sites", "probes"} <= categories
    metrics = {c.metric for c in spec.checks}
    assert {
        "pbx_backup_ok",
        "ov_directory_sync_ok",
        "ov_directory_sync_anomalies",
        "pbx_cpu_role",
        "sbc_alarms_active",
        "sbc_calls_active",
        "ups_self_test_result",
        "ups_battery_charge_percent",
        "ups_on_battery",
        "sensor_temperature_celsius",
        "up",
    } <= metrics
    for c in spec.checks:  # every check speaks both languages
        assert isinstance(c.title, dict) and set(c.title) == {"fr", "en"}, c.id
        assert isinstance(c.summary, dict) and set(c.summary) == {"fr", "en"}, c.id


def write(tmp_path: Path, meteo: str, **daily: str) -> Path:
    (tmp_path / "daily").mkdir()
    for name, text in daily.items():
        (tmp_path / "daily" / f"{name}.yaml").write_text(text, encoding="utf-8")
    path = tmp_path / "meteo.yaml"
    path.write_text(meteo, encoding="utf-8")
    return path


GOOD_CHECK = """\
checks:
  - id: ups_on_battery
    category: ups
    title: "UPS"
    devices: [{family: eaton-ups}]
    metric: ups_on_battery
    fail_when: {op: "==", value: 1}
    summary: "{device}"
"""


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  - key: toip\n    chekcs: [ups_on_battery]\n", ups=GOOD_CHECK)
    with pytest.raises(ConfigErrors) as exc:
        load_meteo_spec(path)
    [err] = exc.value.errors
    assert (err.file, err.line, err.field) == (str(path), 3, "services[0].chekcs")
    assert "unknown field" in err.message


def test_bad_condition_in_a_daily_file_points_into_that_file(tmp_path: Path) -> None:
    bad = GOOD_CHECK.replace('fail_when: {op: "==", value: 1}', 'fail_when: {op: "==", state: [critical]}')
    path = write(tmp_path, "services:\n  - key: toip\n", ups=bad)
    with pytest.raises(ConfigErrors) as exc:
        load_meteo_spec(path)
    [err] = exc.value.errors
    assert err.file == str(tmp_path / "daily" / "ups.yaml")
    assert err.line == 7 and err.field == "checks[0].fail_when"
    assert "exactly one of" in err.message


def test_unknown_check_ids_and_duplicates(tmp_path: Path) -> None:
    meteo = (
        "services:\n  - key: toip\n    checks: [ups_on_battery, ups_on_batery]\n"
        "remote:\n  categories:\n    - {id: on_ups, label: x, checks: [nope]}\n"
    )
    path = write(tmp_path, meteo, ups=GOOD_CHECK, again=GOOD_CHECK)
    with pytest.raises(ConfigErrors) as exc:
        load_meteo_spec(path)
    got = {(e.line, e.field, e.message) for e in exc.value.errors}
    assert (3, "services[0].checks[1]", "unknown check 'ups_on_batery'") in got
    assert (6, "remote.categories[0].checks[0]", "unknown check 'nope'") in got
    dup = [e for e in exc.value.errors if "already declared" in e.message]
    assert len(dup) == 1 and dup[0].file == str(tmp_path / "daily" / "ups.yaml") and dup[0].line == 2


def test_french_text_is_required(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  - key: toip\n    label: {en: Telephony}\n", ups=GOOD_CHECK)
    with pytest.raises(ConfigErrors) as exc:
        load_meteo_spec(path)
    assert exc.value.errors[0].field == "services[0].label" and "'fr'" in exc.value.errors[0].message


def test_cross_check_against_the_inventory(tmp_path: Path) -> None:
    meteo = (
        "services:\n  - key: telephonie\n  - key: toip\n    groups:\n      - name: x\n"
        "        devices: [{site: NOWHERE, service: nope, family: [oxe, eaton-usp]}]\n"
        "sites:\n  - site: HD14\n"
    )
    path = write(tmp_path, meteo, ups=GOOD_CHECK)
    errors = cross_check(load_meteo_spec(path), example_config(), families=known_families())
    assert all(isinstance(e, ConfigError) and e.file == str(path) for e in errors)
    messages = {(e.line, e.message.split(";")[0]) for e in errors}
    assert (2, "unknown service line 'telephonie'") in messages
    assert (3, "unknown site 'NOWHERE'") in messages
    assert (3, "unknown service line 'nope'") in messages
    assert (8, "unknown site 'HD14'") in messages
    assert (3, "unknown device family 'eaton-usp'") in messages
    assert not any("'oxe'" in e.message for e in errors)
