"""A small tmpfs the tests can fill up, for the agent's store running out of disk space.

Mounting needs root: elsewhere the test is skipped, in CI it fails (tests/helpers/system.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.system import missing


@contextmanager
def small_tmpfs(mnt: Path, size_mib: int, keep: Path | None = None) -> Iterator[Path]:
    """Mount a ``size_mib`` tmpfs on ``mnt`` (created); on exit copy its SQLite files to ``keep`` (a failure's
    post-mortem) and unmount it."""
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        missing("root, to mount a small tmpfs for the full-disk tests")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(mnt)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        missing(f"a tmpfs mount (mount said: {out.stderr.strip()})")
    try:
        yield mnt
    finally:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for f in mnt.glob("*.sqlite*"):
                shutil.copyfile(f, keep / f.name)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def fill(folder: Path, name: str = "filler.bin") -> Path:
    """Write until the filesystem refuses (ENOSPC); delete the returned file to give the space back."""
    filler = folder / name
    block = b"\0" * (1 << 20)
    with filler.open("wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass
    return filler
