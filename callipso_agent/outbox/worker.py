"""The outbox worker: claims due jobs, runs their deliverer, records every attempt.

Concurrency is bounded overall and per target (one slow EasyVista does not hold back the SMS
gateway). Each attempt runs under a deadline shorter than the job's lease, so a live worker never
lets a lease expire under a job it still runs. Every attempt's result goes to the incident's
timeline when the job belongs to an incident.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import SQLAlchemyError

from callipso_agent.clock import Clock
from callipso_agent.outbox.errors import DeliveryError
from callipso_agent.outbox.jobs import Delivered, Deliverer, Job, JobState, TimelineSink
from callipso_agent.outbox.store import Outbox

log = structlog.get_logger()
T = TypeVar("T")

TEXTS = {
    "fr": {
        "done": "{label} : livré ({summary})",
        "retry": "{label} : échec de la tentative {attempt} ({error}) ; nouvel essai vers {when}",
        "dead": "{label} : abandon après {attempt} tentative(s) ({error})",
        "timeout": "pas de réponse en {seconds:.0f} s",
        "no_handler": "aucun connecteur pour « {kind} »",
        "bug": "erreur interne : {error}",
        "store": "base de l'agent indisponible ({error})",
    },
    "en": {
        "done": "{label}: delivered ({summary})",
        "retry": "{label}: attempt {attempt} failed ({error}); next try around {when}",
        "dead": "{label}: given up after {attempt} attempt(s) ({error})",
        "timeout": "no answer within {seconds:.0f} s",
        "no_handler": "no connector for '{kind}'",
        "bug": "internal error: {error}",
        "store": "the agent's store is unavailable ({error})",
    },
}


class OutboxWorker:
    def __init__(
        self,
        outbox: Outbox,
        deliverers: Mapping[str, Deliverer],
        *,
        clock: Clock,
        timeline: TimelineSink | None = None,
        language: str = "fr",
        timezone: str = "Europe/Paris",
        owner: str | None = None,
        concurrency: int = 8,
        per_target: int = 2,
        target_limits: Mapping[str, int] | None = None,
        lease_seconds: float = 180.0,
        poll_interval: float = 1.0,
        on_attempt: Callable[[str, str], None] | None = None,
    ) -> None:
        if concurrency < 1 or per_target < 1:
            raise ValueError("concurrency and per_target must be at least 1")
        if language not in TEXTS:
            raise ValueError(f"unknown language {language!r}")
        self.outbox = outbox
        self.deliverers = dict(deliverers)
        self.clock = clock
        self.timeline = timeline
        self.texts = TEXTS[language]
        self.tz = ZoneInfo(timezone)
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self.concurrency = concurrency
        self.per_target = per_target
        self.target_limits = dict(target_limits or {})
        self.lease_seconds = lease_seconds
        self.attempt_timeout = lease_seconds * 0.8
        self.poll_interval = poll_interval
        self.on_attempt = on_attempt  # (target, outcome: done | retry | dead), for metrics
        self._running: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        outbox.add_listener(self._wake.set)

    # ---- capacity -------------------------------------------------------------------------------
    def limit(self, target: str) -> int:
        return self.target_limits.get(target, self.per_target)

    def _room(self, target: str) -> int:
        return self.limit(target) - self._running.get(target, 0)

    @property
    def running(self) -> int:
        return sum(self._running.values())

    def wake(self) -> None:
        self._wake.set()

    # ---- driving --------------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Claim what is due now and run it to completion; returns the number of attempts made."""
        jobs = await self.outbox.claim(
            self.owner,
            limit=self.concurrency - self.running,
            lease_seconds=self.lease_seconds,
            room=self._room,
        )
        await asyncio.gather(*(self._run(job) for job in jobs))
        return len(jobs)

    async def drain(self, max_rounds: int = 1000) -> int:
        """``run_once`` until nothing is due (jobs waiting for a retry in the future stay waiting)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            if n == 0:
                return total
            total += n
        return total

    async def run(self, stop: asyncio.Event, *, grace: float = 10.0) -> None:
        """Deliver until ``stop`` is set; then let running attempts finish for ``grace`` seconds."""
        log.info("outbox_worker_started", owner=self.owner)
        claim_failing = False
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self.concurrency - len(self._tasks)
                if free > 0:
                    try:
                        jobs = await self.outbox.claim(
                            self.owner, limit=free, lease_seconds=self.lease_seconds, room=self._room
                        )
                    except Exception as err:
                        if not claim_failing:  # the first failure with its traceback, then one line at recovery
                            log.exception("outbox_claim_failed")
                        else:
                            log.debug("outbox_claim_failed", error=str(err))
                        claim_failing = True
                        jobs = []
                    else:
                        if claim_failing:
                            log.info("outbox_claim_recovered")
                        claim_failing = False
                    for job in jobs:
                        task = asyncio.create_task(self._run(job), name=f"outbox-{job.id}")
                        self._tasks.add(task)
                        task.add_done_callback(self._done)
                    if jobs:
                        continue
                stopper = asyncio.ensure_future(stop.wait())
                waker = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait(
                        {stopper, waker}, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    stopper.cancel()
                    waker.cancel()
        finally:
            if self._tasks:
                _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
                for task in pending:
                    task.cancel()  # their leases expire; the next worker retries them as uncertain
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
            log.info("outbox_worker_stopped", owner=self.owner)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    # ---- one attempt ----------------------------------------------------------------------------
    def _deliverer(self, kind: str) -> Deliverer | None:
        return self.deliverers.get(kind) or self.deliverers.get(kind.split(".", 1)[0])

    async def _run(self, job: Job) -> None:
        self._running[job.target] = self._running.get(job.target, 0) + 1
        lease_end = asyncio.get_running_loop().time() + self.lease_seconds * 0.95
        try:
            with structlog.contextvars.bound_contextvars(job=job.id, kind=job.kind, target=job.target):
                await self._attempt(job, lease_end)
        finally:
            self._running[job.target] -= 1
            if self._running[job.target] <= 0:
                del self._running[job.target]

    async def _write(self, what: str, lease_end: float, fn: Callable[[], Awaitable[T]]) -> T:
        """Record an attempt's outcome, retrying while the store refuses writes (a full disk, a database
        restarting) as long as the job's lease lasts: a notification that went out is then not sent again
        once the store is back. Past the lease the error is raised and the job is retried as uncertain."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                return await fn()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if loop.time() + delay >= lease_end:
                    log.error("outbox_record_failed", outcome=what, error=f"{type(err).__name__}: {err}")
                    raise
                log.warning("outbox_record_retry", outcome=what, error=f"{type(err).__name__}: {err}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _attempt(self, job: Job, lease_end: float) -> None:
        deliverer = self._deliverer(job.kind)
        t = self.texts
        try:
            if deliverer is None:
                raise DeliveryError(t["no_handler"].format(kind=job.kind), retryable=True)
            async with asyncio.timeout(self.attempt_timeout):
                delivered = await deliverer.deliver(job)
        except DeliveryError as err:
            await self._failed(
                job,
                err.message,
                lease_end,
                retryable=err.retryable,
                uncertain=err.uncertain,
                retry_after=err.retry_after,
            )
        except TimeoutError:
            await self._failed(
                job, t["timeout"].format(seconds=self.attempt_timeout), lease_end, retryable=True, uncertain=True
            )
        except asyncio.CancelledError:
            log.warning("outbox_attempt_cancelled")
            raise
        except SQLAlchemyError as err:
            # the deliverer read the store (the incident, its timeline) while it failed: a database restarting,
            # a full disk. A transient failure like a peer's, not a bug; uncertain, since the peer may have been
            # called before the read failed. Only the driver's message is logged (the SQL's parameters are not).
            cause = getattr(err, "orig", None) or err
            error = f"{type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}".rstrip(": ")
            log.warning("outbox_attempt_store_failed", error=error)
            await self._failed(job, t["store"].format(error=error), lease_end, retryable=True, uncertain=True)
        except Exception as err:
            log.exception("outbox_deliverer_bug")
            await self._failed(
                job, t["bug"].format(error=f"{type(err).__name__}: {err}"), lease_end, retryable=True,
                uncertain=True,
            )
        else:
            await self._succeeded(job, delivered, lease_end)

    def _count(self, job: Job, outcome: str) -> None:
        if self.on_attempt is not None:
            self.on_attempt(job.target, outcome)

    async def _succeeded(self, job: Job, delivered: Delivered, lease_end: float) -> None:
        done = await self._write("done", lease_end, lambda: self.outbox.complete(job, self.owner, delivered.result))
        if not done:
            log.warning("outbox_lease_lost", outcome="done")
        self._count(job, "done")
        log.info("outbox_delivered", attempt=job.attempts, summary=delivered.summary)
        await self._report(
            job,
            "done",
            self.texts["done"].format(label=_label(job), summary=delivered.summary),
            {"outcome": "done", "summary": delivered.summary, "result": dict(delivered.result)},
        )

    async def _failed(
        self,
        job: Job,
        error: str,
        lease_end: float,
        *,
        retryable: bool,
        uncertain: bool,
        retry_after: float | None = None,
    ) -> None:
        new = await self._write("failed", lease_end, lambda: self.outbox.fail(
            job, self.owner, error, retryable=retryable, uncertain=uncertain, retry_after=retry_after
        ))
        if new is None:
            log.warning("outbox_lease_lost", outcome="failed", error=error)
            return
        self._count(job, "dead" if new.state is JobState.DEAD else "retry")
        data: dict[str, Any] = {
            "outcome": new.state.value,
            "error": error,
            "retryable": retryable,
            "uncertain": uncertain,
        }
        if new.state is JobState.DEAD:
            log.error("outbox_job_dead", attempt=job.attempts, error=error)
            text = self.texts["dead"].format(label=_label(job), attempt=job.attempts, error=error)
        else:
            log.warning(
                "outbox_attempt_failed",
                attempt=job.attempts,
                error=error,
                next_attempt_at=new.next_attempt_at.isoformat(),
            )
            data["next_attempt_at"] = new.next_attempt_at.isoformat()
            text = self.texts["retry"].format(
                label=_label(job), attempt=job.attempts, error=error, when=self._local(new.next_attempt_at)
            )
        await self._report(job, new.state.value, text, data)

    def _local(self, when: datetime) -> str:
        return when.astimezone(self.tz).strftime("%H:%M:%S")

    async def _report(self, job: Job, _outcome: str, text: str, data: dict[str, Any]) -> None:
        if self.timeline is None or job.incident_id is None:
            return
        data = {"job": job.id, "kind": job.kind, "target": job.target, "attempt": job.attempts, **data}
        try:
            await self.timeline.add_timeline(job.incident_id, "delivery", text, data)
        except Exception:
            log.exception("timeline_write_failed", incident=job.incident_id)


def _label(job: Job) -> str:
    label = job.payload.get("label")
    return str(label) if label else f"{job.kind} → {job.target}"
