"""The whole test suite: ruff (with bugbear and async rules), mypy --strict, then pytest.

Run from the repository root inside the project's venv: ``python -m tests.check``.
Extra arguments go to pytest (e.g. ``python -m tests.check -k outbox``).
"""

from __future__ import annotations

import subprocess
import sys
import time


def step(name: str, args: list[str]) -> None:
    print(f"==> {name}: {' '.join(args)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(args)
    print(f"==> {name}: exit {code} in {time.monotonic() - started:.1f}s", flush=True)
    if code != 0:
        sys.exit(code)


def main() -> None:
    py = sys.executable
    step("ruff", [py, "-m", "ruff", "check", "agent", "control_plane", "tests", "bench"])
    step("mypy", [py, "-m", "mypy", "--strict", "agent", "control_plane"])
    # Two workers, each test module on one of them (module fixtures build repositories once).
    workers = ["-n", "2", "--dist", "loadfile"]
    step("pytest", [py, "-m", "pytest", "-p", "no:cacheprovider", *workers, *sys.argv[1:]])


if __name__ == "__main__":
    main()
