"""Child processes on Windows: a new process group, one reader thread per pipe (Windows pipes
do not work with select), the whole tree killed with ``taskkill /T /F`` on stop.

Not exercised by the test suite (no Windows runner yet); the POSIX runner is the reference.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from agent.plugins.base import StepContext, StopReason
from agent.plugins.output import CHUNK_BYTES, CappedOutput

_POLL_SECONDS = 0.1


class ProcessRunner:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.stopped: StopReason | None = None
        self._term_at: float | None = None

    def request_stop(self, reason: StopReason) -> None:
        if self.stopped is None:
            self.stopped = reason
        if self._proc is not None and self._term_at is None:
            self._term_at = time.monotonic()
            subprocess.call(
                ["taskkill", "/T", "/F", "/PID", str(self._proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def run(self, argv: list[str], ctx: StepContext, env: Mapping[str, str], cwd: Path) -> int:
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            creationflags=flags,
        )
        self._proc = proc
        if self.stopped is not None:
            self.request_stop(self.stopped)
        assert proc.stdout is not None and proc.stderr is not None
        lock = threading.Lock()
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, ctx.stdout, lock), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, ctx.stderr, lock), daemon=True),
        ]
        for reader in readers:
            reader.start()
        while proc.poll() is None:
            if self.stopped is None and time.monotonic() >= ctx.deadline:
                self.request_stop(StopReason.TIMEOUT)
            time.sleep(_POLL_SECONDS)
        for reader in readers:
            reader.join(timeout=1.0)
        return proc.returncode


def _pump(pipe: IO[bytes], sink: CappedOutput, lock: threading.Lock) -> None:
    with pipe:
        while data := pipe.read1(CHUNK_BYTES):  # type: ignore[attr-defined]
            with lock:
                sink.write(data)
