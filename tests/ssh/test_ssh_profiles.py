"""SSH profiles: the shipped ones load; mistakes are reported with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from callipso_agent.errors import ConfigErrors, NoProfile
from callipso_agent.profiles.ssh import available_ssh_profiles, load_ssh_profile
from tests.ssh.support import PROFILES

SHIPPED = ["audiocodes-cli", "omnivista-8770", "otms", "oxe"]


def test_every_family_has_a_profile() -> None:
    assert available_ssh_profiles(PROFILES) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name: str) -> None:
    p = load_ssh_profile(name, PROFILES)
    assert p.name == name
    assert p.commands
    spec = p.platform.session_spec()
    assert spec.mode == p.platform.mode
    assert (spec.prompt_pattern is not None) == (spec.mode == "shell")


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(NoProfile) as exc:
        load_ssh_profile("cisco", PROFILES)
    assert exc.value.candidates == SHIPPED
    assert "oxe" in str(exc.value)


GOOD = """\
name: t
family: t
platform:
  mode: shell
  prompt_pattern: '> $'
states:
  st: {"A": {label: a, value: 1}}
commands:
  - name: c
    command: show
    parser:
      records: ['^(?P<x>\\w+) (?P<y>\\d+)$']
      fields:
        y: {type: int}
      measurements:
        - name: m
          value: y
          labels: {x: x}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def errors_of(path: Path) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ConfigErrors) as exc:
        load_ssh_profile(path)
    for e in exc.value.errors:
        assert e.file == str(path)
    return [(e.line, e.field, e.message) for e in exc.value.errors]


def test_good_profile_loads(tmp_path: Path) -> None:
    assert load_ssh_profile(write(tmp_path, GOOD)).command("c").parser.fields["y"].type == "int"


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        (
            "        y: {type: int}",
            "        y: {typ: int}",
            14,
            "commands[0].parser.fields.y.typ",
            "unknown field",
        ),
        (
            "          value: y",
            "          value: z",
            17,
            "commands[0].parser.measurements[0].value",
            "not a named group",
        ),
        (
            "        y: {type: int}",
            "        y: {type: state, states: nope}",
            14,
            "commands[0].parser.fields.y.states",
            "unknown state table",
        ),
        (
            "  prompt_pattern: '> $'",
            "  prompt_pattern: '(> $'",
            5,
            "platform.prompt_pattern",
            "invalid regular expression",
        ),
        ("  mode: shell\n  prompt_pattern: '> $'", "  mode: shell", 3, "platform", "needs a prompt_pattern"),
        (
            "        - name: m",
            "        - name: Bad-Name",
            16,
            "commands[0].parser.measurements[0].name",
            "should match pattern",
        ),
    ],
)
def test_errors_name_file_line_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in GOOD
    errs = errors_of(write(tmp_path, GOOD.replace(old, new)))
    assert any(ln == line and f == field and message in msg for ln, f, msg in errs), errs


def test_committed_json_schema_is_current() -> None:
    """collectors/ssh/schema.json is generated from the models; regenerate it when they change."""
    import json

    from callipso_agent.profiles.ssh import ssh_profile_json_schema

    committed = json.loads((PROFILES / "schema.json").read_text(encoding="utf-8"))
    assert committed == ssh_profile_json_schema()
    assert committed["$defs"]["StateValue"]["properties"]["severity"]["enum"] == [
        "ok",
        "warning",
        "critical",
        "unknown",
    ]
