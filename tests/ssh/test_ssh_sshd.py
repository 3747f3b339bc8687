"""A real OpenSSH server (Debian openssh-server) gives the same measurements as the emulator.

sshd runs on 127.0.0.1:<free port> with a temporary host key, AuthorizedKeysFile and a ForceCommand
script that replays the OTMS fixture outputs by command (exec mode), like a recorded host.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.collect.ssh import collect_ssh
from callipso_agent.errors import HostKeyError
from callipso_agent.lab.ssh_emulator import load_device_fixture, start_emulator
from callipso_agent.model import Measurement
from callipso_agent.transports.ssh import SshSession, SshTarget
from tests.helpers.system import require_binary
from tests.ssh.support import FIXTURES, profile, session_for, trusted

pytestmark = pytest.mark.system

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

REPLAY = """\
import json, os, sys
table = json.load(open(sys.argv[1]))
command = " ".join(os.environ.get("SSH_ORIGINAL_COMMAND", "").split())
path = table.get(command)
if path is None:
    sys.stderr.write("bash: %s: command not found\\n" % command.split()[0] if command else "no command\\n")
    sys.exit(127)
for line in open(path, encoding="utf-8"):
    if not line.startswith("##"):
        sys.stdout.write(line)
"""


@dataclass
class Sshd:
    port: int
    host_key_line: str
    client_key: Path
    user: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _listening(port: int, proc: asyncio.subprocess.Process) -> bool:
    for _ in range(100):
        if proc.returncode is not None:
            return False
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    binary = require_binary("sshd")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory  # noqa: ASYNC240
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_file = tmp_path / "ssh_host_ed25519_key"
    host_key.write_private_key(str(host_key_file))
    host_key_file.chmod(0o600)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key_file = tmp_path / "id_ed25519"
    client_key.write_private_key(str(client_key_file))
    (tmp_path / "authorized_keys").write_bytes(client_key.export_public_key("openssh"))
    fixture_dir = FIXTURES / "otms"
    fixture = load_device_fixture(fixture_dir)
    table = {" ".join(cmd.split()): str(fixture_dir / name) for cmd, name in fixture.commands.items()}
    (tmp_path / "commands.json").write_text(json.dumps(table), encoding="utf-8")
    (tmp_path / "replay.py").write_text(REPLAY, encoding="utf-8")
    for _attempt in range(3):
        port = _free_port()
        config = tmp_path / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key_file}",
                    f"PidFile {tmp_path / 'sshd.pid'}",
                    f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    f"ForceCommand {sys.executable} {tmp_path / 'replay.py'} {tmp_path / 'commands.json'}",
                    "LogLevel VERBOSE",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-D",
            "-e",
            "-f",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        if await _listening(port, proc):
            break
        if proc.returncode is None:
            proc.kill()
        _, err = await proc.communicate()
        last_error = err.decode(errors="replace")
    else:
        pytest.fail(f"sshd did not start: {last_error}")
    public = " ".join(host_key.export_public_key("openssh").decode().split()[:2])
    try:
        yield Sshd(
            port=port,
            host_key_line=f"[127.0.0.1]:{port} {public}\n",
            client_key=client_key_file,
            user=getpass.getuser(),
        )
    finally:
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def table(ms: list[Measurement]) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float | None, str]]:
    return {(m.name, tuple(sorted(m.labels.items()))): (m.value, m.state.label) for m in ms}


async def test_real_sshd_gives_the_same_measurements_as_the_emulator(sshd: Sshd, tmp_path: Path) -> None:
    prof = profile("otms")
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.host_key_line, encoding="utf-8")
    target = SshTarget(
        device="otms-real",
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        known_hosts=kh,
        key_file=sshd.client_key,
    )
    async with SshSession(target, prof.platform.session_spec(), command_timeout=20) as s:
        real = await collect_ssh("otms", prof, s, ManualClock(NOW))
        assert s.connects == 1  # exec mode: one connection, one channel per command

    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        async with session_for(emu, prof, trusted(emu, tmp_path, "kh-emu"), command_timeout=20) as s:
            emulated = await collect_ssh("otms", prof, s, ManualClock(NOW))
    finally:
        await emu.close()
    assert table(real) == table(emulated)
    assert any(m.name == "host_service_up" and m.value == 1 for m in real)
    assert len(real) == len(emulated) > 10


async def test_real_sshd_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    target = SshTarget(
        device="otms-real",
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        known_hosts=tmp_path / "empty_known_hosts",
        key_file=sshd.client_key,
    )
    async with SshSession(target, profile("otms").platform.session_spec()) as s:
        with pytest.raises(HostKeyError, match="unknown"):
            await s.run("hostname")


async def test_real_sshd_unknown_command_fails(sshd: Sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.host_key_line, encoding="utf-8")
    target = SshTarget(
        device="otms-real",
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        known_hosts=kh,
        key_file=sshd.client_key,
    )
    async with SshSession(target, profile("otms").platform.session_spec()) as s:
        res = await s.run("uptime")
    assert res.failed and res.exit_status == 127 and "command not found" in res.output
