"""A trap's incident goes before new polls: polls wait while it is handled, never longer than max_wait."""

from __future__ import annotations

import asyncio

from callipso_agent.metrics_text import Families, render_text
from callipso_agent.urgent import UrgentWork


async def test_a_poll_waits_for_the_urgent_work_in_flight() -> None:
    urgent = UrgentWork(max_wait=5.0)
    order: list[str] = []
    release = asyncio.Event()

    async def incident(name: str) -> str:
        await release.wait()
        order.append(f"incident {name}")
        return name

    async def poll() -> None:
        await urgent.before_poll()
        order.append("poll")

    handle = urgent.wrap(incident)
    first = asyncio.create_task(handle("a"))
    second = asyncio.create_task(handle("b"))
    await asyncio.sleep(0)
    assert urgent.busy
    polling = asyncio.create_task(poll())
    await asyncio.sleep(0.05)
    assert order == []  # the poll is held
    release.set()
    assert await first == "a" and await second == "b"
    await polling
    assert order == ["incident a", "incident b", "poll"] and not urgent.busy
    assert (urgent.polls_held, urgent.polls_let_through) == (1, 0)

    await poll()  # nothing urgent: no wait, nothing counted
    assert urgent.polls_held == 1


async def test_a_storm_slows_polls_down_but_never_stops_them() -> None:
    urgent = UrgentWork(max_wait=0.1)
    never = asyncio.Event()
    storm = asyncio.create_task(urgent.wrap(never.wait)())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await urgent.before_poll()
    assert 0.09 <= loop.time() - t0 < 2.0
    assert (urgent.polls_held, urgent.polls_let_through) == (1, 1)
    storm.cancel()
    await asyncio.gather(storm, return_exceptions=True)
    assert not urgent.busy  # a cancelled or failed handler leaves no work counted


async def test_its_counters_are_exported() -> None:
    urgent = UrgentWork(max_wait=0.01)
    blocker = asyncio.Event()
    task = asyncio.create_task(urgent.wrap(blocker.wait)())
    await asyncio.sleep(0)
    await urgent.before_poll()
    blocker.set()
    await task
    families = Families()
    urgent.collect_into(families)
    text = render_text(families, openmetrics=False)
    assert "callipso_polls_held_total 1" in text and "callipso_polls_let_through_total 1" in text
