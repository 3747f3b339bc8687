"""Real poll results from the fixture recordings: each recording served by udpsim (the project's responder,
on 127.0.0.1) and polled once by the agent's own SNMP fetcher (profile detection, FastSnmpClient)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from callipso_agent.clock import SystemClock
from callipso_agent.collect.snmp_fetcher import SnmpFetcher
from callipso_agent.config.secrets import Secret
from callipso_agent.lab.udpsim import UdpSim
from callipso_agent.model import PollResult
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine
from tests.helpers.polling import V2C, shipped_profiles


async def poll_recordings(
    recordings: Sequence[tuple[str, str | None, Path]], profiles: ProfileSet | None = None
) -> dict[str, PollResult]:
    """``(device, family, recording)`` each polled once; the result of each device (failed polls included,
    as ``PollResult`` errors, like the agent's)."""
    profiles = profiles or shipped_profiles()
    clock = SystemClock()
    sim = UdpSim(host="127.0.0.1")
    loaded: dict[Path, object] = {}
    for device, _, path in recordings:
        rec = loaded.setdefault(path, sim.load(path))
        sim.add_device(device, rec, port=0 if not sim.ports else sim.ports[0])  # type: ignore[arg-type]
    await sim.start()
    engine = FastSnmpEngine(bind_v4="127.0.0.1")
    out: dict[str, PollResult] = {}
    try:
        port = sim.ports[0]
        for device, family, _ in recordings:
            client = FastSnmpClient(engine, "127.0.0.1", port, V2C, {"community": Secret(device)}, timeout=2.0)
            fetcher = SnmpFetcher(device, family, client, profiles, clock)  # type: ignore[arg-type]
            started = clock.now()
            try:
                got = await fetcher.fetch()
            except Exception as err:  # a recording the profiles cannot read: a failed poll, as in the agent
                out[device] = PollResult(device, started, 0.1, error=type(err).__name__, error_text=str(err))
            else:
                out[device] = PollResult(device, started, 0.1, tuple(got.measurements), system=got.system)
            finally:
                fetcher.close()
    finally:
        engine.close()
        await sim.stop()
    return out
