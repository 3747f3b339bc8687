"""Coverage-guided fuzz smoke (atheris): each target of ``atheris_targets.py`` runs a few seconds in its own
process; libFuzzer exits non-zero and writes a ``crash-*`` reproducer on any finding.

``CALLIPSO_ATHERIS_SECONDS`` sets the time per target (CI: 7 s, about 20 s in all); ``make fuzz-atheris``
runs each for 10 minutes on a kept corpus (``.fuzz/``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.system import missing

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("CALLIPSO_ATHERIS_SECONDS", "7"))


@pytest.mark.parametrize("target", ["trap", "ssh", "config"])
def test_atheris_smoke(target: str, tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        missing("atheris (pip install -e '.[test]')")
    out = subprocess.run(
        [sys.executable, "-m", "tests.reliability.atheris_targets", target, str(tmp_path / "corpus"),
         f"-max_total_time={SECONDS}", "-max_len=4096", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120, check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert out.returncode == 0 and not crashes, (crashes, out.stderr[-4000:])
    runs = re.search(r"Done (\d+) runs", out.stderr)
    assert runs and int(runs.group(1)) > 0, out.stderr[-2000:]
    cov = re.search(r"DONE\s+cov: (\d+)", out.stderr)
    assert cov and int(cov.group(1)) > 50, out.stderr[-2000:]  # the instrumentation saw our code run
