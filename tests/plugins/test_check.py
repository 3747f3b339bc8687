"""callipso-check: Monitoring Plugins conventions (output, perfdata, exit codes, arguments) and each mode,
against the agent's real HttpServer on an ephemeral port. The incidents endpoint does not exist in the agent
yet: the tests add one serving IncidentView objects in the JSON form the API is expected to use."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from callipso_agent.api.server import HttpServer
from callipso_agent.collect.cache import LatestCache
from callipso_agent.model import IncidentState, IncidentView, Measurement, MetricKind, PollResult, Severity
from callipso_agent.plugins.check import main
from callipso_agent.plugins.core import Metric, ScalarContext, perfdata
from callipso_agent.rules.ranges import Range

NOW = datetime.now(UTC)


def incident_json(i: IncidentView) -> dict[str, Any]:
    return {
        "id": i.id,
        "key": i.key,
        "title": i.title,
        "state": i.state.value,
        "priority": i.priority,
        "severity": i.severity.label,
        "opened_at": i.opened_at.isoformat(),
        "site": i.site,
        "device": i.device,
        "user_impact": i.user_impact,
        "technical_impact": i.technical_impact,
        "deadlines": {k: v.isoformat() for k, v in i.deadlines.items()},
    }


def ups(device: str, *, charge: float, runtime: float, source: str = "normal") -> PollResult:
    sev = {"normal": Severity.OK, "bypass": Severity.WARNING, "battery": Severity.CRITICAL}[source]
    return PollResult(
        device,
        NOW,
        0.1,
        measurements=(
            Measurement(device, "ups_output_source", 3.0, NOW, kind=MetricKind.STATE, state=sev, text=source),
            Measurement(device, "ups_battery_charge_percent", charge, NOW, unit="percent"),
            Measurement(device, "ups_battery_runtime_seconds", runtime, NOW, unit="seconds"),
            Measurement(device, "ups_load_percent", 40.0, NOW, unit="percent", labels={"phase": "1"}),
            Measurement(device, "ups_input_line_bads_total", 3.0, NOW, kind=MetricKind.COUNTER),
        ),
    )


@dataclass
class Agent:
    url: str
    cache: LatestCache
    incidents: list[IncidentView] = field(default_factory=list)


INVENTORY = {
    "ups-a": {"name": "ups-a", "site": "AUBAGNE-MDS", "family": "ups-mib"},
    "ups-b": {"name": "ups-b", "site": "ISTRES-MDS", "family": "eaton-ups"},
    "ups-c": {"name": "ups-c", "site": "SALON-MDS", "family": "ups-mib"},
    "probe-a": {"name": "probe-a", "site": "AUBAGNE-MDS", "family": "temperature-probe"},
    "probe-new": {"name": "probe-new", "site": "HD13", "family": "temperature-probe"},
}


async def _start(with_incidents: bool, slow: bool = False) -> tuple[HttpServer, Agent]:
    cache = LatestCache()
    cache.update(ups("ups-a", charge=100, runtime=3000))
    cache.update(ups("ups-b", charge=45, runtime=1200, source="battery"))
    cache.update(PollResult("ups-c", NOW, 6.0, error="timeout", error_text="no answer within 6s"))
    cache.update(
        PollResult(
            "probe-a",
            NOW,
            0.1,
            measurements=(
                Measurement(
                    "probe-a",
                    "sensor_temperature_celsius",
                    31.5,
                    NOW,
                    unit="celsius",
                    labels={"sensor": "salle 1"},
                ),
                Measurement(
                    "probe-a", "sensor_humidity_percent", 50.0, NOW, unit="percent", labels={"sensor": "salle 1"}
                ),
            ),
        )
    )

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    server = HttpServer(cache, host="127.0.0.1", port=0, ready=ready, inventory=lambda: INVENTORY)
    agent = Agent("", cache)

    async def incidents(request: web.Request) -> web.Response:
        if slow:
            await asyncio.sleep(3)
        items = [
            incident_json(i)
            for i in agent.incidents
            if request.query.get("state") != "open" or i.state is not IncidentState.RESOLVED
        ]
        return web.json_response({"incidents": items})

    if with_incidents:
        server.add_routes([web.get("/api/v1/incidents", incidents)])
    await server.start()
    agent.url = f"http://127.0.0.1:{server.bound_port}"
    return server, agent


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    server, a = await _start(with_incidents=True)
    yield a
    await server.stop()


@pytest.fixture
async def old_agent() -> AsyncIterator[Agent]:
    server, a = await _start(with_incidents=False)
    yield a
    await server.stop()


async def check(*argv: str) -> tuple[int, str]:
    """Run the plugin in a thread (the agent's server runs on this loop)."""

    def run() -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue()

    return await asyncio.to_thread(run)


def perf(output: str) -> dict[str, list[str]]:
    first = output.splitlines()[0]
    assert first.count("|") == 1, first
    items: dict[str, list[str]] = {}
    rest = first.split("|", 1)[1].strip()
    while rest:
        assert rest.startswith("'"), rest
        end = rest.index("'=", 1)
        label, tail = rest[1:end], rest[end + 2 :]
        value, _, rest = tail.partition(" ")
        items[label.replace("''", "'")] = value.split(";")
        rest = rest.strip()
    return items


# ---- pure parts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "warn", "crit", "state"),
    [
        (100, "50:", "20:", Severity.OK),
        (45, "50:", "20:", Severity.WARNING),
        (10, "50:", "20:", Severity.CRITICAL),
        (10, None, "20:", Severity.CRITICAL),
        (45, None, None, Severity.OK),
        (15, "@10:20", "@12:14", Severity.WARNING),
        (13, "@10:20", "@12:14", Severity.CRITICAL),
    ],
)
def test_scalar_context_checks_critical_before_warning(
    value: float, warn: str | None, crit: str | None, state: Severity
) -> None:
    ctx = ScalarContext("charge", Range.optional(warn), Range.optional(crit))
    assert ctx.evaluate(Metric("charge", value, "%"), "en").state is state


def test_perfdata_quotes_labels_and_drops_trailing_empty_fields() -> None:
    m = Metric("it's a label", 12.5, "%", min=0, max=100)
    assert perfdata(m, Range.parse("50:"), Range.parse("20:")) == "'it''s a label'=12.5%;50:;20:;0;100"
    assert perfdata(Metric("n", 3)) == "'n'=3"
    assert perfdata(Metric("n", 3, min=0)) == "'n'=3;;;0"
    assert perfdata(Metric("n", None)) is None


def test_help_version_and_bad_arguments_exit_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 3
    assert "ups" in capsys.readouterr().out
    assert main(["--version"]) == 3
    assert capsys.readouterr().out.startswith("callipso-check ")
    assert main(["ups"]) == 3  # --device missing
    assert "UNKNOWN" in capsys.readouterr().out
    assert main(["nosuchmode"]) == 3
    assert main(["ups", "-d", "x", "-t", "abc"]) == 3
    assert main(["ups", "--help"]) == 3
    assert "--warning-runtime" in capsys.readouterr().out


# ---- device modes ------------------------------------------------------------------------------------------
async def test_ups_ok_with_perfdata_in_base_units(agent: Agent) -> None:
    code, out = await check("ups", "-d", "ups-a", "--agent-url", agent.url)
    assert code == 0, out
    assert out.startswith("CALLIPSO-UPS OK - ups-a: ")
    p = perf(out)
    assert p["ups_battery_charge_percent"] == ["100%", "50:", "20:", "0", "100"]
    assert p["ups_battery_runtime_seconds"] == ["3000s", "900:", "300:", "0"]
    assert p["ups_load_percent_1"][0] == "40%"
    assert len(out.splitlines()) == 1


async def test_ups_state_and_thresholds_with_long_output(agent: Agent) -> None:
    code, out = await check("ups", "-d", "ups-b", "--agent-url", agent.url, "-v")
    assert code == 2
    first, *long = out.splitlines()
    assert first.startswith(
        "CALLIPSO-UPS CRITICAL - ups-b: ups_output_source battery, ups_battery_charge_percent 45%"
    )
    assert "CRITICAL: ups_output_source battery" in long
    assert "WARNING: ups_battery_charge_percent 45% (hors de la plage 50:)" in long
    # -w/-c set the primary threshold (charge); the state of the output source still decides CRITICAL
    code, out = await check(
        "ups", "-d", "ups-b", "--agent-url", agent.url, "-w", "40:", "-c", "@0:10", "--lang", "en"
    )
    assert code == 2 and "charge_percent 45%" not in out.split("|")[0]
    assert perf(out)["ups_battery_charge_percent"][1:3] == ["40:", "@0:10"]
    code, out = await check(
        "ups", "-d", "ups-a", "--agent-url", agent.url, "--critical-runtime", "3600:", "--lang", "en"
    )
    assert code == 2 and "ups_battery_runtime_seconds 3000s (outside range 3600:)" in out


async def test_stale_device_unknown_device_and_wrong_family_are_unknown(agent: Agent) -> None:
    code, out = await check("ups", "-d", "ups-c", "--agent-url", agent.url)
    assert code == 3 and "no fresh data" in out and "timeout" in out
    code, out = await check("ups", "-d", "nope", "--agent-url", agent.url)
    assert code == 3 and "unknown device 'nope'" in out
    code, out = await check("sbc", "-d", "ups-a", "--agent-url", agent.url)
    assert code == 3 and "mode sbc checks audiocodes-sbc" in out
    code, out = await check("sensors", "-d", "probe-new", "--agent-url", agent.url)
    assert code == 3 and "not polled yet" in out
    code, out = await check("ups", "-d", "ups-a", "--agent-url", agent.url, "-c", "20:10")
    assert code == 3 and "bad threshold" in out


async def test_sensors_quote_labels_with_spaces(agent: Agent) -> None:
    code, out = await check("sensors", "-d", "probe-a", "--agent-url", agent.url)
    assert code == 1
    assert "sensor_temperature_celsius_salle 1 31.5 (hors de la plage 30)" in out
    assert perf(out)["sensor_temperature_celsius_salle 1"] == ["31.5", "30", "35"]
    assert perf(out)["sensor_humidity_percent_salle 1"] == ["50%", "20:80", "10:90", "0", "100"]


async def test_device_mode(agent: Agent) -> None:
    code, out = await check("device", "-d", "ups-a", "--agent-url", agent.url, "--lang", "en")
    assert code == 0 and "reachable" in out and "'consecutive_failures'=0" in out
    code, out = await check("device", "-d", "ups-c", "--agent-url", agent.url)
    assert code == 2 and "injoignable (timeout: no answer within 6s)" in out
    code, out = await check("device", "-d", "ups-a", "--agent-url", agent.url, "-c", "@0:1000000")
    assert code == 2 and "last_success_age" in out


# ---- incidents and météo ---------------------------------------------------------------------------------
def view(
    i: int,
    prio: str,
    site: str,
    impact: str = "degraded",
    state: IncidentState = IncidentState.OPEN,
    deadlines: dict[str, datetime] | None = None,
) -> IncidentView:
    return IncidentView(
        id=i,
        key=f"k{i}",
        title=f"incident {i}",
        state=state,
        priority=prio,
        severity=Severity.CRITICAL,
        opened_at=NOW,
        site=site,
        user_impact=impact,
        deadlines=deadlines or {},
    )


async def test_incidents_counts_priorities_and_the_next_deadline(agent: Agent) -> None:
    code, out = await check("incidents", "--agent-url", agent.url)
    assert code == 0 and "0 incident(s) ouvert(s)" in out
    now = datetime.now(UTC)  # deadlines relative to the moment the check runs, not to the module import
    agent.incidents = [
        view(1, "P3", "ARENC", deadlines={"restoration": now + timedelta(hours=5)}),
        view(2, "P2", "HD13", deadlines={"taking_charge": now + timedelta(minutes=25)}),
        view(3, "P1", "HD13", state=IncidentState.RESOLVED),
    ]
    code, out = await check("incidents", "--agent-url", agent.url, "-v")
    assert code == 1, out  # a P2 (warning "0" means any) and a deadline within 30 min
    p = perf(out)
    assert p["p1"][0] == "0" and p["p2"][0] == "1" and p["p3"][0] == "1"
    assert 1400 < float(p["next_deadline"][0].rstrip("s")) <= 1500
    assert "[P2] #2 HD13: incident 2" in out
    agent.incidents.append(view(4, "P1", "HD13", deadlines={"first_information": now + timedelta(minutes=5)}))
    code, out = await check("incidents", "--agent-url", agent.url)
    assert code == 2 and out.startswith("CALLIPSO-INCIDENTS CRITICAL - 3 incident(s) ouvert(s): ")
    code, out = await check("incidents", "--agent-url", agent.url, "--site", "ARENC")
    assert code == 0 and "1 incident(s) ouvert(s) (ARENC)" in out


async def test_meteo_by_site(agent: Agent) -> None:
    code, out = await check("meteo", "--agent-url", agent.url)
    assert code == 1 and "SALON-MDS perturbé: ups-c injoignable" in out  # ups-c does not answer
    agent.incidents = [view(1, "P2", "ISTRES-MDS", impact="outage"), view(2, "P3", "AUBAGNE-MDS")]
    code, out = await check("meteo", "--agent-url", agent.url, "--lang", "en")
    assert code == 2
    assert "ISTRES-MDS outage: incident 1" in out and "AUBAGNE-MDS degraded: incident 2" in out
    assert perf(out)["sites_outage"][0] == "1" and perf(out)["sites_degraded"][0] == "2"
    code, out = await check("meteo", "--agent-url", agent.url, "--site", "HD13")
    assert code == 0 and "beau temps sur 1 site(s)" in out


async def test_incidents_and_meteo_unknown_on_an_agent_without_the_api(old_agent: Agent) -> None:
    for mode in ("incidents", "meteo"):
        code, out = await check(mode, "--agent-url", old_agent.url)
        assert code == 3
        assert out.startswith(f"CALLIPSO-{mode.upper()} UNKNOWN - this agent has no incidents API")


async def test_unreachable_agent_and_timeout_are_unknown() -> None:
    code, out = await check("ups", "-d", "x", "--agent-url", "http://127.0.0.1:9")
    assert code == 3 and "cannot reach the agent" in out
    server, slow = await _start(with_incidents=True, slow=True)
    try:
        code, out = await check("incidents", "--agent-url", slow.url, "-t", "0.5")
    finally:
        await server.stop()
    assert code == 3 and "did not answer within 0.5s" in out
