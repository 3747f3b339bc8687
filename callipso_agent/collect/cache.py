"""The latest value of every series, and each device's last poll status: what /metrics and the API read."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from callipso_agent.model import Measurement, PollResult


@dataclass
class DeviceStatus:
    device: str
    last_poll: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_text: str | None = None
    last_duration: float | None = None
    consecutive_failures: int = 0
    system: dict[str, str] = field(default_factory=dict)
    polls_total: int = 0
    errors_total: dict[str, int] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.last_success is not None and self.consecutive_failures == 0


class LatestCache:
    def __init__(self) -> None:
        self._series: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Measurement]] = {}
        self._status: dict[str, DeviceStatus] = {}
        #: device -> (number of its last update, number of the update that last replaced its series), from
        #: one counter that never goes back: readers tell what changed since they last looked
        self._versions: dict[str, tuple[int, int]] = {}
        self._updates = itertools.count(1)

    def update(self, result: PollResult) -> None:
        n = next(self._updates)
        self._versions[result.device] = (n, n if result.ok else self._versions.get(result.device, (0, 0))[1])
        st = self._status.setdefault(result.device, DeviceStatus(result.device))
        st.last_poll = result.started
        st.last_duration = result.duration
        st.polls_total += 1
        if result.ok:
            st.last_success = result.started
            st.last_error = None
            st.last_error_text = None
            st.consecutive_failures = 0
            st.system = dict(result.system)
            # replace the device's series: series that disappeared are stale
            self._series[result.device] = {(m.name, tuple(m.labels.items())): m for m in result.measurements}
        else:
            st.consecutive_failures += 1
            st.last_error = result.error
            st.last_error_text = result.error_text
            st.errors_total[result.error or "error"] = st.errors_total.get(result.error or "error", 0) + 1

    def forget(self, devices: Iterable[str]) -> None:
        for d in devices:
            self._series.pop(d, None)
            self._status.pop(d, None)
            self._versions.pop(d, None)

    def measurements(self, device: str | None = None) -> list[Measurement]:
        if device is not None:
            return list(self._series.get(device, {}).values())
        return [m for series in self._series.values() for m in series.values()]

    def version(self, device: str) -> tuple[int, int]:
        """When the device last changed: the number of its last update (poll result) and of the last one
        that replaced its series; ``(0, 0)`` for a device the cache does not know. Numbers only grow, across
        devices and :meth:`forget`."""
        return self._versions.get(device, (0, 0))

    def series(self, device: str) -> Mapping[tuple[str, tuple[tuple[str, str], ...]], Measurement] | None:
        """The device's series by (name, labels), in poll order; ``None`` while it has none. Each successful
        poll replaces the mapping (it is never changed in place), so a reader may keep it as a snapshot of
        the device's series. Do not modify it."""
        return self._series.get(device)

    def status(self, device: str) -> DeviceStatus | None:
        return self._status.get(device)

    def statuses(self) -> list[DeviceStatus]:
        return list(self._status.values())

    def devices(self) -> list[str]:
        return sorted(self._status)
