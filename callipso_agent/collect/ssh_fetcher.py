"""Fetchers for SSH devices, and for devices polled over both SNMP and SSH (OXE, SBC)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from callipso_agent.clock import Clock
from callipso_agent.collect.coordinator import Fetcher, FetchOutput
from callipso_agent.collect.ssh import collect_ssh, system_info
from callipso_agent.errors import CallipsoError, HostKeyError, ParseError
from callipso_agent.model import Measurement, MetricKind, Severity
from callipso_agent.parsers.table import truncate
from callipso_agent.profiles.ssh import SshProfile
from callipso_agent.transports.ssh import SshPool, SshTarget


class SshFetcher:
    def __init__(self, device: str, target: SshTarget, profile: SshProfile, pool: SshPool, clock: Clock) -> None:
        self.device = device
        self.target = target
        self.profile = profile
        self.pool = pool
        self.clock = clock

    async def fetch(self) -> FetchOutput:
        session = await self.pool.session(self.target, self.profile.platform.session_spec())
        measurements = await collect_ssh(self.device, self.profile, session, self.clock)
        if measurements and all(m.state == Severity.UNKNOWN for m in measurements):
            # the device answered, but nothing it said could be read (noise, binary, another CLI): that is
            # the device's state, not a device up with every value unknown
            first = next((m.text for m in measurements if m.text), "")
            raise ParseError(f"{self.device}: no readable output from any of the {len(self.profile.commands)} "
                             f"commands of profile {self.profile.name!r}: {truncate(first, 300)}")
        system = system_info(self.profile, measurements)
        system["ssh_profile"] = self.profile.name
        return FetchOutput(measurements=measurements, system=system)

    def close(self) -> None:
        """Sessions belong to the pool, which the agent closes at stop."""


class CompositeFetcher:
    """Polls a device through several transports at once.

    The poll succeeds when one transport answers; each transport's health is a measurement
    (``collector_up{transport}``), so losing SSH on an OXE that still answers SNMP is visible without
    marking the device down. A refused SSH host key makes that measurement CRITICAL (the other failures
    leave it UNKNOWN): the device's identity is in doubt, which a rule raises as an incident.
    """

    def __init__(self, device: str, parts: Sequence[tuple[str, Fetcher]], clock: Clock) -> None:
        self.device = device
        self.parts = list(parts)
        self.clock = clock

    async def fetch(self) -> FetchOutput:
        results = await asyncio.gather(*(f.fetch() for _, f in self.parts), return_exceptions=True)
        measurements: list[Measurement] = []
        system: dict[str, str] = {}
        errors: list[BaseException] = []
        now = self.clock.now()
        for (name, _), res in zip(self.parts, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, CallipsoError):
                    raise res
                errors.append(res)
                state = Severity.CRITICAL if isinstance(res, HostKeyError) else Severity.UNKNOWN
                measurements.append(Measurement(self.device, "collector_up", 0.0, now, labels={"transport": name},
                                                kind=MetricKind.GAUGE, state=state,
                                                text=f"{res.kind}: {res}"[:300],
                                                help="1 when the transport answered the last poll"))
                continue
            measurements.extend(res.measurements)
            for k, v in res.system.items():
                system.setdefault(k, v)
            measurements.append(Measurement(self.device, "collector_up", 1.0, now, labels={"transport": name},
                                            help="1 when the transport answered the last poll"))
        if len(errors) == len(self.parts):
            raise errors[0]
        return FetchOutput(measurements=measurements, system=system)

    def close(self) -> None:
        for _, f in self.parts:
            f.close()
