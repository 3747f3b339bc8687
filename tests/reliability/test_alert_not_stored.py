"""Regression test for what the kill loop on PostgreSQL found: an Alertmanager alert received while the store
refused writes (PostgreSQL stopped, disk full) was answered 200 although its incident existed only in the
engine's memory, waiting for the store. Alertmanager does not send an acknowledged alert again, so a stop
of the agent before the store came back lost the incident for good (kill loop: ``k003`` missing).

Now the receiver answers 503 while the alert's incident change is not written, a repeated alert included,
and Alertmanager's next attempt is the one acknowledged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from callipso_agent.api.alertmanager import AlertmanagerReceiver, WebhookPayload
from callipso_agent.errors import NotStored
from callipso_agent.store import Store
from tests.incidents.harness import Scenario
from tests.outputs.helpers import open_store

KEY = "daily_check_failed:ups-hd13{check=backup}"


def _payload(status: str = "firing") -> WebhookPayload:
    # SYNTHETIC: a version-4 webhook body with one alert of the shipped daily_check_failed event rule
    return WebhookPayload.model_validate({
        "version": "4", "groupKey": "{}:{alertname=\"daily_check_failed\"}", "status": status,
        "alerts": [{"status": status, "fingerprint": "0b5e7c", "startsAt": "2026-01-06T08:58:00Z",
                    "labels": {"alertname": "daily_check_failed", "device": "ups-hd13", "check": "backup",
                               "severity": "warning"}}]})


@dataclass
class Refusal:
    """The incident repository's creations failing as on a full disk, while ``on``."""

    on: bool = True
    attempts: int = 0


def _refuse_writes(sc: Scenario) -> Refusal:
    refusal = Refusal()
    real = sc.engine.repo.create

    async def create(*args: Any, **kwargs: Any) -> Any:
        if refusal.on:
            refusal.attempts += 1
            raise OperationalError("INSERT INTO incidents ...", {}, Exception("database or disk is full"))
        return await real(*args, **kwargs)

    sc.engine.repo.create = create  # type: ignore[method-assign]
    return refusal


async def _scenario(store: Store) -> tuple[Scenario, AlertmanagerReceiver]:
    sc = await Scenario(store).start()
    return sc, AlertmanagerReceiver(functools.partial(sc.pipeline.on_event, durable=True), sc.clock)


async def test_an_alert_not_written_is_refused_until_it_is(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc, receiver = await _scenario(store)
        refusal = _refuse_writes(sc)
        with pytest.raises(NotStored) as err:
            await receiver.receive(_payload())
        assert err.value.keys == [KEY] and refusal.attempts == 1, (err.value.keys, refusal)
        assert sc.engine.deferred([KEY]) == {KEY}  # kept in memory for the engine's retry
        # Alertmanager sends it again: the rule engine has nothing new to say, the change still waits
        with pytest.raises(NotStored):
            await receiver.receive(_payload())
        assert await sc.rows(KEY) == []

        refusal.on = False
        await sc.step(10)  # the engine's tick writes the waiting change
        assert len(await sc.rows(KEY)) == 1
        assert await receiver.receive(_payload()) == (1, 0)  # now acknowledged
        assert await receiver.receive(_payload()) == (0, 1)  # and a further copy is a duplicate
        assert len(await sc.rows(KEY)) == 1
    finally:
        await store.close()


async def test_a_stop_before_the_store_is_back_loses_nothing(tmp_path: Path) -> None:
    """The agent stopped while the alert waited in memory: Alertmanager, answered 503, sends it to the next
    agent, which writes it once."""
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc, receiver = await _scenario(store)
        _refuse_writes(sc)
        with pytest.raises(NotStored):
            await receiver.receive(_payload())
        del sc, receiver  # the agent is killed: its memory is gone

        sc, receiver = await _scenario(store)
        assert await receiver.receive(_payload()) == (1, 0)
        assert [r.state for r in await sc.rows(KEY)] == ["open"]
    finally:
        await store.close()


async def test_alerts_written_at_once_are_acknowledged_at_once(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        sc, receiver = await _scenario(store)
        assert await receiver.receive(_payload()) == (1, 0)
        assert len(await sc.rows(KEY)) == 1
        assert await receiver.receive(_payload("resolved")) == (1, 0)  # the clear is written too
        (row,) = await sc.rows(KEY)
        assert row.cleared_at is not None
    finally:
        await store.close()
