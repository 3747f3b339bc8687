"""The composition root: the only place that wires concrete parts together.

``App`` loads the configuration and profiles, opens and migrates the store, builds one
coordinator per device, schedules them with APScheduler (with jitter), serves HTTP, and handles
SIGTERM/SIGINT (graceful stop) and SIGHUP (validated reload).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from callipso_agent.clock import Clock, SystemClock
from callipso_agent.collect.cache import LatestCache
from callipso_agent.collect.coordinator import DevicePoller
from callipso_agent.collect.snmp_fetcher import SnmpFetcher
from callipso_agent.collect.ssh_fetcher import CompositeFetcher, SshFetcher
from callipso_agent.config.loader import LoadedConfig, load_config
from callipso_agent.config.models import Device, SnmpV2Credential, SnmpV3Credential, SshCredential
from callipso_agent.errors import CallipsoError, ConfigErrors, ProfileError
from callipso_agent.health import DeliveryCounters, OutboxGauges, StoreHealth
from callipso_agent.looplag import LoopLagMonitor
from callipso_agent.metrics import ApiAuthStats, NotificationStats, TrapStats, app_metrics, metrics_routes
from callipso_agent.model import Event, PollResult, Severity
from callipso_agent.paths import collectors_dir
from callipso_agent.profiles.loader import ProfileSet, load_profiles
from callipso_agent.profiles.ssh import SshProfile, available_ssh_profiles, load_ssh_profile
from callipso_agent.store import Store
from callipso_agent.store.poll_writer import PollStateWriter
from callipso_agent.transports.engines import SnmpEngines
from callipso_agent.transports.snmp import resolve_snmp_secrets
from callipso_agent.transports.ssh import SshPool, SshTarget
from callipso_agent.urgent import UrgentWork

log = structlog.get_logger()
TICK_SECONDS = 15.0  # rule "for" durations, absences, hold times and SLA deadlines advance on this tick
POLL_JOB = "poll:"  # scheduler job ids: poll:<device> every interval, poll-first:<device> once at start
FIRST_POLL_JOB = "poll-first:"
FIRST_POLLS_PER_SECOND = 100.0  # after a start or a reload: devices whose first poll starts in a second, at most


def poll_phase(site: str, interval: float, first: float) -> float:
    """Seconds from now to a device's second poll, from which it is polled every interval: its site's phase in
    the interval (from a hash of the site's code, like Prometheus' scrape offsets: the same at every start and
    on every agent), at least half an interval after its first poll (``first`` seconds from now). The devices
    of a site share the phase so that a site cut off is seen failing by all its devices at once: with a phase
    per device they failed up to an interval apart, and some opened their own incident before the site's
    (its ``delay`` is 90 s)."""
    offset = interval * (zlib.crc32(site.encode("utf-8")) / 2**32)
    while offset < first + interval / 2:
        offset += interval
    return offset

ResultHook = Callable[[PollResult], Any]


def load_all(config_path: Path, profiles_dir: Path | None = None) -> tuple[LoadedConfig, ProfileSet]:
    """Load profiles then the configuration validated against them (raises ConfigErrors)."""
    profiles = load_profiles(profiles_dir or collectors_dir())
    families = known_families()
    declared = ", ".join(sorted(families))
    errors = [ProfileError(f"unknown family {f!r}; families are declared in _families.yaml: {declared}",
                           file=p.file, field="families")
              for p in profiles.profiles.values() for f in p.profile.families if f not in families]
    if errors:
        raise ConfigErrors(list(errors))
    loaded = load_config(config_path, families=families, profiles=profiles.names())
    return loaded, profiles


def known_families() -> set[str]:
    """Families declared in ``collectors/_families.yaml``; every profile serves some of them."""
    import yaml

    path = collectors_dir() / "_families.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return set((data.get("families") or {}).keys())


def load_ssh_families() -> dict[str, SshProfile]:
    """SSH profiles by the family they serve."""
    out: dict[str, SshProfile] = {}
    for name in available_ssh_profiles():
        p = load_ssh_profile(name)
        out.setdefault(p.family, p)
    return out


@dataclass
class Runtime:
    """What one configuration generation runs: pollers and their scheduler jobs."""

    loaded: LoadedConfig
    profiles: ProfileSet
    pollers: dict[str, DevicePoller] = field(default_factory=dict)


def freeze_heap() -> int:
    """Keep what the start (or a reload) built out of the garbage collector's full collections.

    Modules, MIBs, profiles and the configuration live as long as the process; a full collection walks every
    object of the heap while the event loop waits (about 280 ms a time at 2,000 devices, 3 a poll cycle run
    flat out; 160 ms once they are frozen). What a reload replaced is unfrozen first, so that its reference
    cycles are collected rather than kept for ever. Returns the number of objects frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class App:
    def __init__(self, config_path: Path, *, clock: Clock | None = None, profiles_dir: Path | None = None,
                 http_port: int | None = None) -> None:
        self.config_path = config_path
        self.profiles_dir = profiles_dir
        self.clock = clock or SystemClock()
        self.cache = LatestCache()
        self.http_port_override = http_port
        self.runtime: Runtime | None = None
        self.store: Store | None = None
        self.poll_writer: PollStateWriter | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.http: Any = None
        self.snmp_engines: SnmpEngines | None = None
        self.ssh_pool: SshPool | None = None
        self._ssh_profiles: dict[str, SshProfile] = {}
        self.result_hooks: list[ResultHook] = []
        self.pipeline: Any = None
        self.outputs: Any = None
        self.meteo: Any = None
        self.traps: Any = None
        self.open_incidents: Any = None
        self.leases: Any = None
        self._owned: set[str] | None = None  # devices leased to this agent (None: all)
        self.loop_lag = LoopLagMonitor(self.clock.monotonic)
        self.store_health = StoreHealth()
        self.notification_stats = NotificationStats()
        self.deliveries = DeliveryCounters(self.notification_stats)
        self.outbox_gauges: OutboxGauges | None = None
        self.urgent = UrgentWork()  # a trap's incident goes before new polls
        self._metric_sources: list[Any] = [
            self.store_health, self.deliveries, self.urgent, TrapStats(lambda: self.traps),
            ApiAuthStats(lambda: self.outputs.auth if self.outputs is not None else None)]
        self.metrics_registry, poll_observer = app_metrics(
            self, incidents=lambda: self.open_incidents() if self.open_incidents is not None else [],
            notifications=self.notification_stats, sources=self._metric_sources)
        self.result_hooks.append(poll_observer)
        self._stop = asyncio.Event()
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- building -----------------------------------------------------------------------------------
    def _build_pollers(self, loaded: LoadedConfig, profiles: ProfileSet) -> dict[str, DevicePoller]:
        cfg = loaded.config
        assert self.snmp_engines is not None
        sites = {s.code: s for s in cfg.sites}
        pollers: dict[str, DevicePoller] = {}
        for dev in cfg.devices:
            if not dev.enabled:
                continue
            fetcher = self._fetcher_for(dev, loaded, profiles)
            if fetcher is None:
                continue
            timeout = dev.timeout * (dev.retries + 1) * 4 + 5
            if dev.ssh is not None:
                timeout = max(timeout, cfg.agent.ssh.session_timeout + 5)
            pollers[dev.name] = DevicePoller(
                dev.name, sites[dev.site].code, dev.family, fetcher, self.clock, self._on_result,
                interval=dev.interval, timeout=timeout,
                backoff_max=cfg.agent.snmp.backoff_max,
            )
        return pollers

    def _fetcher_for(self, dev: Device, loaded: LoadedConfig, profiles: ProfileSet) -> Any:
        parts: list[tuple[str, Any]] = []
        snmp = self._snmp_fetcher(dev, loaded, profiles)
        if snmp is not None:
            parts.append(("snmp", snmp))
        ssh = self._ssh_fetcher(dev, loaded)
        if ssh is not None:
            parts.append(("ssh", ssh))
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0][1]
        return CompositeFetcher(dev.name, parts, self.clock)

    def _ssh_fetcher(self, dev: Device, loaded: LoadedConfig) -> SshFetcher | None:
        if dev.ssh is None:
            return None
        cfg = loaded.config
        profile = self._ssh_profiles.get(dev.family)
        if profile is None:
            log.warning("no_ssh_profile", device=dev.name, family=dev.family)
            return None
        cred = cfg.credentials[dev.ssh]
        assert isinstance(cred, SshCredential)
        try:
            target = SshTarget.from_credential(dev.name, dev.address, dev.ssh_port, cred,
                                               default_known_hosts=loaded.state_dir / "known_hosts",
                                               base_dir=loaded.base_dir, connect_timeout=dev.timeout * 2)
        except CallipsoError as err:
            log.error("credential_unavailable", device=dev.name, credential=dev.ssh, error=str(err))
            return None
        assert self.ssh_pool is not None
        return SshFetcher(dev.name, target, profile, self.ssh_pool, self.clock)

    def _snmp_fetcher(self, dev: Device, loaded: LoadedConfig, profiles: ProfileSet) -> SnmpFetcher | None:
        cfg = loaded.config
        if dev.snmp is not None:
            cred = cfg.credentials[dev.snmp]
            assert isinstance(cred, (SnmpV2Credential, SnmpV3Credential))
            try:
                secrets = resolve_snmp_secrets(cred, loaded.base_dir)
            except CallipsoError as err:
                log.error("credential_unavailable", device=dev.name, credential=dev.snmp, error=str(err))
                return None
            assert self.snmp_engines is not None
            client = self.snmp_engines.client_for(dev.address, dev.port or 161, cred, secrets,
                                                  timeout=dev.timeout, retries=dev.retries,
                                                  max_repetitions=cfg.agent.snmp.max_repetitions)
            return SnmpFetcher(dev.name, dev.family, client, profiles, self.clock, dev.profile)
        return None

    # ---- results ------------------------------------------------------------------------------------
    async def _on_result(self, result: PollResult) -> None:
        self.cache.update(result)
        if self.poll_writer is not None:
            # written in batches, about once a second (one commit for many polls)
            self.poll_writer.submit(result, result.system.get("profile") if result.ok else None)
        for hook in self.result_hooks:
            out = hook(result)
            if asyncio.iscoroutine(out):
                await out

    # ---- lifecycle ----------------------------------------------------------------------------------
    def inventory_view(self) -> dict[str, dict[str, Any]]:
        if self.runtime is None:
            return {}
        return {d.name: {"name": d.name, "site": d.site, "family": d.family, "address": d.address,
                         "services": list(d.services), "enabled": d.enabled}
                for d in self.runtime.loaded.config.devices}

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        store_ok = self.store is not None and await self.store.ping()
        sched_ok = self.scheduler is not None and self.scheduler.running
        polled = sum(1 for s in self.cache.statuses() if s.last_poll is not None)
        total = len(self.runtime.pollers) if self.runtime else 0
        owned = len(self._owned) if self._owned is not None else total
        failing = self.store_health.failing_now()
        ok = store_ok and not failing and sched_ok and (total == 0 or owned == 0 or polled > 0)
        return ok, {"store": store_ok, "store_writable": not failing, "store_errors": failing,
                    "scheduler": sched_ok, "devices": total, "devices_owned": owned,
                    "devices_polled": polled,
                    "devices_up": sum(1 for s in self.cache.statuses() if s.up)}

    async def start(self) -> None:
        from callipso_agent.api.server import HttpServer

        loaded, profiles = load_all(self.config_path, self.profiles_dir)
        cfg = loaded.config
        state_dir = loaded.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        url = cfg.agent.store.url.replace("{state_dir}", str(state_dir))
        self.store = Store(url)
        await self.store.migrate()
        def device_state_outcome(err: Exception | None) -> None:
            if err is None:
                self.store_health.ok("device_state")
            else:
                self.store_health.failed("device_state", err)

        self.poll_writer = PollStateWriter(self.store, on_outcome=device_state_outcome)
        self.poll_writer.start()
        self.snmp_engines = SnmpEngines(cfg.agent.snmp.max_concurrency, cfg.agent.snmp.client)
        self.ssh_pool = SshPool(semaphore=asyncio.Semaphore(cfg.agent.ssh.max_concurrency),
                                command_timeout=cfg.agent.ssh.command_timeout,
                                session_timeout=cfg.agent.ssh.session_timeout)
        self._ssh_profiles = load_ssh_families()
        self.scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                        "misfire_grace_time": None})
        self.runtime = Runtime(loaded, profiles)
        self.runtime.pollers = self._build_pollers(loaded, profiles)
        from callipso_agent.ha import LeaseManager

        self.leases = LeaseManager(self.store, cfg.agent.name, self.clock, ttl=cfg.agent.lease_ttl)
        self._owned = await self.leases.owned_devices(cfg.devices)
        await self._start_incidents(cfg)
        self._schedule(self.runtime)
        self.scheduler.add_job(self._tick, IntervalTrigger(seconds=TICK_SECONDS), id="incidents:tick",
                               name="incident clocks", replace_existing=True)
        self.scheduler.add_job(self._renew_leases, IntervalTrigger(seconds=self.leases.renew_every),
                               id="ha:leases", name="device leases", replace_existing=True)
        port = self.http_port_override if self.http_port_override is not None else cfg.agent.http.port
        self.http = HttpServer(self.cache, host=cfg.agent.http.host, port=port, ready=self.ready,
                               inventory=self.inventory_view)
        refresh = [self.outbox_gauges.refresh] if self.outbox_gauges is not None else []
        self.http.add_routes(metrics_routes(self.metrics_registry, refresh=refresh))
        self._start_meteo()
        self.outputs.install(self.http)
        self.scheduler.start()
        self.loop_lag.start()
        await self.http.start()
        await self.outputs.start()
        await self._start_traps(loaded)
        self._started = True
        log.info("agent_started", devices=len(self.runtime.pollers), config=str(self.config_path),
                 frozen_objects=freeze_heap())

    async def _start_incidents(self, cfg: Any) -> None:
        """Rules → incidents → outputs (ITSM, notifications, API), wired through the ports."""
        from callipso_agent.incidents.adapters import (
            EngineIncidentSource,
            EngineMaintenanceSource,
            OpenIncidents,
            notice_to_change,
        )
        from callipso_agent.incidents.contract import load_contract
        from callipso_agent.incidents.pipeline import IncidentPipeline
        from callipso_agent.outputs_app import build_outputs

        assert self.store is not None
        self.pipeline = IncidentPipeline.build(self.store, cfg, self.clock, owns=self.owns)
        await self.pipeline.start()
        self.result_hooks.append(self.pipeline.on_poll)
        engine = self.pipeline.incidents
        self.open_incidents = OpenIncidents(engine)
        await self.open_incidents.refresh()
        self.outputs = build_outputs(
            self.config_path, agent=cfg.agent, store=self.store, clock=self.clock,
            incidents=EngineIncidentSource(engine), maintenance=EngineMaintenanceSource(engine),
            # Alertmanager retries what it could not deliver: an alert whose incident change is not written yet
            # is answered 503 (NotStored), never acknowledged while it exists only in memory
            events=functools.partial(self.pipeline.on_event, durable=True),
            calendar=load_contract().business_calendar(), audit=self.store,
            on_attempt=self.deliveries)
        self.store_health.watch("incidents", lambda: engine.store_failing)
        self.outbox_gauges = OutboxGauges(self.outputs.outbox)
        self._metric_sources.append(self.outbox_gauges)

        async def on_notice(notice: Any) -> None:
            await self.outputs.on_change(notice_to_change(notice, self.clock.now()))
            self.open_incidents.stale()

        engine.subscribe(on_notice, replays=True)
        # a change committed just before the agent stopped may have missed its ticket or notifications
        try:
            await engine.replay_notices()
        except Exception:
            log.exception("incident_replay_failed")
            engine.schedule_replay()

    def _start_meteo(self) -> None:
        from callipso_agent.meteo.service import schedule_meteo
        from callipso_agent.meteo.wiring import create_meteo_service, meteo_web_routes

        assert self.store is not None and self.http is not None and self.scheduler is not None
        engine = self.pipeline.incidents
        self.meteo = create_meteo_service(
            self.config_path, config=lambda: self.runtime.loaded.config if self.runtime else None,
            cache=self.cache, clock=self.clock, store_engine=self.store.engine,
            incidents=lambda: engine.open_incidents(), on_failed_check=self._on_failed_check,
            families=known_families())
        schedule_meteo(self.scheduler, self.meteo)
        # with several agents on one store, the météo is sent by one of them only, once a day
        job = self.scheduler.get_job("meteo")
        if job is not None:
            job.modify(func=self._meteo_once)
        self.http.add_routes(meteo_web_routes(self.meteo))

    async def _on_failed_check(self, failed: Any, at: Any) -> None:
        """A failed daily check opens a technical incident, unless one is already open for the device."""
        engine = self.pipeline.incidents
        device = failed.device or (failed.devices[0] if failed.devices else None)
        if device is None:
            log.warning("daily_check_without_device", check=failed.check_id)
            return
        open_now = await engine.open_incidents(device=device)
        if open_now:
            for view in open_now:
                await engine.daily_check_failed(view.id, at)
            return
        await self.pipeline.on_event(Event(
            device=device, name="daily_check_failed", severity=Severity.WARNING, at=at,
            text=failed.summary(self.runtime.loaded.config.agent.language if self.runtime else "fr"),
            labels={"check": failed.check_id}))

    async def _start_traps(self, loaded: LoadedConfig) -> None:
        from callipso_agent.traps import DeviceRef, TrapReceiver, TrapV3User, load_trap_rules

        cfg = loaded.config
        if not cfg.agent.traps.enabled:
            return
        communities = []
        users = []
        for name in cfg.agent.traps.communities:
            cred = cfg.credentials[name]
            assert isinstance(cred, SnmpV2Credential)
            communities.append(cred.community.resolve(loaded.base_dir))
        devices = {d.address: DeviceRef(d.name, {"site": d.site, "family": d.family}) for d in cfg.devices}
        for name in cfg.agent.traps.v3_users:
            v3 = cfg.credentials[name]
            assert isinstance(v3, SnmpV3Credential)
            secrets = resolve_snmp_secrets(v3, loaded.base_dir)
            # a credential with an engine ID that one device alone uses names that device's traps
            owners = [d for d in cfg.devices if d.snmp == name]
            owner = (DeviceRef(owners[0].name, {"site": owners[0].site, "family": owners[0].family})
                     if len(owners) == 1 and v3.engine_id else None)
            users.append(TrapV3User(user=v3.user, auth_protocol=v3.auth_protocol, auth_key=secrets.get("auth_key"),
                                    priv_protocol=v3.priv_protocol, priv_key=secrets.get("priv_key"),
                                    engine_id=v3.engine_id, device=owner))
        self.traps = TrapReceiver(load_trap_rules(collectors_dir() / "traps"),
                                  self.urgent.wrap(self.pipeline.on_event),
                                  host=cfg.agent.traps.host, port=cfg.agent.traps.port, communities=communities,
                                  v3_users=users, devices=devices, clock=self.clock)
        await self.traps.start()

    def owns(self, device: str) -> bool:
        return self._owned is None or device in self._owned

    async def _renew_leases(self) -> None:
        """Renew this agent's leases; take over the devices of an agent that stopped renewing its own."""
        if self.leases is None or self.runtime is None:
            return
        try:
            owned = await self.leases.owned_devices(self.runtime.loaded.config.devices)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lease_renewal_failed")
            return
        if owned != self._owned:
            gained = sorted(owned - (self._owned or set()))
            lost = sorted((self._owned or set()) - owned)
            self._owned = owned
            log.info("devices_leased", owned=len(owned), gained=len(gained), lost=len(lost))
            if gained:
                await self.pipeline.takeover()

    async def _meteo_once(self) -> None:
        day = self.clock.now().date().isoformat()
        async with self.leases.singleton("meteo", run_key=day) as mine:
            if mine:
                await self.meteo.run_scheduled()
            else:
                log.info("meteo_sent_by_another_agent", day=day)

    async def _tick(self) -> None:
        try:
            await self.pipeline.tick()
            await self.open_incidents.refresh()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("incident_tick_failed")

    def _schedule(self, runtime: Runtime) -> None:
        """Each device is polled once within a few seconds (after a start or a reload the whole estate is
        known at once), then every interval at its site's phase (:func:`poll_phase`), so that the polls of a
        large estate are spread over the interval instead of all starting in the same few seconds of it."""
        from datetime import datetime

        from apscheduler.triggers.date import DateTrigger

        assert self.scheduler is not None
        jitter_frac = runtime.loaded.config.agent.jitter
        now = datetime.now().astimezone()
        # the first polls (profile detection included) start at FIRST_POLLS_PER_SECOND at most: 2,000 devices
        # started within 5 s outlasted the poll timeout on a loaded 2-core machine and all failed at once
        estate = len(runtime.pollers) / FIRST_POLLS_PER_SECOND
        for name, poller in runtime.pollers.items():
            first = self._first_run(poller.interval, jitter_frac, estate)
            self.scheduler.add_job(self._run_poll, DateTrigger(first), args=[poller], id=f"{FIRST_POLL_JOB}{name}",
                                   name=f"first poll {name}", replace_existing=True)
            self.scheduler.add_job(
                self._run_poll, IntervalTrigger(seconds=poller.interval, jitter=poller.interval * jitter_frac),
                args=[poller], id=f"{POLL_JOB}{name}", name=f"poll {name}", replace_existing=True,
                next_run_time=now + timedelta(seconds=poll_phase(poller.site, poller.interval,
                                                                 (first - now).total_seconds())),
            )

    def _first_run(self, interval: float, jitter: float, estate: float = 0.0) -> Any:
        """When to poll a device first: within 5 s (a tenth of its interval at most), or within ``estate``
        seconds for a large estate, half an interval at most."""
        import random
        from datetime import datetime

        spread = max(min(interval * max(jitter, 0.05), 5.0), min(estate, interval / 2))
        return datetime.now().astimezone() + timedelta(seconds=random.uniform(0, spread))  # noqa: S311

    def _unschedule(self, names: Any) -> None:
        assert self.scheduler is not None
        for name in names:
            for job in (f"{POLL_JOB}{name}", f"{FIRST_POLL_JOB}{name}"):
                try:
                    self.scheduler.remove_job(job)
                except Exception:  # noqa: S110 - job already gone (a first poll that ran)
                    pass

    async def _run_poll(self, poller: DevicePoller) -> None:
        if not self.owns(poller.device):
            return  # leased to another agent
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self.urgent.before_poll()
            with structlog.contextvars.bound_contextvars(device=poller.device, site=poller.site):
                await poller.poll()
        except asyncio.CancelledError:
            log.debug("poll_cancelled", device=poller.device)  # shutting down: nothing half-written
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def reload(self) -> bool:
        """Validate the new configuration first; on error keep the running one and say why."""
        try:
            loaded, profiles = load_all(self.config_path, self.profiles_dir)
        except ConfigErrors as errs:
            log.error("reload_refused", errors=[str(e) for e in errs.errors])
            return False
        except CallipsoError as err:
            log.error("reload_refused", errors=[str(err)])
            return False
        assert self.scheduler is not None and self.runtime is not None
        old = self.runtime
        self._unschedule(old.pollers)
        new = Runtime(loaded, profiles)
        if self.snmp_engines is not None:
            self.snmp_engines.client = loaded.config.agent.snmp.client
        new.pollers = self._build_pollers(loaded, profiles)
        gone = set(old.pollers) - set(new.pollers)
        self.cache.forget(gone)
        for p in old.pollers.values():
            p.close()
        self.runtime = new
        if self.pipeline is not None:
            self.pipeline.reload(loaded.config)
        self._schedule(new)
        log.info("config_reloaded", devices=len(new.pollers), removed=sorted(gone), frozen_objects=freeze_heap())
        return True

    async def stop(self, grace: float = 3.0) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await self.loop_lag.stop()
        if self.open_incidents is not None:
            await self.open_incidents.close()
        if self.traps is not None:
            await self.traps.stop()
        if self.leases is not None and self.store is not None:
            try:
                await self.leases.release()  # the other agents take the devices at once
            except Exception:
                log.exception("lease_release_failed")
        if self.outputs is not None:
            await self.outputs.stop()
        if self.http is not None:
            await self.http.stop()
        if self.runtime is not None:
            for p in self.runtime.pollers.values():
                p.close()
        if self.snmp_engines is not None:
            self.snmp_engines.close()
        if self.ssh_pool is not None:
            await self.ssh_pool.close()
        if self.poll_writer is not None:
            await self.poll_writer.stop()
        if self.store is not None:
            await self.store.close()
        gc.unfreeze()  # what the agent froze can be collected again (an agent run inside another program)
        log.info("agent_stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def run_forever(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        reloads: set[asyncio.Task[Any]] = set()

        def _hup() -> None:
            t = loop.create_task(self.reload())
            reloads.add(t)
            t.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, _hup)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()
        return 0
