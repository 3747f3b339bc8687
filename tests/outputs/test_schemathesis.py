"""Schema-driven testing of the running API with schemathesis: no 5xx, responses as documented."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers.system import missing
from tests.outputs.api_rig import NOC_TOKEN, start_api

pytestmark = pytest.mark.slow


def schemathesis_command() -> list[str]:
    exe = Path(sys.executable).parent / "schemathesis"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis") or shutil.which("st")
    if found is None:
        missing("schemathesis")
    return [str(found)]


async def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    command = schemathesis_command()
    rig = await start_api(tmp_path, max_failures=1_000_000)
    try:
        for n in range(3):
            await rig.incidents.open(priority=f"P{n + 1}", site="HD13", device=f"dev-{n}")
        proc = await asyncio.create_subprocess_exec(
            *command,
            "run",
            f"{rig.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {NOC_TOKEN}",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            "--seed",
            "20260106",
            "--generation-database",
            "none",
            "--generation-with-security-parameters",
            "false",
            "--workers",
            "1",
            "--no-color",
            "--request-timeout",
            "10",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    finally:
        await rig.close()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "passed" in text.lower()
