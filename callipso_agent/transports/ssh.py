"""SSH transport (asyncssh): one reused connection per device, shell or exec mode, typed errors.

Knows nothing of vendors: the platform (prompt regex, paging-off commands, failure markers, mode)
comes in a :class:`SessionSpec` built from a profile.

- Host keys are checked against a known_hosts file; an unknown or changed key is refused with
  :class:`~callipso_agent.errors.HostKeyError` naming the host and the fingerprint. Trust on first use
  (the key is then appended to the file) happens only when the target says so.
- Legacy algorithms (diffie-hellman-group1-sha1, aes128-cbc, ssh-dss...) are offered only to targets
  that ask for them.
- Every I/O runs under ``asyncio.timeout``: per command and per batch ("session"). A timed-out or dropped
  shell is closed, and the next command reconnects. A global semaphore bounds concurrent sessions.
- Secrets stay in :class:`~callipso_agent.config.secrets.Secret` until the connect call; they never reach a
  log event, an exception text or a repr.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncssh
import structlog

from callipso_agent.config.models import SshCredential
from callipso_agent.config.secrets import Secret
from callipso_agent.errors import AuthFailed, HostKeyError, Timeout, TransportError, Unreachable
from callipso_agent.transports.ssh_hostkeys import (
    HostKeyPolicy,
    append_known_host,
    fingerprint,
    known_hosts_name,
    known_keys,
    load_known_hosts,
    openssh_public,
)

LEGACY_KEX = ("diffie-hellman-group1-sha1", "diffie-hellman-group-exchange-sha1")
LEGACY_CIPHERS = ("aes128-cbc", "aes256-cbc", "3des-cbc")
LEGACY_MACS = ("hmac-md5", "hmac-sha1-96")
LEGACY_HOST_KEY_ALGS = ("ssh-rsa", "ssh-dss")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class ConnectionLost(Unreachable):
    """The connection dropped while a command was running; the next command reconnects."""

    kind = "connection_lost"


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    output: str
    elapsed: float
    failed: bool
    exit_status: int | None = None


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """The platform part of a profile, as the transport needs it."""

    mode: Literal["shell", "exec"] = "shell"
    prompt_pattern: str | None = None
    paging_off: tuple[str, ...] = ()
    pager_pattern: str | None = None
    failed_when_contains: tuple[str, ...] = ()
    line_ending: str = "\n"
    term_size: tuple[int, int] = (250, 48)

    def failed(self, output: str) -> bool:
        return any(marker in output for marker in self.failed_when_contains)


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where and as whom to connect. ``password``/``passphrase`` are Secrets: their repr hides them."""

    device: str
    host: str
    port: int
    username: str
    known_hosts: Path
    password: Secret | None = None
    key_file: Path | None = None
    passphrase: Secret | None = None
    trust_on_first_use: bool = False
    legacy_algorithms: bool = False
    connect_timeout: float = 10.0

    @classmethod
    def from_credential(
        cls,
        device: str,
        host: str,
        port: int,
        cred: SshCredential,
        *,
        default_known_hosts: Path,
        base_dir: Path | None = None,
        connect_timeout: float = 10.0,
    ) -> SshTarget:
        def rel(p: str) -> Path:
            path = Path(p).expanduser()
            return path if path.is_absolute() or base_dir is None else base_dir / path

        return cls(
            device=device,
            host=host,
            port=port,
            username=cred.username,
            known_hosts=rel(cred.known_hosts) if cred.known_hosts else default_known_hosts,
            password=cred.password.resolve(base_dir) if cred.password else None,
            key_file=rel(cred.key_file) if cred.key_file else None,
            passphrase=cred.passphrase.resolve(base_dir) if cred.passphrase else None,
            trust_on_first_use=cred.trust_on_first_use,
            legacy_algorithms=cred.legacy_algorithms,
            connect_timeout=connect_timeout,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def _algorithms(target: SshTarget, known: Sequence[asyncssh.SSHKey]) -> dict[str, list[str]]:
    from asyncssh.encryption import get_default_encryption_algs
    from asyncssh.kex import get_default_kex_algs
    from asyncssh.mac import get_default_mac_algs
    from asyncssh.public_key import get_default_public_key_algs

    def names(algs: Sequence[bytes]) -> list[str]:
        return [a.decode("ascii") for a in algs]

    # offer the algorithms of the keys we already know first, so a host with several keys presents
    # the one we trust; then every other algorithm, so a changed key is seen (and refused) as such
    host_key_algs = [a.decode("ascii") for k in known for a in k.sig_algorithms]
    host_key_algs += [a for a in names(get_default_public_key_algs()) if a not in host_key_algs]
    algs = {"server_host_key_algs": host_key_algs}
    if target.legacy_algorithms:
        algs["kex_algs"] = names(get_default_kex_algs()) + list(LEGACY_KEX)
        algs["encryption_algs"] = names(get_default_encryption_algs()) + list(LEGACY_CIPHERS)
        algs["mac_algs"] = names(get_default_mac_algs()) + list(LEGACY_MACS)
        algs["server_host_key_algs"] = host_key_algs + [
            a for a in LEGACY_HOST_KEY_ALGS if a not in host_key_algs
        ]
    return algs


def _clean(text: str) -> str:
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    return text.replace("\r", "").replace("\x08", "")


@dataclass
class _Conn:
    conn: asyncssh.SSHClientConnection
    policy: HostKeyPolicy
    shell: asyncssh.SSHClientProcess[str] | None = None


class SshSession:
    """One device's connection, reused across commands and polls; reconnects when dropped."""

    def __init__(
        self,
        target: SshTarget,
        spec: SessionSpec,
        *,
        semaphore: asyncio.Semaphore | None = None,
        command_timeout: float = 30.0,
        session_timeout: float = 120.0,
    ) -> None:
        if spec.mode == "shell" and not spec.prompt_pattern:
            raise ValueError("shell mode needs a prompt pattern")
        self.target = target
        self.spec = spec
        self._semaphore = semaphore or asyncio.Semaphore(1)
        self._lock = asyncio.Lock()
        self.command_timeout = command_timeout
        self.session_timeout = session_timeout
        self._c: _Conn | None = None
        pattern = spec.prompt_pattern or "$^"
        self._prompt = re.compile(f"(?:{pattern})\\Z")
        self._pager = re.compile(f"(?:{spec.pager_pattern})\\s*\\Z") if spec.pager_pattern else None
        self.connects = 0
        self._log = structlog.get_logger().bind(device=target.device, host=target.host, port=target.port)

    def __repr__(self) -> str:
        return (
            f"SshSession(device={self.target.device!r}, where={self.target.where!r}, mode={self.spec.mode!r})"
        )

    @property
    def connected(self) -> bool:
        return self._c is not None and not self._c.policy.lost

    # -- public API ----------------------------------------------------------------------------------------

    async def run(self, command: str, *, command_timeout: float | None = None) -> CommandResult:
        return (await self.run_many([(command, command_timeout)]))[0]

    async def run_many(
        self, commands: Sequence[str | tuple[str, float | None]], *, session_timeout: float | None = None
    ) -> list[CommandResult]:
        """Run commands in order on the device's connection (opened or reopened as needed)."""
        budget = session_timeout or self.session_timeout
        items = [(c, None) if isinstance(c, str) else c for c in commands]
        async with self._lock, self._semaphore:
            try:
                async with asyncio.timeout(budget):
                    await self._ensure_open()
                    results = []
                    for command, timeout in items:
                        results.append(await self._run_one(command, timeout or self.command_timeout))
                    return results
            except TimeoutError:
                await self._reset()
                self._log.warning("ssh_session_timeout", budget=budget)
                raise Timeout(
                    f"{self.target.device} ({self.target.where}): session did not finish within {budget:g} s"
                ) from None
            except TransportError:
                raise
            except BaseException:
                # anything unexpected (cancellation included) leaves the shell in an unknown state
                await self._reset()
                raise

    async def close(self) -> None:
        """Close the connection now, even under a running command (which then fails as ConnectionLost)."""
        await self._reset()

    async def __aenter__(self) -> SshSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection ------------------------------------------------------------------------------------------

    async def _ensure_open(self) -> None:
        if self._c is not None and self._c.policy.lost:
            self._log.info("ssh_reconnect")
            await self._reset()
        if self._c is None:
            self._c = await self._connect()
            if self.spec.mode == "shell":
                await self._open_shell(self._c)

    async def _connect(self) -> _Conn:
        t = self.target
        known = load_known_hosts(t.known_hosts)
        keys = known_keys(known, t.host, t.port)
        policy = HostKeyPolicy(keys, t.trust_on_first_use)
        options: dict[str, object] = {
            "port": t.port,
            "username": t.username,
            "known_hosts": known,
            "client_factory": lambda: policy,
            "agent_path": None,
            "config": None,
            "connect_timeout": t.connect_timeout,
            "login_timeout": t.connect_timeout,
            "password": t.password.reveal() if t.password is not None else None,
            "client_keys": [str(t.key_file)] if t.key_file is not None else None,
            "passphrase": t.passphrase.reveal() if t.passphrase is not None else None,
            "preferred_auth": (
                "publickey,keyboard-interactive,password" if t.key_file else "keyboard-interactive,password"
            ),
            "kbdint_auth": t.password is not None,
            "password_auth": t.password is not None,
            **_algorithms(t, keys),
        }
        self._log.debug("ssh_connecting", username=t.username, legacy=t.legacy_algorithms)
        try:
            async with asyncio.timeout(t.connect_timeout):
                conn = await asyncssh.connect(t.host, **options)
        except asyncssh.HostKeyNotVerifiable as err:
            raise self._host_key_error(policy) from err
        except asyncssh.PermissionDenied as err:
            self._log.warning("ssh_auth_failed", username=t.username)
            raise AuthFailed(
                f"{t.device} ({t.where}): authentication failed for user {t.username!r}"
            ) from err
        except asyncssh.KeyExchangeFailed as err:
            hint = "" if t.legacy_algorithms else "; an old device may need legacy_algorithms: true"
            raise Unreachable(
                f"{t.device} ({t.where}): no common SSH algorithm ({err.reason}){hint}"
            ) from err
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as err:
            raise AuthFailed(f"{t.device} ({t.where}): cannot use key file {t.key_file}: {err}") from err
        except TimeoutError as err:
            raise Timeout(f"{t.device} ({t.where}): no SSH login within {t.connect_timeout:g} s") from err
        except asyncssh.Error as err:
            raise Unreachable(f"{t.device} ({t.where}): SSH connection failed: {err.reason}") from err
        except OSError as err:
            if t.key_file is not None and err.filename and Path(err.filename) == t.key_file:
                raise AuthFailed(
                    f"{t.device} ({t.where}): cannot read key file {t.key_file}: {err.strerror}"
                ) from err
            raise Unreachable(f"{t.device} ({t.where}): cannot connect: {err.strerror or err}") from err
        if policy.decision.trusted_on_first_use and policy.decision.presented is not None:
            key = policy.decision.presented
            append_known_host(t.known_hosts, t.host, t.port, *openssh_public(key))
            self._log.warning(
                "ssh_host_key_trusted_on_first_use",
                fingerprint=fingerprint(key),
                known_hosts=str(t.known_hosts),
            )
        self.connects += 1
        self._log.info("ssh_connected", mode=self.spec.mode)
        return _Conn(conn, policy)

    def _host_key_error(self, policy: HostKeyPolicy) -> HostKeyError:
        t = self.target
        d = policy.decision
        fp = fingerprint(d.presented) if d.presented is not None else "(no key seen)"
        name = known_hosts_name(t.host, t.port)
        if d.reason == "changed":
            msg = (
                f"{t.device}: host key of {name} has CHANGED: it presented {fp}, but {t.known_hosts} "
                f"trusts {', '.join(d.known_fingerprints)}; refusing to connect (possible man-in-the-middle; "
                f"if the device was really replaced, remove its old line from {t.known_hosts})"
            )
        else:
            msg = (
                f"{t.device}: host key of {name} is unknown ({fp}) and not in {t.known_hosts}; refusing to "
                f"connect (add the key to known_hosts, or set trust_on_first_use: true)"
            )
        self._log.error("ssh_host_key_refused", reason=d.reason or "unknown", fingerprint=fp)
        return HostKeyError(msg)

    async def _reset(self) -> None:
        c, self._c = self._c, None
        if c is None:
            return
        if c.shell is not None:
            c.shell.close()
        c.conn.abort()
        try:
            async with asyncio.timeout(2):
                await c.conn.wait_closed()
        except (TimeoutError, asyncssh.Error, OSError):
            pass

    # -- shell mode ----------------------------------------------------------------------

    async def _open_shell(self, c: _Conn) -> None:
        try:
            c.shell = await c.conn.create_process(
                term_type="vt100", term_size=self.spec.term_size, encoding="utf-8", errors="replace"
            )
        except asyncssh.Error as err:
            raise Unreachable(
                f"{self.target.device} ({self.target.where}): shell refused: {err.reason}"
            ) from err
        try:
            async with asyncio.timeout(self.command_timeout):
                await self._read_until_prompt(c, "(login)")
                for cmd in self.spec.paging_off:
                    await self._send(c, cmd)
                    await self._read_until_prompt(c, cmd)
        except TimeoutError:
            await self._reset()
            raise Timeout(
                f"{self.target.device} ({self.target.where}): no prompt matching "
                f"{self.spec.prompt_pattern!r} within {self.command_timeout:g} s after login"
            ) from None

    async def _send(self, c: _Conn, text: str) -> None:
        assert c.shell is not None
        try:
            c.shell.stdin.write(text + self.spec.line_ending)
        except (BrokenPipeError, asyncssh.Error, OSError) as err:
            raise self._lost(text) from err

    def _lost(self, command: str) -> ConnectionLost:
        t = self.target
        self._log.warning("ssh_connection_lost", command=command)
        return ConnectionLost(f"{t.device} ({t.where}): connection lost during {command!r}")

    async def _read_until_prompt(self, c: _Conn, command: str) -> str:
        assert c.shell is not None
        buf = ""
        while True:
            try:
                chunk = await c.shell.stdout.read(65536)
            except (asyncssh.Error, OSError) as err:
                await self._reset()
                raise self._lost(command) from err
            if not chunk:
                await self._reset()
                raise self._lost(command)
            buf = _clean(buf + chunk)
            if self._pager is not None and (m := self._pager.search(buf)):
                buf = buf[: m.start()]
                c.shell.stdin.write(" ")
                continue
            last = buf.rsplit("\n", 1)[-1]
            if self._prompt.search(last):
                return buf

    def _strip(self, command: str, raw: str) -> str:
        lines = raw.split("\n")
        if lines and self._prompt.search(lines[-1]):
            lines = lines[:-1]
        if lines and lines[0].strip().endswith(command.strip()):
            lines = lines[1:]
        return "\n".join(lines)

    async def _run_one(self, command: str, limit: float) -> CommandResult:
        c = self._c
        assert c is not None
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                if self.spec.mode == "exec":
                    output, status = await self._exec(c, command)
                else:
                    await self._send(c, command)
                    output, status = self._strip(command, await self._read_until_prompt(c, command)), None
        except TimeoutError:
            await self._reset()
            self._log.warning("ssh_command_timeout", command=command, timeout=limit)
            raise Timeout(
                f"{self.target.device} ({self.target.where}): command {command!r} "
                f"got no complete answer within {limit:g} s"
            ) from None
        elapsed = time.monotonic() - started
        failed = self.spec.failed(output) or (status not in (None, 0))
        self._log.debug(
            "ssh_command", command=command, elapsed=round(elapsed, 3), failed=failed, chars=len(output)
        )
        return CommandResult(command, output, elapsed, failed, status)

    async def _exec(self, c: _Conn, command: str) -> tuple[str, int | None]:
        try:
            result = await c.conn.run(command, check=False, encoding="utf-8", errors="replace")
        except (asyncssh.Error, OSError) as err:
            await self._reset()
            raise self._lost(command) from err
        out = result.stdout if isinstance(result.stdout, str) else ""
        err_text = result.stderr if isinstance(result.stderr, str) else ""
        if result.exit_status is None and result.exit_signal is None and c.policy.lost:
            await self._reset()
            raise self._lost(command)
        status = result.exit_status if result.exit_status is not None else -1
        if status != 0 and err_text:
            out = out + ("\n" if out and not out.endswith("\n") else "") + err_text
        return _clean(out), status


class SshPool:
    """The sessions of all devices, sharing one concurrency limit."""

    def __init__(
        self, *, semaphore: asyncio.Semaphore, command_timeout: float = 30.0, session_timeout: float = 120.0
    ) -> None:
        self._semaphore = semaphore
        self.command_timeout = command_timeout
        self.session_timeout = session_timeout
        self._sessions: dict[str, SshSession] = {}

    async def session(self, target: SshTarget, spec: SessionSpec) -> SshSession:
        """The device's session; a changed target or platform closes the old one."""
        s = self._sessions.get(target.device)
        if s is not None and (s.target != target or s.spec != spec):
            await s.close()
            s = None
        if s is None:
            s = SshSession(
                target,
                spec,
                semaphore=self._semaphore,
                command_timeout=self.command_timeout,
                session_timeout=self.session_timeout,
            )
            self._sessions[target.device] = s
        return s

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
