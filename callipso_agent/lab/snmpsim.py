"""Run snmpsim (a real SNMP agent serving recordings) as a child process on loopback.

Each recording in the data directory is served under the community named after its file
(``ups-site01.snmprec`` answers to community ``ups-site01``). snmpsim re-reads a recording when
its modification time changes, which is how the lab injects value faults while it runs.

snmpsim's standard error goes to a file, never to a pipe: an unread pipe fills up (64 KiB) and snmpsim
then blocks in ``write(2)`` for good, e.g. after printing a traceback per request for a recording that
disappeared. Request logging is off by default (``log_level="error"``): logging every varbind of every
GETBULK row doubles snmpsim's CPU time per request (set ``CALLIPSO_LAB_SNMPSIM_LOG=info`` to get it back).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger()


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def responder_command() -> list[str]:
    """snmpsim's responder, from the same environment as this interpreter when possible."""
    exe = Path(sys.executable).parent / "snmpsim-command-responder"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("snmpsim-command-responder")
    if found:
        return [found]
    raise FileNotFoundError("snmpsim-command-responder not found (pip install snmpsim)")


class SnmpSimulator:
    """A running snmpsim process. Use :meth:`start` / :meth:`stop`, or as an async context manager."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 cache_dir: Path | None = None, v3_users: list[dict[str, str]] | None = None,
                 log_file: Path | None = None, log_level: str | None = None) -> None:
        if not host.startswith("127.") and host != "::1":
            raise ValueError("the lab only listens on loopback")
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_udp_port(host)
        self.cache_dir = cache_dir or (data_dir.parent / f".snmpsim-cache-{self.port}")
        self.v3_users = v3_users or []
        self.log_file = log_file or (data_dir.parent / f"snmpsim-{self.port}.log")
        self.stderr_file = self.log_file.with_suffix(".stderr")
        self.log_level = log_level or os.environ.get("CALLIPSO_LAB_SNMPSIM_LOG", "error")
        if self.log_level not in ("debug", "info", "error"):
            raise ValueError(f"snmpsim log level must be debug, info or error, not {self.log_level!r}")
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [*responder_command(), f"--data-dir={self.data_dir}", f"--cache-dir={self.cache_dir}",
               f"--agent-udpv4-endpoint={self.host}:{self.port}", f"--logging-method=file:{self.log_file}",
               f"--log-level={self.log_level}"]
        for u in self.v3_users:
            cmd += [f"--v3-user={u['user']}"]
            if u.get("auth_key"):
                cmd += [f"--v3-auth-key={u['auth_key']}", f"--v3-auth-proto={u.get('auth_proto', 'SHA')}"]
            if u.get("priv_key"):
                cmd += [f"--v3-priv-key={u['priv_key']}", f"--v3-priv-proto={u.get('priv_proto', 'AES')}"]
        return cmd

    def start(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")  # snmpsim refuses root unless told
        with self.stderr_file.open("ab") as err:
            self.proc = subprocess.Popen(self.command(), env=env, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        log.info("snmpsim_started", port=self.port, data_dir=str(self.data_dir), pid=self.proc.pid)

    def wait_ready(self, community: str, timeout: float = 30.0) -> None:
        """Block until the agent answers a GET of sysObjectID for ``community``."""

        def exited() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.stderr_tail()
                raise RuntimeError(f"snmpsim exited with {self.proc.returncode}: {err[-2000:]}")

        self.wait_port_ready(self.host, self.port, community, timeout, check=exited)

    @staticmethod
    def wait_port_ready(host: str, port: int, community: str, timeout: float = 30.0,
                        check: Callable[[], None] | None = None) -> None:
        """Block until ``host:port`` answers a GET of sysObjectID for ``community``."""
        from callipso_agent.lab.probe import snmp_get_sync

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check is not None:
                check()
            if snmp_get_sync(host, port, community, "1.3.6.1.2.1.1.2.0", timeout=0.5) is not None:
                return
        raise TimeoutError(f"no SNMP agent answering on {host}:{port} after {timeout}s")

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            with self.stderr_file.open("rb") as f:
                f.seek(max(0, self.stderr_file.stat().st_size - limit))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> SnmpSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def touch_later(path: Path) -> None:
    """Make sure snmpsim sees a new mtime (it compares whole seconds)."""
    st = path.stat()
    new = max(time.time(), st.st_mtime + 1.0)
    os.utime(path, (new, new))
