"""Two agents on one store: each handles the devices leased to it; a dead agent's incident is carried on."""

from __future__ import annotations

from callipso_agent.clock import ManualClock
from callipso_agent.ha import LeaseManager
from callipso_agent.store import Store
from tests.helpers.estate import DEVICES
from tests.incidents.harness import Scenario


class Agent:
    def __init__(self, name: str, store: Store, clock: ManualClock) -> None:
        self.owned: set[str] = set()
        self.leases = LeaseManager(store, name, clock, ttl=40)
        self.sc = Scenario(store, clock)
        self.sc.pipeline.owns = lambda device: device in self.owned

    async def renew(self) -> None:
        owned = await self.leases.owned_devices(DEVICES)
        changed = owned != self.owned
        self.owned = owned
        if changed:
            await self.sc.pipeline.takeover()

    async def poll(self, on_battery: bool) -> None:
        """Poll the devices this agent owns (the UPS of Aubagne on battery or not, the others fine)."""
        for d in sorted(self.owned):
            if d == "ups-aubagne":
                await self.sc.value(d, "ups_on_battery", 1.0 if on_battery else 0.0)
            else:
                await self.sc.ok(d)
        await self.sc.pipeline.tick()


async def test_takeover_carries_the_open_incident_without_duplicating_it(store_url: str) -> None:
    clock = ManualClock()
    stores = [Store(store_url), Store(store_url)]
    await stores[0].migrate()
    try:
        a, b = Agent("agent-a", stores[0], clock), Agent("agent-b", stores[1], clock)
        await a.sc.start()
        await b.sc.start()
        agents = [a, b]
        for _ in range(12):  # two minutes: leases settle, the UPS goes on battery, an incident opens
            for ag in agents:
                await ag.renew()
                await ag.poll(on_battery=True)
            clock.advance(10)
        assert not (a.owned & b.owned) and a.owned | b.owned == {d.name for d in DEVICES}
        holder, other = (a, b) if "ups-aubagne" in a.owned else (b, a)
        (incident,) = await other.sc.rows()
        assert incident.key == "ups_on_battery:ups-aubagne" and incident.state == "open"
        assert holder.sc.kinds() == ["opened"] and other.sc.kinds() == []

        for _ in range(9):  # the holder dies: only the other agent runs, still on battery
            await other.renew()
            await other.poll(on_battery=True)
            clock.advance(10)
        assert "ups-aubagne" in other.owned
        for _ in range(40):  # mains back: the survivor clears and resolves the incident
            await other.renew()
            await other.poll(on_battery=False)
            clock.advance(10)
        (after,) = await other.sc.rows()
        assert after.id == incident.id and after.state == "resolved"
        assert other.sc.kinds() == ["resolved"]
    finally:
        for s in stores:
            await s.close()
