"""Regression tests for what the dependencies-down and kill-loop suites found between the incident store and
the outbox: an incident change committed while its outbox write failed (store refusing writes, agent killed
in between) must still get its ticket and notifications, once; and a delivery that went out while the
store refused to record it must not go out twice once the store is back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from callipso_agent.clock import ManualClock
from callipso_agent.outbox import Delivered, Job, JobState, Outbox, OutboxWorker
from tests.incidents.harness import Scenario
from tests.outputs.helpers import open_store, wire_outputs

DISK_FULL = OperationalError("INSERT INTO outbox ...", {}, Exception("database or disk is full"))


def _conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "outputs").mkdir(parents=True)
    (conf / "ev.secret").write_text("x\n", encoding="utf-8")
    # SYNTHETIC peers: nothing listens there; these tests only look at what is recorded in the outbox
    (conf / "outputs" / "easyvista.yaml").write_text(
        "easyvista:\n  url: http://127.0.0.1:9\n  auth: {username: rest, password: {file: ev.secret}}\n"
        "  mapping: {catalog_code: INC_TELEPHONIE}\n", encoding="utf-8")
    (conf / "outputs" / "notifications.yaml").write_text(
        "notifications:\n  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
        "  routes:\n    - {name: all, notify: [hook]}\n", encoding="utf-8")
    return conf


async def _jobs(outbox: Outbox) -> list[tuple[str, str]]:
    return sorted((j.kind, j.idempotency_key) for j in await outbox.jobs())


async def test_an_outbox_write_refused_after_the_incident_commit_is_replayed_once(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc = await Scenario(store).start()
        outputs = wire_outputs(sc, store, _conf(tmp_path))
        real_enqueue = outputs.outbox.enqueue
        refused = 0

        async def full_disk_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal refused
            if refused == 0:
                refused += 1
                raise DISK_FULL
            return await real_enqueue(*args, **kwargs)

        outputs.outbox.enqueue = full_disk_once  # type: ignore[method-assign]
        await sc.ups("ups-aubagne", True, 90)  # the incident opens; its first outbox write fails
        (view,) = await sc.engine.open_incidents()
        assert refused == 1
        await sc.step(10)  # the next tick hands the opening over again
        jobs = await _jobs(outputs.outbox)
        assert [k for k, _ in jobs] == ["itsm.create", "notify.webhook"], jobs
        for _ in range(2):  # replays (restarts) add nothing
            await sc.engine.replay_notices()
        assert await _jobs(outputs.outbox) == jobs
        planned = [e for e in await sc.engine.timeline(view.id) if e.kind == "notification"]
        assert len(planned) == 1, planned
    finally:
        await store.close()


async def test_an_incident_committed_although_the_store_reported_a_failure_is_handed_over(tmp_path: Path) -> None:
    """SQLite on a full disk (or PostgreSQL losing the connection at COMMIT) may report a failed commit
    whose rows are there all the same: the retried signal then finds the incident instead of creating it,
    and its opening must still reach the outputs."""
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc = await Scenario(store).start()
        outputs = wire_outputs(sc, store, _conf(tmp_path))
        repo = sc.engine.repo
        real_create = repo.create
        ambiguous = 0

        async def committed_then_failed(*args: Any, **kwargs: Any) -> Any:
            nonlocal ambiguous
            written = await real_create(*args, **kwargs)
            if ambiguous == 0:
                ambiguous += 1
                raise DISK_FULL
            return written

        repo.create = committed_then_failed  # type: ignore[method-assign]
        await sc.ups("ups-aubagne", True, 90)
        await sc.step(10)
        await sc.step(10)
        assert ambiguous == 1
        assert len(await sc.engine.open_incidents()) == 1
        kinds = [k for k, _ in await _jobs(outputs.outbox)]
        assert kinds == ["itsm.create", "notify.webhook"], kinds
    finally:
        await store.close()


async def test_a_restart_hands_over_what_a_killed_agent_committed_but_never_enqueued(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        clock = ManualClock()
        killed = await Scenario(store, clock).start()  # no outputs subscribed: killed before the hand-over
        await killed.ups("ups-aubagne", True, 90)
        (view,) = await killed.engine.open_incidents()

        restarted = await Scenario(store, clock).start()
        outputs = wire_outputs(restarted, store, _conf(tmp_path))
        assert await restarted.engine.replay_notices() == 1
        opened = await _jobs(outputs.outbox)
        assert [k for k, _ in opened] == ["itsm.create", "notify.webhook"]
        # the create job is done (a ticket exists), then the incident is resolved by a run that is killed
        # before recording its resolution jobs: the next start closes the ticket and notifies, once
        create = next(j for j in await outputs.outbox.jobs() if j.kind == "itsm.create")
        claimed = await outputs.outbox.claim("w", limit=10, lease_seconds=60)
        assert create.id in {j.id for j in claimed}
        assert await outputs.outbox.complete(next(j for j in claimed if j.id == create.id), "w", {"ref": "I1"})
        await killed.engine.resolve(view.id, "noc", "réparé")
        for _ in range(2):
            await restarted.engine.replay_notices()
        kinds = sorted(k for k, _ in await _jobs(outputs.outbox))
        assert kinds == ["itsm.create", "itsm.resolve", "notify.webhook", "notify.webhook"], kinds
    finally:
        await store.close()


class _Once:
    """A deliverer that counts its deliveries (each one is a message a person receives)."""

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, job: Job) -> Delivered:
        self.calls += 1
        return Delivered("sent")


async def test_a_delivery_is_recorded_once_the_store_takes_writes_again(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        clock = ManualClock()
        outbox = Outbox(store.engine, clock)
        await outbox.enqueue("notify.sms", "sms", {"n": 1}, key="k1")
        real_complete = outbox.complete
        refusals = 0

        async def full_disk_twice(*args: Any, **kwargs: Any) -> Any:
            nonlocal refusals
            if refusals < 2:
                refusals += 1
                raise DISK_FULL
            return await real_complete(*args, **kwargs)

        outbox.complete = full_disk_twice  # type: ignore[method-assign]
        deliverer = _Once()
        worker = OutboxWorker(outbox, {"notify": deliverer}, clock=clock, lease_seconds=60)
        await asyncio.wait_for(worker.run_once(), timeout=30)
        (job,) = await outbox.jobs()
        assert refusals == 2 and deliverer.calls == 1
        assert job.state is JobState.DONE
    finally:
        await store.close()
