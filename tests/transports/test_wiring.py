"""``agent.snmp.client``: the configuration option, the client each device gets, the self-metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from callipso_agent.collect.cache import LatestCache
from callipso_agent.config.models import SnmpSettings, SnmpV2Credential, SnmpV3Credential
from callipso_agent.config.secrets import Secret, SecretRef
from callipso_agent.daemon import App, load_all
from callipso_agent.errors import ConfigErrors
from callipso_agent.metrics import CallipsoCollector, build_registry
from callipso_agent.transports.engines import SnmpEngines
from callipso_agent.transports.fastsnmp import FastSnmpClient
from callipso_agent.transports.snmp import PysnmpClient

V2C = SnmpV2Credential(version="2c", community=SecretRef(env="UNUSED_IN_TESTS"))
V3 = SnmpV3Credential(version="3", user="callipso")


def test_client_option_defaults_to_fast_and_refuses_unknown_values() -> None:
    assert SnmpSettings().client == "fast"
    assert SnmpSettings(client="pysnmp").client == "pysnmp"
    with pytest.raises(ValidationError):
        SnmpSettings(client="netsnmp")  # type: ignore[arg-type]


def _config(example: Path, tmp_path: Path, client: str | None) -> Path:
    dst = tmp_path / "config"
    shutil.copytree(example, dst)
    agent = dst / "agent.yaml"
    text = agent.read_text()
    line = "    client: fast"
    assert line in text
    agent.write_text(text.replace(line, f"    client: {client}" if client else ""))
    # the v3 keys are files: point them at test files
    creds = dst / "credentials.yaml"
    keys = tmp_path / "secrets"
    keys.mkdir()
    for name in ("snmp-dc-auth", "snmp-dc-priv"):
        (keys / name).write_text("SYNTHETIC-key-0123456789\n")
    creds.write_text(creds.read_text().replace("/etc/callipso-agent/secrets/", f"{keys}/"))
    return dst


def test_misspelt_client_names_file_line_and_field(example_config: Path, tmp_path: Path) -> None:
    cfg = _config(example_config, tmp_path, "pysmp")
    with pytest.raises(ConfigErrors) as err:
        load_all(cfg)
    line = next(i for i, t in enumerate((cfg / "agent.yaml").read_text().splitlines(), 1) if "pysmp" in t)
    assert f"agent.yaml:{line}" in str(err.value) and "client" in str(err.value)


@pytest.mark.parametrize(("client", "v2_class"), [(None, FastSnmpClient), ("fast", FastSnmpClient),
                                                  ("pysnmp", PysnmpClient)])
def test_each_device_gets_the_configured_client_and_v3_stays_on_pysnmp(
        example_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str | None,
        v2_class: type) -> None:
    monkeypatch.setenv("CALLIPSO_SNMP_COMMUNITY", "public")
    cfg = _config(example_config, tmp_path, client)
    loaded, profiles = load_all(cfg)
    app = App(cfg)
    app.snmp_engines = SnmpEngines(client=loaded.config.agent.snmp.client)
    seen: dict[str, set[type]] = {"2c": set(), "3": set()}
    for dev in loaded.config.devices:
        if dev.snmp is None:
            continue
        fetcher = app._snmp_fetcher(dev, loaded, profiles)
        assert fetcher is not None
        seen[str(loaded.config.credentials[dev.snmp].version)].add(type(fetcher.client))  # type: ignore[union-attr]
    assert seen == {"2c": {v2_class}, "3": {PysnmpClient}}
    app.snmp_engines.close()


async def test_engines_share_one_concurrency_limit_and_create_pysnmp_only_when_needed() -> None:
    engines = SnmpEngines(max_concurrency=7)
    client = engines.client_for("127.0.0.1", 161, V2C, {"community": Secret("public")})
    assert isinstance(client, FastSnmpClient)
    assert engines._pysnmp is None  # a v2c-only estate never builds the pysnmp engine
    v3 = engines.client_for("127.0.0.1", 161, V3, {})
    assert isinstance(v3, PysnmpClient)
    assert engines.pysnmp.semaphore is engines.fast.semaphore is engines.semaphore
    engines.close()
    with pytest.raises(ValueError, match="unknown SNMP client"):
        SnmpEngines(client="netsnmp")  # type: ignore[arg-type]


def test_engine_counters_are_exposed() -> None:
    stats = {"requests": 12, "retransmissions": 2, "timeouts": 1, "ignored": 3, "malformed": 1, "responses": 9}
    text = generate_latest(build_registry(CallipsoCollector(LatestCache(), dict, snmp=lambda: stats),
                                          process=False)).decode()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
           if s.name.startswith("callipso_snmp_")}
    assert got == {"callipso_snmp_requests_total": 12, "callipso_snmp_retransmissions_total": 2,
                   "callipso_snmp_timeouts_total": 1, "callipso_snmp_ignored_total": 3,
                   "callipso_snmp_malformed_total": 1}
