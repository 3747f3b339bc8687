"""Run snmpsim (a real SNMP agent serving recordings) as a child process on loopback.

Each recording in the data directory is served under the community named after its file
(``ups-site01.snmprec`` answers to community ``ups-site01``). snmpsim re-reads a recording when
its modification time changes, which is how the lab injects faults while it runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
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
        self.log_level = log_level  # debug, info (snmpsim's default: a line per request) or error
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [*responder_command(), f"--data-dir={self.data_dir}", f"--cache-dir={self.cache_dir}",
               f"--agent-udpv4-endpoint={self.host}:{self.port}", f"--logging-method=file:{self.log_file}"]
        if self.log_level:
            cmd.append(f"--log-level={self.log_level}")
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
        self.proc = subprocess.Popen(self.command(), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        log.info("snmpsim_started", port=self.port, data_dir=str(self.data_dir), pid=self.proc.pid)

    def wait_ready(self, community: str, timeout: float = 30.0) -> None:
        """Block until the agent answers a GET of sysObjectID for ``community``."""
        from callipso_agent.lab.probe import snmp_get_sync

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"snmpsim exited with {self.proc.returncode}: {err[-2000:]}")
            if snmp_get_sync(self.host, self.port, community, "1.3.6.1.2.1.1.2.0", timeout=0.5) is not None:
                return
        raise TimeoutError(f"snmpsim on {self.host}:{self.port} not answering after {timeout}s")

    async def wait_ready_async(self, community: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a thread's deadline
        await asyncio.to_thread(self.wait_ready, community, timeout)

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
