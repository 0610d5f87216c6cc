"""A session's processes on Windows: commands with pipes (NonInteractiveCommands) run as the
agent's own user; a shell needs ConPTY, which this agent does not support yet, so the
interactive kinds are refused with a reason the operator sees."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
from pathlib import Path
from typing import Final

from agent.sessions import piped
from agent.sessions.piped import PipedChild
from agent.sessions.program import Child, Refused
from agent.sessions.runas import User

NO_CONPTY: Final = (
    "interactive sessions on Windows need ConPTY, which this agent does not support yet"
)
KILL_GRACE_SECONDS: Final = 2.0


def resolve_user(run_as: str | None) -> User:
    if run_as is not None:
        raise Refused(f"run-as {run_as!r}: this agent cannot switch users on Windows")
    comspec = os.environ.get("COMSPEC", r"C:\Windows\System32\cmd.exe")
    return User(getpass.getuser(), 0, 0, str(Path.home()), comspec, switch=False)


def command_argv(command: str) -> list[str]:
    return [os.environ.get("COMSPEC", "cmd.exe"), "/c", command]


def open_terminal(cols: int, rows: int) -> tuple[int, int]:
    raise Refused(NO_CONPTY)


def set_terminal_size(fd: int, cols: int, rows: int) -> None:
    raise Refused(NO_CONPTY)


async def spawn_in_terminal(
    argv: list[str], executable: str, user: User, env: dict[str, str], slave: int
) -> asyncio.subprocess.Process:
    raise Refused(NO_CONPTY)


async def spawn_piped(argv: list[str], user: User, env: dict[str, str]) -> PipedChild:
    return await piped.spawn(argv, cwd=user.cwd)  # the agent's environment: no POSIX PATH


async def end_session(child: Child) -> None:
    """Kill the child and every process below it."""
    import psutil

    if child.returncode is not None:
        return
    try:
        procs = [psutil.Process(child.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        procs = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    await asyncio.to_thread(psutil.wait_procs, procs, KILL_GRACE_SECONDS)
    await child.wait()
