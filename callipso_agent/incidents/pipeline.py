"""Rules then incidents, as the daemon drives them: ``on_poll``, ``on_event`` and a periodic ``tick``.

pipeline = IncidentPipeline.build(store, loaded.config, clock)   # shipped rules, contract, maintenance
await pipeline.start()                                           # after store.migrate()
app.result_hooks.append(pipeline.on_poll)                        # every PollResult
traps -> await pipeline.on_event(event)                          # every Event
Alertmanager -> await pipeline.on_event(event, durable=True)     # raises NotStored: answer 503, it resends
every 15 s: await pipeline.tick()                                # for-delays, silence, hold, deadlines
pipeline.incidents                                               # read/write API (HTTP, CLI, outbox)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from callipso_agent.clock import Clock
from callipso_agent.config.models import AgentConfig
from callipso_agent.errors import NotStored
from callipso_agent.incidents.contract import Contract, load_contract
from callipso_agent.incidents.engine import IncidentEngine, IncidentSettings
from callipso_agent.incidents.maintenance import MaintenanceBook, load_maintenance_file
from callipso_agent.model import Event, PollResult
from callipso_agent.paths import runbooks_dir
from callipso_agent.rules.engine import RuleEngine
from callipso_agent.rules.inventory import Inventory
from callipso_agent.rules.loader import RuleSet, load_rules
from callipso_agent.store.db import Store
from callipso_agent.store.incidents import IncidentRepository

log = structlog.get_logger()

TICK_SECONDS = 15.0


class IncidentPipeline:
    """The rule engine feeding the incident engine. ``owns(device)`` filters what this agent handles
    (high availability: the devices leased to it); by default it handles every device."""

    def __init__(
        self,
        store: Store,
        config: AgentConfig,
        clock: Clock,
        *,
        rules: RuleSet,
        contract: Contract,
        maintenance: MaintenanceBook | None = None,
        settings: IncidentSettings | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.clock = clock
        self.inventory = Inventory.from_config(config)
        self.rules = RuleEngine(rules, self.inventory, clock)
        self.owns: Callable[[str], bool] = owns or (lambda _device: True)
        self.incidents = IncidentEngine(
            IncidentRepository(store),
            rules,
            self.inventory,
            contract,
            clock,
            maintenance=maintenance or MaintenanceBook(store, clock),
            settings=settings or IncidentSettings(lang=config.agent.language),
            owns=lambda device: self.owns(device),
        )

    @classmethod
    def build(
        cls,
        store: Store,
        config: AgentConfig,
        clock: Clock,
        *,
        rules_path: Path | None = None,
        contract_path: Path | None = None,
        maintenance_path: Path | None = None,
        settings: IncidentSettings | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> IncidentPipeline:
        """With the shipped files by default (``checks/rules``, ``checks/contract.yaml``,
        ``checks/maintenance.yaml``). Raises ConfigError(s) naming file, line and field."""
        rules = load_rules(rules_path, runbooks=runbooks_dir())
        contract = load_contract(contract_path)
        windows = load_maintenance_file(maintenance_path)
        return cls(
            store,
            config,
            clock,
            rules=rules,
            contract=contract,
            maintenance=MaintenanceBook(store, clock, windows),
            settings=settings,
            owns=owns,
        )

    async def start(self) -> None:
        """Read the unresolved incidents and give their problems back to the rule engine."""
        await self._restore()

    async def _restore(self) -> None:
        open_incidents = await self.incidents.load()
        restored = 0
        for rec in open_incidents:
            if rec.cleared_at is None and rec.device is not None and self.owns(rec.device):
                restored += self.rules.restore(
                    rec.rule, rec.device, rec.labels, rec.severity, rec.last_signal_at
                )
        log.info("incidents_loaded", unresolved=len(open_incidents), restored=restored)

    async def on_poll(self, result: PollResult) -> None:
        if not self.owns(result.device):
            return
        await self.incidents.handle(self.rules.on_poll(result))

    async def on_event(self, event: Event, *, durable: bool = False) -> None:
        """Apply an event. With ``durable`` (its sender retries, e.g. Alertmanager), raise ``NotStored`` when
        an incident change it raises or clears is only in memory, waiting for the store: answered with an
        error, the sender sends it again, whereas an event acknowledged but not written would be lost if the
        agent stopped before the store came back. A repeated event whose change is still waiting raises too."""
        if not self.owns(event.device):
            return
        signals = self.rules.on_event(event)
        await self.incidents.handle(signals)
        if durable:
            waiting = self.incidents.deferred({s.key for s in signals} | self.rules.event_keys(event))
            if waiting:
                raise NotStored("incident change not written yet: the store refuses writes", sorted(waiting))

    async def tick(self) -> None:
        """Every ``TICK_SECONDS`` or so: rule timers then incident timers."""
        self.rules.forget(lambda device: not self.owns(device))
        await self.incidents.handle(self.rules.tick())
        await self.incidents.tick()

    async def takeover(self) -> None:
        """Call after the set of owned devices changed (leases): drop what left, restore what came."""
        self.rules.forget(lambda device: not self.owns(device))
        await self._restore()

    def reload(self, config: AgentConfig) -> None:
        """A validated new configuration (SIGHUP): swap the inventory."""
        self.inventory = Inventory.from_config(config)
        self.rules.set_inventory(self.inventory)
        self.incidents.set_inventory(self.inventory)
