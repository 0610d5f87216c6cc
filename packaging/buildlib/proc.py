"""Running the build's tools with a clear error when one fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from buildlib.errors import BuildError

# No stray timestamp-checked .pyc while the build runs Python: compileall writes the real ones.
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(
    cmd: Sequence[str | Path], *, cwd: Path | None = None, quiet: bool = True, check: bool = True
) -> str:
    args = [str(c) for c in cmd]
    try:
        done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BuildError(f"{args[0]} is not installed") from None
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise BuildError(
            f"{' '.join(args[:4])} … failed (exit {done.returncode}):\n  " + "\n  ".join(tail)
        )
    if not quiet and done.stdout.strip():
        print(done.stdout.strip())
    return done.stdout
