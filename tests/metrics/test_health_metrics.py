"""Self-metrics of the agent's dependencies: the outbox backlog per target and the store's write health,
read from a real SQLite outbox, exposed through the collector and linted by ``promtool check metrics``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from callipso_agent.clock import ManualClock
from callipso_agent.collect.cache import LatestCache
from callipso_agent.health import DeliveryCounters, OutboxGauges, StoreHealth
from callipso_agent.metrics import CallipsoCollector, NotificationStats
from callipso_agent.outbox import Outbox
from tests.metrics.test_collector import expose, find, promtool_check
from tests.outputs.helpers import open_store


async def test_outbox_backlog_per_target_and_store_health(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "agent.sqlite")
    try:
        clock = ManualClock()
        outbox = Outbox(store.engine, clock)
        await outbox.enqueue("itsm.create", "easyvista", {}, key="a")
        await outbox.enqueue("itsm.create", "easyvista", {}, key="b")
        # a notification deferred to the end of quiet hours waits, but is not late
        await outbox.enqueue("notify.sms", "sms-astreinte", {}, key="c", not_before=clock.now() + timedelta(hours=8))
        await outbox.enqueue("notify.email", "mail-noc", {}, key="d")
        (job,) = [j for j in await outbox.claim("w", limit=10, lease_seconds=60) if j.target == "mail-noc"][:1]
        assert await outbox.complete(job, "w")
        clock.advance(600)
        gauges = OutboxGauges(outbox, now=lambda: clock.now().timestamp())
        await gauges.refresh()
        health = StoreHealth(now=lambda: clock.now().timestamp())
        health.failed("device_state", OperationalError("UPDATE", {}, Exception("database or disk is full")))
        engine_failing = True
        health.watch("incidents", lambda: engine_failing)
        stats = NotificationStats()
        deliveries = DeliveryCounters(stats)
        deliveries("easyvista", "retry")
        deliveries("mail-noc", "done")

        collector = CallipsoCollector(LatestCache(), dict, notifications=stats, sources=[health, gauges, deliveries])
        text = expose(collector)
        assert find(text, "callipso_outbox_pending", target="easyvista") == [2.0]
        assert find(text, "callipso_outbox_pending", target="sms-astreinte") == [1.0]
        assert find(text, "callipso_outbox_pending", target="mail-noc") == [0.0]
        assert find(text, "callipso_outbox_oldest_pending_age_seconds", target="easyvista") == [600.0]
        assert find(text, "callipso_outbox_oldest_pending_age_seconds", target="sms-astreinte") == [0.0]
        assert find(text, "callipso_outbox_jobs", state="done") == [1.0]
        assert find(text, "callipso_outbox_up") == [1.0]
        assert find(text, "callipso_store_writable") == [0.0]
        assert find(text, "callipso_store_write_errors_total", operation="device_state") == [1.0]
        assert find(text, "callipso_outbox_attempts_total", target="easyvista", outcome="retry") == [1.0]
        assert find(text, "callipso_notification_failures_total", channel="easyvista", reason="retry") == [1.0]
        assert find(text, "callipso_notifications_sent_total", channel="mail-noc") == [1.0]
        assert set(health.failing_now()) == {"device_state", "incidents"}

        health.ok("device_state")
        engine_failing = False
        await store.close()  # the store goes away (its file is gone): the scrape says so instead of failing
        (tmp_path / "agent.sqlite").rename(tmp_path / "moved.sqlite")
        await gauges.refresh()
        text = expose(collector)
        assert find(text, "callipso_store_writable") == [1.0]
        assert find(text, "callipso_outbox_up") == [0.0]
        promtool_check(text)
    finally:
        await store.close()


@pytest.mark.parametrize("base,maximum", [(0, 10), (10, 5)])
def test_outbox_retry_settings_are_checked(base: float, maximum: float) -> None:
    from pydantic import ValidationError

    from callipso_agent.config.models import AgentSettings

    with pytest.raises(ValidationError):
        AgentSettings.model_validate({"outbox": {"retry_base": base, "retry_max": maximum}})
