"""The systemd unit: ``systemd-analyze verify`` accepts it without a warning, ``systemd-analyze security
--offline`` rates its exposure at most 2.0 (of 10; lower is better), the no-capabilities drop-in lowers it
further, and the privilege the unit keeps is the one the example configuration needs (trap port 162)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.system import require_binary

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "callipso-agent.service"
DROP_IN = SYSTEMD / "no-capabilities.conf"
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.system


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m[1], []).append(m[2].strip())
    return out


def _testable_copy(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it), plus ``extra``
    lines appended to [Service] (a drop-in's assignments, which override the unit's)."""
    exe = shutil.which("callipso-agent") or str(Path(sys.executable).parent / "callipso-agent")
    if not Path(exe).exists():
        exe = sys.executable
    text = UNIT.read_text(encoding="utf-8").replace("/opt/callipso-agent/bin/callipso-agent", exe)
    if extra:
        text = text.replace("\n[Install]", f"\n{extra}\n[Install]")
    out = tmp_path / "callipso-agent.service"
    out.write_text(text, encoding="utf-8")
    return out


def _exposure(analyze: str, unit: Path) -> float:
    proc = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    return float(m[1])


def test_unit_verifies_without_warning(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    proc = subprocess.run([analyze, "verify", str(_testable_copy(tmp_path))], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stderr


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    unit = _testable_copy(tmp_path, "ProtectSytem=strict")
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert "ProtectSytem" in proc.stderr


def test_exposure_is_low_and_the_drop_in_lowers_it(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    base = _exposure(analyze, _testable_copy(tmp_path))
    assert base <= MAX_EXPOSURE
    drop_in = "\n".join(line for line in DROP_IN.read_text(encoding="utf-8").splitlines()
                        if re.match(r"^[A-Za-z]+=", line))
    (tmp_path / "d").mkdir()
    without_caps = _exposure(analyze, _testable_copy(tmp_path / "d", drop_in))
    assert without_caps < base


def test_the_one_capability_is_the_trap_port_s() -> None:
    d = _directives(UNIT.read_text(encoding="utf-8"))
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "MemoryDenyWriteExecute": "yes",
                       "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "User": "callipso"}.items():
        assert d.get(key) == [value], key
    assert d["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"] == d["AmbientCapabilities"]
    assert "@system-service" in d["SystemCallFilter"]
    assert "PrivateUsers" not in d  # a capability inside a user namespace cannot bind the host's port 162
    # the example configuration listens on 162: the unit must keep the capability it needs
    agent = yaml.safe_load((ROOT / "config" / "agent.yaml").read_text(encoding="utf-8"))["agent"]
    assert agent["traps"]["port"] < 1024
    drop = _directives(DROP_IN.read_text(encoding="utf-8"))
    assert drop["CapabilityBoundingSet"] == [""] == drop["AmbientCapabilities"]
    assert drop["PrivateUsers"] == ["yes"]
