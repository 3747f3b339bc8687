"""Prometheus exposition of what the agent knows: a custom collector that reads the latest-value cache.

Nothing here keeps one client-side ``Gauge`` per series: every scrape walks the
:class:`~callipso_agent.collect.cache.LatestCache` and the inventory, so the series of a device removed
from the inventory (the cache forgets it on reload) vanish at the next scrape. What is kept between scrapes
is each device's rendered text (:mod:`callipso_agent.metrics_devices`), written again only for the devices
polled since, and from templates built again only when a device's set of series changes: a scrape of a large
estate costs about the formatting of the new values. ``/metrics`` writes text format 0.0.4 or OpenMetrics
directly (:mod:`callipso_agent.metrics_text`), renders in a worker thread from a snapshot taken in the event
loop, and compresses with gzip when the scraper accepts it; :meth:`CallipsoCollector.collect` still serves
prometheus-client's registries and encoders.

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

import asyncio
import functools
import re
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from callipso_agent.collect.cache import LatestCache
from callipso_agent.looplag import LagStats
from callipso_agent.metrics_devices import (
    DEVICE_FAMILIES,
    DeviceLines,
    Rendered,
    Snapshot,
    status_tuple,
)
from callipso_agent.metrics_text import Families, Family, render_text
from callipso_agent.model import IncidentView, PollResult

PREFIX = "callipso_"
MAX_LABEL_VALUE = 64
RESERVED_LABELS = frozenset(
    {"site", "device", "family", "state", "severity", "value", "le", "job", "instance"}
)
DEFAULT_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PRIORITIES = ("P1", "P2", "P3", "P4")
#: gzip level of ``/metrics`` answers (1: the fastest; metrics text still shrinks about tenfold)
GZIP_LEVEL = 1

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


@dataclass(slots=True)
class Scrape:
    """What one scrape shows, read at one instant (:meth:`CallipsoCollector.snapshot`)."""

    started: float
    #: every inventory device in name order, with its snapshot when it changed since it was rendered
    devices: list[tuple[str, Snapshot | None]]
    cap: int
    #: devices in the inventory by (site, family), sorted
    counts: list[tuple[tuple[str, str], int]]
    #: the small families: poll histogram, notifications, incidents, queues, SNMP, runtime, sources
    others: Families
    incidents_ok: bool


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

    def collect_into(self, families: Families) -> None:
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

    def collect_into(self, families: Families) -> None:
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
TRAP_COUNTERS = {
    "received": "Datagrams that reached the trap receiver",
    "notifications": "Authenticated notifications decoded",
    "events": "Events the trap receiver handed to the incident pipeline",
    "unknown": "Notifications no trap rule matched (kept as trap_unknown)",
    "debounced": "Repeated notifications dropped by a rule's debounce window",
    "malformed": "Datagrams that are not SNMP messages, or that pysnmp could not decode",
    "errors": "Unexpected failures while handling one notification",
}


class TrapStats:
    """The trap receiver's counters, and the messages its SNMP engine refused by reason (bad community,
    unknown user, wrong digest, decryption error, ...); nothing when the receiver is off."""

    def __init__(self, receiver: Callable[[], Any]) -> None:
        self.receiver = receiver

    def collect_into(self, families: Families) -> None:
        rx = self.receiver()
        if rx is None:
            return
        for name, doc in TRAP_COUNTERS.items():
            fam = families.get(f"callipso_traps_{name}_total", doc, "counter")
            if fam is not None:
                fam.add({}, getattr(rx.counters, name))
        rejected = families.get(
            "callipso_traps_rejected_total",
            "SNMP messages the trap receiver refused, by reason (SNMPv2-MIB and USM counters)",
            "counter",
        )
        if rejected is not None:
            for reason, n in sorted(rx.rejected_by_reason().items()):
                rejected.add({"reason": label_value(reason)}, n)


class ApiAuthStats:
    """Refused HTTP API requests (missing or invalid token, missing scope, throttled) and the size of the
    failed-authentication table; nothing when the API has no authentication."""

    def __init__(self, auth: Callable[[], Any]) -> None:
        self.auth = auth

    def collect_into(self, families: Families) -> None:
        auth = self.auth()
        if auth is None:
            return
        failures = families.get(
            "callipso_api_auth_failures_total",
            "HTTP API requests refused for their credentials, by reason (missing_token, invalid_token, scope)",
            "counter",
        )
        throttled = families.get(
            "callipso_api_auth_throttled_total",
            "HTTP API requests answered 429: their client presented too many invalid tokens",
            "counter",
        )
        clients = families.get(
            "callipso_api_auth_limiter_clients", "Clients with recent failed authentications (bounded)", "gauge"
        )
        assert failures is not None and throttled is not None and clients is not None
        for reason in ("missing_token", "invalid_token", "scope"):
            failures.add({"reason": reason}, auth.counters.failures.get(reason, 0))
        throttled.add({}, auth.counters.throttled)
        clients.add({}, len(auth.limiter))


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
        self._lines = DeviceLines(label_value, label_name, metric_name)
        self._render_lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # dynamic names: don't let the registry call collect() at registration

    def collect(self) -> Iterator[Metric]:
        """The prometheus-client interface (any registry, any escaping scheme). ``/metrics`` writes the same
        families as text directly (:meth:`render`), much faster."""
        yield from self.build().metrics()

    def build(self) -> Families:
        """Every family of a scrape, read and rendered in the calling thread."""
        return self.finish(self.snapshot())

    def render(self, *, openmetrics: bool = False) -> str:
        """This collector's exposition in text format 0.0.4 or OpenMetrics (without the ``# EOF`` line)."""
        return render_text(self.build(), openmetrics=openmetrics)

    # ---- a scrape in two steps: read (event loop), render (any thread) ------------------------------
    def snapshot(self) -> Scrape:
        """Read what the scrape shows at one instant: which devices changed since they were rendered (the
        cache's versions tell; for those, their cached series and a copy of their status), the inventory
        counts and the small families (histograms, incidents, queues, sources). Cheap, and meant for the event
        loop's thread, where the cache changes; :meth:`finish` does the rendering, in any thread."""
        t0 = time.perf_counter()
        inv = self.inventory()
        cap = self.max_series_per_metric
        lines, cache = self._lines, self.cache
        devices: list[tuple[str, Snapshot | None]] = []
        raw: dict[tuple[Any, Any], int] = {}  # devices by inventory (site, family), bounded below
        for device in sorted(inv):
            d = inv[device]
            version = cache.version(device)
            site, family = d.get("site"), d.get("family")
            raw[(site, family)] = raw.get((site, family), 0) + 1
            if lines.unchanged(device, version, site, family, cap):
                devices.append((device, None))
            else:
                devices.append((device, self._snapshot(device, version, site, family)))
        counts: dict[tuple[str, str], int] = {}
        for (site, family), n in raw.items():
            key = (label_value(site), label_value(family))
            counts[key] = counts.get(key, 0) + n
        others = Families()
        if self.observer is not None:
            self.observer.collect_into(others)
        if self.notifications is not None:
            self.notifications.collect_into(others)
        incidents_ok = self._incidents(others)
        self._queues(others)
        self._snmp(others)
        self._runtime(others)
        for source in self.sources:
            source.collect_into(others)
        return Scrape(t0, devices, cap, sorted(counts.items()), others, incidents_ok)

    def finish(self, scrape: Scrape) -> Families:
        """The families of ``scrape``: devices that changed are rendered again (their templates rebuilt only
        if their shape changed), the others' text is reused. One scrape renders at a time."""
        with self._render_lock:
            fams = Families()
            rendered = self._rendered(scrape)
            dropped = 0
            get = fams.get
            # each device's families, resolved once per list of families (devices of a profile share one):
            # asked for even without text, so that the first kind seen keeps a name, as it always did
            targets: dict[int, list[Family | None]] = {}
            for r in rendered:
                shape = r.shape
                if shape is None:
                    continue
                dropped += shape.dropped
                fams_of = targets.get(id(shape.meta))
                if fams_of is None:
                    fams_of = targets[id(shape.meta)] = [get(name, doc, typ) for name, typ, doc in shape.meta]
                for fam, text in zip(fams_of, r.texts, strict=True):
                    if fam is not None and text:
                        fam.lines.append(text)
            for i, (name, doc, typ) in enumerate(DEVICE_FAMILIES):
                fam = get(name, doc, typ)
                if fam is not None:  # else a measurement took the name with another type
                    fam.lines.extend([text for r in rendered if (text := r.own[i])])
            known = get("callipso_inventory_devices", "Devices in the inventory, by site and family", "gauge")
            if known is not None:
                for (site, family), n in scrape.counts:
                    known.add({"site": site, "family": family}, n)
            fams.merge(scrape.others)
            own = get(
                "callipso_exporter_dropped_series",
                "Series left out of this scrape by the per-metric, per-device series cap",
                "gauge",
            )
            if own is not None:
                own.add({}, dropped)
            if self.incidents is not None:
                prov = get(
                    "callipso_incident_provider_up",
                    "1 when the incident provider answered during this scrape",
                    "gauge",
                )
                if prov is not None:
                    prov.add({}, 1 if scrape.incidents_ok else 0)
            if self.agent_info:
                info = get("callipso_agent_info", "The agent's identity", "info")
                if info is not None:
                    info.add({k: label_value(v) for k, v in self.agent_info.items()}, 1)
            took = get(
                "callipso_exporter_collect_duration_seconds", "Time spent building this scrape", "gauge"
            )
            if took is not None:
                took.add({}, time.perf_counter() - scrape.started)
            return fams

    def _rendered(self, scrape: Scrape) -> list[Rendered]:
        lines, cap = self._lines, scrape.cap
        lines.keep_only(dict(scrape.devices))  # devices that left the inventory: their series end now
        lines.floats.trim()
        out: list[Rendered] = []
        for device, snap in scrape.devices:
            r = lines.rendered(device) if snap is None else None
            if r is None:
                if snap is None:  # forgotten by another collect() since the snapshot: read it again
                    d = self.inventory().get(device, {})
                    snap = self._snapshot(device, self.cache.version(device), d.get("site"), d.get("family"))
                r = lines.render(device, snap, cap)
            out.append(r)
        return out

    def _snapshot(self, device: str, version: tuple[int, int], site: Any, family: Any) -> Snapshot:
        st = self.cache.status(device)
        status = status_tuple(st) if st is not None else None
        return Snapshot(self.cache.series(device), status, version, site, family)

    @property
    def device_lines(self) -> DeviceLines:
        """The per-device rendered text (for tests and the bench)."""
        return self._lines

    # ---- incidents ----------------------------------------------------------------------------------
    def _incidents(self, fams: Families) -> bool:
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

    def _queues(self, fams: Families) -> None:
        if self.queues is None:
            return
        q = fams.get("callipso_queue_length", "Items waiting in the agent's internal queues", "gauge")
        assert q is not None
        for name, n in sorted(self.queues().items()):
            q.add({"queue": label_value(name)}, n)

    def _snmp(self, fams: Families) -> None:
        stats = self.snmp() if self.snmp is not None else {}
        for name, doc in SNMP_COUNTERS.items():
            if name in stats:
                fam = fams.get(f"callipso_snmp_{name}", doc, "counter")
                assert fam is not None
                fam.add({}, stats[name])


    def _runtime(self, fams: Families) -> None:
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
class CallipsoRegistry(CollectorRegistry):
    """A registry holding one :class:`CallipsoCollector`, whose families ``/metrics`` writes as text
    directly, and the other collectors (process, platform) in ``others``; ``collect()`` yields both, so
    prometheus-client's encoders still render the whole registry."""

    def __init__(self, collector: CallipsoCollector) -> None:
        super().__init__(auto_describe=False)
        self.callipso = collector
        self.others = CollectorRegistry(auto_describe=False)
        super().register(collector)

    def register(self, collector: Collector) -> None:
        """Any other collector joins ``others`` (so ``/metrics`` serves it too)."""
        self.others.register(collector)

    def unregister(self, collector: Collector) -> None:
        self.others.unregister(collector)

    def collect(self) -> Iterator[Metric]:
        yield from super().collect()
        yield from self.others.collect()

    def body(self, scrape: Scrape, *, openmetrics: bool, gzip: bool = False) -> bytes:
        """The exposition of ``scrape`` (from :meth:`CallipsoCollector.snapshot`) and of the other
        collectors, in text format 0.0.4 or OpenMetrics, gzip-compressed if asked. Safe in a worker thread."""
        out: list[bytes] = []
        self.callipso.finish(scrape).render_into(out, openmetrics=openmetrics)
        encode = om_exposition.generate_latest if openmetrics else generate_latest
        out.append(encode(self.others))  # in OpenMetrics it ends with the one "# EOF" line
        data = b"".join(out)
        return zlib_gzip(data) if gzip else data


def zlib_gzip(data: bytes) -> bytes:
    """``data`` in a gzip member (level :data:`GZIP_LEVEL`: a fast level, metrics text compresses well)."""
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def build_registry(collector: CallipsoCollector, *, process: bool = True) -> CallipsoRegistry:
    """A fresh registry (never the client's global one) holding ``collector`` and the process metrics."""
    registry = CallipsoRegistry(collector)
    if process:
        from prometheus_client import PlatformCollector, ProcessCollector

        ProcessCollector(registry=registry.others)
        PlatformCollector(registry=registry.others)
    return registry


def direct_format(encoder: Callable[..., bytes]) -> bool | None:
    """For an encoder from ``choose_encoder``: ``False`` for text 0.0.4 (or 1.0.0), ``True`` for OpenMetrics
    when the families can be written directly (names escaped as ``underscores`` or left as they are, which
    is the same for the agent's names), ``None`` when the client must render them (``dots``, ``values``)."""
    func = encoder.func if isinstance(encoder, functools.partial) else encoder
    escaping = encoder.keywords.get("escaping", UNDERSCORES) if isinstance(encoder, functools.partial) else UNDERSCORES
    if escaping not in (UNDERSCORES, ALLOWUTF8):
        return None
    if func is generate_latest:
        return False
    if func is om_exposition.generate_latest:
        return True
    return None


def metrics_routes(
    registry: CollectorRegistry,
    path: str = "/metrics",
    *,
    refresh: Sequence[Callable[[], Awaitable[None]]] = (),
) -> list[web.RouteDef]:
    """``GET /metrics``: the registry in the format the scraper asked for (OpenMetrics or text 0.0.4),
    gzip-compressed when the scraper accepts it.

    ``refresh`` coroutines run first (snapshots that need the store, such as the outbox backlog); each
    handles its own failures. With a :class:`CallipsoRegistry`, what the scrape shows is read in the event
    loop (:meth:`CallipsoCollector.snapshot`) and rendered and compressed in a worker thread, one scrape at a
    time, so that a large estate's scrape does not hold the loop up.
    """
    lock = asyncio.Lock()

    async def handler(request: web.Request) -> web.Response:
        for fn in refresh:
            await fn()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        gz = gzip_accepted(request.headers.get("Accept-Encoding", ""))
        fmt = direct_format(encoder)
        if isinstance(registry, CallipsoRegistry) and fmt is not None:
            async with lock:
                scrape = registry.callipso.snapshot()
                body = await asyncio.to_thread(registry.body, scrape, openmetrics=fmt, gzip=gz)
        else:
            body = encoder(registry)
            if gz:
                body = await asyncio.to_thread(zlib_gzip, body)
        headers = {"Content-Type": content_type}
        if gz:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

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
