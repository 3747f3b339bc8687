"""The inventory as the rule and incident engines read it: devices, their sites and service lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from callipso_agent.config.models import AgentConfig, Device, ServiceLine, Site


class Inventory:
    """Read-only lookups over sites, devices and service lines (enabled devices only)."""

    __slots__ = ("_by_site", "_devices", "_services", "_sites")

    def __init__(
        self, sites: Iterable[Site], devices: Iterable[Device], services: Iterable[ServiceLine] = ()
    ) -> None:
        self._sites: Mapping[str, Site] = MappingProxyType({s.code: s for s in sites})
        self._devices: Mapping[str, Device] = MappingProxyType({d.name: d for d in devices if d.enabled})
        self._services: Mapping[str, ServiceLine] = MappingProxyType({s.key: s for s in services})
        by_site: dict[str, list[Device]] = {}
        for d in self._devices.values():
            by_site.setdefault(d.site, []).append(d)
        self._by_site = {code: tuple(sorted(devs, key=lambda d: d.name)) for code, devs in by_site.items()}

    @classmethod
    def from_config(cls, config: AgentConfig) -> Inventory:
        return cls(config.sites, config.devices, config.services)

    @property
    def sites(self) -> Mapping[str, Site]:
        return self._sites

    @property
    def devices(self) -> Mapping[str, Device]:
        return self._devices

    @property
    def services(self) -> Mapping[str, ServiceLine]:
        return self._services

    def device(self, name: str | None) -> Device | None:
        return self._devices.get(name) if name is not None else None

    def site(self, code: str | None) -> Site | None:
        return self._sites.get(code) if code is not None else None

    def site_of(self, device: str) -> Site | None:
        dev = self._devices.get(device)
        return self._sites.get(dev.site) if dev is not None else None

    def devices_of_site(self, code: str) -> tuple[Device, ...]:
        return self._by_site.get(code, ())

    def services_of(self, device: Device | None) -> tuple[ServiceLine, ...]:
        if device is None:
            return ()
        return tuple(self._services[k] for k in device.services if k in self._services)

    @staticmethod
    def resolve(ref: str, device: Device | None, site: Site | None) -> Any:
        """Value of a validated reference (``device.attributes.x``, ``site.required_autonomy_minutes``...);
        None when the device, site, attribute or field is missing."""
        root, _, rest = ref.partition(".")
        obj: Device | Site | None = device if root == "device" else site
        if obj is None:
            return None
        if rest.startswith("attributes."):
            return obj.attributes.get(rest.removeprefix("attributes."))
        return getattr(obj, rest, None)
