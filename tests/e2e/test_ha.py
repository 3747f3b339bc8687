"""High availability: two agents share one real PostgreSQL store. They split the lab's devices between
them (leases per site), one incident per problem whoever polls it, and when one agent is killed (SIGKILL)
the other takes its devices over within the lease time; nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from callipso_agent.lab.snmpsim import free_tcp_port
from tests.helpers.lab_agent import ROOT, wait_for
from tests.helpers.postgres import PostgresServer

pytestmark = pytest.mark.slow
SITES = "HD13,ARENC,AUBAGNE-MDS,GARDANNE-MDS,ISTRES-MDS,SALON-MDS"
INTERVAL = 6.0
LEASE_TTL = 4.0


def _get(port: int, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
        return json.loads(rsp.read())


class Proc:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "callipso_agent", *args], cwd=ROOT,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT)))

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.log.name} exited: {self.log.read_text()[-3000:]}")
        return True

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def agent_config(lab_config: Path, dest: Path, name: str, url: str, port: int) -> Path:
    shutil.copytree(lab_config, dest)
    agent = yaml.safe_load((dest / "agent.yaml").read_text())
    agent["agent"].update(name=name, state_dir=str(dest / "state"), lease_ttl=LEASE_TTL,
                          store={"url": url}, http={"host": "127.0.0.1", "port": port})
    (dest / "agent.yaml").write_text("# SYNTHETIC test agent\n" + yaml.safe_dump(agent))
    return dest


def test_two_agents_share_the_devices_and_take_over(postgres: PostgresServer, tmp_path: Path) -> None:
    url = asyncio.run(postgres.new_database())
    control = free_tcp_port()
    lab = Proc(["lab", "--dir", str(tmp_path / "lab"), "--interval", str(INTERVAL), "--control-port",
                str(control), "--sites", SITES], tmp_path / "lab.log")
    agents: dict[str, tuple[Proc, int]] = {}
    try:
        wait_for(lambda: lab.alive() and (tmp_path / "lab" / "lab.json").exists(), 90, "lab up")
        lab_config = tmp_path / "lab" / "config"
        for name in ("agent-a", "agent-b"):
            port = free_tcp_port()
            cfg = agent_config(lab_config, tmp_path / name, name, url, port)
            agents[name] = (Proc(["run", "--config", str(cfg)], tmp_path / f"{name}.log"), port)

        def ready(name: str) -> dict | None:
            proc, port = agents[name]
            proc.alive()
            r = _get(port, "/readyz")
            return r if r["status"] == "ready" else None

        total = wait_for(lambda: ready("agent-a"), 90, "agent-a ready")["devices"]

        def shared() -> tuple[int, int] | None:
            a, b = ready("agent-a"), ready("agent-b")
            if not (a and b):
                return None
            owned = (a["devices_owned"], b["devices_owned"])
            return owned if sum(owned) == total and all(owned) else None

        split = wait_for(shared, 60, "devices split between the two agents")
        assert sum(split) == total

        # a site cut off: one incident for it, whichever agent polls the site
        assert subprocess.run([sys.executable, "-m", "callipso_agent", "lab", "--control-port", str(control),
                               "fault", "unreachable", "GARDANNE-MDS"], cwd=ROOT, capture_output=True,
                              timeout=30, check=False).returncode == 0

        def site_incident() -> list[dict] | None:
            items = _get(agents["agent-b"][1], "/api/v1/incidents?state=open")
            items = items["incidents"] if isinstance(items, dict) else items
            found = [i for i in items if i["key"] == "site_unreachable:GARDANNE-MDS"]
            return found or None

        wait_for(site_incident, 150, "site incident")

        # agent-a dies without a word: agent-b takes everything over within the lease time
        agents["agent-a"][0].stop(signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(lambda: (r := ready("agent-b")) and r["devices_owned"] == total, 60, "takeover")
        took = time.monotonic() - t0
        assert took < LEASE_TTL + LEASE_TTL / 3 + INTERVAL + 5, f"takeover took {took:.1f}s"
        wait_for(lambda: (r := ready("agent-b")) and r["devices_polled"] >= total, 60, "agent-b polls all")

        # nothing duplicated: one unresolved incident per problem key in the shared store
        async def keys() -> list[str]:
            import asyncpg

            conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                rows = await conn.fetch("SELECT key FROM incidents WHERE state != 'resolved'")
            finally:
                await conn.close()
            return [r["key"] for r in rows]

        open_keys = asyncio.run(keys())
        assert len(open_keys) == len(set(open_keys)), open_keys
        assert open_keys.count("site_unreachable:GARDANNE-MDS") == 1
    finally:
        for proc, _ in agents.values():
            proc.stop()
        lab.stop()
