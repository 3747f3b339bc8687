"""Where the data the package ships (collectors/, checks/, runbooks/, config/) lives.

In a checkout (or an editable install) they sit beside the package; in a wheel they are
installed under ``callipso_agent/_data/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory of shipped data ``name`` (collectors, checks, runbooks, config)."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"shipped data directory {name!r} not found (looked in {installed} and {checkout})")


def collectors_dir() -> Path:
    return data_dir("collectors")


def checks_dir() -> Path:
    return data_dir("checks")


def runbooks_dir() -> Path:
    return data_dir("runbooks")


def example_config_dir() -> Path:
    return data_dir("config")
