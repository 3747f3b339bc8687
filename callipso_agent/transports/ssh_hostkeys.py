"""known_hosts policy for SSH: verify, refuse unknown or changed keys, trust on first use only when asked.

asyncssh checks the key against the keys it was given; when the key is not among them it asks the
client object (:meth:`HostKeyPolicy.validate_host_public_key`), which is where we decide, and remember
why, so the error raised afterwards names the host, the fingerprint and the reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

_APPEND_LOCK = threading.Lock()


def known_hosts_name(host: str, port: int) -> str:
    """The host pattern OpenSSH writes: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def load_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    return asyncssh.import_known_hosts(text)


def known_keys(known: asyncssh.SSHKnownHosts, host: str, port: int) -> list[asyncssh.SSHKey]:
    trusted, *_ = asyncssh.match_known_hosts(known, host, host, port if port != 22 else None)
    return list(trusted)


def fingerprint(key: asyncssh.SSHKey) -> str:
    return str(key.get_fingerprint("sha256"))


def append_known_host(path: Path, host: str, port: int, key_type: str, key_base64: str) -> str:
    """Append a host key (type ``ssh-ed25519``, blob ``AAAA...``) for host:port; return the line written."""
    line = f"{known_hosts_name(host, port)} {key_type} {key_base64}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _APPEND_LOCK, path.open("a", encoding="utf-8") as fh:
        fh.write(line)
    return line


def openssh_public(key: asyncssh.SSHKey) -> tuple[str, str]:
    """(key type, base64 blob) of a public key."""
    key_type, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    return key_type, blob


@dataclass
class HostKeyDecision:
    """What the policy saw during one connection attempt."""

    presented: asyncssh.SSHKey | None = None
    reason: str | None = None  # "unknown" or "changed" when refused
    trusted_on_first_use: bool = False
    known_fingerprints: list[str] = field(default_factory=list)


class HostKeyPolicy(asyncssh.SSHClient):
    """The asyncssh client object of one connection attempt."""

    def __init__(self, known: list[asyncssh.SSHKey], trust_on_first_use: bool) -> None:
        self._known = known
        self._tofu = trust_on_first_use
        self.decision = HostKeyDecision(known_fingerprints=[fingerprint(k) for k in known])
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        # only called when the key is not among the trusted keys
        self.decision.presented = key
        if self._known:
            self.decision.reason = "changed"
            return False
        if self._tofu:
            self.decision.trusted_on_first_use = True
            return True
        self.decision.reason = "unknown"
        return False
