"""Shared fixtures. Tests use injected clocks, real lab programs on loopback, and no global patching."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def example_config() -> Path:
    return ROOT / "config"
