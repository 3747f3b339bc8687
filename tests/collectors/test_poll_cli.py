"""``callipso-agent poll`` wiring: argparse options, JSON and table output, exit 2 with a clear reason."""

from __future__ import annotations

import argparse
import io
import json
import socket
from pathlib import Path

import pytest

from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.poll import add_poll_arguments, parse_target, run_poll

pytestmark = pytest.mark.system


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="callipso-agent poll")
    add_poll_arguments(parser)
    return parser.parse_args(list(argv))


async def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_poll(_args(*argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def test_json_output(sim: SnmpSimulator) -> None:
    code, out, err = await _run(
        f"{sim.host}:{sim.port}", "--community", "eatonups", "--json", "--timeout", "2"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["profile"] == "eaton-xups"
    runtime = next(m for m in data["measurements"] if m["name"] == "ups_battery_runtime_seconds")
    # 1.3.6.1.4.1.534.1.2.1.0|2|8620
    assert runtime == {
        "name": "ups_battery_runtime_seconds",
        "labels": {},
        "value": 8620,
        "unit": "seconds",
        "state": "ok",
        "text": None,
    }


async def test_table_output(sim: SnmpSimulator) -> None:
    code, out, _ = await _run(f"{sim.host}:{sim.port}", "--community", "omnipcx", "--timeout", "2")
    assert code == 0
    assert out.startswith("profile: oxe\n")
    line = next(x for x in out.splitlines() if x.startswith("pbx_role"))
    assert "standby" in line and "OK" in line


async def test_community_from_environment(sim: SnmpSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLL_TEST_COMMUNITY", "hwg-ste2")
    code, out, _ = await _run(f"{sim.host}:{sim.port}", "--community-env", "POLL_TEST_COMMUNITY", "--json")
    assert code == 0 and json.loads(out)["profile"] == "hwg"


@pytest.mark.parametrize("community", ["eaton-mgeups_9pxle", "audiocodes_mp118"])
async def test_both_snmp_clients_give_the_same_poll(sim: SnmpSimulator, community: str) -> None:
    results = []
    for client in ("fast", "pysnmp"):
        code, out, err = await _run(f"{sim.host}:{sim.port}", "--community", community, "--json",
                                    "--timeout", "5", "--snmp-client", client)
        assert code == 0, err
        results.append(json.loads(out))
    assert results[0]["measurements"] and results[0] == results[1]


async def test_wrong_community_exit_2(sim: SnmpSimulator) -> None:
    code, out, err = await _run(
        f"{sim.host}:{sim.port}", "--community", "wrong", "--timeout", "0.3", "--retries", "0"
    )
    assert code == 2 and out == ""
    assert err.startswith("error: timeout:")


async def test_unreachable_exit_2() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing answers on this port while the socket stays silent
        code, _, err = await _run(
            f"127.0.0.1:{port}", "--community", "public", "--timeout", "0.3", "--retries", "0"
        )
    assert code == 2 and "timeout" in err


async def test_no_profile_lists_candidates(sim: SnmpSimulator) -> None:
    code, _, err = await _run(
        f"{sim.host}:{sim.port}", "--community", "centreon_messpc-ethernetbox", "--timeout", "2"
    )
    assert code == 2
    assert "candidate profiles:" in err and "eaton-xups" in err and "--profile" in err


async def test_v3_key_from_file_and_bad_options(sim: SnmpSimulator, tmp_path: Path) -> None:
    # no v3 users on this simulator: the request is refused (auth failure or timeout), never a crash
    key = tmp_path / "auth.key"
    key.write_text("authpass-sha-1\n", encoding="utf-8")
    code, _, err = await _run(
        f"{sim.host}:{sim.port}",
        "--v3-user",
        "u",
        "--auth-proto",
        "sha",
        "--auth-key-file",
        str(key),
        "--timeout",
        "0.3",
        "--retries",
        "0",
    )
    assert code == 2 and err.startswith("error: ")
    code, _, err = await _run(
        f"{sim.host}:{sim.port}", "--v3-user", "u", "--priv-proto", "aes", "--priv-key-env", "NOPE_NOT_SET_1"
    )
    assert code == 2 and "error:" in err
    code, _, err = await _run(f"{sim.host}:{sim.port}")
    assert code == 2 and "no credentials" in err


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("10.0.0.1", "10.0.0.1", 161),
        ("ups1.example:1161", "ups1.example", 1161),
        ("[::1]:162", "::1", 162),
        ("fe80::1", "fe80::1", 161),
    ],
)
def test_parse_target(text: str, host: str, port: int) -> None:
    assert parse_target(text) == (host, port)


@pytest.mark.parametrize("text", ["", ":161", "host:port"])
def test_parse_target_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)
