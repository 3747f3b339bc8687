"""Each device's ``/metrics`` lines, kept between scrapes and rendered again only when the device changes.

A device's lines depend on its cached series (replaced by each successful poll), its poll status (changed by
every poll, successful or not) and its inventory labels. :class:`DeviceLines` keeps, per device:

* the *templates* of its measurement lines: for each series, the metric name and escaped label set up to the
  value (``callipso_x{device="a",site="S"} ``), grouped by family. They are built again only when the
  device's *shape* changes (series gained or lost, another kind, help text, state or info text); a poll that
  only brings new values formats the numbers into the templates;
* the rendered text of each of its families, and of its self-metrics (up, last poll, errors, info), reused
  as is while nothing of the device changed.

The rules are those of the collector (see :mod:`callipso_agent.metrics`): labels ``site``, ``device``,
``family`` plus the measurement's own, a STATE measurement gives its value and a ``_state`` series, an INFO
one an ``_info`` series, a ``None`` or NaN value no line, at most ``cap`` series per metric and device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from callipso_agent.collect.cache import DeviceStatus
from callipso_agent.metrics_text import FloatText, escape_label_value, family_base, go_float, label_key, labels_text
from callipso_agent.model import Measurement, MetricKind

#: (name, help, type) of the per-device self-metric families, in exposition order
DEVICE_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("callipso_device_up", "1 when the device's last poll succeeded", "gauge"),
    (
        "callipso_last_successful_poll_timestamp_seconds",
        "Unix time of the device's last successful poll",
        "gauge",
    ),
    ("callipso_last_poll_timestamp_seconds", "Unix time of the device's last poll", "gauge"),
    ("callipso_last_poll_duration_seconds", "Duration of the device's last poll", "gauge"),
    ("callipso_device_consecutive_failures", "Failed polls in a row", "gauge"),
    ("callipso_polls_total", "Polls of the device since the agent started", "counter"),
    ("callipso_poll_errors_total", "Failed polls, by device and error kind", "counter"),
    ("callipso_device_info", "Inventory and identity of each device", "info"),
)
#: DeviceStatus.system keys exported on ``callipso_device_info`` (a whitelist: nothing unbounded).
SYSTEM_INFO_KEYS = ("profile", "manufacturer", "model", "firmware")

Series = Mapping[Any, Measurement]
LabelValue = Callable[[object], str]
Name = Callable[[str], str]

_EMPTY = ("",) * len(SYSTEM_INFO_KEYS)
_VALUE = attrgetter("value")
_KIND = attrgetter("kind")
_HELP = attrgetter("help")


@dataclass(slots=True)
class Shape:
    """A device's line templates and what they were built from.

    ``fmt`` is all the device's lines, family after family (``meta``) separated by NUL (a character the lines
    never hold: :func:`~callipso_agent.metrics.label_value` drops control characters and names are
    sanitised), as one ``%`` format with a ``%s`` for each value; ``pick`` takes those values' texts from
    the texts of the device's values, in order."""

    #: what the lines depend on: the series (name, labels) in order, their kinds and helps, and for STATE
    #: and INFO measurements (``labelled``, their indices) the state, the text and the value (which names
    #: the state or info when there is no text)
    keys: list[Any]
    kinds: list[MetricKind]
    helps: list[str]
    labelled: list[int]
    labels: list[tuple[Any, ...]]
    #: (family name, type, help) of each family the device has lines in, in first-appearance order (one
    #: object for all devices with the same families)
    meta: tuple[tuple[str, str, str], ...]
    dropped: int
    fmt: str
    pick: Callable[[list[Any]], tuple[Any, ...]]

    def fits(self, keys: list[Any], ms: list[Measurement]) -> bool:
        """Whether these templates are those of a device with these series."""
        return (
            keys == self.keys
            and list(map(_KIND, ms)) == self.kinds
            and list(map(_HELP, ms)) == self.helps
            and _labels(ms, self.labelled) == self.labels
        )


@dataclass(slots=True)
class Snapshot:
    """What a device's lines are rendered from, read at one instant (the cache may change meanwhile)."""

    series: Series | None
    status: tuple[Any, ...] | None
    #: the cache's version of the device (:meth:`~callipso_agent.collect.cache.LatestCache.version`)
    version: tuple[int, int]
    site: Any
    family: Any


@dataclass(slots=True)
class Own:
    """A device's own labels (``site``, ``device``, ``family``: its name and inventory labels, bounded), and
    the prefixes of its self-metric lines, which depend on them only."""

    base: dict[str, str]
    up: bytes
    last_success: bytes
    last_poll: bytes
    duration: bytes
    failures: bytes
    polls: bytes
    info_labels: tuple[Any, ...] | None = None
    info_line: bytes = b""


@dataclass(slots=True)
class Rendered:
    """A device's rendered lines and the snapshot they came from."""

    version: tuple[int, int]
    site: Any
    family: Any
    cap: int
    shape: Shape | None
    #: its text of each family of its shape (``shape.meta``)
    texts: list[bytes]
    #: its text of each family of :data:`DEVICE_FAMILIES`, in that order
    own: list[bytes]
    prefixes: Own


def status_tuple(st: DeviceStatus) -> tuple[Any, ...]:
    """The parts of a status the self-metrics show (copied: the cache updates the status in place)."""
    return (
        st.last_poll,
        st.last_success,
        st.last_duration,
        st.consecutive_failures,
        st.polls_total,
        tuple(sorted(st.errors_total.items())),
        tuple(map(st.system.get, SYSTEM_INFO_KEYS, _EMPTY)),
        st.up,
    )


class DeviceLines:
    """Per-device rendered text, kept between scrapes (one instance per collector; not thread-safe: one
    scrape renders at a time)."""

    def __init__(self, label_value: LabelValue, label_name: Name, metric_name: Name) -> None:
        self.label_value = label_value
        self.label_name = label_name
        self.metric_name = metric_name
        self._devices: dict[str, Rendered] = {}
        self._metas: dict[tuple[tuple[str, str, str], ...], tuple[tuple[str, str, str], ...]] = {}
        self.floats = FloatText()
        #: devices whose templates were built, and whose values only were formatted (bench and tests)
        self.shapes_built = 0
        self.values_rendered = 0

    def __len__(self) -> int:
        return len(self._devices)

    def __contains__(self, device: object) -> bool:
        return device in self._devices

    def rendered(self, device: str) -> Rendered | None:
        return self._devices.get(device)

    def keep_only(self, devices: Mapping[str, Any]) -> None:
        """Forget the devices that left the inventory."""
        gone = [d for d in self._devices if d not in devices]
        for d in gone:
            del self._devices[d]

    def unchanged(self, device: str, version: tuple[int, int], site: Any, family: Any, cap: int) -> bool:
        r = self._devices.get(device)
        return (
            r is not None
            and r.version == version
            and r.cap == cap
            and r.site == site
            and r.family == family
        )

    def render(self, device: str, snap: Snapshot, cap: int) -> Rendered:
        """The device's lines from ``snap``, reusing its templates when its shape did not change."""
        old = self._devices.get(device)
        same_labels = old is not None and old.site == snap.site and old.family == snap.family and old.cap == cap
        if old is not None and same_labels:
            prefixes = old.prefixes
        else:
            prefixes = self._prefixes(
                {
                    "site": self.label_value(snap.site),
                    "device": self.label_value(device),
                    "family": self.label_value(snap.family),
                }
            )
        base = prefixes.base
        shape: Shape | None = None
        texts: list[bytes] = []
        if old is not None and same_labels and old.version[1] == snap.version[1]:
            shape, texts = old.shape, old.texts  # the same series (a failed poll changed the status only)
        elif snap.series:
            keys = list(snap.series)
            ms = list(snap.series.values())
            if old is not None and same_labels and old.shape is not None and old.shape.fits(keys, ms):
                shape = old.shape
                shape.keys = keys  # equal; the cache's current ones, the older can go
                self.values_rendered += 1
            else:
                shape = self._shape(keys, ms, base, cap)
                self.shapes_built += 1
            texts = _fill(shape, list(map(_VALUE, ms)), self.floats)
        if old is not None and same_labels and old.version[0] == snap.version[0]:
            own = old.own
        else:
            own = self._own(base, prefixes, snap.status)
        r = Rendered(snap.version, snap.site, snap.family, cap, shape, texts, own, prefixes)
        self._devices[device] = r
        return r

    # ---- templates -------------------------------------------------------------------------------------
    def _shape(self, keys: list[Any], ms: list[Measurement], base: Mapping[str, str], cap: int) -> Shape:
        # (family name, type) -> [help, its lines as a % format, indices of the values they print]
        groups: dict[tuple[str, str], tuple[str, list[str], list[int]]] = {}

        def group(name: str, doc: str, typ: str) -> tuple[str, list[str], list[int]]:
            g = groups.get((name, typ))
            if g is None:
                g = groups[(name, typ)] = (doc, [], [])
            return g

        label_value, label_name = self.label_value, self.label_name
        pairs: dict[tuple[str, str], str] = {}

        def pair(name: str, value: str) -> str:
            """``name="value"`` escaped, and ``%`` doubled for the format (the device's own labels recur on
            each of its lines)."""
            text = pairs.get((name, value))
            if text is None:
                text = pairs[(name, value)] = f'{label_key(name)}="{escape_label_value(value)}"'.replace("%", "%%")
            return text

        def braces(labels: Mapping[str, str]) -> str:
            return "{" + ",".join([labels[k] for k in sorted(labels)]) + "}"

        own = {k: pair(k, v) for k, v in base.items()}
        per_metric: dict[str, int] = {}
        labelled: list[int] = []
        dropped = 0
        for i, m in enumerate(ms):
            if m.kind is MetricKind.STATE or m.kind is MetricKind.INFO:
                labelled.append(i)
            n = per_metric.get(m.name, 0)
            if n >= cap:
                dropped += 1
                continue
            per_metric[m.name] = n + 1
            labels = dict(own)  # label name -> its escaped pair, sorted when written
            for k, v in m.labels.items():
                k = label_name(k)
                labels[k] = pair(k, label_value(v))
            name = self.metric_name(m.name)
            doc = m.help or m.name
            if m.kind is MetricKind.INFO:
                key = name if name.endswith("_info") else name + "_info"
                labels["value"] = pair("value", label_value(m.text if m.text is not None else m.value))
                group(key, doc, "info")[1].append(f"{family_base(key, 'info')}_info{braces(labels)} 1.0\n")
                continue
            typ = "counter" if m.kind is MetricKind.COUNTER else "gauge"
            _, lines, picks = group(name, doc, typ)
            suffix = "_total" if typ == "counter" else ""
            lines.append(f"{family_base(name, typ)}{suffix}{braces(labels)} %s\n")
            picks.append(i)
            if m.kind is MetricKind.STATE:
                text = m.text if m.text is not None else ("" if m.value is None else f"{m.value:g}")
                labels["state"] = pair("state", label_value(text))
                labels["severity"] = pair("severity", m.state.label)
                key = name + "_state"
                group(key, f"{doc} (current state as labels; value always 1)", "gauge")[1].append(
                    f"{key}{braces(labels)} 1.0\n"
                )
        picks = [i for _, _, p in groups.values() for i in p]
        if len(picks) > 1:
            pick: Callable[[list[Any]], tuple[Any, ...]] = itemgetter(*picks)
        elif picks:
            pick = _one(picks[0])
        else:
            pick = _no_value
        return Shape(
            keys,
            list(map(_KIND, ms)),
            list(map(_HELP, ms)),
            labelled,
            _labels(ms, labelled),
            self._meta(tuple((key, typ, doc) for (key, typ), (doc, _, _) in groups.items())),
            dropped,
            "\0".join("".join(lines) for _, lines, _ in groups.values()),
            pick,
        )

    def _meta(self, meta: tuple[tuple[str, str, str], ...]) -> tuple[tuple[str, str, str], ...]:
        """One object for equal family lists (devices of one profile): a scrape resolves each once."""
        if len(self._metas) > 10_000:
            self._metas.clear()
        return self._metas.setdefault(meta, meta)

    def _prefixes(self, base: Mapping[str, str]) -> Own:
        ident = labels_text(base)
        dev = labels_text({"device": base["device"]})
        return Own(
            dict(base),
            f"callipso_device_up{ident} ".encode(),
            f"callipso_last_successful_poll_timestamp_seconds{dev} ".encode(),
            f"callipso_last_poll_timestamp_seconds{dev} ".encode(),
            f"callipso_last_poll_duration_seconds{dev} ".encode(),
            f"callipso_device_consecutive_failures{dev} ".encode(),
            f"callipso_polls_total{dev} ".encode(),
        )

    def _own(self, base: Mapping[str, str], p: Own, status: tuple[Any, ...] | None) -> list[bytes]:
        """The device's lines of each family of :data:`DEVICE_FAMILIES`, in that order."""
        sysinfo = status[6] if status is not None else ("",) * len(SYSTEM_INFO_KEYS)
        if p.info_labels != sysinfo:
            info = {**base, **{k: self.label_value(v) for k, v in zip(SYSTEM_INFO_KEYS, sysinfo, strict=True)}}
            p.info_line = f"callipso_device_info{labels_text(info)} 1.0\n".encode()
            p.info_labels = sysinfo
        if status is None or status[0] is None:
            return [b""] * 7 + [p.info_line]  # not polled yet (or not collectable): no up/down claim
        last_poll, last_success, last_duration, failures, polls, errors, _, up = status
        polled = go_float(last_poll.timestamp()).encode() + b"\n"
        if last_success is None:
            succeeded = b""
        elif last_success == last_poll:
            succeeded = p.last_success + polled
        else:
            succeeded = _line(p.last_success, last_success.timestamp())
        return [
            p.up + (b"1.0\n" if up else b"0.0\n"),
            succeeded,
            p.last_poll + polled,
            b"" if last_duration is None else _line(p.duration, last_duration),
            _line(p.failures, failures),
            _line(p.polls, polls),
            b"".join(
                _line(
                    f"callipso_poll_errors_total{labels_text({'device': base['device'], 'kind': self.label_value(k)})} "
                    .encode(),
                    n,
                )
                for k, n in errors
            ),
            p.info_line,
        ]


def _labels(ms: list[Measurement], labelled: list[int]) -> list[tuple[Any, ...]]:
    """What names the ``_state`` and ``_info`` series of the STATE and INFO measurements at ``labelled``."""
    return [(m.state, m.text, m.value if m.text is None else None) for m in map(ms.__getitem__, labelled)]


def _no_value(values: list[Any]) -> tuple[()]:
    return ()


def _one(i: int) -> Callable[[list[Any]], tuple[Any]]:
    def pick(values: list[Any]) -> tuple[Any]:
        return (values[i],)

    return pick


def _line(prefix: bytes, value: float) -> bytes:
    """``prefix`` and the value as the client writes it; nothing for a NaN (as the client's collector
    leaves NaN samples out)."""
    if value is None or value != value:
        return b""
    return prefix + go_float(value).encode() + b"\n"


def _fill(shape: Shape, values: list[Any], floats: FloatText) -> list[bytes]:
    """The text of each family of ``shape`` with the device's ``values``: one ``%`` format for the whole
    device; a line whose value is ``None`` or NaN is left out."""
    args = shape.pick(floats.texts(values))
    if None not in args:
        return (shape.fmt % args).encode().split(b"\0")
    # \x01 marks the lines to leave out (the lines never hold control characters)
    text = shape.fmt % tuple(_LEFT_OUT if a is None else a for a in args)
    return [
        "".join([line + "\n" for line in part.split("\n")[:-1] if _LEFT_OUT not in line]).encode()
        for part in text.split("\0")
    ]


_LEFT_OUT = "\x01"
