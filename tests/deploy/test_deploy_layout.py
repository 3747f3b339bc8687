"""The deployment examples agree with the repository: what the Containerfile copies exists, the example
environment file names every secret the example configuration takes from the environment, the unit and the
/etc layout point at the same folder."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_containerfile_copies_what_exists_and_what_the_wheel_needs() -> None:
    text = (DEPLOY / "container" / "Containerfile").read_text(encoding="utf-8")
    sources = [
        s for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M) for s in line.split()[:-1]
    ]
    assert sources
    for s in sources:
        assert (ROOT / s).exists(), f"Containerfile copies {s}, which does not exist"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    included = re.findall(r'^"(\w+)" = "callipso_agent/_data/', pyproject, flags=re.M)
    assert set(included) <= set(sources)
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)


def test_environment_example_covers_the_example_env_secrets() -> None:
    wanted = set(
        re.findall(r"\{env: (\w+)\}", (ROOT / "config" / "credentials.yaml").read_text(encoding="utf-8"))
    )
    example = (DEPLOY / "etc" / "callipso-agent" / "environment.example").read_text(encoding="utf-8")
    given = set(re.findall(r"^(\w+)=", example, flags=re.M))
    assert wanted and wanted <= given


def test_unit_and_layout_agree_on_the_configuration_folder() -> None:
    unit = (DEPLOY / "systemd" / "callipso-agent.service").read_text(encoding="utf-8")
    layout = (DEPLOY / "etc" / "callipso-agent" / "README.md").read_text(encoding="utf-8")
    (config,) = re.findall(r"--config (\S+)", unit)
    assert f"run --config {config}" in layout
    env_file = re.search(r"^EnvironmentFile=-?(\S+)", unit, flags=re.M)
    assert env_file and Path(env_file[1]).name in layout
    journald = (DEPLOY / "etc" / "systemd" / "journald.conf.d" / "callipso.conf").read_text(encoding="utf-8")
    assert re.search(r"^SystemMaxUse=\d+[KMG]$", journald, flags=re.M)
