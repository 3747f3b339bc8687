"""The durable outbox: idempotent enqueue, backoff, final errors, ordering, leases, per-target concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from callipso_agent.clock import ManualClock
from callipso_agent.outbox import (
    Backoff,
    Delivered,
    FinalDelivery,
    Job,
    JobState,
    Outbox,
    OutboxWorker,
    RetryableDelivery,
)
from callipso_agent.store import Store
from tests.helpers.postgres import PostgresServer as Postgres
from tests.outputs.helpers import open_store
from tests.outputs.memory import MemoryIncidents


class Recorder:
    """A deliverer that fails the first ``failures`` attempts of each job, then succeeds."""

    def __init__(
        self, failures: int = 0, error: Exception | None = None, only: set[int] | None = None
    ) -> None:
        self.failures = failures
        self.only = only  # payload numbers that fail (default: all)
        self.error = error or RetryableDelivery("gateway said 503")
        self.calls: list[tuple[int, int, bool]] = []  # job id, attempt, uncertain

    async def deliver(self, job: Job) -> Delivered:
        self.calls.append((job.id, job.attempts, job.uncertain))
        if job.attempts <= self.failures and (self.only is None or job.payload["n"] in self.only):
            raise self.error
        return Delivered(f"sent {job.payload['n']}", {"n": job.payload["n"]})


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same outbox code on SQLite and on PostgreSQL (asyncpg)."""
    if request.param == "sqlite":
        s = await open_store(tmp_path / "o.sqlite")
    else:
        s = Store(await request.getfixturevalue("postgres").new_database())
        await s.migrate()
    yield s
    await s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def no_jitter(base: float = 10.0) -> Backoff:
    return Backoff(base=base, factor=2.0, maximum=600.0, jitter=0.0)


async def test_enqueue_is_idempotent(store: Store, clock: ManualClock) -> None:
    ob = Outbox(store.engine, clock)
    first = await ob.enqueue("notify.sms", "sms", {"n": 1}, key="inc1:sms:+33600000001", incident_id=1)
    again = await ob.enqueue("notify.sms", "sms", {"n": 2}, key="inc1:sms:+33600000001", incident_id=1)
    other = await ob.enqueue("notify.sms", "sms", {"n": 3}, key="inc1:sms:+33600000002", incident_id=1)
    assert first.created and not again.created and other.created
    assert again.job.id == first.job.id and again.job.payload["n"] == 1
    assert await ob.backlog_size() == 2
    counts = await ob.backlog()
    assert counts["pending"] == 2 and counts["done"] == 0


async def test_success_is_recorded_on_the_timeline(store: Store, clock: ManualClock) -> None:
    incidents = MemoryIncidents(clock)
    inc = await incidents.open()
    ob = Outbox(store.engine, clock)
    rec = Recorder()
    worker = OutboxWorker(ob, {"notify": rec}, clock=clock, timeline=incidents)
    await ob.enqueue(
        "notify.email", "mail", {"n": 7, "label": "Courriel à noc@example.org"}, key="k7", incident_id=inc.id
    )
    assert await worker.drain() == 1
    (job,) = await ob.jobs()
    assert job.state is JobState.DONE and job.result == {"n": 7} and job.attempts == 1
    (entry,) = incidents.entries(inc.id, "delivery")
    assert entry.text == "Courriel à noc@example.org : livré (sent 7)"
    assert entry.data["outcome"] == "done" and entry.data["job"] == job.id
    assert await ob.backlog_size() == 0


async def test_retries_back_off_exponentially(store: Store, clock: ManualClock) -> None:
    incidents = MemoryIncidents(clock)
    inc = await incidents.open()
    ob = Outbox(store.engine, clock, backoff=no_jitter(10.0))
    rec = Recorder(failures=3)
    worker = OutboxWorker(ob, {"notify.sms": rec}, clock=clock, timeline=incidents, language="en")
    await ob.enqueue("notify.sms", "sms", {"n": 1}, key="k", incident_id=inc.id)
    delays = []
    for _ in range(3):
        assert await worker.drain() == 1
        (job,) = await ob.jobs()
        assert job.state is JobState.FAILED and job.last_error == "gateway said 503"
        delays.append((job.next_attempt_at - clock.now()).total_seconds())
        assert await worker.drain() == 0  # not due yet
        clock.advance(delays[-1])
    assert delays == [10.0, 20.0, 40.0]
    assert await worker.drain() == 1
    (job,) = await ob.jobs()
    assert job.state is JobState.DONE and job.attempts == 4
    outcomes = [e.data["outcome"] for e in incidents.entries(inc.id, "delivery")]
    assert outcomes == ["failed", "failed", "failed", "done"]
    assert "attempt 2 failed (gateway said 503)" in incidents.entries(inc.id, "delivery")[1].text


def test_jitter_stays_within_bounds() -> None:
    import random

    b = Backoff(base=10, factor=2, maximum=100, jitter=0.5, rng=random.Random(4))
    values = [b.delay(3) for _ in range(200)]
    assert all(20.0 <= v <= 40.0 for v in values)
    assert len({round(v, 6) for v in values}) > 100  # spread, not one value
    assert b.delay(50) <= 100 and b.delay(1, retry_after=70) == 70


async def test_final_error_goes_dead_and_can_be_requeued(store: Store, clock: ManualClock) -> None:
    incidents = MemoryIncidents(clock)
    inc = await incidents.open()
    ob = Outbox(store.engine, clock)
    rec = Recorder(failures=1, error=FinalDelivery("recipient unknown (406)"))
    worker = OutboxWorker(ob, {"itsm.create": rec}, clock=clock, timeline=incidents)
    await ob.enqueue("itsm.create", "easyvista", {"n": 1}, key="k", incident_id=inc.id)
    assert await worker.drain() == 1
    (job,) = await ob.jobs()
    assert job.state is JobState.DEAD and job.attempts == 1
    assert await ob.backlog_size() == 0 and (await ob.backlog())["dead"] == 1
    (entry,) = incidents.entries(inc.id, "delivery")
    assert entry.data["outcome"] == "dead" and "abandon après 1 tentative(s)" in entry.text
    rec.failures = 0  # the operator fixed the cause
    assert await ob.requeue(job.id)
    assert await worker.drain() == 1
    assert (await ob.get(job.id)).state is JobState.DONE  # type: ignore[union-attr]


async def test_too_many_attempts_goes_dead(store: Store, clock: ManualClock) -> None:
    ob = Outbox(store.engine, clock, max_attempts=2, backoff=no_jitter(1.0))
    worker = OutboxWorker(ob, {"notify": Recorder(failures=99)}, clock=clock)
    await ob.enqueue("notify.sms", "sms", {"n": 1}, key="k")
    await worker.drain()
    clock.advance(5)
    await worker.drain()
    (job,) = await ob.jobs()
    assert job.state is JobState.DEAD and job.attempts == 2


async def test_quiet_hours_style_deferral(store: Store, clock: ManualClock) -> None:
    ob = Outbox(store.engine, clock)
    rec = Recorder()
    worker = OutboxWorker(ob, {"notify": rec}, clock=clock)
    await ob.enqueue("notify.email", "mail", {"n": 1}, key="k", not_before=clock.now() + timedelta(hours=2))
    assert await worker.drain() == 0
    assert await ob.next_due() == clock.now() + timedelta(hours=2)
    clock.advance(7200)
    assert await worker.drain() == 1


async def test_jobs_sharing_an_ordering_key_run_in_order(store: Store, clock: ManualClock) -> None:
    ob = Outbox(store.engine, clock, backoff=no_jitter(30.0))
    rec = Recorder(failures=1, only={1})
    worker = OutboxWorker(ob, {"itsm": rec}, clock=clock)
    a = (await ob.enqueue("itsm.create", "ev", {"n": 1}, key="create", ordering_key="inc:1")).job
    b = (await ob.enqueue("itsm.comment", "ev", {"n": 2}, key="comment", ordering_key="inc:1")).job
    c = (await ob.enqueue("itsm.create", "ev", {"n": 3}, key="other", ordering_key="inc:2")).job
    await worker.drain()
    # a failed once; b must wait for it even though b is due; c is independent
    assert [call[0] for call in rec.calls] == [a.id, c.id]
    clock.advance(30)
    await worker.drain()
    assert [call[0] for call in rec.calls] == [a.id, c.id, a.id, b.id]
    assert {j.state for j in await ob.jobs()} == {JobState.DONE}


async def test_expired_lease_is_reclaimed_as_uncertain(store: Store, clock: ManualClock) -> None:
    ob = Outbox(store.engine, clock)
    await ob.enqueue("itsm.create", "ev", {"n": 1}, key="k")
    (mine,) = await ob.claim("dead-worker", limit=5, lease_seconds=60)
    assert mine.state is JobState.IN_FLIGHT and mine.attempts == 1 and not mine.uncertain
    assert await ob.claim("other", limit=5, lease_seconds=60) == []  # leased
    clock.advance(61)
    (again,) = await ob.claim("other", limit=5, lease_seconds=60)
    assert again.uncertain and again.attempts == 2 and again.lease_owner == "other"
    assert not await ob.complete(mine, "dead-worker", {})  # the old owner lost it
    assert await ob.complete(again, "other", {"ref": "X"})
    assert (await ob.get(again.id)).state is JobState.DONE  # type: ignore[union-attr]


async def test_claim_respects_room_per_target(store: Store, clock: ManualClock) -> None:
    ob = Outbox(store.engine, clock)
    for i in range(3):
        await ob.enqueue("notify.sms", "sms", {"n": i}, key=f"s{i}")
    await ob.enqueue("notify.email", "mail", {"n": 9}, key="m")
    taken = await ob.claim("w", limit=10, lease_seconds=60, room=lambda target: 1)
    assert sorted(j.target for j in taken) == ["mail", "sms"]


class Gate:
    """A deliverer that holds every attempt until released, counting simultaneous attempts per target."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.done = 0

    async def deliver(self, job: Job) -> Delivered:
        self.active[job.target] = self.active.get(job.target, 0) + 1
        self.peak[job.target] = max(self.peak.get(job.target, 0), self.active[job.target])
        await self.release.wait()
        self.active[job.target] -= 1
        self.done += 1
        return Delivered("ok")


async def test_running_worker_limits_concurrency_per_target(store: Store) -> None:
    from callipso_agent.clock import SystemClock

    ob = Outbox(store.engine, SystemClock())
    gate = Gate()
    worker = OutboxWorker(
        ob,
        {"notify": gate},
        clock=SystemClock(),
        concurrency=10,
        per_target=2,
        target_limits={"teams": 1},
        poll_interval=0.05,
    )
    for i in range(5):
        await ob.enqueue("notify.sms", "sms", {"n": i}, key=f"s{i}")
        await ob.enqueue("notify.teams", "teams", {"n": i}, key=f"t{i}")
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(10):
        while sum(gate.active.values()) < 3:
            await asyncio.sleep(0.01)
        gate.release.set()
        while gate.done < 10:
            await asyncio.sleep(0.01)
    stop.set()
    await runner
    assert gate.peak == {"sms": 2, "teams": 1}
    assert await ob.backlog_size() == 0


async def test_attempt_timeout_is_retryable_and_uncertain(store: Store, clock: ManualClock) -> None:
    class Hang:
        async def deliver(self, job: Job) -> Delivered:
            await asyncio.Event().wait()
            raise AssertionError

    ob = Outbox(store.engine, clock)
    worker = OutboxWorker(ob, {"itsm": Hang()}, clock=clock, lease_seconds=0.25)
    await ob.enqueue("itsm.create", "ev", {"n": 1}, key="k")
    await worker.drain()
    (job,) = await ob.jobs()
    assert job.state is JobState.FAILED and job.uncertain and "0 s" in (job.last_error or "")


async def test_two_workers_never_deliver_a_job_twice(store: Store, tmp_path: Path) -> None:
    """Two agents (separate engines) draining one outbox: every job delivered exactly once."""
    from callipso_agent.clock import SystemClock

    other = Store(store.url)
    try:
        delivered: list[int] = []

        class Count:
            async def deliver(self, job: Job) -> Delivered:
                delivered.append(job.id)
                await asyncio.sleep(0)
                return Delivered("ok")

        clock = SystemClock()
        first, second = Outbox(store.engine, clock), Outbox(other.engine, clock)
        for i in range(40):
            await first.enqueue("notify.sms", f"t{i % 4}", {"n": i}, key=f"k{i}")
        workers = [
            OutboxWorker(ob, {"notify": Count()}, clock=clock, concurrency=4) for ob in (first, second)
        ]
        await asyncio.gather(*(w.drain() for w in workers))
        assert sorted(delivered) == sorted({j.id for j in await first.jobs()})
        assert len(delivered) == 40
        assert (await second.backlog())["done"] == 40
    finally:
        await other.close()


async def test_a_store_error_inside_a_deliverer_is_a_retryable_failure(
    store: Store, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the kill loop on PostgreSQL: a deliverer reading the incident while the database went away
    raised the driver's error, which the worker recorded as an internal error ("bug", with a traceback). It is
    a transient failure: retried, marked uncertain (the peer may have been called before the read), and its
    text names the store, not the SQL's parameters."""
    from sqlalchemy.exc import InternalError

    incidents = MemoryIncidents(clock)
    inc = await incidents.open()
    ob = Outbox(store.engine, clock, backoff=no_jitter(10.0))
    driver = Exception("cannot switch to state 11; another operation (2) is in progress\nmore detail")
    rec = Recorder(failures=1, error=InternalError("SELECT ... WHERE incident_id = $1", ("secret-ish",), driver))
    worker = OutboxWorker(ob, {"itsm.update": rec}, clock=clock, timeline=incidents, language="en")
    await ob.enqueue("itsm.update", "easyvista", {"n": 1}, key="k", incident_id=inc.id)
    assert await worker.drain() == 1
    (job,) = await ob.jobs()
    assert job.state is JobState.FAILED and job.uncertain, job
    assert job.last_error == "the agent's store is unavailable (Exception: cannot switch to state 11; another " \
                             "operation (2) is in progress)", job.last_error
    assert "secret-ish" not in (job.last_error or "")
    clock.advance(10)
    assert await worker.drain() == 1
    (job,) = await ob.jobs()
    assert job.state is JobState.DONE and job.attempts == 2
    assert rec.calls[-1][2] is True  # the retry knows the first attempt's outcome is unknown
    assert [e.data["outcome"] for e in incidents.entries(inc.id, "delivery")] == ["failed", "done"]
