"""The /metrics text written from per-device templates is the exposition of the reference renderer.

The reference (tests/metrics/reference_metrics.py) is the collector as it was before templates: families
rebuilt from the whole cache at each scrape and rendered by prometheus-client. Both read the same cache:
real poll results of every fixture recording (served by udpsim, polled by the agent's SNMP fetcher), plus
SYNTHETIC devices for the edge cases (non-finite, None, large and integer values, labels needing escapes,
a metric whose kind differs between devices, the series cap, devices failing or never polled). The same
collector renders scrape after scrape while the estate changes (new values, series lost and gained, states
and infos changing text, devices moved, removed from the inventory or forgotten), so its kept templates and
text are checked against a reference that keeps nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client import Gauge
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from callipso_agent.api.server import HttpServer
from callipso_agent.collect.cache import LatestCache
from callipso_agent.metrics import CallipsoCollector, NotificationStats, PollObserver, build_registry, metrics_routes
from callipso_agent.metrics_text import FloatText, go_float
from callipso_agent.model import IncidentState, IncidentView, Measurement, MetricKind, PollResult, Severity
from tests.helpers.polling import all_recordings
from tests.helpers.recorded_polls import poll_recordings
from tests.metrics import reference_metrics

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
DURATION = "callipso_exporter_collect_duration_seconds"


@pytest.fixture(scope="module")
def recorded() -> dict[str, PollResult]:
    """One real poll result per fixture recording (a recording no profile reads gives a failed poll)."""
    polled = asyncio.run(poll_recordings([(f"rec-{p.stem}", None, p) for p in all_recordings()]))
    assert sum(len(r.measurements) for r in polled.values()) > 500
    return polled


def edge_measurements(device: str, i: int) -> tuple[Measurement, ...]:
    """SYNTHETIC: what the recordings may not show."""
    return (
        Measurement(device, "edge_charge_percent", 50.0 + i, T0, help="Battery charge \\ with a backslash"),
        Measurement(device, "edge_voltage_volts", 1234567.891, T0, labels={"phase": "2"}, help="Line\nbreak"),
        Measurement(device, "edge_voltage_volts", -0.0, T0, labels={"phase": "3"}),
        Measurement(device, "edge_voltage_volts", 7, T0, labels={"phase": "4"}),  # type: ignore[arg-type]
        Measurement(device, "edge_big_total", 1e20, T0, kind=MetricKind.COUNTER, labels={"if": "eth0"}),
        Measurement(device, "edge_count", float(i), T0, kind=MetricKind.COUNTER),  # a counter without _total
        Measurement(device, "edge_source", 3.0, T0, kind=MetricKind.STATE, state=Severity.WARNING, text="normal"),
        Measurement(device, "edge_test", None, T0, kind=MetricKind.STATE, state=Severity.UNKNOWN),
        Measurement(device, "edge_mode", 2.5, T0, kind=MetricKind.STATE, state=Severity.OK),  # named by value
        Measurement(device, "edge_firmware", 1.0, T0, kind=MetricKind.INFO, text='v"1\\2 50%'),
        Measurement(device, "edge_model_info", 1.0, T0, kind=MetricKind.INFO, text="9PX\nline two"),
        Measurement(device, "edge_serial", 4.0, T0, kind=MetricKind.INFO),  # an info without text
        Measurement(device, "edge_temperature_celsius", None, T0),
        Measurement(device, "edge_probe", math.inf, T0, labels={"probe": 'a "quoted" \\ name %s'}),
        Measurement(device, "edge_probe", -math.inf, T0, labels={"probe": "neg"}),
        Measurement(device, "edge_probe", math.nan, T0, labels={"probe": "nan"}),
        Measurement(device, "edge_probe", 0.1, T0, labels={"probe": "x" * 100, "device": "other", "9x": "y"}),
        Measurement(device, "edge_probe", 1e-7, T0, labels={"probe": "tiny", "a-b.c": "dots"}),
        # the same name with another kind on some devices: the first kind seen keeps it
        *(
            (Measurement(device, "edge_mixed", 2.0, T0, kind=MetricKind.COUNTER),)
            if i % 2
            else (Measurement(device, "edge_mixed", 1.0, T0),)
        ),
        *(Measurement(device, "edge_many", float(k), T0, labels={"k": str(k)}) for k in range(6)),
    )


def fill(cache: LatestCache, recorded: dict[str, PollResult]) -> dict[str, dict[str, str]]:
    """The real devices, and SYNTHETIC ones: polled, failing since their last good poll, never polled."""
    inv: dict[str, dict[str, str]] = {}
    for n, (device, result) in enumerate(sorted(recorded.items())):
        inv[device] = {"name": device, "site": f"SITE {n % 4}", "family": result.system.get("profile", "unknown")}
        cache.update(result)
    for i in range(12):
        device = f"edge-{i:02d}"
        inv[device] = {"name": device, "site": 'site "quoted"' if i % 3 else "S\\1", "family": "edge"}
        if i % 6 == 5:
            continue  # in the inventory, never polled
        cache.update(PollResult(device, T0, 0.2 + i / 100, edge_measurements(device, i),
                                system={"model": f"M{i}\t", "firmware": 'f"w'}))
        if i % 6 == 3:  # unreachable since: the last good series stay, errors counted
            cache.update(PollResult(device, T0 + timedelta(minutes=1), 6.0, error="unreachable"))
            cache.update(PollResult(device, T0 + timedelta(minutes=2), 6.0, error="timeout"))
    cache.update(PollResult("gone-from-inventory", T0, 0.1, edge_measurements("gone-from-inventory", 1)))
    return inv


def incident(n: int) -> IncidentView:
    return IncidentView(
        id=n, key=f"k{n}", title="t", state=IncidentState.OPEN, priority="P2", severity=Severity.CRITICAL,
        opened_at=T0, site="SITE 1", device="edge-01", deadlines={"resolve": T0 + timedelta(hours=4)},
    )


class Pair:
    """The collector under test, kept across scrapes, and a fresh reference renderer at each comparison."""

    def __init__(self, cache: LatestCache, inv: dict[str, dict[str, str]], cap: int = 4) -> None:
        self.cache, self.inv = cache, inv
        self.observer = PollObserver(lambda d: inv.get(d, {}).get("family"))
        self.observer(PollResult("edge-01", T0, 0.3))
        self.notes = NotificationStats()
        self.notes.sent("mail")
        self.collector = CallipsoCollector(cache, lambda: inv, max_series_per_metric=cap, **self.common())
        self.registry = build_registry(self.collector, process=False)

    def common(self) -> dict[str, Any]:
        return dict(
            observer=self.observer, incidents=lambda: [incident(1), incident(2)], notifications=self.notes,
            queues=lambda: {"outbox": 2}, snmp=lambda: {"requests": 10}, agent_info={"version": "t"},
        )

    def reference(self, *, openmetrics: bool = False) -> str:
        ref = reference_metrics.CallipsoCollector(
            self.cache, lambda: self.inv, max_series_per_metric=self.collector.max_series_per_metric,
            **self.common(),
        )
        encode = om_exposition.generate_latest if openmetrics else generate_latest
        return encode(reference_metrics.build_registry(ref, process=False)).decode()  # type: ignore[no-any-return]

    def ours(self, *, openmetrics: bool = False) -> str:
        return self.registry.body(self.collector.snapshot(), openmetrics=openmetrics).decode()

    def check(self) -> str:
        """Both formats equal to the reference's, but for the collect duration; returns the text."""
        ours, ref = self.ours(), self.reference()
        assert families(ours) == families(ref)
        assert without_duration(ours) == without_duration(ref)  # the same bytes, in the same order
        om_ours, om_ref = self.ours(openmetrics=True), self.reference(openmetrics=True)
        assert families(om_ours, openmetrics=True) == families(om_ref, openmetrics=True)
        assert without_duration(om_ours) == without_duration(om_ref)
        return ours


def without_duration(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(DURATION)]


def families(text: str, *, openmetrics: bool = False) -> list[tuple[str, str, str, list[tuple[Any, ...]]]]:
    """Parsed back: each family's name, type, help and samples (name, labels, value as text, for -0.0)."""
    parse = om_parse if openmetrics else text_string_to_metric_families
    out = []
    for fam in parse(text):
        samples = [
            (s.name, tuple(sorted(s.labels.items())), "<t>" if s.name == DURATION else repr(s.value))
            for s in fam.samples
        ]
        out.append((fam.name, fam.type, fam.documentation, samples))
    return out


def sample_values(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            yield s.name, s.labels, s.value


@pytest.mark.parametrize("cap", [500, 4])
def test_the_recordings_and_edge_cases_render_as_the_reference_does(
    recorded: dict[str, PollResult], cap: int
) -> None:
    cache = LatestCache()
    inv = fill(cache, recorded)
    pair = Pair(cache, inv, cap)
    text = pair.check()
    got = list(sample_values(text))
    assert len(got) > 1000  # the recordings are really exposed
    # the edge cases made it through: non-finite values, escapes, the series cap, the kind conflict
    values = {v for _, _, v in got}
    assert math.inf in values and -math.inf in values
    assert any(lab.get("probe") == 'a "quoted" \\ name %s' for _, lab, _ in got)
    assert any(lab.get("site") == 'site "quoted"' for _, lab, _ in got)
    assert 'callipso_edge_voltage_volts{device="edge-00",family="edge",phase="2",site="S\\\\1"} 1.234567891e+06' in text
    assert "# HELP callipso_edge_voltage_volts Line\\nbreak" in text
    (dropped,) = [v for n, _, v in got if n == "callipso_exporter_dropped_series"]
    # over 4 series, each polled edge device drops 2 of edge_many and 1 of edge_probe
    assert dropped == 0 if cap == 500 else dropped >= 10 * 3
    assert "callipso_edge_mixed_total" not in text  # the first device (edge-00) has it as a gauge
    assert not any(lab.get("device") == "gone-from-inventory" for _, lab, _ in got)
    # one template per device with series (not the never polled, nor the recordings no profile reads)
    assert pair.collector.device_lines.shapes_built == sum(1 for d in inv if cache.series(d)) > 40


def test_after_polls_shape_changes_and_inventory_changes_it_still_renders_as_the_reference(
    recorded: dict[str, PollResult],
) -> None:
    cache = LatestCache()
    inv = fill(cache, recorded)
    pair = Pair(cache, inv)
    pair.check()
    lines = pair.collector.device_lines
    built = lines.shapes_built

    # a poll cycle: every real device polled again with new values, same series
    for k, result in enumerate(recorded.values()):
        moved = tuple(
            dataclasses.replace(m, value=m.value * 1.5 + k if m.value is not None else None)
            for m in result.measurements
        )
        cache.update(dataclasses.replace(result, measurements=moved, started=T0 + timedelta(minutes=5)))
    pair.check()
    assert lines.shapes_built == built  # only the numbers were formatted again
    assert lines.values_rendered >= sum(1 for r in recorded.values() if r.ok and r.measurements)

    # shapes change: series lost and gained, a state and an info change text, values turn NaN and None
    base = list(edge_measurements("edge-00", 0))
    cache.update(PollResult("edge-00", T0 + timedelta(minutes=6), 0.2, tuple(base[:5])))  # loses series
    grown = [*base, Measurement("edge-01", "edge_new_gauge", 3.0, T0, labels={"slot": "1"})]
    grown = [dataclasses.replace(m, device="edge-01") for m in grown]
    cache.update(PollResult("edge-01", T0 + timedelta(minutes=6), 0.2, tuple(grown)))  # gains one
    changed = [
        dataclasses.replace(m, device="edge-02", text="battery", state=Severity.CRITICAL, value=5.0)
        if m.name == "edge_source"
        else dataclasses.replace(m, device="edge-02", text="v2")
        if m.name == "edge_firmware"
        else dataclasses.replace(m, device="edge-02", value=8.5)
        if m.name == "edge_mode"  # a STATE without text is named by its value
        else dataclasses.replace(m, device="edge-02", value=math.nan)
        if m.name == "edge_charge_percent"
        else dataclasses.replace(m, device="edge-02", value=None)
        if m.name == "edge_big_total"
        else dataclasses.replace(m, device="edge-02")
        for m in edge_measurements("edge-02", 2)
    ]
    cache.update(PollResult("edge-02", T0 + timedelta(minutes=6), 0.2, tuple(changed)))
    text = pair.check()
    assert 'callipso_edge_source_state{device="edge-02"' in text and 'state="battery"' in text
    assert not any(n == "callipso_edge_charge_percent" and lab["device"] == "edge-02"
                   for n, lab, _ in sample_values(text))

    # a failure changes the self-metrics only; the device keeps its last series
    cache.update(PollResult("edge-04", T0 + timedelta(minutes=7), 6.0, error="auth_failed"))
    pair.check()

    # a device moves to another site, another leaves the inventory, another is forgotten by the cache
    inv["edge-06"] = {**inv["edge-06"], "site": "elsewhere"}
    del inv["edge-07"]
    cache.forget(["edge-08"])
    text = pair.check()
    assert "edge-07" not in lines and not any(lab.get("device") == "edge-07" for _, lab, _ in sample_values(text))
    # the series cap changes: templates are built again
    pair.collector.max_series_per_metric = 2
    pair.check()
    # a device comes back, and nothing changes at all between two scrapes
    inv["edge-07"] = {"name": "edge-07", "site": "back", "family": "edge"}
    pair.check()
    before = lines.shapes_built, lines.values_rendered
    pair.check()
    assert (lines.shapes_built, lines.values_rendered) == before


def test_collect_gives_the_same_samples_to_the_client_encoders(recorded: dict[str, PollResult]) -> None:
    """Through ``collect()`` (any registry, the ``dots`` escaping...) the samples are the reference's."""
    cache = LatestCache()
    inv = fill(cache, recorded)
    pair = Pair(cache, inv)
    via_client = generate_latest(pair.registry).decode()
    assert families(via_client) == families(pair.reference())
    direct = pair.registry.body(pair.collector.snapshot(), openmetrics=False).decode()
    assert families(direct) == families(via_client)


@pytest.mark.system
async def test_the_route_serves_gzip_and_both_formats_with_the_process_metrics(
    recorded: dict[str, PollResult],
) -> None:
    cache = LatestCache()
    inv = fill(cache, recorded)
    pair = Pair(cache, inv)
    registry = build_registry(pair.collector)  # with the process and platform collectors

    async def ready() -> tuple[bool, dict[str, object]]:
        return True, {}

    server = HttpServer(cache, host="127.0.0.1", port=0, ready=ready, inventory=lambda: inv)
    server.add_routes(metrics_routes(registry))
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.bound_port}/metrics"
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.get(url, headers={"Accept-Encoding": "gzip"}) as rsp:
                assert rsp.headers["Content-Encoding"] == "gzip"
                assert rsp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                packed = await rsp.read()
            async with http.get(url, headers={"Accept-Encoding": "identity"}) as rsp:
                assert "Content-Encoding" not in rsp.headers
                plain = (await rsp.read()).decode()
            async with http.get(url, headers={"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"}) as rsp:
                assert rsp.headers["Content-Type"].startswith("application/openmetrics-text")
                om = gzip.decompress(await rsp.read()).decode()
            dots = "text/plain;version=1.0.0;escaping=dots"
            async with http.get(url, headers={"Accept": dots, "Accept-Encoding": "identity"}) as rsp:
                assert "escaping=dots" in rsp.headers["Content-Type"]
                dotted = (await rsp.read()).decode()
    finally:
        await server.stop()
    text = gzip.decompress(packed).decode()
    assert len(packed) * 5 < len(text)
    names = {fam.name for fam in text_string_to_metric_families(text)}
    assert {"process_resident_memory_bytes", "python_info", "callipso_device_up"} <= names
    assert [f for f in families(text) if f[0].startswith("callipso_")] == families(pair.reference())
    assert [f for f in families(plain) if f[0].startswith("callipso_")] == families(pair.reference())
    om_names = {fam.name for fam in om_parse(om)}  # the strict parser also checks the one "# EOF" at the end
    assert {"python_info", "callipso_device", "callipso_agent"} <= om_names
    assert "callipso__device__up" in dotted


def test_values_are_formatted_as_the_client_formats_them() -> None:
    """FloatText (remembered texts) and go_float give floatToGoString's text for every kind of value."""
    rng = random.Random(5)
    values: list[Any] = [0.0, -0.0, 0, -0.0, 0.0, True, False, 7, -3, 10**7, 2**70, math.inf, -math.inf, math.nan,
                         None, 1e6, 999999.9, 1e16, 1e-7, 5e-324, -1e300, 1.7e9, 1763891234.5, 1e15 + 0.5, 1050000.0]
    values += [rng.uniform(-1e9, 1e9) for _ in range(200)] + [round(rng.uniform(0, 500), 1) for _ in range(200)]
    floats = FloatText()
    for order in (values, values[::-1], values):  # cold, then remembered (zeros of either sign meanwhile)
        texts = floats.texts(order)
        for v, text in zip(order, texts, strict=True):
            if v is None or v != v:
                assert text is None
            else:
                assert text == floatToGoString(v) == go_float(v), v
    floats.limit = 10
    floats.trim()
    assert len(floats) == 0


def test_the_cache_versions_tell_what_changed() -> None:
    """What the renderer relies on to skip a device: any update changes its version, a successful one also
    its series version, and a forgotten then polled device never gets an old version back."""
    cache = LatestCache()
    assert cache.version("ups-a") == (0, 0)
    cache.update(PollResult("ups-a", T0, 0.2, edge_measurements("ups-a", 0)))
    first = cache.version("ups-a")
    assert first[0] == first[1] > 0
    cache.update(PollResult("ups-a", T0, 6.0, error="timeout"))
    failed = cache.version("ups-a")
    assert failed[0] > first[0] and failed[1] == first[1]
    cache.forget(["ups-a"])
    assert cache.version("ups-a") == (0, 0)
    cache.update(PollResult("ups-a", T0, 0.2, edge_measurements("ups-a", 0)))
    assert min(cache.version("ups-a")) > failed[0]


def test_collectors_registered_later_are_served_too() -> None:
    cache = LatestCache()
    cache.update(PollResult("edge-00", T0, 0.2, edge_measurements("edge-00", 0)))
    registry = build_registry(CallipsoCollector(cache, lambda: {"edge-00": {"site": "S", "family": "edge"}}),
                              process=False)
    Gauge("extra_gauge", "registered after the registry was built", registry=registry).set(3)
    text = registry.body(registry.callipso.snapshot(), openmetrics=False).decode()
    assert ("extra_gauge", {}, 3.0) in list(sample_values(text))
    assert any(n == "callipso_edge_charge_percent" for n, _, _ in sample_values(text))
    assert ("extra_gauge", {}, 3.0) in list(sample_values(generate_latest(registry).decode()))
