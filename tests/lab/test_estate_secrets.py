"""The lab's credentials: random SNMP communities and SNMPv3 devices (random keys, mismatches on purpose)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from callipso_agent.lab.estate import Lab, V3Setup, parse_v3_setups


def test_v3_device_list_is_parsed_and_checked() -> None:
    assert parse_v3_setups("sbc-hd13, ups-hd13:SHA256/AES256 ,probe-hd13:sha/aes:wrong_priv_key") == {
        "sbc-hd13": V3Setup(),
        "ups-hd13": V3Setup("sha256", "aes256"),
        "probe-hd13": V3Setup("sha", "aes", "wrong_priv_key"),
    }
    assert parse_v3_setups("probe-hd13:unknown_user") == {"probe-hd13": V3Setup(mismatch="unknown_user")}
    with pytest.raises(ValueError, match="unknown SNMPv3 auth protocol 'sha1'"):
        parse_v3_setups("x:sha1/aes")
    with pytest.raises(ValueError, match="unknown SNMPv3 mismatch 'wrong_key'"):
        parse_v3_setups("x:sha/aes:wrong_key")
    with pytest.raises(ValueError, match="expected DEVICE"):
        parse_v3_setups("x:sha/aes:wrong_auth_key:more")


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


async def test_random_communities_and_v3_credentials(tmp_path: Path) -> None:
    lab = Lab(tmp_path, sites=["AIX-MDS", "HD13"], random_communities=True,
              snmpv3=parse_v3_setups("ups-hd13:sha256/aes256,probe-hd13:sha/aes:wrong_auth_key"))
    try:
        _check(lab, await lab.build())
    finally:
        lab.stop()
        await lab.close_emulators()


def _check(lab: Lab, config: Path) -> None:
    creds = _yaml(config / "credentials.yaml")["credentials"]
    agent = _yaml(config / "agent.yaml")["agent"]
    v2c = [d for d in lab.devices.values() if d.served is not None and d.v3 is None]
    assert len(v2c) >= 3
    for dev in v2c:
        assert dev.served is not None and dev.community is not None
        # snmpsim serves the copy under a random community, which the agent reads from its file
        assert dev.community != dev.name and len(dev.community) == 20
        assert dev.served.stem == dev.community
        secret = Path(creds[f"lab-{dev.name}"]["community"]["file"])
        assert secret.read_text(encoding="utf-8").strip() == dev.community
        assert secret.stat().st_mode & 0o077 == 0
    assert len({d.community for d in v2c}) == len(v2c)

    ups, probe = lab.devices["ups-hd13"], lab.devices["probe-hd13"]
    users = {u["user"]: u for sim in lab.sims for u in sim.v3_users}
    assert set(users) == {"v3-ups-hd13", "v3-probe-hd13"}
    ups_cred, probe_cred = creds["lab-v3-ups-hd13"], creds["lab-v3-probe-hd13"]
    assert (ups_cred["auth_protocol"], ups_cred["priv_protocol"], ups_cred["context"]) == (
        "sha256", "aes256", "ups-hd13")
    assert (users["v3-ups-hd13"]["auth_proto"], users["v3-ups-hd13"]["priv_proto"]) == ("SHA256", "AES256")
    assert ups_cred["engine_id"] == ups.engine_id
    key = Path(ups_cred["auth_key"]["file"]).read_text(encoding="utf-8").strip()
    assert key == users["v3-ups-hd13"]["auth_key"]
    # the mis-keyed device: the agent's authentication key is not the device's, its privacy key is
    wrong = Path(probe_cred["auth_key"]["file"]).read_text(encoding="utf-8").strip()
    assert wrong != users["v3-probe-hd13"]["auth_key"]
    assert Path(probe_cred["priv_key"]["file"]).read_text(encoding="utf-8").strip() == (
        users["v3-probe-hd13"]["priv_key"])
    assert probe.served is not None and probe.served.stem == "probe-hd13"
    # the receiver accepts the v3 devices' traps
    assert agent["traps"]["enabled"] and agent["traps"]["port"] == lab.trap_port
    assert sorted(agent["traps"]["v3_users"]) == ["lab-v3-probe-hd13", "lab-v3-ups-hd13"]
    assert "auth_key" not in str(lab.state()["devices"]["ups-hd13"]["snmpv3"])
    # no key on the lab's status page
    assert key not in str(lab.state())


async def test_v3_device_outside_the_estate_is_refused(tmp_path: Path) -> None:
    lab = Lab(tmp_path, sites=["AIX-MDS"], snmpv3=parse_v3_setups("ups-hd13"))
    try:
        with pytest.raises(KeyError, match="ups-hd13"):
            await lab.build()
    finally:
        lab.stop()
        await lab.close_emulators()
