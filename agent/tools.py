"""Running a package or service manager's tool: argv only (no shell), its own process group
(killed whole when it overruns its time), output captured, a one-line reason on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def reason(self) -> str:
        """The tool's own error: apt's last ``E:`` line, else stderr's first line (systemctl,
        dpkg), else stdout's last; and the exit code."""
        errors = [ln.strip() for ln in self.stderr.splitlines() if ln.startswith("E:")]
        first = next((ln.strip() for ln in self.stderr.splitlines() if ln.strip()), "")
        last = next((ln.strip() for ln in reversed(self.stdout.splitlines()) if ln.strip()), "")
        said = errors[-1] if errors else first or last
        code = f"exit {self.returncode}"
        return f"{said[:300]} ({code})" if said else code


Runner = Callable[[list[str], Mapping[str, str], float], Completed]


class ToolTimeout(Exception):
    pass


def run_tool(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
    """Run ``argv`` to its end (``env`` added to this process's environment); on overrun
    its whole process group is killed and ToolTimeout raised."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C.UTF-8", **env},
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ToolTimeout(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    return Completed(
        tuple(argv),
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def as_owner(tool: Path, argv: list[str]) -> list[str]:
    """``argv`` run as ``tool``'s owner when we are root and it is not (Homebrew refuses
    root): ``sudo -n -u OWNER -H argv`` (``#UID``, sudo's spelling, for an owner with no
    name); else ``argv`` unchanged."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return argv
    try:
        uid = tool.stat().st_uid
    except OSError:
        return argv
    if uid == 0:
        return argv
    import pwd

    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = f"#{uid}"
    return ["sudo", "-n", "-u", owner, "-H", *argv]
