"""The /metrics collector: exposition rules, bounded labels, forgotten devices, self-metrics and incidents.

Exposition is parsed back with prometheus-client's parser and, when promtool is installed, linted by
``promtool check metrics``; the HTTP route is served by the agent's real HttpServer on an ephemeral port.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from callipso_agent.api.server import HttpServer
from callipso_agent.collect.cache import LatestCache
from callipso_agent.metrics import (
    MAX_LABEL_VALUE,
    CallipsoCollector,
    NotificationStats,
    PollObserver,
    build_registry,
    label_name,
    metrics_routes,
)
from callipso_agent.model import IncidentState, IncidentView, Measurement, MetricKind, PollResult, Severity
from tests.helpers.system import require_binary

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def inventory_of(*names: str) -> dict[str, dict[str, str]]:
    return {n: {"name": n, "site": n.split("-", 1)[1].upper(), "family": "ups-mib"} for n in names}


def ups_poll(device: str, *, charge: float, on_battery: bool = False, duration: float = 0.2) -> PollResult:
    ms = (
        Measurement(device, "ups_battery_charge_percent", charge, T0, unit="percent", help="Battery charge"),
        Measurement(device, "ups_input_voltage_volts", 231.0, T0, unit="volts", labels={"phase": "1"}),
        Measurement(
            device,
            "ups_input_voltage_volts",
            0.0 if on_battery else 229.0,
            T0,
            unit="volts",
            labels={"phase": "2"},
        ),
        Measurement(
            device,
            "ups_output_source",
            5.0 if on_battery else 3.0,
            T0,
            kind=MetricKind.STATE,
            state=Severity.CRITICAL if on_battery else Severity.OK,
            text="battery" if on_battery else "normal",
        ),
        Measurement(device, "ups_input_line_bads_total", 7.0, T0, kind=MetricKind.COUNTER),
        Measurement(
            device,
            "ups_alarm",
            1.0,
            T0,
            kind=MetricKind.INFO,
            labels={"alarm_id": "3"},
            text="1.3.6.1.2.1.33.1.6.3.2",
        ),
        Measurement(device, "ups_battery_temperature_celsius", None, T0, unit="celsius"),
    )
    return PollResult(
        device=device,
        started=T0,
        duration=duration,
        measurements=ms,
        system={"profile": "ups-mib", "model": "9PX", "sys_descr": "x" * 500},
    )


def failed_poll(device: str, kind: str = "timeout") -> PollResult:
    return PollResult(
        device=device, started=T0 + timedelta(minutes=1), duration=6.0, error=kind, error_text="no"
    )


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def find(text: str, name: str, **labels: str) -> list[float]:
    return [v for n, lab, v in samples(text) if n == name and all(lab.get(k) == x for k, x in labels.items())]


@pytest.fixture
def cache() -> LatestCache:
    c = LatestCache()
    c.update(ups_poll("ups-aubagne", charge=100))
    c.update(ups_poll("ups-istres", charge=62, on_battery=True))
    return c


def expose(collector: CallipsoCollector) -> str:
    return generate_latest(build_registry(collector, process=False)).decode()


def test_measurements_carry_site_device_family_and_their_own_labels(cache: LatestCache) -> None:
    inv = inventory_of("ups-aubagne", "ups-istres")
    text = expose(CallipsoCollector(cache, lambda: inv))
    assert find(
        text, "callipso_ups_battery_charge_percent", device="ups-istres", site="ISTRES", family="ups-mib"
    ) == [62.0]
    assert find(text, "callipso_ups_input_voltage_volts", device="ups-istres", phase="2") == [0.0]
    # counters keep their _total name and are typed as counters
    fams = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert fams["callipso_ups_input_line_bads"] == "counter"
    assert find(text, "callipso_ups_input_line_bads_total", device="ups-aubagne") == [7.0]
    # a measurement without a value is left out rather than exported as NaN
    assert find(text, "callipso_ups_battery_temperature_celsius") == []
    assert "# HELP callipso_ups_battery_charge_percent Battery charge" in text


def test_state_is_a_value_plus_one_series_naming_the_state(cache: LatestCache) -> None:
    text = expose(CallipsoCollector(cache, lambda: inventory_of("ups-aubagne", "ups-istres")))
    assert find(text, "callipso_ups_output_source", device="ups-istres") == [5.0]
    states = [
        (lab["state"], lab["severity"])
        for n, lab, _ in samples(text)
        if n == "callipso_ups_output_source_state" and lab["device"] == "ups-istres"
    ]
    assert states == [("battery", "critical")]
    assert find(
        text, "callipso_ups_output_source_state", device="ups-aubagne", state="normal", severity="ok"
    ) == [1.0]


def test_info_measurements_and_device_info_are_bounded(cache: LatestCache) -> None:
    text = expose(CallipsoCollector(cache, lambda: inventory_of("ups-aubagne", "ups-istres")))
    assert find(
        text, "callipso_ups_alarm_info", device="ups-istres", alarm_id="3", value="1.3.6.1.2.1.33.1.6.3.2"
    ) == [1.0]
    infos = [lab for n, lab, _ in samples(text) if n == "callipso_device_info"]
    assert {i["device"] for i in infos} == {"ups-aubagne", "ups-istres"}
    assert all("sys_descr" not in i for i in infos)  # only whitelisted identity keys
    assert infos[0]["model"] == "9PX"


def test_long_label_values_are_truncated_and_reserved_label_names_renamed() -> None:
    c = LatestCache()
    c.update(
        PollResult(
            "gw-x",
            T0,
            0.1,
            measurements=(
                Measurement(
                    "gw-x",
                    "interface_oper_up",
                    1.0,
                    T0,
                    kind=MetricKind.STATE,
                    text="up",
                    labels={"interface": "eth" + "0" * 300, "device": "inner", "__meta": "m", "9x": "y"},
                ),
            ),
        )
    )
    text = expose(CallipsoCollector(c, lambda: {"gw-x": {"site": "S", "family": "audiocodes-mp11x"}}))
    (lab,) = [lab for n, lab, _ in samples(text) if n == "callipso_interface_oper_up"]
    assert len(lab["interface"]) == MAX_LABEL_VALUE
    assert lab["device"] == "gw-x" and lab["exported_device"] == "inner"
    assert lab["meta"] == "m" and lab["_9x"] == "y"
    assert label_name("a-b.c") == "a_b_c"


def test_series_cap_per_metric_and_device_drops_and_counts() -> None:
    c = LatestCache()
    ms = tuple(
        Measurement(
            "sbc-1", "sbc_alarm", 1.0, T0, kind=MetricKind.INFO, labels={"seq": str(i)}, text=f"alarm {i}"
        )
        for i in range(30)
    )
    c.update(PollResult("sbc-1", T0, 0.1, measurements=ms))
    text = expose(
        CallipsoCollector(
            c, lambda: {"sbc-1": {"site": "HD13", "family": "audiocodes-sbc"}}, max_series_per_metric=10
        )
    )
    assert len(find(text, "callipso_sbc_alarm_info")) == 10
    assert find(text, "callipso_exporter_dropped_series") == [20.0]


def test_devices_leaving_the_inventory_disappear_at_the_next_scrape(cache: LatestCache) -> None:
    inv = inventory_of("ups-aubagne", "ups-istres")
    collector = CallipsoCollector(cache, lambda: inv)
    assert find(expose(collector), "callipso_device_up", device="ups-istres") == [1.0]
    # reload: the device is removed from the inventory and the cache forgets it
    del inv["ups-istres"]
    cache.forget(["ups-istres"])
    text = expose(collector)
    assert not [s for s in samples(text) if s[1].get("device") == "ups-istres"]
    assert find(text, "callipso_device_up", device="ups-aubagne") == [1.0]
    # a device still cached but already out of the inventory is not exported either
    cache.update(ups_poll("ups-ghost", charge=50))
    assert not [s for s in samples(expose(collector)) if s[1].get("device") == "ups-ghost"]


def test_self_metrics_up_errors_timestamps_and_duration_histogram(cache: LatestCache) -> None:
    inv = inventory_of("ups-aubagne", "ups-istres", "ups-never")
    observer = PollObserver(lambda d: inv.get(d, {}).get("family"), buckets=(0.5, 5.0))
    for r in (
        ups_poll("ups-aubagne", charge=1, duration=0.2),
        ups_poll("ups-istres", charge=1, duration=0.7),
    ):
        observer(r)
    f = failed_poll("ups-istres")
    cache.update(f)
    cache.update(failed_poll("ups-istres", "auth_failed"))
    observer(f)
    text = expose(CallipsoCollector(cache, lambda: inv, observer=observer))
    assert find(text, "callipso_device_up", device="ups-istres", site="ISTRES", family="ups-mib") == [0.0]
    assert find(text, "callipso_device_up", device="ups-aubagne") == [1.0]
    assert find(text, "callipso_device_up", device="ups-never") == []  # never polled: no claim
    assert find(text, "callipso_poll_errors_total", device="ups-istres", kind="timeout") == [1.0]
    assert find(text, "callipso_poll_errors_total", device="ups-istres", kind="auth_failed") == [1.0]
    assert find(text, "callipso_device_consecutive_failures", device="ups-istres") == [2.0]
    assert find(text, "callipso_last_successful_poll_timestamp_seconds", device="ups-istres") == [
        T0.timestamp()
    ]
    assert find(
        text, "callipso_poll_duration_seconds_bucket", family="ups-mib", outcome="success", le="0.5"
    ) == [1.0]
    assert find(text, "callipso_poll_duration_seconds_count", family="ups-mib", outcome="success") == [2.0]
    assert find(
        text, "callipso_poll_duration_seconds_bucket", family="ups-mib", outcome="failure", le="5.0"
    ) == [0.0]
    assert find(text, "callipso_inventory_devices", site="NEVER", family="ups-mib") == [1.0]


def incident(
    i: int,
    prio: str,
    site: str | None,
    state: IncidentState = IncidentState.OPEN,
    deadlines: dict[str, datetime] | None = None,
) -> IncidentView:
    return IncidentView(
        id=i,
        key=f"k:{i}",
        title="t",
        state=state,
        priority=prio,
        severity=Severity.CRITICAL,
        opened_at=T0,
        site=site,
        deadlines=deadlines or {},
    )


def test_incident_metrics_from_the_provider_and_notification_counters(cache: LatestCache) -> None:
    views = [
        incident(
            1, "P1", "HD13", deadlines={"restore": T0 + timedelta(hours=4), "ack": T0 + timedelta(minutes=15)}
        ),
        incident(2, "P1", "HD13", state=IncidentState.ACKNOWLEDGED),
        incident(3, "P3", None),
        incident(4, "P1", "HD13", state=IncidentState.RESOLVED, deadlines={"restore": T0}),
    ]
    notes = NotificationStats()
    notes.sent("easyvista")
    notes.failed("sms", "http_503")
    notes.failed("sms", "http_503")
    text = expose(
        CallipsoCollector(
            cache, lambda: {}, incidents=lambda: views, notifications=notes, queues=lambda: {"outbox": 3}
        )
    )
    assert find(text, "callipso_incidents_open", priority="P1", site="HD13") == [2.0]
    assert find(text, "callipso_incidents_open", priority="P3") == [1.0]
    assert find(text, "callipso_incident_deadline_timestamp_seconds", incident="1", deadline="restore") == [
        (T0 + timedelta(hours=4)).timestamp()
    ]
    assert find(text, "callipso_incident_deadline_timestamp_seconds", incident="4") == []  # resolved
    assert find(text, "callipso_notification_failures_total", channel="sms", reason="http_503") == [2.0]
    assert find(text, "callipso_notifications_sent_total", channel="easyvista") == [1.0]
    assert find(text, "callipso_queue_length", queue="outbox") == [3.0]
    assert find(text, "callipso_incident_provider_up") == [1.0]


def test_a_failing_incident_provider_does_not_break_the_scrape(cache: LatestCache) -> None:
    def broken() -> list[IncidentView]:
        raise RuntimeError("store down")

    text = expose(CallipsoCollector(cache, lambda: inventory_of("ups-aubagne"), incidents=broken))
    assert find(text, "callipso_incident_provider_up") == [0.0]
    assert find(text, "callipso_device_up", device="ups-aubagne") == [1.0]


def promtool_check(text: str) -> None:
    promtool = require_binary("promtool")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


@pytest.mark.system
async def test_metrics_route_on_the_agent_http_server_in_both_formats(cache: LatestCache) -> None:
    inv = inventory_of("ups-aubagne", "ups-istres")

    async def ready() -> tuple[bool, dict[str, object]]:
        return True, {}

    observer = PollObserver(lambda d: inv.get(d, {}).get("family"))
    observer(ups_poll("ups-istres", charge=3))
    collector = CallipsoCollector(
        cache,
        lambda: inv,
        observer=observer,
        incidents=lambda: [incident(1, "P2", "X")],
        notifications=NotificationStats(),
        queues=lambda: {"outbox": 0},
        agent_info={"version": "test", "name": "lab"},
    )
    server = HttpServer(cache, host="127.0.0.1", port=0, ready=ready, inventory=lambda: inv)
    server.add_routes(metrics_routes(build_registry(collector)))
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.bound_port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as rsp:
                assert rsp.status == 200
                assert rsp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await rsp.text()
            om_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            async with http.get(url, headers={"Accept": om_accept}) as rsp:
                assert rsp.headers["Content-Type"].startswith("application/openmetrics-text")
                om = await rsp.text()
    finally:
        await server.stop()
    assert find(text, "callipso_ups_battery_charge_percent", device="ups-aubagne") == [100.0]
    assert "process_resident_memory_bytes" in text
    om_names = {s.name for fam in om_parse(om) for s in fam.samples}  # strict OpenMetrics parser
    assert {"callipso_device_up", "callipso_ups_input_line_bads_total", "callipso_agent_info"} <= om_names
    promtool_check(text)
