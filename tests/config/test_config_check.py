"""`callipso-agent config check`: the shipped example is valid; bad files name file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callipso_agent.cli import main
from callipso_agent.config.loader import load_config
from callipso_agent.errors import ConfigErrors


def _copy(example: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "config"
    shutil.copytree(example, dst)
    return dst


def test_example_config_is_valid(example_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(example_config)]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out


def test_example_mirrors_the_estate(example_config: Path) -> None:
    cfg = load_config(example_config).config
    codes = {s.code for s in cfg.sites}
    assert {"HD13", "ARENC", "ST-SEBASTIEN"} <= codes
    remote = [s for s in cfg.sites if s.kind == "remote"]
    assert len(remote) >= 20
    assert any(s.wan == "dual" for s in remote) and sum(s.wan == "single" for s in remote) > len(remote) / 2
    families = {d.family for d in cfg.devices}
    assert {"oxe", "otms", "omnivista-8770", "audiocodes-sbc", "audiocodes-mp11x", "temperature-probe"} <= families
    # every remote site has its UPS, probe and analog gateway
    for site in remote:
        fams = {d.family for d in cfg.devices if d.site == site.code}
        assert fams & {"eaton-ups", "ups-mib"}, site.code
        assert {"temperature-probe", "audiocodes-mp11x"} <= fams, site.code
    roles = {d.name: d.role for d in cfg.devices if d.family == "oxe"}
    assert sorted(roles.values()) == ["main", "standby"]


def test_misspelt_field_names_file_line_field(example_config: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _copy(example_config, tmp_path)
    devices = cfg / "devices.yaml"
    lines = devices.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if "name: otms-hd13" in line)
    lines[target] = lines[target].replace("interval: 300", "intervall: 300")
    devices.write_text("\n".join(lines) + "\n")
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{devices}:{target + 1}" in err
    assert "intervall" in err and "unknown field" in err


def test_wrong_type_says_what_was_expected(example_config: Path, tmp_path: Path) -> None:
    cfg = _copy(example_config, tmp_path)
    sites = cfg / "sites.yaml"
    text = sites.read_text().replace("users: 60,", "users: soixante,", 1)
    sites.write_text(text)
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg)
    (e,) = exc.value.errors
    assert e.file == str(sites)
    assert e.field is not None and e.field.endswith(".users")
    assert "integer" in e.message and "soixante" in e.message
    assert e.line == next(i + 1 for i, line in enumerate(text.splitlines()) if "soixante" in line)


def test_unknown_family_lists_known_ones(example_config: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _copy(example_config, tmp_path)
    devices = cfg / "devices.yaml"
    devices.write_text(devices.read_text().replace("family: otms,", "family: otmss,", 1))
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown device family 'otmss'" in err
    assert "known families:" in err and "otms" in err and "eaton-ups" in err
    assert f"{devices}:" in err


def test_inline_secret_is_refused(example_config: Path, tmp_path: Path) -> None:
    cfg = _copy(example_config, tmp_path)
    creds = cfg / "credentials.yaml"
    creds.write_text(creds.read_text().replace("community: {env: CALLIPSO_SNMP_COMMUNITY}", "community: public"))
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg)
    assert any(e.field and "community" in e.field and e.file == str(creds) for e in exc.value.errors)


def test_dangling_references(example_config: Path, tmp_path: Path) -> None:
    cfg = _copy(example_config, tmp_path)
    devices = cfg / "devices.yaml"
    devices.write_text(devices.read_text().replace("site: HD13, family: otms", "site: HD99, family: otms")
                       .replace("ssh: ssh-linux, services: [toip, visio", "ssh: ssh-nowhere, services: [toip, visio"))
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg)
    msgs = [str(e) for e in exc.value.errors]
    assert any("unknown site 'HD99'" in m for m in msgs)
    assert any("unknown credential 'ssh-nowhere'" in m for m in msgs)


def test_broken_yaml_names_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("sites:\n  - {code: X, name: 'unterminated}\n")
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path)
    (e,) = exc.value.errors
    assert e.file == str(tmp_path / "a.yaml") and e.line is not None


def test_secret_reference_resolution_hides_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from callipso_agent.config.secrets import SecretRef

    (tmp_path / "s").write_text("hunter2\n")
    s = SecretRef(file="s").resolve(tmp_path)
    assert s.reveal() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    monkeypatch.setenv("CALLIPSO_TEST_SECRET", "abc")
    assert SecretRef(env="CALLIPSO_TEST_SECRET").resolve().reveal() == "abc"
