"""Build the lab estate: a copy of the example inventory whose devices are served by snmpsim on loopback.

Every device of a family with recordings gets its own copy of one recording, served under the
community named after the device (or a random community, ``random_communities``), and its own UDP port on
the lab's network front (:mod:`udpfront`), which relays to the snmpsim shard. Value faults edit the device's
copy while the lab runs; network faults (a site cut off, answers too late, truncated answers) are played by
the front, so snmpsim always has every recording it was started with.

Devices named in ``snmpv3`` are polled in SNMPv3 authPriv instead: snmpsim gets a USM user per device with
random keys, the agent a v3 credential whose keys are files under the lab's ``secrets`` folder, and the
agent's trap receiver accepts that user's traps (authenticated with the device's engine ID, written in the
credential). A ``mismatch`` gives the agent a wrong key or an unknown user, as after a key change on the
device that the inventory missed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from callipso_agent.config.loader import load_config
from callipso_agent.lab.snmpsim import SnmpSimulator, free_udp_port, touch_later
from callipso_agent.lab.ssh_emulator import FAULTS as SSH_FAULTS
from callipso_agent.lab.ssh_emulator import EmulatedUser, EmulatorHandle, start_emulator
from callipso_agent.lab.udpfront import FrontProcess
from callipso_agent.paths import example_config_dir
from callipso_agent.yamlload import load_yaml, parse_model

LAB_YAML = Path(__file__).resolve().parent / "lab.yaml"
DEVICES_PER_SNMPSIM = 24
LAB_TIMEOUT = 5.0  # SNMP timeout and retries the lab configures for its devices
LAB_RETRIES = 1
#: a "late" device answers after the agent has given up on the request and on its retry
LATE_DELAY = LAB_TIMEOUT * (LAB_RETRIES + 1) + 1.0
#: the agent's names of SNMPv3 protocols → snmpsim's
V3_AUTH = {"md5": "MD5", "sha": "SHA", "sha224": "SHA224", "sha256": "SHA256", "sha384": "SHA384",
           "sha512": "SHA512"}
V3_PRIV = {"des": "DES", "3des": "3DES", "aes": "AES", "aes192": "AES192", "aes256": "AES256",
           "aes192-blumenthal": "AES192BLMT", "aes256-blumenthal": "AES256BLMT"}
V3_MISMATCHES = ("wrong_auth_key", "wrong_priv_key", "unknown_user")


@dataclass(frozen=True)
class V3Setup:
    """How a lab device speaks SNMPv3 (authPriv): its protocols, and what the agent gets wrong, if anything."""

    auth: str = "sha"
    priv: str = "aes"
    mismatch: str | None = None

    def __post_init__(self) -> None:
        if self.auth not in V3_AUTH:
            raise ValueError(f"unknown SNMPv3 auth protocol {self.auth!r}; known: {', '.join(V3_AUTH)}")
        if self.priv not in V3_PRIV:
            raise ValueError(f"unknown SNMPv3 privacy protocol {self.priv!r}; known: {', '.join(V3_PRIV)}")
        if self.mismatch is not None and self.mismatch not in V3_MISMATCHES:
            raise ValueError(f"unknown SNMPv3 mismatch {self.mismatch!r}; known: {', '.join(V3_MISMATCHES)}")


def parse_v3_setups(text: str) -> dict[str, V3Setup]:
    """``DEVICE[:AUTH/PRIV][:MISMATCH],...``, e.g.
    ``sbc-hd13,ups-hd13:sha256/aes256,probe-hd13:sha/aes:wrong_auth_key``."""
    out: dict[str, V3Setup] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, *rest = item.split(":")
        auth, priv, mismatch = "sha", "aes", None
        if rest and "/" in rest[0]:
            auth, _, priv = rest.pop(0).partition("/")
        if rest:
            mismatch = rest.pop(0)
        if rest or not name:
            raise ValueError(f"bad SNMPv3 device {item!r}: expected DEVICE[:AUTH/PRIV][:MISMATCH]")
        out[name] = V3Setup(auth.lower(), priv.lower(), mismatch)
    return out


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str
    set: dict[str, str] = Field(default_factory=dict, description="OID -> 'type|value' where the recording has it")
    insert: dict[str, str] = Field(default_factory=dict,
                                   description="OID -> 'type|value', added (in OID order) where the recording lacks it")
    snmp_fault: Literal["drop", "late", "truncated"] | None = Field(
        default=None, description="what the lab's network does to the device's SNMP traffic")
    ssh_state: str | None = Field(default=None, description="state the SSH emulator switches to")
    ssh_fault: str | None = Field(default=None, description="fault the SSH emulator plays (hang, drop, ...)")

    @field_validator("ssh_fault")
    @classmethod
    def _known_ssh_fault(cls, v: str | None) -> str | None:
        if v is not None and v not in SSH_FAULTS:
            raise ValueError(f"unknown SSH fault {v!r}; known: {', '.join(SSH_FAULTS)}")
        return v


class LabSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    recordings: dict[str, list[str]]
    ssh: dict[str, str] = Field(default_factory=dict, description="family -> SSH emulator fixture folder")
    ssh_initial_state: dict[str, str] = Field(default_factory=dict, description="device -> emulator state")
    faults: dict[str, FaultSpec]


def load_lab_spec(path: Path = LAB_YAML) -> LabSpec:
    return parse_model(LabSpec, load_yaml(path), str(path))


def fixtures_dir() -> Path:
    env = os.environ.get("CALLIPSO_LAB_FIXTURES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "tests" / "fixtures" / "snmp"
        if cand.is_dir():
            return cand
    raise FileNotFoundError("lab recordings not found: run the lab from a checkout (tests/fixtures/snmp) "
                            "or set CALLIPSO_LAB_FIXTURES")


@dataclass
class LabDevice:
    name: str
    site: str
    family: str
    recording: Path | None = None  # the pristine source
    served: Path | None = None  # the copy snmpsim serves
    snmp_port: int | None = None  # the device's port on the lab's network front
    rendered: tuple[str, ...] = ()  # value faults written into ``served``
    emulator: EmulatorHandle | None = None
    initial_state: str = "nominal"
    faults: set[str] = field(default_factory=set)
    community: str | None = None  # what snmpsim serves the recording under (the file's stem)
    v3: V3Setup | None = None
    v3_user: str | None = None  # the USM user the device knows
    engine_id: str | None = None  # the device's SNMP engine ID (hex) for its traps


def _plain(value: Any) -> Any:
    """YAML nodes with line numbers → plain dicts and lists (for yaml.safe_dump)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _read_snmprec(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()


def _oid_key(oid: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in oid.strip(".").split(".") if p)
    except ValueError:
        return ()


def apply_edits(lines: list[str], edits: dict[str, str],
                inserts: dict[str, str] | None = None) -> tuple[list[str], int]:
    """Replace ``oid|type|value`` lines (``edits`` and ``inserts``), and add the ``inserts`` the recording
    lacks at their place in OID order (snmpsim answers GETNEXT by searching the sorted file).
    Returns the new lines and how many edits applied."""
    inserts = inserts or {}
    applied = 0
    out = []
    seen: set[str] = set()
    for line in lines:
        oid = line.split("|", 1)[0]
        value = edits.get(oid, inserts.get(oid))
        if value is not None:
            out.append(f"{oid}|{value}")
            seen.add(oid)
            applied += 1
        else:
            out.append(line)
    for oid, value in sorted(inserts.items(), key=lambda kv: _oid_key(kv[0])):
        if oid in seen:
            continue
        key = _oid_key(oid)
        at = next((i for i, line in enumerate(out) if _oid_key(line.split("|", 1)[0]) > key), len(out))
        out.insert(at, f"{oid}|{value}")
        applied += 1
    return out, applied


class Lab:
    """The lab's estate and its fault switch."""

    def __init__(self, workdir: Path, *, interval: float = 10.0, http_port: int = 9730,
                 spec: LabSpec | None = None, source_config: Path | None = None,
                 sites: list[str] | None = None, overlay: Path | None = None,
                 snmpv3: dict[str, V3Setup] | None = None, random_communities: bool = False,
                 trap_port: int | None = None) -> None:
        self.workdir = workdir.resolve()
        self.snmpv3 = dict(snmpv3 or {})
        self.random_communities = random_communities
        self.trap_port = trap_port
        self.overlay = overlay.resolve() if overlay is not None else None
        self.interval = interval
        self.http_port = http_port
        self.spec = spec or load_lab_spec()
        self.source_config = source_config or example_config_dir()
        self.data_dir = self.workdir / "snmpsim" / "data"  # one sub-folder per snmpsim process
        self.config_dir = self.workdir / "config"
        self.secrets_dir = self.workdir / "secrets"
        self.devices: dict[str, LabDevice] = {}
        self.sims: list[SnmpSimulator] = []
        self.front: FrontProcess | None = None
        self.sites = set(sites) if sites else None

    # ---- estate ---------------------------------------------------------------------------------
    async def build(self) -> Path:
        """Write recordings, start SSH emulators, write the lab configuration; returns the configuration folder."""
        fx = fixtures_dir()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        example = load_config(self.source_config).config
        turn: dict[str, int] = {}
        devices_out: list[dict[str, Any]] = []
        credentials: dict[str, Any] = {}
        known_hosts = self.workdir / "known_hosts"
        kh_lines: list[str] = []
        snmp_total = sum(1 for dev in example.devices
                         if self.spec.recordings.get(dev.family) and (self.sites is None or dev.site in self.sites))
        # snmpsim keeps at most 31 recordings open and re-reads the others on every request: shard
        n_shards = max(1, -(-snmp_total // DEVICES_PER_SNMPSIM))
        self.sims = [SnmpSimulator(self.data_dir / str(i), log_file=self.workdir / f"snmpsim-{i}.log",
                                   cache_dir=self.workdir / "snmpsim" / f"cache-{i}") for i in range(n_shards)]
        for sim in self.sims:
            sim.data_dir.mkdir(parents=True)
        n_snmp = 0
        upstreams: dict[str, tuple[str, int]] = {}
        by_name: dict[str, dict[str, Any]] = {}
        v3_trap_users: list[str] = []
        for dev in example.devices:
            if self.sites is not None and dev.site not in self.sites:
                continue
            recs = self.spec.recordings.get(dev.family)
            ssh_fixture = self.spec.ssh.get(dev.family) if dev.ssh else None
            if not recs and not ssh_fixture:
                continue
            lab_dev = LabDevice(dev.name, dev.site, dev.family)
            d = dev.model_dump(mode="json", exclude_defaults=True)
            d.update(address="127.0.0.1", interval=self.interval, timeout=LAB_TIMEOUT, retries=LAB_RETRIES)
            d.pop("ssh", None)
            d.pop("snmp", None)
            if recs:
                i = turn.get(dev.family, 0)
                turn[dev.family] = i + 1
                src = fx / recs[i % len(recs)]
                sim = self.sims[n_snmp % n_shards]
                n_snmp += 1
                v3 = self.snmpv3.get(dev.name)
                # a v3 device's recording is chosen by the context name: its own name, not a secret
                community = secrets.token_hex(10) if self.random_communities and v3 is None else dev.name
                served = sim.data_dir / f"{community}.snmprec"
                shutil.copyfile(src, served)
                lab_dev.recording, lab_dev.served, lab_dev.community = src, served, community
                if v3 is not None:
                    cred = f"lab-v3-{dev.name}"
                    credentials[cred] = self._v3_credential(lab_dev, v3, sim)
                    v3_trap_users.append(cred)
                else:
                    secret = self.secrets_dir / f"{dev.name}.community"
                    secret.write_text(community + "\n", encoding="utf-8")
                    os.chmod(secret, 0o600)
                    cred = f"lab-{dev.name}"
                    credentials[cred] = {"type": "snmp", "version": "2c", "community": {"file": str(secret)}}
                d.update(snmp=cred)
                upstreams[dev.name] = (sim.host, sim.port)
            if ssh_fixture:
                password = secrets.token_urlsafe(12)
                pw_file = self.secrets_dir / f"{dev.name}.ssh-password"
                pw_file.write_text(password + "\n", encoding="utf-8")
                os.chmod(pw_file, 0o600)
                lab_dev.initial_state = self.spec.ssh_initial_state.get(dev.name, "nominal")
                handle = await start_emulator(ssh_fixture, state=lab_dev.initial_state,
                                              fixtures_dir=fx.parent / "ssh",
                                              users=[EmulatedUser(username="callipso", password=password)])
                lab_dev.emulator = handle
                kh_lines.append(handle.known_hosts_line)
                cred = f"lab-ssh-{dev.name}"
                credentials[cred] = {"type": "ssh", "username": "callipso", "password": {"file": str(pw_file)},
                                     "known_hosts": str(known_hosts)}
                d.update(ssh=cred, ssh_port=handle.port)
            self.devices[dev.name] = lab_dev
            devices_out.append(d)
            by_name[dev.name] = d
        if upstreams:
            self.front = FrontProcess(upstreams, log_file=self.workdir / "udpfront.log")
            ports = await asyncio.to_thread(self.front.start)
            for name, port in ports.items():
                self.devices[name].snmp_port = port
                by_name[name]["port"] = port
        known_hosts.write_text("".join(kh_lines), encoding="utf-8")
        # every site stays in the inventory (the météo checklist names them); --sites only limits the devices
        sites = [s.model_dump(mode="json", exclude_defaults=True) for s in example.sites]
        services = [s.model_dump(mode="json", exclude_defaults=True) for s in example.services]
        agent = {
            "name": "callipso-lab",
            "state_dir": str(self.workdir / "state"),
            "http": {"host": "127.0.0.1", "port": self.http_port},
            "traps": {"enabled": False},
        }
        if v3_trap_users:
            # the v3 devices' traps: the receiver accepts each device's user, authenticated with its engine ID
            if self.trap_port is None:
                self.trap_port = free_udp_port()
            agent["traps"] = {"enabled": True, "host": "127.0.0.1", "port": self.trap_port,
                              "v3_users": v3_trap_users}
        unknown = sorted(set(self.snmpv3) - {d.name for d in self.devices.values() if d.v3 is not None})
        if unknown:
            raise KeyError(f"SNMPv3 lab devices not in the lab's estate: {', '.join(unknown)}")
        self._apply_overlay(agent)
        self._write("agent.yaml", {"agent": agent}, "lab agent settings")
        self._write("credentials.yaml", {"credentials": credentials}, "lab credentials (communities in files)")
        self._write("sites.yaml", {"sites": sites, "services": services}, "sites and service lines of the example")
        self._write("devices.yaml", {"devices": devices_out}, "devices served by the lab's snmpsim")
        return self.config_dir

    def _v3_credential(self, dev: LabDevice, v3: V3Setup, sim: SnmpSimulator) -> dict[str, Any]:
        """Give snmpsim a USM user for ``dev`` with random keys; return the agent's credential for it (keys in
        files, wrong on purpose when the setup says so)."""
        user = f"v3-{dev.name}"
        auth_key, priv_key = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
        sim.v3_users.append({"user": user, "auth_key": auth_key, "auth_proto": V3_AUTH[v3.auth],
                             "priv_key": priv_key, "priv_proto": V3_PRIV[v3.priv]})
        dev.v3, dev.v3_user = v3, user
        dev.engine_id = "80001f8805" + secrets.token_hex(8)  # enterprise 8072, format 5 (octets): SYNTHETIC
        agent_user = f"{user}-unknown" if v3.mismatch == "unknown_user" else user
        if v3.mismatch == "wrong_auth_key":
            auth_key = secrets.token_urlsafe(18)
        if v3.mismatch == "wrong_priv_key":
            priv_key = secrets.token_urlsafe(18)
        files = {}
        for what, value in (("auth", auth_key), ("priv", priv_key)):
            f = self.secrets_dir / f"{dev.name}.v3-{what}-key"
            f.write_text(value + "\n", encoding="utf-8")
            os.chmod(f, 0o600)
            files[what] = str(f)
        return {"type": "snmp", "version": "3", "user": agent_user,
                "auth_protocol": v3.auth, "auth_key": {"file": files["auth"]},
                "priv_protocol": v3.priv, "priv_key": {"file": files["priv"]},
                "context": dev.community, "engine_id": dev.engine_id}

    def _apply_overlay(self, agent: dict[str, Any]) -> None:
        """An overlay folder's ``agent.yaml`` (an ``agent:`` mapping) is merged over the lab's agent settings;
        its other files (``outputs/easyvista.yaml``, ``outputs/notifications.yaml``, secret files) are copied
        into the configuration folder. The lab then talks to the peers the overlay names."""
        if self.overlay is None:
            return
        if not self.overlay.is_dir():
            raise FileNotFoundError(f"lab overlay {self.overlay} is not a folder")
        extra = self.overlay / "agent.yaml"
        if extra.exists():
            data = load_yaml(extra) or {}
            if not isinstance(data, dict) or not isinstance(data.get("agent", {}), dict):
                raise ValueError(f"{extra}: expected a mapping with an 'agent:' mapping")
            _merge(agent, _plain(data.get("agent") or {}))
        for src in sorted(self.overlay.rglob("*")):
            rel = src.relative_to(self.overlay)
            if src.is_dir() or rel == Path("agent.yaml"):
                continue
            dst = self.config_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

    def _write(self, name: str, data: dict[str, Any], what: str) -> None:
        text = f"# Generated by 'callipso-agent lab': {what}. SYNTHETIC lab estate.\n"
        text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        (self.config_dir / name).write_text(text, encoding="utf-8")

    # ---- running --------------------------------------------------------------------------------
    def start(self) -> None:
        for sim in self.sims:
            sim.start()
        for sim in self.sims:
            first = next((d.community for d in self.devices.values()
                          if d.served is not None and d.served.parent == sim.data_dir and d.community), None)
            if first:
                sim.wait_ready(first)
        probe = next((d for d in self.devices.values() if d.snmp_port is not None and d.community), None)
        if probe is not None and probe.snmp_port is not None and probe.community:  # through the network front
            SnmpSimulator.wait_port_ready("127.0.0.1", probe.snmp_port, probe.community)
        (self.workdir / "lab.json").write_text(json.dumps({"snmp_ports": self.snmp_ports, "pid": os.getpid()}))

    @property
    def snmp_ports(self) -> list[int]:
        return [sim.port for sim in self.sims]

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
            self.front = None
        for sim in self.sims:
            sim.stop()

    def network_stats(self) -> dict[str, Any]:
        """Requests, answers and drops per device on the lab's network front."""
        return self.front.stats() if self.front is not None else {"devices": {}, "flows": 0}

    async def close_emulators(self) -> None:
        for d in self.devices.values():
            if d.emulator is not None:
                await d.emulator.close()

    # ---- faults ---------------------------------------------------------------------------------
    def targets(self, target: str) -> list[LabDevice]:
        if target in self.devices:
            return [self.devices[target]]
        site = [d for d in self.devices.values() if d.site == target]
        if site:
            return site
        raise KeyError(f"unknown lab device or site {target!r}")

    def inject(self, target: str, fault: str) -> list[str]:
        if fault not in self.spec.faults:
            raise KeyError(f"unknown fault {fault!r}; known: {', '.join(sorted(self.spec.faults))}")
        touched = []
        for dev in self.targets(target):
            dev.faults.add(fault)
            self._render(dev)
            touched.append(dev.name)
        return touched

    def clear(self, target: str, fault: str | None = None) -> list[str]:
        touched = []
        for dev in self.targets(target):
            if fault is None:
                dev.faults.clear()
            else:
                dev.faults.discard(fault)
            self._render(dev)
            touched.append(dev.name)
        return touched

    def _render(self, dev: LabDevice) -> None:
        if dev.emulator is not None:
            self._render_ssh(dev)
        if dev.served is None or dev.recording is None:
            return
        self._render_network(dev)
        edits = tuple(f for f in sorted(dev.faults) if self.spec.faults[f].set or self.spec.faults[f].insert)
        if edits == dev.rendered:
            return  # a network fault only: the recording stays as it is (snmpsim keeps its index)
        lines = _read_snmprec(dev.recording)
        for f in edits:
            lines, _ = apply_edits(lines, self.spec.faults[f].set, self.spec.faults[f].insert)
        tmp = dev.served.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
        os.replace(tmp, dev.served)
        touch_later(dev.served)
        dev.rendered = edits

    def _render_network(self, dev: LabDevice) -> None:
        if self.front is None or dev.snmp_port is None:
            return
        kinds = {self.spec.faults[f].snmp_fault for f in dev.faults} - {None}
        # the worst wins: a device cut off is silent whatever else it suffers
        mode = next((k for k in ("drop", "late", "truncated") if k in kinds), "pass")
        self.front.set_mode(dev.name, mode, LATE_DELAY if mode == "late" else 0.0)

    def _render_ssh(self, dev: LabDevice) -> None:
        assert dev.emulator is not None
        state, fault = dev.initial_state, None
        for f in sorted(dev.faults):
            spec = self.spec.faults[f]
            if spec.ssh_state and spec.ssh_state in dev.emulator.fixture.states:
                state = spec.ssh_state
            if spec.ssh_fault:
                fault = spec.ssh_fault
            if spec.snmp_fault == "drop":
                fault = "hang"  # a device cut off: its SSH sessions go silent too
        dev.emulator.set_state(state)
        changed = fault != dev.emulator.fault
        dev.emulator.set_fault(fault)
        if changed and fault in ("hang", "drop", "changed_host_key"):
            # sessions already open would not see the fault: the agent reconnects and meets it
            dev.emulator.drop_connections()

    def state(self) -> dict[str, Any]:
        return {
            "devices": {d.name: {"site": d.site, "family": d.family,
                                 "recording": d.recording.name if d.recording else None,
                                 "ssh_port": d.emulator.port if d.emulator else None,
                                 "snmp_port": d.snmp_port,
                                 "snmpv3": self._v3_state(d),
                                 "faults": sorted(d.faults)} for d in self.devices.values()},
            "faults": {k: v.description for k, v in self.spec.faults.items()},
            "snmp_ports": self.snmp_ports,
            "trap_port": self.trap_port,
        }

    @staticmethod
    def _v3_state(d: LabDevice) -> dict[str, Any] | None:
        """What a trap sender needs besides the keys (which stay in the secrets folder)."""
        if d.v3 is None:
            return None
        return {"user": d.v3_user, "engine_id": d.engine_id, "auth": d.v3.auth, "priv": d.v3.priv,
                "mismatch": d.v3.mismatch}
