"""Shared helpers of the SSH tests (plain functions, no pytest magic)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from callipso_agent.config.secrets import Secret
from callipso_agent.lab.ssh_emulator import EmulatorHandle
from callipso_agent.model import Measurement
from callipso_agent.profiles.ssh import SshProfile, load_ssh_profile
from callipso_agent.transports.ssh import SshSession, SshTarget

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "collectors" / "ssh"
FIXTURES = REPO / "tests" / "fixtures" / "ssh"


def profile(name: str) -> SshProfile:
    return load_ssh_profile(name, PROFILES)


def target_for(
    emu: EmulatorHandle, known_hosts: Path, *, device: str = "dev", password: str | None = None, **kw: object
) -> SshTarget:
    pw = emu.password if password is None else password
    return SshTarget(
        device=device,
        host=emu.host,
        port=emu.port,
        username=emu.username,
        known_hosts=known_hosts,
        password=Secret(pw) if pw is not None else None,
        **kw,
    )  # type: ignore[arg-type]


def trusted(emu: EmulatorHandle, tmp: Path, name: str = "known_hosts") -> Path:
    path = tmp / name
    path.write_text(emu.known_hosts_line, encoding="utf-8")
    return path


def session_for(emu: EmulatorHandle, prof: SshProfile, known_hosts: Path, **kw: object) -> SshSession:
    timeouts = {k: kw.pop(k) for k in ("command_timeout", "session_timeout", "semaphore") if k in kw}
    return SshSession(target_for(emu, known_hosts, **kw), prof.platform.session_spec(), **timeouts)  # type: ignore[arg-type]


def value(ms: Iterable[Measurement], name: str, **labels: str) -> float | None:
    found = [m for m in ms if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} measurements: {found}"
    return found[0].value


def one(ms: Iterable[Measurement], name: str, **labels: str) -> Measurement:
    found = [m for m in ms if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} measurements"
    return found[0]
