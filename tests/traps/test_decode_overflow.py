"""Regression test for a finding of the coverage-guided fuzzer (tests/reliability/atheris_targets.py, target
``trap``): a v2c trap whose varbind length field says 2**63 made pyasn1 raise ``OverflowError`` inside
pysnmp's receive callback, which ran in the event loop: one traceback in the log per datagram that any
host can send, and the datagram was not counted as malformed."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from callipso_agent.paths import collectors_dir
from callipso_agent.traps import TrapReceiver, load_trap_rules

# SYNTHETIC: the datagram libFuzzer produced (a mutated trap; base64 of the crash file it wrote)
OVERFLOW = base64.b64decode(
    "MIFcAgEBBAZwdWJsaWOnTwIDDHJ0AgEAAoj/MEIwDQYIKwZBAgEBMQBDAXswGAYKKwYBBgMBAAAAAAYKKwYBBAGEFgEAATAX"
    "BgsrBgEEAYQWAQEBcHWCbHiRhwiKeHg="
)


async def test_an_undecodable_length_is_counted_as_malformed_not_raised_into_the_loop() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    queue: asyncio.Queue[Any] = asyncio.Queue()
    receiver = TrapReceiver(load_trap_rules(collectors_dir() / "traps"), queue, port=0, communities=["public"],
                            devices={})
    await receiver.start()
    try:
        receiver._transport.datagram_received(OVERFLOW, ("127.0.0.1", 40000))
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert errors == []
        c = receiver.counters
        assert (c.received, c.malformed, c.errors, c.notifications) == (1, 1, 0, 0)
    finally:
        await receiver.stop()
        loop.set_exception_handler(previous)
