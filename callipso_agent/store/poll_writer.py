"""Device-state writes in batches: the polls of about a second share one transaction.

Each poll used to commit its own ``device_state`` row, one WAL sync per poll (the store syncs fully, for
incidents); with thousands of devices that was the agent's largest cost after SNMP decoding. The writer keeps
the results in order and writes them every ``every`` seconds, or at once when ``max_pending`` wait, so the
``consecutive_failures`` increments stay exact. Incidents are not written here: they keep their own commits.
A crash loses at most the last ``every`` seconds of device states, which the next poll rewrites.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from callipso_agent.model import PollResult
from callipso_agent.store.db import Store

log = structlog.get_logger()


class PollStateWriter:
    def __init__(self, store: Store, *, every: float = 1.0, max_pending: int = 1000,
                 on_outcome: Callable[[Exception | None], None] | None = None) -> None:
        self.store = store
        #: told of each batch's outcome (None when written): the store's health on /metrics and /readyz
        self.on_outcome = on_outcome
        self.every = every
        self.max_pending = max_pending
        self._pending: list[tuple[PollResult, str | None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def submit(self, result: PollResult, profile: str | None) -> None:
        self._pending.append((result, profile))
        if len(self._pending) >= self.max_pending:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="poll-state-writer")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self.store.save_polls(batch)
            self.batches += 1
        except asyncio.CancelledError:
            self._pending[:0] = batch
            raise
        except Exception as err:  # a full disk, a restarting database: polling goes on, the next poll rewrites
            log.exception("store_write_failed", devices=len({r.device for r, _ in batch}), polls=len(batch))
            if self.on_outcome is not None:
                self.on_outcome(err)
        else:
            if self.on_outcome is not None:
                self.on_outcome(None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
