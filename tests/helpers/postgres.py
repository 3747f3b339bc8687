"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, pg_ctl on a free loopback port.

Runs the server as the ``postgres`` system user when the tests run as root (PostgreSQL refuses root).
Missing binaries skip the test on a developer machine and fail it in CI (tests/helpers/system.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.helpers.system import missing


def _bin_dir() -> Path | None:
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(initdb).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="callipso-pg-"))
        self.port = 0
        self.bin: Path | None = None
        self._as: list[str] = []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        self.bin = _bin_dir()
        if self.bin is None or not (self.bin / "pg_ctl").exists():
            missing("PostgreSQL server binaries (apt-get install postgresql)")
        assert self.bin is not None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                missing("a 'postgres' system user to run PostgreSQL as non-root")
            runuser = shutil.which("runuser")
            if runuser is None:
                missing("runuser (util-linux)")
            self._as = [str(runuser), "-u", "postgres", "--"]
            os.chmod(self.base, 0o755)  # noqa: S103 - the server user must reach its data folder
            os.chown(self.base, user.pw_uid, user.pw_gid)
        data, sock = self.base / "data", self.base / "sock"
        self._run("mkdir", "-p", str(sock))
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.port = _free_port()
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        assert self.bin is not None
        sock = self.base / "sock"
        opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.base / "data"),
            "-l",
            str(self.base / "server.log"),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )

    def halt(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected; ``immediate``: as a crash), keeping its data."""
        assert self.bin is not None
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.base / "data"), "-m", mode, "-w", "stop")

    def resume(self) -> None:
        """Start the halted server again on the same port."""
        self._pg_ctl_start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.bin is not None and self.port:
            subprocess.run(
                [
                    *self._as,
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.base / "data"),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)
