"""Regression test for what the kill loop on a filling disk found: the store refused the outbox write of the
third of four notification channels of an opening (disk full between two channels). The replay of the
opening was then skipped as a whole because the incident's timeline already held a routing decision (the
first channels'), so the remaining channels never got the opening, nor, later, the resolution.

Each timeline entry of a routing decision now carries the decision's channel list: a replayed change plans
the channels of that list still missing (outbox keys skip those already there), and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from callipso_agent.outbox import Outbox
from tests.incidents.harness import Scenario
from tests.outputs.helpers import open_store, wire_outputs

DISK_FULL = OperationalError("INSERT INTO outbox ...", {}, Exception("database or disk is full"))
CHANNELS = ("hook-a", "hook-b", "hook-c")


def _conf(tmp_path: Path, channels: tuple[str, ...] = CHANNELS) -> Path:
    conf = tmp_path / "conf"
    (conf / "outputs").mkdir(parents=True, exist_ok=True)
    # SYNTHETIC: nothing listens there; only what is recorded in the outbox is looked at
    hooks = "".join(f"    {c}: {{type: webhook, url: 'http://127.0.0.1:9/{c}'}}\n" for c in channels)
    (conf / "outputs" / "notifications.yaml").write_text(
        f"notifications:\n  channels:\n{hooks}  routes:\n    - {{name: all, notify: [{', '.join(channels)}]}}\n",
        encoding="utf-8")
    return conf


async def _targets(outbox: Outbox) -> list[str]:
    return sorted(j.target for j in await outbox.jobs())


async def test_a_routing_cut_between_two_channels_is_finished_by_the_replay(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc = await Scenario(store).start()
        outputs = wire_outputs(sc, store, _conf(tmp_path))
        real_enqueue = outputs.outbox.enqueue
        refused: list[str] = []

        async def disk_full_at_hook_b(kind: str, target: str, *args: Any, **kwargs: Any) -> Any:
            if target == "hook-b" and not refused:
                refused.append(target)
                raise DISK_FULL
            return await real_enqueue(kind, target, *args, **kwargs)

        outputs.outbox.enqueue = disk_full_at_hook_b  # type: ignore[method-assign]
        # the incident opens; routing stops at hook-b; the engine's next tick replays the opening (as a restart
        # would), which must finish the decision
        await sc.ups("ups-aubagne", True, 90)
        (view,) = await sc.engine.open_incidents()
        assert refused == ["hook-b"]
        assert await _targets(outputs.outbox) == list(CHANNELS)
        for _ in range(2):  # further replays add nothing
            await sc.engine.replay_notices()
        assert await _targets(outputs.outbox) == list(CHANNELS)
        planned = [e.data["channel"] for e in await sc.engine.timeline(view.id) if e.kind == "notification"]
        assert sorted(planned) == list(CHANNELS), planned
    finally:
        await store.close()


async def test_a_channel_added_later_does_not_get_old_openings(tmp_path: Path) -> None:
    """The replay finishes the recorded decision; it does not route again with today's configuration."""
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc = await Scenario(store).start()
        outputs = wire_outputs(sc, store, _conf(tmp_path, CHANNELS[:2]))
        await sc.ups("ups-aubagne", True, 90)
        assert await _targets(outputs.outbox) == list(CHANNELS[:2])

        restarted = await Scenario(store, sc.clock).start()
        outputs = wire_outputs(restarted, store, _conf(tmp_path, CHANNELS))  # hook-c added to the route meanwhile
        await restarted.engine.replay_notices()
        assert await _targets(outputs.outbox) == list(CHANNELS[:2])
    finally:
        await store.close()
