"""A throw-away PostgreSQL server (initdb + pg_ctl on a free loopback port) for the outbox tests.

As root, the server runs as the ``postgres`` system user (PostgreSQL refuses root). Missing binaries
skip on a developer machine and fail in CI (tests/helpers/system.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from callipso_agent.lab.snmpsim import free_tcp_port
from tests.helpers.system import missing


class Postgres:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="callipso-outbox-pg-"))
        self.port = 0
        self.bin: Path | None = None
        self.prefix: list[str] = []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Postgres:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
        found = candidates[0] if candidates else shutil.which("pg_ctl")
        if not found:
            missing("PostgreSQL server binaries (pg_ctl, initdb)")
        self.bin = Path(str(found)).resolve().parent
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                missing("a 'postgres' system user to run PostgreSQL as non-root")
            runuser = shutil.which("runuser")
            if runuser is None:
                missing("runuser (util-linux)")
            self.prefix = [str(runuser), "-u", "postgres", "--"]
            os.chmod(self.base, 0o755)
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
        self.port = free_tcp_port()
        options = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.base / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    async def new_database(self) -> str:
        import asyncpg

        name = f"outbox_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.bin is not None and self.port:
            subprocess.run(
                [
                    *self.prefix,
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
