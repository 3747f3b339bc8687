"""SSH device emulators for the lab and the tests: asyncssh servers answering from fixture files.

A device family is a directory (default ``tests/fixtures/ssh/<family>/``) holding ``device.yaml`` (prompt,
banner, users, command -> file, named states) and one text file per command output. Lines starting with
``##`` are provenance headers and are never sent; ``{{epoch}}`` is replaced by the emulator clock's time
(plus the state's ``clock_offset``).

Shell devices get a character-level line discipline (echo when a PTY was requested, ``\\r\\n`` line ends,
optional ``--MORE--`` pager switched off by a command, nested configuration modes popped by ``exit``);
exec devices answer each command once and exit with 0 (known) or 127 (unknown).

Faults, switchable while running with :meth:`EmulatorHandle.set_fault`:
``slow`` (lines trickle out), ``drop`` (connection aborted mid-output), ``hang`` (login accepted, then
silence), ``wrong_password`` (every credential refused), ``garbage`` (binary noise instead of output),
``truncated`` (output cut mid-line), ``changed_host_key`` (new connections see a new host key).

    handle = await start_emulator("oxe", state="nominal")
    ... connect to 127.0.0.1:handle.port, user/password from handle.username/handle.password ...
    handle.set_state("trunk_down"); handle.set_fault("hang"); await handle.close()
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import asyncssh
import structlog
from pydantic import BaseModel, ConfigDict, Field

from callipso_agent.clock import Clock, SystemClock
from callipso_agent.transports.ssh_hostkeys import openssh_public
from callipso_agent.yamlload import load_yaml, parse_model

FAULTS = ("slow", "drop", "hang", "wrong_password", "garbage", "truncated", "changed_host_key")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmulatedUser(_Model):
    username: str
    password: str | None = None
    authorized_keys: list[str] = Field(default_factory=list, description="OpenSSH public key lines")


class Pager(_Model):
    marker: str = " --MORE-- "
    lines: Annotated[int, Field(ge=2)] = 20
    off_command: str = Field(description="command that switches the pager off for the session")


class DeviceState(_Model):
    description: str = ""
    files: dict[str, str] = Field(
        default_factory=dict, description="command -> file, overriding the nominal one"
    )
    clock_offset: float = Field(default=0.0, description="seconds added to {{epoch}} (device clock drift)")


class DeviceFixture(_Model):
    family: str
    description: str = ""
    mode: Literal["shell", "exec"] = "shell"
    banner: str = ""
    motd: str = ""
    prompt: str = Field(default="$ ", description="prompt; '{mode}' is replaced by the current mode suffix")
    users: Annotated[list[EmulatedUser], Field(min_length=1)]
    commands: dict[str, str] = Field(description="command -> output file (relative to the family directory)")
    silent_commands: list[str] = Field(default_factory=list, description="accepted, print nothing")
    modes: dict[str, str] = Field(default_factory=dict, description="command -> mode suffix it enters")
    exit_commands: list[str] = Field(default_factory=lambda: ["exit", "logout", "quit"])
    unknown_command: str = "{command}: command not found"
    pager: Pager | None = None
    states: dict[str, DeviceState] = Field(default_factory=lambda: {"nominal": DeviceState()})


def default_fixtures_dir() -> Path:
    """``tests/fixtures/ssh`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ssh"


def load_device_fixture(directory: Path) -> DeviceFixture:
    path = directory / "device.yaml"
    return parse_model(DeviceFixture, load_yaml(path), str(path))


def _strip_header(text: str) -> str:
    lines = text.split("\n")
    while lines and lines[0].startswith("##"):
        lines.pop(0)
    return "\n".join(lines)


def _garbage(seed: str, lines: int = 12) -> str:
    """Deterministic noise per command: punctuation, control characters (NUL, BEL, ESC, DEL), latin-1 and
    replacement characters, i.e. what a device prints when a binary file or a wrong terminal is on the line."""
    rnd = random.Random(seed)  # noqa: S311 - deterministic noise, not security
    alphabet = ("~#%&*+=<>?@^_|\\/{}[]()$!;:,.0123456789abcdefXYZ \x7f"
                "\x00\x01\x02\x07\x08\x0b\x0c\x1b\x1f" + "".join(map(chr, range(0x80, 0x100))) + "\ufffd")
    return "\n".join("".join(rnd.choice(alphabet) for _ in range(rnd.randint(5, 70))) for _ in range(lines))


@dataclass
class _Connection:
    conn: asyncssh.SSHServerConnection
    username: str | None = None


@dataclass
class EmulatorHandle:
    """A running emulated device. All methods are safe to call while clients are connected."""

    family: str
    host: str
    port: int
    fixture: DeviceFixture
    directory: Path
    clock: Clock
    slow_delay: float = 0.3
    state: str = "nominal"
    fault: str | None = None
    connections: int = 0
    commands_seen: list[str] = field(default_factory=list)
    _acceptor: asyncssh.SSHAcceptor | None = None
    _host_key: asyncssh.SSHKey | None = None
    _original_key: asyncssh.SSHKey | None = None
    _open: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- lab API --------------------------------------------------------------------------------------------

    @property
    def host_key_public(self) -> str:
        """The current host key as an OpenSSH public key line (``ssh-ed25519 AAAA...``)."""
        assert self._host_key is not None
        return " ".join(openssh_public(self._host_key))

    @property
    def known_hosts_line(self) -> str:
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.host_key_public}\n"

    @property
    def host_key_fingerprint(self) -> str:
        assert self._host_key is not None
        return str(self._host_key.get_fingerprint("sha256"))

    @property
    def username(self) -> str:
        return self.fixture.users[0].username

    @property
    def password(self) -> str | None:
        return self.fixture.users[0].password

    @property
    def states(self) -> list[str]:
        return sorted(self.fixture.states)

    def set_state(self, name: str) -> None:
        if name not in self.fixture.states:
            raise ValueError(f"unknown state {name!r} for {self.family}; known: {', '.join(self.states)}")
        self.state = name
        structlog.get_logger().info("lab_ssh_state", family=self.family, port=self.port, state=name)

    def set_fault(self, name: str | None) -> None:
        if name is not None and name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        assert self._acceptor is not None
        if name == "changed_host_key":
            self._host_key = asyncssh.generate_private_key(
                self._host_key.get_algorithm() if self._host_key else "ssh-ed25519"
            )
            self._acceptor.update(server_host_keys=[self._host_key])
        elif self.fault == "changed_host_key" and self._original_key is not None:
            self._host_key = self._original_key
            self._acceptor.update(server_host_keys=[self._host_key])
        self.fault = name
        structlog.get_logger().info("lab_ssh_fault", family=self.family, port=self.port, fault=name)

    def drop_connections(self) -> None:
        for conn in list(self._open):
            conn.abort()

    async def close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        if self._acceptor is not None:
            await self._acceptor.wait_closed()
            self._acceptor = None

    async def __aenter__(self) -> EmulatorHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- outputs --------------------------------------------------------------------------------------------

    def output_for(self, command: str) -> str | None:
        """The text the device prints for ``command`` in the current state (None: unknown command)."""
        key = " ".join(command.split())
        files = {" ".join(k.split()): v for k, v in self.fixture.commands.items()}
        if key not in files:
            return None
        state = self.fixture.states.get(self.state, DeviceState())
        overrides = {" ".join(k.split()): v for k, v in state.files.items()}
        name = overrides.get(key, files[key])
        text = _strip_header((self.directory / name).read_text(encoding="utf-8"))
        epoch = int(self.clock.now().timestamp() + state.clock_offset)
        return text.replace("{{epoch}}", str(epoch))

    def _faulted(self, command: str, text: str) -> str:
        if self.fault == "garbage":
            return _garbage(command)
        if self.fault == "truncated":
            return text[: max(1, int(len(text) * 0.6))]
        return text

    # -- server side ----------------------------------------------------------------------------------------

    def _server(self) -> asyncssh.SSHServer:
        return _Server(self)

    async def _session(self, process: asyncssh.SSHServerProcess[str]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self.fault == "hang":
                await _drain(process)
                return
            if process.command is not None:
                await self._exec(process, process.command)
            else:
                await _Shell(self, process).run()
        except (asyncssh.Error, BrokenPipeError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            if not process.is_closing():
                process.close()

    async def _write(self, process: asyncssh.SSHServerProcess[str], text: str, eol: str) -> bool:
        """Write output honouring slow/drop faults; False when the connection was dropped."""
        lines = text.split("\n")
        if self.fault == "drop":
            for line in lines[: max(1, len(lines) // 2)]:
                process.stdout.write(line + eol)
            await asyncio.sleep(0)
            process.channel.get_connection().abort()
            return False
        if self.fault == "slow":
            for line in lines:
                process.stdout.write(line + eol)
                await asyncio.sleep(self.slow_delay)
            return True
        process.stdout.write(eol.join(lines))
        return True

    async def _exec(self, process: asyncssh.SSHServerProcess[str], command: str) -> None:
        self.commands_seen.append(command)
        text = self.output_for(command)
        if text is None:
            process.stderr.write(self.fixture.unknown_command.format(command=command.split()[0]) + "\n")
            process.exit(127)
            return
        if await self._write(process, self._faulted(command, text), "\n"):
            process.exit(0)


async def _drain(process: asyncssh.SSHServerProcess[str]) -> None:
    while await process.stdin.read(4096):
        pass


class _Server(asyncssh.SSHServer):
    def __init__(self, emu: EmulatorHandle) -> None:
        self._emu = emu
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._emu._open.add(conn)
        self._emu.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._emu._open.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        if self._emu.fixture.banner and self._conn is not None:
            self._conn.send_auth_banner(self._emu.fixture.banner)
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        if self._emu.fault == "wrong_password":
            return False
        return any(
            u.username == username and u.password is not None and u.password == password
            for u in self._emu.fixture.users
        )

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._emu.fault == "wrong_password":
            return False
        for u in self._emu.fixture.users:
            if u.username != username:
                continue
            for line in u.authorized_keys:
                if asyncssh.import_public_key(line).public_data == key.public_data:
                    return True
        return False


class _Input:
    """Characters typed by the client, one at a time."""

    def __init__(self, process: asyncssh.SSHServerProcess[str]) -> None:
        self._process = process
        self._buf = ""

    async def char(self) -> str:
        if not self._buf:
            self._buf = await self._process.stdin.read(4096)
            if not self._buf:
                raise EOFError
        ch, self._buf = self._buf[0], self._buf[1:]
        return ch


class _Shell:
    """An interactive CLI session on one channel."""

    def __init__(self, emu: EmulatorHandle, process: asyncssh.SSHServerProcess[str]) -> None:
        self.emu = emu
        self.p = process
        self.fx = emu.fixture
        self.pty = process.get_terminal_type() is not None
        self.eol = "\r\n" if self.pty else "\n"
        self.modes: list[str] = []
        self.paging = self.fx.pager is not None
        self.input = _Input(process)

    def prompt(self) -> str:
        return self.fx.prompt.replace("{mode}", self.modes[-1] if self.modes else "")

    async def readline(self) -> str:
        line = ""
        while True:
            ch = await self.input.char()
            if ch in "\r\n":
                if self.pty:
                    self.p.stdout.write("\r\n")
                if ch == "\r" or line:
                    return line
                continue  # a bare \n after \r
            if ch in "\x7f\x08":
                if line:
                    line = line[:-1]
                    if self.pty:
                        self.p.stdout.write("\b \b")
                continue
            if ch == "\x03":
                line = ""
                if self.pty:
                    self.p.stdout.write("^C\r\n")
                return ""
            line += ch
            if self.pty:
                self.p.stdout.write(ch)

    async def run(self) -> None:
        if self.fx.motd:
            self.p.stdout.write(self.fx.motd.replace("\n", self.eol))
        while True:
            self.p.stdout.write(self.prompt())
            try:
                line = await self.readline()
            except EOFError:
                return
            command = " ".join(line.split())
            if not command:
                continue
            self.emu.commands_seen.append(command)
            if command in self.fx.exit_commands:
                if self.modes:
                    self.modes.pop()
                    continue
                self.p.exit(0)
                return
            if command in self.fx.modes:
                self.modes.append(self.fx.modes[command])
                continue
            if self.fx.pager is not None and command == self.fx.pager.off_command:
                self.paging = False
                continue
            if command in self.fx.silent_commands:
                continue
            text = self.emu.output_for(command)
            if text is None:
                self.p.stdout.write(self.fx.unknown_command.format(command=command) + self.eol)
                continue
            text = self.emu._faulted(command, text)
            if not text.endswith("\n"):
                text += "\n"
            if self.paging and self.fx.pager is not None:
                if not await self._paged(text):
                    return
            elif not await self.emu._write(self.p, text, self.eol):
                return

    async def _paged(self, text: str) -> bool:
        assert self.fx.pager is not None
        lines = text.split("\n")
        size = self.fx.pager.lines
        for i in range(0, len(lines), size):
            chunk = lines[i : i + size]
            last = i + size >= len(lines)
            if not await self.emu._write(self.p, "\n".join(chunk) + ("" if last else "\n"), self.eol):
                return False
            if last:
                break
            self.p.stdout.write(self.fx.pager.marker)
            key = await self.input.char()
            self.p.stdout.write("\r" + " " * len(self.fx.pager.marker) + "\r")
            if key in ("q", "Q"):
                self.p.stdout.write(self.eol)
                break
        return True


async def start_emulator(
    family: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state: str = "nominal",
    fixtures_dir: Path | None = None,
    host_key: asyncssh.SSHKey | None = None,
    clock: Clock | None = None,
    legacy_algorithms: bool = False,
    slow_delay: float = 0.3,
    authorized_keys: list[str] | None = None,
    users: list[EmulatedUser] | None = None,
) -> EmulatorHandle:
    """Start an emulated ``family`` device (oxe, otms, omnivista-8770, audiocodes-cli) and return its handle.

    ``port=0`` binds an ephemeral port (read ``handle.port``). ``legacy_algorithms`` makes the device offer
    only old algorithms (diffie-hellman-group1-sha1, aes128-cbc, hmac-sha1, ssh-rsa), like an old firmware.
    ``users`` replace the fixture's accounts (the lab's own credentials); ``authorized_keys`` (OpenSSH
    public key lines) are added to the first user.
    """
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the SSH emulator only binds loopback addresses")
    directory = (fixtures_dir or default_fixtures_dir()) / family
    fixture = load_device_fixture(directory)
    if users:
        fixture = fixture.model_copy(update={"users": list(users)})
    if authorized_keys:
        first = fixture.users[0]
        user = first.model_copy(update={"authorized_keys": [*first.authorized_keys, *authorized_keys]})
        fixture = fixture.model_copy(update={"users": [user, *fixture.users[1:]]})
    if state not in fixture.states:
        raise ValueError(f"unknown state {state!r} for {family}; known: {', '.join(sorted(fixture.states))}")
    if host_key is None:
        host_key = asyncssh.generate_private_key("ssh-rsa" if legacy_algorithms else "ssh-ed25519")
    handle = EmulatorHandle(
        family=family,
        host=host,
        port=port,
        fixture=fixture,
        directory=directory,
        clock=clock or SystemClock(),
        slow_delay=slow_delay,
        state=state,
    )
    handle._host_key = handle._original_key = host_key
    algs: dict[str, object] = {}
    if legacy_algorithms:
        algs = {
            "kex_algs": ["diffie-hellman-group1-sha1"],
            "encryption_algs": ["aes128-cbc"],
            "mac_algs": ["hmac-sha1"],
            "signature_algs": ["ssh-rsa"],
        }
    handle._acceptor = await asyncssh.create_server(
        handle._server,
        host,
        port,
        server_host_keys=[host_key],
        process_factory=handle._session,
        line_editor=False,
        encoding="utf-8",
        errors="replace",
        reuse_address=True,
        **algs,
    )
    handle.port = handle._acceptor.get_port()
    structlog.get_logger().info("lab_ssh_started", family=family, host=host, port=handle.port, state=state)
    return handle
