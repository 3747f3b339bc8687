"""The code base stays clean under the project's ruff rules (pyproject.toml): a failure lists the findings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    targets = [p for p in ("callipso_agent", "tests", "bench", "deploy") if (ROOT / p).is_dir()]
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *targets],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
