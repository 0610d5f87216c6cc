"""Building packages for the tests with ``packaging/build``, sharing one runtime cache.

The vendored runtime (CPython and the dependencies, everything but Corral itself) is the
slow part of a build; every test module that builds packages, on whichever xdist worker,
reuses the one cache in the session's shared temporary directory, one build at a time.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build"


def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory all workers of this test session share (xdist gives each worker its own
    base temp under one common parent)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if base.name.startswith("popen-gw") else base) / "packaging-cache"
    shared.mkdir(exist_ok=True)
    return shared


def build(
    tmp_path_factory: pytest.TempPathFactory, out: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``packaging/build ARGS --out OUT`` with the session's runtime cache; raises with the
    build's output if it fails."""
    cache = shared_cache(tmp_path_factory)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, str(BUILD), *args, "--out", str(out), "--cache", str(cache / "c")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if done.returncode != 0:
        raise AssertionError(
            f"packaging/build {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        )
    return done


def build_missing(tools: tuple[str, ...] = ("patchelf", "objdump", "strip")) -> list[str]:
    """What ``packaging/build`` (and a test's own ``tools``) need and this machine lacks."""
    missing = [t for t in tools if shutil.which(t) is None]
    sys.path.insert(0, str(REPO / "packaging"))
    try:
        from buildlib.errors import BuildError
        from buildlib.nfpm import find_nfpm
        from buildlib.runtime import probe

        try:
            find_nfpm()
        except BuildError:
            missing.append("nfpm")
        try:
            probe(sys.executable)
        except BuildError:
            missing.append("a self-contained CPython to vendor (this one is the distribution's)")
    finally:
        sys.path.remove(str(REPO / "packaging"))
    return missing
