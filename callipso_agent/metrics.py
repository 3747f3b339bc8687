"""Prometheus exposition of what the agent knows: a custom collector that reads the latest-value cache.

Nothing here keeps one client-side ``Gauge`` per series: every scrape walks the
:class:`~callipso_agent.collect.cache.LatestCache` and the inventory, so the series of a device removed
from the inventory (the cache forgets it on reload) vanish at the next scrape.

Exposition rules (see ``deploy/prometheus/README.md``):

* every measurement ``m`` is ``callipso_<m.name>`` (names already carry their base unit; counters end in
  ``_total``) with the labels ``site``, ``device``, ``family`` plus the measurement's own labels;
* a STATE measurement keeps its numeric value under ``callipso_<name>`` and also gets an info-style series
  ``callipso_<name>_state{state="<label>", severity="ok|warning|critical|unknown"} 1``: exactly one series per
  measurement, whose labels say the current state (a change of state ends the old series);
* an INFO measurement is ``callipso_<name>_info{value="<text>"} 1``;
* label values are cut to :data:`MAX_LABEL_VALUE` characters, label names are sanitised, and one metric of
  one device has at most ``max_series_per_metric`` series (the rest are dropped and counted in
  ``callipso_exporter_dropped_series``).

Self-metrics follow snmp_exporter's example (poll durations, errors, device up) and read the same cache; the
poll-duration histogram is fed by :class:`PollObserver`, a result hook. Incident metrics come through a
provider callable returning :class:`~callipso_agent.model.IncidentView` objects, so this module does not
depend on the incident engine.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from callipso_agent.collect.cache import LatestCache
from callipso_agent.looplag import LagStats
from callipso_agent.model import IncidentView, Measurement, MetricKind, PollResult

PREFIX = "callipso_"
MAX_LABEL_VALUE = 64
RESERVED_LABELS = frozenset(
    {"site", "device", "family", "state", "severity", "value", "le", "job", "instance"}
)
DEFAULT_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PRIORITIES = ("P1", "P2", "P3", "P4")
#: DeviceStatus.system keys exported on ``callipso_device_info`` (a whitelist: nothing unbounded).
SYSTEM_INFO_KEYS = ("profile", "manufacturer", "model", "firmware")

Inventory = Callable[[], Mapping[str, Mapping[str, Any]]]
IncidentProvider = Callable[[], Iterable[IncidentView]]
QueueProvider = Callable[[], Mapping[str, float]]
SnmpStatsProvider = Callable[[], Mapping[str, int]]

#: SNMP engine counters exported as ``callipso_snmp_<name>_total`` (see transports/fastsnmp.EngineStats)
SNMP_COUNTERS = {
    "requests": "SNMP request datagrams sent by the v1/v2c engine, retransmissions included",
    "retransmissions": "SNMP requests sent again after a timeout",
    "timeouts": "SNMP requests that got no answer after every retransmission",
    "ignored": "Datagrams the SNMP engine dropped: late, stray or from an unexpected source or community",
    "malformed": "Datagrams the SNMP engine could not decode",
    "slots_given_back": "SNMP requests still unanswered after a second, which gave their concurrency slot back",
}

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


@functools.lru_cache(maxsize=4096)
def metric_name(name: str) -> str:
    """``callipso_<name>`` with characters Prometheus refuses replaced by ``_``."""
    clean = _NAME_BAD.sub("_", name)
    if clean and clean[0].isdigit():
        clean = "_" + clean
    return PREFIX + clean


@functools.lru_cache(maxsize=4096)
def label_name(name: str) -> str:
    """A valid, non-reserved label name for a measurement label (``device`` becomes ``exported_device``)."""
    clean = _NAME_BAD.sub("_", name) or "label"
    if clean[0].isdigit():
        clean = "_" + clean
    if clean.startswith("__"):  # reserved for Prometheus' own labels
        clean = clean.lstrip("_") or "label"
    if clean in RESERVED_LABELS:
        clean = "exported_" + clean
    return clean


def label_value(value: object) -> str:
    """Bound a label value: text cut to :data:`MAX_LABEL_VALUE` characters, control characters removed."""
    text = "" if value is None else str(value)
    if len(text) <= MAX_LABEL_VALUE and text.isprintable():
        return text  # the common case, without a pass over each character
    text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > MAX_LABEL_VALUE:
        text = text[: MAX_LABEL_VALUE - 1] + "…"
    return text


# ---- small family builder --------------------------------------------------------------------------------
class _Family:
    """One metric family under construction; samples may carry different label sets."""

    def __init__(self, name: str, doc: str, typ: str) -> None:
        base = name
        if typ == "counter" and base.endswith("_total"):
            base = base[:-6]
        if typ == "info" and base.endswith("_info"):
            base = base[:-5]
        self.metric = Metric(base, doc or base, typ)
        self.typ = typ

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        base = self.metric.name
        if not suffix:
            suffix = {"counter": "_total", "info": "_info"}.get(self.typ, "")
        self.metric.add_sample(base + suffix, dict(labels), float(value))


class _Families:
    def __init__(self) -> None:
        self._by_name: dict[str, _Family] = {}

    def get(self, name: str, doc: str, typ: str) -> _Family | None:
        fam = self._by_name.get(name)
        if fam is None:
            fam = _Family(name, doc, typ)
            self._by_name[name] = fam
        elif fam.typ != typ:
            return None  # one name, two kinds (two profiles disagree): keep the first
        return fam

    def metrics(self) -> Iterator[Metric]:
        for fam in self._by_name.values():
            if fam.metric.samples or fam.typ == "histogram":
                yield fam.metric


# ---- poll-duration histogram (fed by a result hook) ------------------------------------------------------
@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


class PollObserver:
    """Result hook: ``app.result_hooks.append(observer)``. Observes each poll's duration per family."""

    def __init__(
        self, family_of: Callable[[str], str | None], buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        self.family_of = family_of
        self.buckets = tuple(sorted(buckets))
        self._hist: dict[tuple[str, str], _Histogram] = {}

    def __call__(self, result: PollResult) -> None:
        family = self.family_of(result.device) or "unknown"
        outcome = "success" if result.ok else "failure"
        h = self._hist.setdefault((family, outcome), _Histogram(self.buckets))
        h.observe(max(result.duration, 0.0))

    def collect_into(self, families: _Families) -> None:
        fam = families.get(
            "callipso_poll_duration_seconds",
            "Duration of device polls, by device family and outcome",
            "histogram",
        )
        assert fam is not None
        for (family, outcome), h in sorted(self._hist.items()):
            labels = {"family": label_value(family), "outcome": outcome}
            for bound, n in zip(h.buckets, h.counts, strict=True):
                fam.add({**labels, "le": _fmt_bound(bound)}, n, "_bucket")
            fam.add({**labels, "le": "+Inf"}, h.count, "_bucket")
            fam.add(labels, h.count, "_count")
            fam.add(labels, h.total, "_sum")


def _fmt_bound(b: float) -> str:
    return str(floatToGoString(b))  # type: ignore[no-untyped-call]


# ---- notification counters (the outbox calls these) -----------------------------------------------------
class NotificationStats:
    """Counters the notification outbox increments: ``sent(channel)`` and ``failed(channel, reason)``."""

    def __init__(self) -> None:
        self._sent: dict[str, int] = {}
        self._failed: dict[tuple[str, str], int] = {}

    def sent(self, channel: str) -> None:
        key = label_value(channel)
        self._sent[key] = self._sent.get(key, 0) + 1

    def failed(self, channel: str, reason: str = "error") -> None:
        key = (label_value(channel), label_value(reason)[:32])
        self._failed[key] = self._failed.get(key, 0) + 1

    def collect_into(self, families: _Families) -> None:
        sent = families.get(
            "callipso_notifications_sent_total", "Notifications delivered, by channel", "counter"
        )
        failed = families.get(
            "callipso_notification_failures_total",
            "Notification attempts that failed, by channel and reason",
            "counter",
        )
        assert sent is not None and failed is not None
        for ch, n in sorted(self._sent.items()):
            sent.add({"channel": ch}, n)
        for (ch, reason), n in sorted(self._failed.items()):
            failed.add({"channel": ch, "reason": reason}, n)


# ---- the collector ---------------------------------------------------------------------------------------
class CallipsoCollector(Collector):
    """Reads the cache, the inventory and the providers at each scrape; keeps no series of its own."""

    def __init__(
        self,
        cache: LatestCache,
        inventory: Inventory,
        *,
        observer: PollObserver | None = None,
        incidents: IncidentProvider | None = None,
        queues: QueueProvider | None = None,
        notifications: NotificationStats | None = None,
        snmp: SnmpStatsProvider | None = None,
        clock: Callable[[], float] = time.time,
        max_series_per_metric: int = 500,
        agent_info: Mapping[str, str] | None = None,
        loop_lag: Callable[[], LagStats | None] | None = None,
        tasks: Callable[[], int | None] | None = None,
        sources: list[Any] | None = None,
    ) -> None:
        self.cache = cache
        self.loop_lag = loop_lag
        self.tasks = tasks
        #: more self-metrics: objects with ``collect_into(families)`` (store health, outbox backlog)
        self.sources: list[Any] = sources if sources is not None else []
        self.inventory = inventory
        self.observer = observer
        self.incidents = incidents
        self.queues = queues
        self.notifications = notifications
        self.snmp = snmp
        self.clock = clock
        self.max_series_per_metric = max_series_per_metric
        self.agent_info = dict(agent_info or {})

    def describe(self) -> list[Metric]:
        return []  # dynamic names: don't let the registry call collect() at registration

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        fams = _Families()
        inv = self.inventory()
        dropped = self._measurements(fams, inv)
        self._devices(fams, inv)
        if self.observer is not None:
            self.observer.collect_into(fams)
        if self.notifications is not None:
            self.notifications.collect_into(fams)
        incidents_ok = self._incidents(fams)
        self._queues(fams)
        self._snmp(fams)
        self._runtime(fams)
        for source in self.sources:
            source.collect_into(fams)
        own = fams.get(
            "callipso_exporter_dropped_series",
            "Series left out of this scrape by the per-metric, per-device series cap",
            "gauge",
        )
        assert own is not None
        own.add({}, dropped)
        if self.incidents is not None:
            prov = fams.get(
                "callipso_incident_provider_up",
                "1 when the incident provider answered during this scrape",
                "gauge",
            )
            assert prov is not None
            prov.add({}, 1 if incidents_ok else 0)
        if self.agent_info:
            info = fams.get("callipso_agent_info", "The agent's identity", "info")
            assert info is not None
            info.add({k: label_value(v) for k, v in self.agent_info.items()}, 1)
        took = fams.get(
            "callipso_exporter_collect_duration_seconds", "Time spent building this scrape", "gauge"
        )
        assert took is not None
        took.add({}, time.perf_counter() - t0)
        yield from fams.metrics()

    # ---- device measurements ------------------------------------------------------------------------
    def _measurements(self, fams: _Families, inv: Mapping[str, Mapping[str, Any]]) -> int:
        dropped = 0
        for device in sorted(inv):
            d = inv[device]
            base = {
                "site": label_value(d.get("site")),
                "device": label_value(device),
                "family": label_value(d.get("family")),
            }
            per_metric: dict[str, int] = {}
            for m in self.cache.measurements(device):
                n = per_metric.get(m.name, 0)
                if n >= self.max_series_per_metric:
                    dropped += 1
                    continue
                per_metric[m.name] = n + 1
                self._one(fams, m, base)
        return dropped

    def _one(self, fams: _Families, m: Measurement, base: Mapping[str, str]) -> None:
        labels = dict(base)
        for k, v in m.labels.items():
            labels[label_name(k)] = label_value(v)
        name = metric_name(m.name)
        doc = m.help or m.name
        if m.kind is MetricKind.INFO:
            fam = fams.get(name if name.endswith("_info") else name + "_info", doc, "info")
            if fam is not None:
                fam.add({**labels, "value": label_value(m.text if m.text is not None else m.value)}, 1)
            return
        if m.kind is MetricKind.COUNTER:
            fam = fams.get(name, doc, "counter")
        else:
            fam = fams.get(name, doc, "gauge")
        if fam is not None and m.value is not None:
            fam.add(labels, m.value)
        if m.kind is MetricKind.STATE:
            st = fams.get(name + "_state", f"{doc} (current state as labels; value always 1)", "gauge")
            if st is not None:
                text = m.text if m.text is not None else ("" if m.value is None else f"{m.value:g}")
                st.add({**labels, "state": label_value(text), "severity": m.state.label}, 1)

    # ---- self-metrics of devices --------------------------------------------------------------------
    def _devices(self, fams: _Families, inv: Mapping[str, Mapping[str, Any]]) -> None:
        up = fams.get("callipso_device_up", "1 when the device's last poll succeeded", "gauge")
        last_ok = fams.get(
            "callipso_last_successful_poll_timestamp_seconds",
            "Unix time of the device's last successful poll",
            "gauge",
        )
        last_poll = fams.get(
            "callipso_last_poll_timestamp_seconds", "Unix time of the device's last poll", "gauge"
        )
        last_dur = fams.get(
            "callipso_last_poll_duration_seconds", "Duration of the device's last poll", "gauge"
        )
        fails = fams.get("callipso_device_consecutive_failures", "Failed polls in a row", "gauge")
        polls = fams.get("callipso_polls_total", "Polls of the device since the agent started", "counter")
        errors = fams.get("callipso_poll_errors_total", "Failed polls, by device and error kind", "counter")
        info = fams.get("callipso_device_info", "Inventory and identity of each device", "info")
        known = fams.get(
            "callipso_inventory_devices", "Devices in the inventory, by site and family", "gauge"
        )
        assert up and last_ok and last_poll and last_dur and fails and polls and errors and info and known
        counts: dict[tuple[str, str], int] = {}
        for device in sorted(inv):
            d = inv[device]
            site, family = label_value(d.get("site")), label_value(d.get("family"))
            counts[(site, family)] = counts.get((site, family), 0) + 1
            ident = {"device": label_value(device), "site": site, "family": family}
            st = self.cache.status(device)
            sysinfo = st.system if st is not None else {}
            info.add({**ident, **{k: label_value(sysinfo.get(k, "")) for k in SYSTEM_INFO_KEYS}}, 1)
            if st is None or st.last_poll is None:
                continue  # not polled yet (or not collectable): no up/down claim
            up.add(ident, 1 if st.up else 0)
            if st.last_success is not None:
                last_ok.add({"device": ident["device"]}, st.last_success.timestamp())
            last_poll.add({"device": ident["device"]}, st.last_poll.timestamp())
            if st.last_duration is not None:
                last_dur.add({"device": ident["device"]}, st.last_duration)
            fails.add({"device": ident["device"]}, st.consecutive_failures)
            polls.add({"device": ident["device"]}, st.polls_total)
            for kind, n in sorted(st.errors_total.items()):
                errors.add({"device": ident["device"], "kind": label_value(kind)}, n)
        for (site, family), n in sorted(counts.items()):
            known.add({"site": site, "family": family}, n)

    # ---- incidents ----------------------------------------------------------------------------------
    def _incidents(self, fams: _Families) -> bool:
        if self.incidents is None:
            return True
        opened = fams.get(
            "callipso_incidents_open",
            "Unresolved incidents (open or acknowledged), by priority and site",
            "gauge",
        )
        deadline = fams.get(
            "callipso_incident_deadline_timestamp_seconds",
            "Unix time of each SLA deadline of each unresolved incident",
            "gauge",
        )
        assert opened is not None and deadline is not None
        try:
            views = list(self.incidents())
        except Exception:
            return False
        counts: dict[tuple[str, str], int] = {}
        for v in views:
            if not v.state.active:
                continue
            prio = v.priority if v.priority in PRIORITIES else "unknown"
            site = label_value(v.site or "")
            counts[(prio, site)] = counts.get((prio, site), 0) + 1
            for name, at in sorted(v.deadlines.items()):
                deadline.add(
                    {"incident": str(v.id), "deadline": label_value(name), "priority": prio, "site": site},
                    at.timestamp(),
                )
        for (prio, site), n in sorted(counts.items()):
            opened.add({"priority": prio, "site": site}, n)
        return True

    def _queues(self, fams: _Families) -> None:
        if self.queues is None:
            return
        q = fams.get("callipso_queue_length", "Items waiting in the agent's internal queues", "gauge")
        assert q is not None
        for name, n in sorted(self.queues().items()):
            q.add({"queue": label_value(name)}, n)

    def _snmp(self, fams: _Families) -> None:
        stats = self.snmp() if self.snmp is not None else {}
        for name, doc in SNMP_COUNTERS.items():
            if name in stats:
                fam = fams.get(f"callipso_snmp_{name}", doc, "counter")
                assert fam is not None
                fam.add({}, stats[name])


    def _runtime(self, fams: _Families) -> None:
        """The agent's own event loop: lag histogram, recent maximum lag, asyncio task count."""
        stats = self.loop_lag() if self.loop_lag is not None else None
        if stats is not None:
            hist = fams.get(
                "callipso_event_loop_lag_seconds",
                "How late the agent's event loop woke a sleeping task (sampled)",
                "histogram",
            )
            peak = fams.get(
                "callipso_event_loop_lag_max_seconds",
                "Largest event-loop lag sampled over the recent window",
                "gauge",
            )
            assert hist is not None and peak is not None
            for bound, n in zip(stats.buckets, stats.counts, strict=True):
                hist.add({"le": _fmt_bound(bound)}, n, "_bucket")
            hist.add({"le": "+Inf"}, stats.count, "_bucket")
            hist.add({}, stats.count, "_count")
            hist.add({}, stats.total, "_sum")
            peak.add({}, stats.window_max())
        n_tasks = self.tasks() if self.tasks is not None else None
        if n_tasks is not None:
            fam = fams.get("callipso_asyncio_tasks", "asyncio tasks alive in the agent's event loop", "gauge")
            assert fam is not None
            fam.add({}, n_tasks)


# ---- wiring helpers --------------------------------------------------------------------------------------
def build_registry(collector: CallipsoCollector, *, process: bool = True) -> CollectorRegistry:
    """A fresh registry (never the client's global one) holding ``collector`` and the process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        from prometheus_client import PlatformCollector, ProcessCollector

        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def metrics_routes(
    registry: CollectorRegistry,
    path: str = "/metrics",
    *,
    refresh: Sequence[Callable[[], Awaitable[None]]] = (),
) -> list[web.RouteDef]:
    """``GET /metrics``: the registry in the format the scraper asked for (OpenMetrics or text 0.0.4).

    ``refresh`` coroutines run first (snapshots that need the store, such as the outbox backlog); each
    handles its own failures.
    """

    async def handler(request: web.Request) -> web.Response:
        for fn in refresh:
            await fn()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return [web.get(path, handler)]


def poller_queues(pollers: Callable[[], Mapping[str, Any]], monotonic: Callable[[], float]) -> QueueProvider:
    """Queue lengths from the running pollers: polls in flight and devices waiting out a back-off."""

    def provide() -> dict[str, float]:
        ps = list(pollers().values())
        now = monotonic()
        return {
            "polls_in_flight": sum(1 for p in ps if p.state.in_flight),
            "pollers_backing_off": sum(1 for p in ps if p.state.not_before > now),
        }

    return provide


def app_metrics(
    app: Any,
    *,
    incidents: IncidentProvider | None = None,
    notifications: NotificationStats | None = None,
    sources: list[Any] | None = None,
) -> tuple[CollectorRegistry, PollObserver]:
    """Everything ``/metrics`` needs from a :class:`~callipso_agent.daemon.App`.

    Returns the registry to serve (``metrics_routes(registry)``) and the poll observer to append to
    ``app.result_hooks``. Reads ``app.cache``, ``app.inventory_view``, ``app.runtime.pollers`` and
    ``app.clock`` lazily, so a reload is seen at the next scrape.
    """
    from callipso_agent import __version__

    def pollers() -> Mapping[str, Any]:
        return app.runtime.pollers if app.runtime is not None else {}

    def family_of(device: str) -> str | None:
        p = pollers().get(device)
        return p.family if p is not None else None

    def loop_lag() -> LagStats | None:
        monitor = getattr(app, "loop_lag", None)
        return monitor.stats if monitor is not None else None

    observer = PollObserver(family_of)
    collector = CallipsoCollector(
        app.cache,
        app.inventory_view,
        observer=observer,
        incidents=incidents,
        notifications=notifications,
        queues=poller_queues(pollers, app.clock.monotonic),
        snmp=lambda: app.snmp_engines.stats() if getattr(app, "snmp_engines", None) is not None else {},
        agent_info={"version": __version__},
        loop_lag=loop_lag,
        tasks=running_tasks,
        sources=sources,
    )
    return build_registry(collector), observer


def running_tasks() -> int | None:
    """Tasks of the running loop (None outside a loop, e.g. a scrape from another thread)."""
    import asyncio

    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return None
