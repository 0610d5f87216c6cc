"""Child processes on Linux and macOS: a new session (so its own process group), both pipes
read in chunks through one selector, the whole group killed on stop.

The exit of the child wakes the selector through a pidfd where the kernel has them (Linux 5.3+);
elsewhere the selector wakes every 50 ms to look.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from agent.plugins.base import StepContext, StopReason
from agent.plugins.output import CHUNK_BYTES, CappedOutput

# After the script exits, how long its output is still read when a background process it
# started keeps the pipes open (``sleep 600 &``): the step does not wait for it.
DRAIN_SECONDS = 1.0
_POLL_SECONDS = 0.05


class ProcessRunner:
    def __init__(self) -> None:
        self._pgid: int | None = None
        self.stopped: StopReason | None = None
        self._term_at: float | None = None
        self._killed = False

    def request_stop(self, reason: StopReason) -> None:
        """SIGTERM to the whole process group; SIGKILL follows after the grace."""
        if self.stopped is None:
            self.stopped = reason
        if self._pgid is not None and self._term_at is None:
            self._term_at = time.monotonic()
            self._signal_group(signal.SIGTERM)

    def _signal_group(self, sig: int) -> bool:
        """True if the group still existed."""
        if self._pgid is None:
            return False
        try:
            os.killpg(self._pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # a setuid member: the rest were signalled
            return True
        return True

    def run(self, argv: list[str], ctx: StepContext, env: Mapping[str, str], cwd: Path) -> int:
        """Run ``argv`` to its end (or until stopped); its exit code as a shell reports it
        (128 + N for a signal).  Raises OSError if it cannot be started."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
        self._pgid = proc.pid
        if self.stopped is not None:  # stopped while it was being started
            self.request_stop(self.stopped)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            self._pump(proc, ctx)
        finally:
            proc.stdout.close()
            proc.stderr.close()
        if self.stopped is not None:
            self._finish_kill(ctx.kill_grace_seconds)
        code = proc.wait()
        return 128 - code if code < 0 else code

    def _pump(self, proc: subprocess.Popen[bytes], ctx: StepContext) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        sinks: dict[int, CappedOutput] = {
            proc.stdout.fileno(): ctx.stdout,
            proc.stderr.fileno(): ctx.stderr,
        }
        pidfd = _pidfd(proc.pid)
        with selectors.DefaultSelector() as sel:
            for fd in sinks:
                sel.register(fd, selectors.EVENT_READ)
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ)
            exited_at: float | None = None
            try:
                while True:
                    now = time.monotonic()
                    if exited_at is None and proc.poll() is not None:
                        exited_at = now
                        if pidfd is not None:
                            sel.unregister(pidfd)
                    if exited_at is not None and (not sinks or now - exited_at >= DRAIN_SECONDS):
                        break
                    if self.stopped is None and now >= ctx.deadline:
                        self.request_stop(StopReason.TIMEOUT)
                    self._escalate(now, ctx.kill_grace_seconds)
                    timeout = self._timeout(now, ctx, exited_at, pidfd is not None)
                    for key, _ in sel.select(timeout):
                        fd = int(key.fd)
                        if fd == pidfd:
                            continue
                        data = os.read(fd, CHUNK_BYTES)
                        if data:
                            sinks[fd].write(data)
                        else:
                            sel.unregister(fd)
                            del sinks[fd]
            finally:
                if pidfd is not None:
                    os.close(pidfd)

    def _timeout(
        self, now: float, ctx: StepContext, exited_at: float | None, has_pidfd: bool
    ) -> float:
        limits = [ctx.deadline - now]
        if self._term_at is not None and not self._killed:
            limits.append(self._term_at + ctx.kill_grace_seconds - now)
        if exited_at is not None:
            limits.append(exited_at + DRAIN_SECONDS - now)
        elif not has_pidfd:
            limits.append(_POLL_SECONDS)
        if self.stopped is not None and self._term_at is None:
            limits.append(0.0)
        return max(0.0, min(limits))

    def _escalate(self, now: float, grace: float) -> None:
        if self._term_at is not None and not self._killed and now >= self._term_at + grace:
            self._killed = True
            self._signal_group(signal.SIGKILL)

    def _finish_kill(self, grace: float) -> None:
        """The script has exited; members of its group that outlive it get the rest of the
        grace, then SIGKILL."""
        if self._term_at is None:
            self.request_stop(self.stopped or StopReason.CANCEL)
        assert self._term_at is not None
        while not self._killed and time.monotonic() < self._term_at + grace:
            if not self._signal_group(0):
                return
            time.sleep(_POLL_SECONDS)
        self._killed = True
        self._signal_group(signal.SIGKILL)


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    with contextlib.suppress(OSError):
        fd: int = opener(pid)
        return fd
    return None
