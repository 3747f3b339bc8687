"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers most exposed to outside input.

    python -m tests.reliability.atheris_targets TARGET CORPUS_DIR [libFuzzer options]

Targets: ``trap`` (a UDP datagram through the trap receiver's decode path: pysnmp/pyasn1 and our
dispatch), ``ssh`` (device CLI output through every shipped SSH profile's parser), ``config`` (a YAML
file through the configuration loader). The corpus folder is seeded with real inputs (a valid trap, the
SSH emulator fixtures, the example configuration) on first use. A target fails (libFuzzer writes a
``crash-*`` file and exits non-zero) on any exception the parser is not allowed to raise, or on a broken
invariant. ``tests/reliability/test_atheris.py`` runs each briefly in CI; ``make fuzz-atheris`` longer.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

with atheris.instrument_imports(include=["callipso_agent", "pyasn1", "yaml"]):
    from callipso_agent.clock import ManualClock
    from callipso_agent.collect.ssh import parse_results
    from callipso_agent.config.loader import load_config
    from callipso_agent.errors import ConfigError, ConfigErrors
    from callipso_agent.model import Severity
    from callipso_agent.parsers.table import RAW_KEEP
    from callipso_agent.paths import collectors_dir, example_config_dir
    from callipso_agent.profiles.ssh import load_ssh_profile_file
    from callipso_agent.transports.ssh import CommandResult
    from callipso_agent.traps import TrapReceiver, load_trap_rules


def valid_trap() -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import rfc1902
    from pysnmp.proto.api import v2c

    pdu = v2c.SNMPv2TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    v2c.apiTrapPDU.set_varbinds(pdu, [
        (v2c.ObjectIdentifier("1.3.6.1.2.1.1.3.0"), v2c.TimeTicks(123)),
        (v2c.ObjectIdentifier("1.3.6.1.6.3.1.1.4.1.0"), v2c.ObjectIdentifier("1.3.6.1.4.1.534.1.0.1")),
        (v2c.ObjectIdentifier("1.3.6.1.4.1.534.1.1.1.0"), rfc1902.OctetString(b"x" * 8)),
    ])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, "public")
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


# ---- trap datagrams ----------------------------------------------------------------------------------------
class TrapTarget:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(ctx))
        self.receiver = TrapReceiver(load_trap_rules(collectors_dir() / "traps"), asyncio.Queue(), port=0,
                                     communities=["public"], devices={})
        self.loop.run_until_complete(self.receiver.start())

    def seeds(self) -> list[bytes]:
        return [valid_trap()]

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        counters = self.receiver.counters
        received = counters.received
        self.receiver._transport.datagram_received(data, ("127.0.0.1", 40000))  # the decode path
        self.loop.run_until_complete(asyncio.sleep(0))
        if counters.received != received + 1 or counters.errors or self.loop_errors:
            raise AssertionError(f"trap decode: received {counters.received - received}, errors "
                                 f"{counters.errors}, loop errors {self.loop_errors[:1]}")


# ---- SSH command output --------------------------------------------------------------------------------
class SshTarget:
    def __init__(self) -> None:
        self.profiles = [load_ssh_profile_file(p) for p in sorted((collectors_dir() / "ssh").glob("*.yaml"))]
        self.clock = ManualClock()

    def seeds(self) -> list[bytes]:
        out = []
        for i, folder in enumerate(sorted(p for p in (FIXTURES / "ssh").iterdir() if p.is_dir())):
            for f in sorted(folder.glob("*.txt")):
                out.append(bytes([i % max(len(self.profiles), 1)]) + f.read_bytes()[:20000])
        return out

    def __call__(self, data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        profile = self.profiles[fdp.ConsumeIntInRange(0, len(self.profiles) - 1)]
        failed = fdp.ConsumeBool()
        outputs = []
        for spec in profile.commands:
            text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 30000))
            outputs.append(CommandResult(spec.command, text, 0.1, failed and fdp.ConsumeBool()))
        measurements = parse_results("dev", profile, outputs, self.clock)
        if not measurements:
            raise AssertionError("a command always yields its measurements (values or UNKNOWN)")
        for m in measurements:
            if not isinstance(m.state, Severity):
                raise AssertionError(f"state {m.state!r}")
            if m.value is not None and not math.isfinite(m.value):
                raise AssertionError(f"non-finite value {m!r}")
            if m.text is not None and len(m.text) > RAW_KEEP + 200:
                raise AssertionError(f"unbounded text ({len(m.text)} characters)")


# ---- configuration YAML --------------------------------------------------------------------------------
class ConfigTarget:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="callipso-fuzz-config-"))
        self.file = self.dir / "agent.yaml"

    def seeds(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(example_config_dir().glob("*.yaml"))]

    def __call__(self, data: bytes) -> None:
        self.file.write_bytes(data)
        try:
            load_config(self.file)
        except ConfigErrors as errs:
            if not errs.errors or not all(isinstance(e, ConfigError) and e.file for e in errs.errors):
                raise AssertionError(f"ConfigErrors without a named file: {errs.errors!r}") from None
        except ConfigError as err:
            if not err.file:
                raise AssertionError(f"ConfigError without a file: {err!r}") from None


TARGETS: dict[str, Callable[[], Any]] = {"trap": TrapTarget, "ssh": SshTarget, "config": ConfigTarget}


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} CORPUS_DIR [libFuzzer options]")
    from callipso_agent import logs

    logs.configure("error", json=True, stream=open(os.devnull, "w"))
    target = TARGETS[argv[1]]()
    corpus = Path(argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for i, seed in enumerate(target.seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    atheris.Setup([argv[0], *argv[3:], str(corpus)], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
