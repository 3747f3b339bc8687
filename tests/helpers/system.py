"""System binaries: tests that need one skip on a developer machine without it, and fail in CI (CI=true)."""

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
    # daemons (sshd, snmpd, nagios...) live in sbin, which a non-root PATH may lack
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    for candidate in (name, *alternatives):
        if os.path.isabs(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            continue
        path = shutil.which(candidate, path=search)
        if path:
            return path
    missing(f"system binary {name!r}")
    raise AssertionError("unreachable")
