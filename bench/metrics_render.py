"""Time the ``/metrics`` rendering for N devices, without the network: ``python -m bench.metrics_render``.

The estate is the benchmark's (:func:`bench.estate.plan`: sites of a UPS, a temperature probe and an analog
gateway, an SBC and an OXE every tenth site, each device one of the lab's real recordings). Each recording is
polled once, in-process, by the agent's SNMP fetcher from udpsim; every device of the estate then gets a
SYNTHETIC copy of its recording's measurements (its own name, values changed at each poll cycle), and one
device in ten failed its last poll (unreachable) after a good one.

Figures, for the agent's renderer and, side by side, the reference renderer (the collector before per-device
templates: tests/metrics/reference_metrics.py, through prometheus-client's encoder):

* ``cold``: the first scrape (every device's templates built);
* ``after cycle``: every device polled again with new values since the last scrape (the values formatted
  into the kept templates);
* ``unchanged``: nothing polled since the last scrape;
* of ``after cycle``, the part that runs in the event loop (the snapshot; the rest runs in a worker thread
  in the agent), and ``gzip``: compressing the answer (also in the worker thread) when the scraper accepts it.

Each figure is wall-clock time and this thread's CPU time (the machine may be shared), measured after a
full garbage collection.

``--openmetrics`` renders OpenMetrics instead of text 0.0.4 (what Prometheus asks for by default).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as om_exposition

from bench.estate import plan
from callipso_agent.collect.cache import LatestCache
from callipso_agent.lab.estate import fixtures_dir
from callipso_agent.metrics import CallipsoCollector, CallipsoRegistry, build_registry, zlib_gzip
from callipso_agent.model import MetricKind, PollResult
from tests.helpers.recorded_polls import poll_recordings

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def templates(n: int) -> tuple[dict[str, PollResult], dict[str, dict[str, str]], dict[str, str]]:
    """The real poll result of each recording of the estate, the inventory, and each device's recording."""
    devices = plan(n, 0)
    recordings = sorted({d.recording for d in devices})
    family = {d.recording: d.family for d in devices}
    polled = asyncio.run(
        poll_recordings([(f"rec{i}", family[r], fixtures_dir() / r) for i, r in enumerate(recordings)])
    )
    by_rec = {r: polled[f"rec{i}"] for i, r in enumerate(recordings)}
    inv = {d.name: {"name": d.name, "site": d.site, "family": d.family} for d in devices}
    return by_rec, inv, {d.name: d.recording for d in devices}


def cycle(
    cache: LatestCache, by_rec: dict[str, PollResult], recording_of: dict[str, str], k: int
) -> None:
    """Poll cycle ``k``: every device's copy of its recording's result, numbers moved: gauges by up to 2 %
    at the resolution of a scaled SNMP integer (0.1), counters by a random increment since the last cycle."""
    rng = random.Random(k)  # noqa: S311 - reproducible values, nothing secret
    at = T0 + timedelta(minutes=k)
    for i, (device, rec) in enumerate(recording_of.items()):
        tpl = by_rec[rec]
        ms = []
        for m in tpl.measurements:
            v = m.value
            if v is not None and m.kind is MetricKind.COUNTER:
                v = v + k * 1000 + rng.randrange(1000)
            elif v and m.kind is MetricKind.GAUGE:
                v = round(v * (1 + rng.uniform(-0.02, 0.02)), 1)
            ms.append(dataclasses.replace(m, device=device, at=at, value=v))
        cache.update(PollResult(device, at, 0.2 + i % 5 / 10, tuple(ms), tpl.error, tpl.error_text, tpl.system))
        if i % 10 == 9:
            cache.update(PollResult(device, at + timedelta(seconds=30), 6.0, error="unreachable"))


class Timed:
    """Wall-clock and CPU (this thread) time of one call, after a full garbage collection: the collection
    that the cycle's own allocations would trigger is not charged to the rendering."""

    def __init__(self, fn: Callable[[], bytes]) -> None:
        gc.collect()
        w, c = time.perf_counter(), time.thread_time()
        self.body = fn()
        self.wall = (time.perf_counter() - w) * 1000
        self.cpu = (time.thread_time() - c) * 1000

    def __str__(self) -> str:
        return f"{self.wall:.0f} ms ({self.cpu:.0f} ms CPU)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--no-reference", action="store_true", help="skip the reference renderer")
    ap.add_argument("--openmetrics", action="store_true", help="OpenMetrics instead of text 0.0.4")
    args = ap.parse_args()
    om = args.openmetrics
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for n in args.n:
        by_rec, inv, recording_of = templates(n)
        cache = LatestCache()
        cycle(cache, by_rec, recording_of, 0)
        collector = CallipsoCollector(cache, lambda inv=inv: inv)
        registry = build_registry(collector, process=False)

        def scrape(registry: CallipsoRegistry = registry, collector: CallipsoCollector = collector) -> bytes:
            return registry.body(collector.snapshot(), openmetrics=om)

        cold = Timed(scrape)
        cycle(cache, by_rec, recording_of, 1)
        loop = Timed(lambda collector=collector: collector.snapshot())  # type: ignore[misc]
        after = Timed(lambda registry=registry, snap=loop.body: registry.body(snap, openmetrics=om))  # type: ignore[misc]
        unchanged = Timed(scrape)
        packed = Timed(lambda body=after.body: zlib_gzip(body))
        body = after.body
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        print(
            f"N={n}: {samples} samples, {len(body) / 1e6:.1f} MB ({len(packed.body) / 1e6:.1f} MB gzip)\n"
            f"  cold {cold}\n"
            f"  after a poll cycle {after.wall + loop.wall:.0f} ms ({after.cpu + loop.cpu:.0f} ms CPU), "
            f"of which in the event loop {loop}\n"
            f"  unchanged {unchanged}\n"
            f"  gzip (worker thread, when accepted) {packed}",
            flush=True,
        )
        if not args.no_reference:
            from tests.metrics.reference_metrics import CallipsoCollector as Reference
            from tests.metrics.reference_metrics import build_registry as reference_registry

            ref = reference_registry(Reference(cache, lambda inv=inv: inv), process=False)
            encode = om_exposition.generate_latest if om else generate_latest
            took = Timed(lambda ref=ref, encode=encode: encode(ref))  # type: ignore[misc]
            print(f"  reference renderer {took} at every scrape, {len(took.body) / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
