"""A session's processes on Linux and macOS: the program in a new session (so its own process
group) with a PTY as its controlling terminal, or with pipes; run as the session's user; and
at the end the whole session killed: SIGHUP (and SIGCONT, for stopped jobs), then, after a
short wait, SIGKILL to the process group and to every process whose session is the child's
(an interactive shell puts each background job in a group of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from typing import Any, Final

from agent.sessions import piped, runas
from agent.sessions.piped import PipedChild
from agent.sessions.program import Child
from agent.sessions.runas import User

KILL_GRACE_SECONDS: Final = 2.0
_POLL_SECONDS: Final = 0.02

resolve_user = runas.resolve


def command_argv(command: str) -> list[str]:
    return ["/bin/sh", "-c", command]


def open_terminal(cols: int, rows: int) -> tuple[int, int]:
    """A new PTY of that size: (master, non-blocking; slave)."""
    master, slave = os.openpty()
    try:
        os.set_blocking(master, False)
        set_terminal_size(master, cols, rows)
    except OSError:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def set_terminal_size(fd: int, cols: int, rows: int) -> None:
    """TIOCSWINSZ: the kernel tells the foreground process group (SIGWINCH)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_terminal() -> None:  # in the child, after setsid: stdin is the PTY slave
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _tty_group(fallback: int) -> int:
    import grp

    try:
        return grp.getgrnam("tty").gr_gid
    except KeyError:
        return fallback


def _identity(user: User) -> dict[str, Any]:
    if not user.switch:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": user.groups}


async def spawn_in_terminal(
    argv: list[str], executable: str, user: User, env: dict[str, str], slave: int
) -> asyncio.subprocess.Process:
    """``argv`` (``argv[0]`` as the program sees it) with the PTY slave as its terminal."""
    if user.switch:  # the terminal is the user's, as login and sshd make it (tmux needs it)
        os.fchown(slave, user.uid, _tty_group(user.gid))
        os.fchmod(slave, 0o620)
    return await asyncio.create_subprocess_exec(
        *argv,
        executable=executable,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=user.cwd,
        start_new_session=True,
        preexec_fn=_controlling_terminal,
        **_identity(user),
    )


async def spawn_piped(argv: list[str], user: User, env: dict[str, str]) -> PipedChild:
    """``argv`` with stdin /dev/null and stdout and stderr merged into one pipe."""
    return await piped.spawn(argv, env=env, cwd=user.cwd, start_new_session=True, **_identity(user))


async def end_session(child: Child) -> None:
    """Kill the child's whole session (it leads it: its pid is the session and group id)."""
    sid = child.pid
    if not _alive(child, sid):
        return
    _signal(sid, signal.SIGHUP)
    _signal(sid, signal.SIGCONT)
    for _ in range(round(KILL_GRACE_SECONDS / _POLL_SECONDS)):
        if not _alive(child, sid):
            break
        await asyncio.sleep(_POLL_SECONDS)  # no event tells of a grandchild's end
    else:
        _signal(sid, signal.SIGKILL)
    await child.wait()


def _alive(child: Child, sid: int) -> bool:
    return child.returncode is None or bool(_members(sid))


def _members(sid: int) -> list[int]:
    """Live (not zombie) processes of the session ``sid``."""
    import psutil

    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except (OSError, psutil.Error):  # gone meanwhile, or not ours to see
            continue
    return found


def _signal(sid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in _members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
