"""deploy/nagios and deploy/centreon: the templates load in a real Nagios 4, and every command line they
define is one callipso-check accepts (macros replaced by sample values)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from callipso_agent.plugins.check import build_parser
from tests.helpers.nagios import verify_objects

ROOT = Path(__file__).resolve().parents[2]
NAGIOS = ROOT / "deploy" / "nagios"
CENTREON = ROOT / "deploy" / "centreon" / "callipso.clapi"
MODES = {"ups", "sensors", "sbc", "gateway", "pbx", "device", "incidents", "meteo"}


def parse(command_line: str, macros: dict[str, str]) -> object:
    line = re.sub(r"\$[A-Z0-9_]+\$", lambda m: macros.get(m.group(0), "x"), command_line)
    argv = shlex.split(line)
    assert argv[0].endswith("/callipso-check"), argv
    return build_parser().parse_args(argv[1:])


@pytest.mark.system
def test_nagios_templates_and_example_pass_nagios_verification(tmp_path: Path) -> None:
    files = [
        NAGIOS / "callipso-commands.cfg",
        NAGIOS / "callipso-templates.cfg",
        NAGIOS / "callipso-example.cfg",
    ]
    out = verify_objects(files, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "Total Errors:   0" in out.stdout
    assert re.search(r"Checked\s+4 services", out.stdout), out.stdout[-2000:]


def test_nagios_command_lines_are_valid_invocations() -> None:
    text = (NAGIOS / "callipso-commands.cfg").read_text(encoding="utf-8")
    lines = re.findall(r"command_line\s+(.+)", text)
    modes = set()
    for line in lines:
        for extra in ("", "-v --lang en -t 5"):
            args = parse(line.replace("$ARG1$", extra), {"$_HOSTCALLIPSO_DEVICE$": "ups-hd13"})
            modes.add(args.mode)
    assert modes == MODES


def test_centreon_commands_are_valid_invocations_and_templates_name_them() -> None:
    rows = [
        line.split(";")
        for line in CENTREON.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    commands = {r[2]: r[4] for r in rows if r[:2] == ["CMD", "ADD"]}
    macros = {"$_SERVICEEXTRAOPTIONS$": "-v"}
    modes = {parse(cmd, macros).mode for cmd in commands.values()}
    assert modes == MODES
    used = {r[4] for r in rows if r[0] in ("STPL", "HTPL") and r[1] == "SETPARAM" and r[3] == "check_command"}
    assert used == set(commands)
    # every service macro a command uses is given a default by a service template
    for name, cmd in commands.items():
        needed = set(re.findall(r"\$_SERVICE([A-Z0-9]+)\$", cmd))
        templates = {r[2] for r in rows if r[:2] == ["STPL", "SETPARAM"] and r[4] == name}
        defined = {r[3] for r in rows if r[:2] == ["STPL", "SETMACRO"] and r[2] in templates}
        assert needed <= defined, (name, needed - defined)
