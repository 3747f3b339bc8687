"""The /metrics snapshot of open incidents: read again once for a burst of changes, not once per change."""

from __future__ import annotations

import asyncio

from callipso_agent.incidents.adapters import OpenIncidents
from callipso_agent.store import Store
from tests.incidents.harness import Scenario


async def test_a_burst_of_changes_reads_the_open_incidents_once(store: Store) -> None:
    sc = await Scenario(store).start()
    snapshot = OpenIncidents(sc.engine, settle=0.2)
    sc.engine.subscribe(lambda _notice: snapshot.stale())
    await snapshot.refresh()
    assert snapshot() == [] and snapshot.reads == 1

    for device in ("ups-aubagne", "ups-aix"):
        await sc.ups(device, True, 90)
    opened = [n for n in sc.notices if n.kind == "opened"]
    assert len(opened) == 2
    assert snapshot() == []  # not read yet: the burst is still settling

    await asyncio.sleep(0.5)
    assert sorted(v.key for v in snapshot()) == ["ups_on_battery:ups-aix", "ups_on_battery:ups-aubagne"]
    assert snapshot.reads == 2  # one read for the whole burst

    await sc.ups("ups-aubagne", False, 600)  # cleared, then resolved after the hold time
    await asyncio.sleep(0.5)
    keys = {v.key for v in snapshot()}  # ups-aix, silent for 10 min, is now unreachable too
    assert "ups_on_battery:ups-aubagne" not in keys and "ups_on_battery:ups-aix" in keys
    assert snapshot.reads == 3
    await snapshot.close()


async def test_close_cancels_a_pending_read(store: Store) -> None:
    sc = await Scenario(store).start()
    snapshot = OpenIncidents(sc.engine, settle=30)
    snapshot.stale()
    await snapshot.close()
    assert snapshot.reads == 0
