"""Fetcher for SNMP devices: detect the profile once, then fetch and build measurements each poll."""

from __future__ import annotations

import structlog

from callipso_agent.clock import Clock
from callipso_agent.collect.coordinator import FetchOutput
from callipso_agent.profiles.engine import build, fetch, identify, system_info
from callipso_agent.profiles.loader import Identity, ProfileSet, ResolvedProfile
from callipso_agent.transports.snmp import SnmpClient

log = structlog.get_logger()


class SnmpFetcher:
    def __init__(self, device: str, family: str, client: SnmpClient, profiles: ProfileSet, clock: Clock,
                 profile: str = "auto", redetect_every: int = 360) -> None:
        self.device = device
        self.family = family
        self.client = client
        self.profiles = profiles
        self.clock = clock
        self.profile_name = profile
        self.redetect_every = redetect_every
        self._profile: ResolvedProfile | None = None
        self._ident = Identity()
        self._polls = 0

    @property
    def profile(self) -> ResolvedProfile | None:
        return self._profile

    async def _resolve(self) -> ResolvedProfile:
        if self._profile is not None and self._polls % self.redetect_every:
            return self._profile
        self._ident = await identify(self.client, self.profiles, self.family)
        if self.profile_name != "auto":
            chosen = self.profiles.get(self.profile_name)
        else:
            chosen = self.profiles.detect(self._ident, self.family)
        if self._profile is None or chosen.name != self._profile.name:
            log.info("profile_selected", device=self.device, profile=chosen.name,
                     sys_object_id=self._ident.sys_object_id)
        self._profile = chosen
        return chosen

    async def fetch(self) -> FetchOutput:
        profile = await self._resolve()
        self._polls += 1
        raw = await fetch(self.client, profile)
        at = self.clock.now()
        measurements = build(self.device, profile, raw, at)
        system = system_info(profile, raw, self._ident)
        system["profile"] = profile.name
        return FetchOutput(measurements=measurements, system=system)

    def close(self) -> None:
        self.client.close()
