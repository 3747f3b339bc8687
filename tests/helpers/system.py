"""System binaries for tests: skip when missing off CI, fail when missing in CI (CI=true)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    # daemons (sshd, snmpd...) live in sbin, which a non-root PATH may lack
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None:
        message = f"system binary {name!r} not found"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    return path
