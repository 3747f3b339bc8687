"""System binaries: tests that need one skip on a developer machine without it, and fail in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """Skip (developer machine) or fail (CI) because ``what`` is not available."""
    if in_ci():
        pytest.fail(f"{what} is required in CI but is missing", pytrace=False)
    pytest.skip(f"{what} not available")


def require_binary(name: str, *alternatives: str) -> str:
    for candidate in (name, *alternatives):
        path = shutil.which(candidate) or (candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK)
                                           else None)
        if path:
            return path
    missing(f"system binary {name!r}")
    raise AssertionError("unreachable")
