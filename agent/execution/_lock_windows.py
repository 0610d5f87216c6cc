"""A command's lock file on Windows: the first byte locked with msvcrt (not exercised by the
test suite yet)."""

from __future__ import annotations

import msvcrt  # type: ignore[import-not-found, unused-ignore]
import os
from pathlib import Path


def try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined, unused-ignore]
    except OSError:
        os.close(fd)
        return None
    return fd


def is_locked(path: Path) -> bool:
    if not path.exists():
        return False
    fd = try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False
