"""Optional netmiko-backed SSH session (paramiko, run in a thread) behind the SshSession interface.

For devices whose CLI quirks netmiko already handles (its ``audiocode_72``, ``audiocode_66`` and
``audiocode_shell`` drivers). The asyncssh :class:`~callipso_agent.transports.ssh.SshSession` stays the
main path: this one blocks a worker thread per batch, so its timeouts are netmiko's own (``read_timeout``,
``conn_timeout``) with ``asyncio.timeout`` as a backstop that frees the caller (the thread then ends on
netmiko's timeout).

Same host key policy (unknown or changed key refused, trust on first use only when asked, appended in
OpenSSH form), same typed errors, same :class:`CommandResult`. Legacy algorithms are not offered here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import paramiko  # type: ignore[import-untyped]
import structlog

from callipso_agent.errors import AuthFailed, HostKeyError, Timeout, Unreachable
from callipso_agent.transports.ssh import CommandResult, ConnectionLost, SessionSpec, SshTarget
from callipso_agent.transports.ssh_hostkeys import append_known_host, known_hosts_name


def paramiko_fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Called by paramiko only for hosts absent from the known_hosts file."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.refused: str | None = None
        self.trusted: str | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fp = paramiko_fingerprint(key)
        if not self.target.trust_on_first_use:
            self.refused = fp
            raise paramiko.SSHException(f"host key {fp} of {hostname} is unknown")
        t = self.target
        append_known_host(t.known_hosts, t.host, t.port, key.get_name(), key.get_base64())
        self.trusted = fp


class NetmikoSession:
    """A device session through netmiko; ``device_type`` is a netmiko driver name (e.g. ``audiocode_72``)."""

    def __init__(
        self,
        target: SshTarget,
        spec: SessionSpec,
        device_type: str,
        *,
        semaphore: asyncio.Semaphore | None = None,
        command_timeout: float = 30.0,
        session_timeout: float = 120.0,
    ) -> None:
        if target.legacy_algorithms:
            raise ValueError("the netmiko transport does not offer legacy algorithms; use the asyncssh one")
        self.target = target
        self.spec = spec
        self.device_type = device_type
        self._semaphore = semaphore or asyncio.Semaphore(1)
        self._lock = asyncio.Lock()
        self.command_timeout = command_timeout
        self.session_timeout = session_timeout
        self._conn: Any = None
        self.connects = 0
        self._log = structlog.get_logger().bind(
            device=target.device, host=target.host, port=target.port, transport="netmiko"
        )

    def __repr__(self) -> str:
        t = self.target
        return f"NetmikoSession(device={t.device!r}, where={t.where!r}, type={self.device_type!r})"

    async def run(self, command: str, *, command_timeout: float | None = None) -> CommandResult:
        return (await self.run_many([(command, command_timeout)]))[0]

    async def run_many(
        self, commands: Sequence[str | tuple[str, float | None]], *, session_timeout: float | None = None
    ) -> list[CommandResult]:
        budget = session_timeout or self.session_timeout
        items = [(c, None) if isinstance(c, str) else c for c in commands]
        async with self._lock, self._semaphore:
            try:
                async with asyncio.timeout(budget):
                    return await asyncio.to_thread(self._run_sync, items)
            except TimeoutError:
                conn, self._conn = self._conn, None
                if conn is not None:
                    asyncio.get_running_loop().run_in_executor(None, conn.disconnect)
                raise Timeout(
                    f"{self.target.device} ({self.target.where}): session did not finish within {budget:g} s"
                ) from None

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.to_thread(conn.disconnect)

    async def __aenter__(self) -> NetmikoSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- in the worker thread --------------------------------------------------------------------------------

    def _connect(self) -> Any:
        from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException
        from netmiko.ssh_dispatcher import CLASS_MAPPER

        t = self.target
        cls = CLASS_MAPPER[self.device_type]
        conn = cls(
            host=t.host,
            port=t.port,
            username=t.username,
            password=t.password.reveal() if t.password else "",
            use_keys=t.key_file is not None,
            key_file=str(t.key_file) if t.key_file else None,
            passphrase=t.passphrase.reveal() if t.passphrase else None,
            allow_agent=False,
            system_host_keys=False,
            alt_host_keys=True,
            alt_key_file=str(t.known_hosts),
            ssh_strict=True,
            conn_timeout=t.connect_timeout,
            auth_timeout=t.connect_timeout,
            banner_timeout=t.connect_timeout,
            read_timeout_override=self.command_timeout,
            auto_connect=False,
            fast_cli=True,
        )
        policy = _Policy(t)
        conn.key_policy = policy
        try:
            conn._open()
        except NetmikoAuthenticationException as err:
            self._log.warning("ssh_auth_failed", username=t.username)
            raise AuthFailed(
                f"{t.device} ({t.where}): authentication failed for user {t.username!r}"
            ) from err
        except NetmikoTimeoutException as err:
            raise self._translate(err, policy) from err
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise Unreachable(f"{t.device} ({t.where}): SSH connection failed: {type(err).__name__}") from err
        if policy.trusted:
            self._log.warning(
                "ssh_host_key_trusted_on_first_use",
                fingerprint=policy.trusted,
                known_hosts=str(t.known_hosts),
            )
        self.connects += 1
        self._log.info("ssh_connected", mode="netmiko")
        return conn

    def _translate(self, err: Exception, policy: _Policy) -> Exception:
        t = self.target
        name = known_hosts_name(t.host, t.port)
        cause = err.__context__
        if isinstance(cause, paramiko.BadHostKeyException):
            got, expected = paramiko_fingerprint(cause.key), paramiko_fingerprint(cause.expected_key)
            self._log.error("ssh_host_key_refused", reason="changed", fingerprint=got)
            return HostKeyError(
                f"{t.device}: host key of {name} has CHANGED: it presented {got}, but "
                f"{t.known_hosts} trusts {expected}; refusing to connect"
            )
        if policy.refused:
            self._log.error("ssh_host_key_refused", reason="unknown", fingerprint=policy.refused)
            return HostKeyError(
                f"{t.device}: host key of {name} is unknown ({policy.refused}) and not in "
                f"{t.known_hosts}; refusing to connect (add the key to known_hosts, or set "
                f"trust_on_first_use: true)"
            )
        if "timed-out" in str(err).lower() or "timeout" in str(err).lower():
            return Timeout(f"{t.device} ({t.where}): no SSH login within {t.connect_timeout:g} s")
        return Unreachable(f"{t.device} ({t.where}): SSH connection failed")

    def _run_sync(self, items: Sequence[tuple[str, float | None]]) -> list[CommandResult]:
        from netmiko.exceptions import ReadTimeout

        if self._conn is not None and not self._conn.is_alive():
            self._log.info("ssh_reconnect")
            self._conn = None
        if self._conn is None:
            self._conn = self._connect()
        results: list[CommandResult] = []
        for command, limit in items:
            started = time.monotonic()
            try:
                output = self._conn.send_command(command, read_timeout=limit or self.command_timeout)
            except ReadTimeout:
                self._drop()
                raise Timeout(
                    f"{self.target.device} ({self.target.where}): command {command!r} got no "
                    f"complete answer within {limit or self.command_timeout:g} s"
                ) from None
            except (OSError, EOFError, paramiko.SSHException) as err:
                self._drop()
                raise ConnectionLost(
                    f"{self.target.device} ({self.target.where}): connection lost during {command!r}"
                ) from err
            text = str(output).replace("\r", "")
            results.append(CommandResult(command, text, time.monotonic() - started, self.spec.failed(text)))
        return results

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: S110 - best effort on an already broken session
                pass
