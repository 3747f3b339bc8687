"""Detection: OS-detection stubs land on their family; unseen models (sysObjectID or sysDescr unknown)
land on the right family through the MIB subtrees they expose."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from callipso_agent.errors import NoProfile
from callipso_agent.lab.snmpsim import SnmpSimulator
from callipso_agent.profiles.loader import ProfileSet
from callipso_agent.transports.snmp import PysnmpEngine
from tests.helpers.polling import all_recordings, poll
from tests.helpers.snmp import recording, serve

pytestmark = [pytest.mark.system, pytest.mark.asyncio(loop_scope="module")]

STUBS = {
    "eatonups_powerxpert": "eaton-xups",  # 1.3.6.1.4.1.534.2.12 (xupsObjectId agent)
    "eaton-mgeups_5p": "mge-ups",
    "eaton-mgeups_evolution": "mge-ups",  # 1.3.6.1.4.1.705.1.2
    "eaton-mgeups_ex2200": "mge-ups",  # no trailing newline in the file
    "eaton-mgeups_proxy": "mge-ups",
    "apc-mgeups": "mge-ups",  # leading dot: .1.3.6.1.4.1.705.1.2
    "apc-mgeups_galaxy": "mge-ups",
    "akcp": "akcp-sensorprobe",
    "akcp_ethernetprobe2": "akcp-sensorprobe",
    "akcp_sp2plus": "akcp-sensorprobe",  # bare 1.3.6.1.4.1.3854
    "akcp_spxplus": "akcp-sensorprobe",
    "hwg-ste": "hwg",
    "netbotz_2014": "netbotz",  # sysDescr just "Linux"
    "netbotz_2017": "netbotz",
    "avtech_tempager4e": "avtech",
    "avtech_roomalertmax": "avtech",
    "papouch-tme": "papouch",  # bogus .0.9.43.6.1.4.1
    "websensor": "comet",
    "geist-watchdog": "geist",
    "controlbox_controlbox": "serverscheck",
}


def _derive(src: Path, dst: Path, sys_object_id: str, sys_descr: str) -> Path:
    """A SYNTHETIC variant of a real recording: same MIB data, unknown identity."""
    lines = []
    for line in src.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        if line.startswith("1.3.6.1.2.1.1.2.0|"):
            line = f"1.3.6.1.2.1.1.2.0|6|{sys_object_id}"
        elif line.startswith("1.3.6.1.2.1.1.1.0|"):
            line = f"1.3.6.1.2.1.1.1.0|4|{sys_descr}"
        lines.append(line)
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    return dst


UNSEEN = {
    # community: (source recording, expected profile)
    "unseen-xups": ("eatonups", "eaton-xups"),
    "unseen-mge": ("eaton-mgeups_9pxle", "mge-ups"),
    "unseen-upsmib": ("generex-ups_cs141", "ups-mib"),
    "unseen-akcp": ("akcp_serverprobe8", "akcp-sensorprobe"),
    "unseen-oxe": ("omnipcx", "oxe"),
    "unseen-mp": ("audiocodes_mp118", "audiocodes-mp"),
    "unseen-hwg": ("hwg-poseidon", "hwg"),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSimulator]:
    work = tmp_path_factory.mktemp("detect")
    derived = work / "derived"
    derived.mkdir()
    items: list[Path | tuple[str, Path]] = [p for p in all_recordings() if p.stem in STUBS]
    for community, (src, _) in UNSEEN.items():
        items.append(
            (
                community,
                _derive(
                    recording(src),
                    derived / f"{community}.snmprec",
                    "1.3.6.1.4.1.99999.7.7",
                    "Network card 3.1",
                ),
            )
        )
    with serve(items, work) as simulator:
        yield simulator


@pytest.mark.parametrize("community", sorted(STUBS))
async def test_stub_detected(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine, community: str
) -> None:
    r = await poll(sim, community, profiles, engine=engine)
    assert r["profile"] == STUBS[community]
    # identity read back normalised: no leading dot, printable sysDescr
    assert not r["system"]["sys_object_id"].startswith(".")
    assert r["system"]["sys_descr"]


@pytest.mark.parametrize("community", sorted(UNSEEN))
async def test_unseen_model_by_subtrees(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine, community: str
) -> None:
    r = await poll(sim, community, profiles, engine=engine)
    assert r["system"]["sys_object_id"] == "1.3.6.1.4.1.99999.7.7"
    assert r["profile"] == UNSEEN[community][1]


async def test_family_restricts_detection(
    sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine
) -> None:
    with pytest.raises(NoProfile) as info:
        await poll(sim, "apc-mgeups", profiles, family="temperature-probe", engine=engine)
    assert "akcp-sensorprobe" in info.value.candidates
    assert "mge-ups" not in info.value.candidates
    assert re.search(r"1\.3\.6\.1\.4\.1\.705\.1\.2", str(info.value))


async def test_forced_profile(sim: SnmpSimulator, profiles: ProfileSet, engine: PysnmpEngine) -> None:
    r = await poll(sim, "unseen-mge", profiles, profile="ups-mib", engine=engine)
    assert r["profile"] == "ups-mib"
    with pytest.raises(NoProfile) as info:
        await poll(sim, "unseen-mge", profiles, profile="no-such-profile", engine=engine)
    assert "mge-ups" in info.value.candidates
