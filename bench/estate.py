"""The simulated estate: N devices built from the real recordings, and the agent configuration polling them.

The estate has the shape of the telephony estate the agent watches: sites of three devices (a UPS, a
temperature probe and an analog gateway), and every tenth site also an SBC and an OXE. Each device serves a
whole real recording (``tests/fixtures/snmp``, the lab's choice of recordings per family, in turn), so it
is as large as the device it was recorded from.

Every device has its own loopback address (``127.20.x.y``) on one UDP port and one community, like a real
estate: the agent's trap receiver tells devices apart by address, and snmpbulkwalk or snmp_exporter need
only one command line or one module per kind of device.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from callipso_agent.config.loader import load_config
from callipso_agent.lab.estate import fixtures_dir, load_lab_spec
from callipso_agent.paths import example_config_dir

COMMUNITY = "bench-estate"
ADDRESS_PREFIX = (127, 20)
SITE_SHAPE = ("ups", "temperature-probe", "audiocodes-mp11x")
BIG_SITE_EXTRA = ("audiocodes-sbc", "oxe")
UPS_FAMILIES = ("ups-mib", "eaton-ups")


@dataclass(frozen=True)
class BenchDevice:
    name: str
    site: str
    family: str
    recording: str  # relative to tests/fixtures/snmp
    address: str
    port: int
    community: str = COMMUNITY

    @property
    def target(self) -> str:
        return f"{self.address}:{self.port}"


def device_address(i: int) -> str:
    """The i-th device's loopback address: 127.20.0.1 ... 127.20.0.250, 127.20.1.1 ... (Linux answers on all
    of 127.0.0.0/8 without configuration)."""
    return f"{ADDRESS_PREFIX[0]}.{ADDRESS_PREFIX[1]}.{i // 250}.{i % 250 + 1}"


def _families() -> Iterator[tuple[int, str]]:
    site = 0
    while True:
        kinds = list(SITE_SHAPE) + (list(BIG_SITE_EXTRA) if site % 10 == 9 else [])
        for kind in kinds:
            yield site, kind
        site += 1


def plan(n: int, port: int, layout: str = "address", per_port: int = 24) -> list[BenchDevice]:
    """N devices, site by site; recordings of a family are used in turn.

    ``layout`` ``address``: each device on its own loopback address, one port, one community (what a real
    estate looks like). ``community``: devices share 127.0.0.1, ``per_port`` devices per port from ``port``
    on, each answering to its own name as community (snmpsim's layout, for small estates only)."""
    spec = load_lab_spec()
    turn: dict[str, int] = {}
    out: list[BenchDevice] = []
    for i, (site, kind) in zip(range(n), _families(), strict=False):
        if kind == "ups":
            family = UPS_FAMILIES[turn.get("ups", 0) % 2]
            turn["ups"] = turn.get("ups", 0) + 1
        else:
            family = kind
        recs = spec.recordings[family]
        k = turn.get(family, 0)
        turn[family] = k + 1
        rec = recs[k % len(recs)]
        short = {"temperature-probe": "probe", "audiocodes-mp11x": "gw", "audiocodes-sbc": "sbc"}.get(family, family)
        name = f"{short}-{i:05d}"
        if layout == "address":
            out.append(BenchDevice(name, f"S{site:04d}", family, rec, device_address(i), port))
        else:
            out.append(BenchDevice(name, f"S{site:04d}", family, rec, "127.0.0.1", port + i // per_port, name))
    return out


@dataclass
class Estate:
    workdir: Path
    devices: list[BenchDevice]

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def recording_path(self, dev: BenchDevice) -> Path:
        return fixtures_dir() / dev.recording

    def save(self) -> Path:
        path = self.workdir / "estate.json"
        path.write_text(json.dumps({"devices": [asdict(d) for d in self.devices]}), encoding="utf-8")
        return path

    @classmethod
    def load(cls, workdir: Path) -> Estate:
        data = json.loads((workdir / "estate.json").read_text(encoding="utf-8"))
        return cls(workdir, [BenchDevice(**d) for d in data["devices"]])

    def write_config(self, *, http_port: int, trap_port: int, max_concurrency: int, max_repetitions: int,
                     client: str | None = None, interval: float = 300.0, timeout: float = 5.0,
                     retries: int = 1) -> Path:
        """The agent configuration of the estate (``agent.yaml``, ``credentials.yaml``, ``sites.yaml``,
        ``devices.yaml``), like an operator's but generated. Each client gets a store of its own: a run
        must open its incidents itself, not find those of the previous client's run still open."""
        cfg = self.config_dir
        cfg.mkdir(parents=True, exist_ok=True)
        secrets = self.workdir / "secrets"
        secrets.mkdir(exist_ok=True)
        os.chmod(secrets, 0o700)
        credentials: dict[str, Any] = {}
        cred_of: dict[str, str] = {}
        for d in self.devices:
            cred = "bench" if d.community == COMMUNITY else f"bench-{d.name}"
            cred_of[d.name] = cred
            if cred in credentials:
                continue
            secret = secrets / f"{cred}.community"
            secret.write_text(d.community + "\n", encoding="utf-8")
            os.chmod(secret, 0o600)
            credentials[cred] = {"type": "snmp", "version": "2c", "community": {"file": str(secret)}}
        if "bench" not in credentials:  # the trap receiver's community
            secret = secrets / "bench.community"
            secret.write_text(COMMUNITY + "\n", encoding="utf-8")
            credentials["bench"] = {"type": "snmp", "version": "2c", "community": {"file": str(secret)}}
        snmp: dict[str, Any] = {"max_concurrency": max_concurrency, "max_repetitions": max_repetitions}
        if client is not None:
            snmp["client"] = client
        state_dir = self.state_dir / client if client is not None else self.state_dir
        agent = {"name": "callipso-bench", "state_dir": str(state_dir), "log_level": "info",
                 "http": {"host": "127.0.0.1", "port": http_port},
                 "traps": {"enabled": True, "host": "127.0.0.1", "port": trap_port, "communities": ["bench"]},
                 "snmp": snmp}
        sites = sorted({d.site for d in self.devices})
        # the example's sites and service lines stay (the shipped météo checklist names them), without devices
        example = load_config(example_config_dir()).config
        example_sites = [x.model_dump(mode="json", exclude_defaults=True) for x in example.sites]
        services = [x.model_dump(mode="json", exclude_defaults=True) for x in example.services]
        self._write("agent.yaml", {"agent": agent})
        self._write("credentials.yaml", {"credentials": credentials})
        self._write("sites.yaml", {"sites": example_sites + [
            {"code": s, "name": f"Site {s}", "required_autonomy_minutes": 10} for s in sites],
            "services": services})
        self._write("devices.yaml", {"devices": [
            {"name": d.name, "site": d.site, "family": d.family, "address": d.address, "port": d.port,
             "snmp": cred_of[d.name], "interval": interval, "timeout": timeout, "retries": retries}
            for d in self.devices]})
        return cfg

    def _write(self, name: str, data: dict[str, Any]) -> None:
        text = f"# SYNTHETIC benchmark estate ({len(self.devices)} devices), generated by bench/estate.py\n"
        text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        (self.config_dir / name).write_text(text, encoding="utf-8")


def build(workdir: Path, n: int, port: int, layout: str = "address") -> Estate:
    workdir.mkdir(parents=True, exist_ok=True)
    estate = Estate(workdir, plan(n, port, layout))
    estate.save()
    return estate
