"""A real Prometheus server (Debian's ``prometheus`` binary) on loopback, for tests."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from callipso_agent.lab.snmpsim import free_tcp_port
from tests.helpers.lab_agent import wait_for
from tests.helpers.system import require_binary


class Prometheus:
    def __init__(self, workdir: Path, target: str, rule_files: list[Path], interval: str = "1s") -> None:
        self.binary = require_binary("prometheus")
        self.workdir = workdir
        self.port = free_tcp_port()
        self.config = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": interval,
                        "evaluation_interval": interval,
                        "scrape_timeout": interval,
                    },
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [
                        {"job_name": "callipso-agent", "static_configs": [{"targets": [target]}]}
                    ],
                }
            ),
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, 60, "prometheus ready")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as rsp:  # noqa: S310 - loopback
            return rsp.status == 200

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; returns the JSON body, errors included (status "error", errorType...)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as rsp:  # noqa: S310 - loopback
                return json.loads(rsp.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
