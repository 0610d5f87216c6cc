"""Starting workers, from the agent's event loop: through the fork server when there is one,
else as a fresh ``python -m agent.execution.worker`` in its own session.

Either way the agent keeps the read end of a pipe whose write end only the worker holds: a
line per event (``started``, ``ended``, ``reboot``), and EOF when the worker exits, whatever
the way it exits.

The command's Parameter Store values (ssm_values.py) go in the fork server's request, or as a
JSON object on a new worker's stdin (a pipe): never in a file, nor in the worker's argv or
environment, which other users can read in /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from agent.execution.forkserver import ForkServer, ForkServerError
from agent.execution.journal import CommandDir
from agent.execution.settings import WorkerSettings

log = logging.getLogger("corral.agent.execution")

_SPAWNED_EVENTS_FD = 3


class WorkerHandle:
    """A worker this agent started: its pid and its event pipe."""

    def __init__(self, pid: int, read_fd: int, reap: bool) -> None:
        self.pid = pid
        self._fd: int | None = read_fd
        self._reap = reap

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Each event the worker sends, until it exits."""
        assert self._fd is not None, "events() can be iterated once"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024)
        pipe = os.fdopen(self._fd, "rb", buffering=0)
        self._fd = None
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while line := await reader.readline():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        finally:
            transport.close()
        if self._reap:
            await asyncio.to_thread(_reap, self.pid)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class Launcher:
    """Starts workers.  With ``fork_server_idle_seconds`` > 0 the fork server is stopped once
    it has forked nothing for that long (release_idle) and started again by the next launch;
    a fork server that fails to start or breaks leaves new processes (slower) for good."""

    def __init__(
        self,
        settings: WorkerSettings,
        forkserver: ForkServer | None = None,
        *,
        fork_server_idle_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.forkserver = forkserver
        self._use_fork_server = forkserver is not None
        self._idle_seconds = fork_server_idle_seconds
        self._last_used = time.monotonic()
        self._guard = threading.Lock()  # fork / start / release run in threads

    async def launch(
        self, cmd: CommandDir, ssm_values: Mapping[str, str] | None = None
    ) -> WorkerHandle:
        """Start a worker for ``cmd``, giving it ``ssm_values`` (in memory only)."""
        values = dict(ssm_values or {})
        read_fd, write_fd = os.pipe()
        try:
            if self._use_fork_server:
                try:
                    pid = await asyncio.to_thread(self._fork, cmd, write_fd, values)
                    return WorkerHandle(pid, read_fd, reap=False)
                except (OSError, ForkServerError) as exc:
                    log.warning(
                        "fork server unavailable; starting workers as new processes",
                        extra={"error": str(exc)},
                    )
                    self._use_fork_server = False
                    await asyncio.to_thread(self._stop)
            pid = await asyncio.to_thread(self._spawn, cmd, write_fd, values)
            return WorkerHandle(pid, read_fd, reap=sys.platform != "win32")
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)

    def _fork(self, cmd: CommandDir, write_fd: int, ssm_values: dict[str, str]) -> int:
        with self._guard:
            self._last_used = time.monotonic()
            if self.forkserver is None:
                self.forkserver = ForkServer.start()
                log.info("fork server started", extra={"pid": self.forkserver.pid})
            return self.forkserver.spawn(cmd.path, self.settings.to_json(), write_fd, ssm_values)

    def release_idle(self, now: float | None = None) -> bool:
        """Stop the fork server if it has forked nothing for ``fork_server_idle_seconds`` by
        ``now`` (time.monotonic(); blocking: call it from a thread).  True if it stopped."""
        with self._guard:
            idle = (time.monotonic() if now is None else now) - self._last_used
            if self.forkserver is None or self._idle_seconds <= 0 or idle < self._idle_seconds:
                return False
        self._stop()
        log.info("fork server stopped while idle", extra={"idle_seconds": round(idle)})
        return True

    def _stop(self) -> None:
        with self._guard:
            server, self.forkserver = self.forkserver, None
        if server is not None:
            server.close()

    def close(self) -> None:
        """Stop the fork server (workers carry on)."""
        self._stop()

    def _spawn(self, cmd: CommandDir, write_fd: int, ssm_values: dict[str, str]) -> int:
        """A new interpreter; blocking (it writes the values to the worker's stdin)."""
        args = [
            sys.executable,
            "-m",
            "agent.execution.worker",
            str(cmd.path),
            "--settings",
            json.dumps(self.settings.to_json()),
            "--ssm-values-on-stdin",
        ]
        payload = json.dumps(ssm_values).encode()
        log_path = str(cmd.file("worker.log"))
        if sys.platform == "win32":  # pragma: no cover - no Windows runner yet
            flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "DETACHED_PROCESS", 0
            )
            os.set_inheritable(write_fd, True)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(
                    [*args, "--events-fd", str(write_fd)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=out,
                    cwd=cmd.path,
                    creationflags=flags,
                    close_fds=False,
                )
            assert proc.stdin is not None
            with contextlib.suppress(OSError), proc.stdin:
                proc.stdin.write(payload)
            return proc.pid
        values_read, values_write = os.pipe()
        try:
            actions = [
                (os.POSIX_SPAWN_DUP2, values_read, 0),
                (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
                (os.POSIX_SPAWN_DUP2, write_fd, _SPAWNED_EVENTS_FD),
            ]
            pid = os.posix_spawn(
                sys.executable,
                [*args, "--events-fd", str(_SPAWNED_EVENTS_FD)],
                os.environ,
                file_actions=actions,
                setsid=True,
            )
        except BaseException:
            os.close(values_write)
            raise
        finally:
            os.close(values_read)
        _write_all(values_write, payload)
        return pid


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to the pipe and close it; the worker reads it all before anything else.
    A worker that died first (EPIPE) is the executor's to notice, through its event pipe."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        log.warning("could not hand the worker its start data", extra={"error": str(exc)})
    finally:
        os.close(fd)
