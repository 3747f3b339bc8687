"""Device states written in batches keep the order of the polls (failure counts stay exact) and nothing
submitted is lost at stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callipso_agent.model import PollResult
from callipso_agent.store import Store
from callipso_agent.store.db import sqlite_url
from callipso_agent.store.poll_writer import PollStateWriter


async def test_batches_keep_order_and_flush_at_stop(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "s.sqlite"))
    await store.migrate()
    writer = PollStateWriter(store, every=3600.0, max_pending=1000)  # only stop() flushes
    writer.start()
    t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    writer.submit(PollResult("ups-1", t, 0.1, system={"model": "X"}), "ups-mib")
    for i in range(3):
        writer.submit(PollResult("ups-1", t + timedelta(seconds=i + 1), 0.2, error="timeout",
                                 error_text="no answer"), None)
    for n in range(50):
        writer.submit(PollResult(f"probe-{n}", t, 0.1, system={}), "hwg")
    assert await store.device_states() == []  # nothing written before a flush
    await writer.stop()
    rows = {r["device"]: r for r in await store.device_states()}
    assert len(rows) == 51
    ups = rows["ups-1"]
    assert ups["consecutive_failures"] == 3 and ups["last_error"] == "timeout" and ups["profile"] == "ups-mib"
    assert writer.batches == 1
    await store.close()


async def test_a_full_buffer_is_written_without_waiting(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "s.sqlite"))
    await store.migrate()
    writer = PollStateWriter(store, every=3600.0, max_pending=10)
    writer.start()
    t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for n in range(10):
        writer.submit(PollResult(f"gw-{n}", t, 0.1, system={}), "audiocodes-mp")
    for _ in range(200):
        if writer.batches:
            break
        await asyncio.sleep(0.01)
    assert writer.batches == 1
    assert len(await store.device_states()) == 10
    await writer.stop()
    await store.close()
