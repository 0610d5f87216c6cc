"""A session's recording, written to the blob store as it streams.

Events (agent/sessions/recording.py) are buffered and flushed as numbered chunk files,
``blobs/sessions/<id>/<n>.rec``, once ``FLUSH_BYTES`` are waiting or ``FLUSH_SECONDS`` after
the first waiting event: each chunk is written to a temporary file, fsynced and renamed, so a
server that crashes loses at most what was not flushed.  The sha256 and size of the whole
recording grow with each chunk; at the end they go into the session's record and its audit
entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from pathlib import Path

from agent.sessions import recording
from control_plane.services.clock import Clock

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0
# A recording is cut here (a runaway `cat` must not fill the disk); the record says so.
MAX_RECORDING_BYTES = 1024 * 1024 * 1024
# Flushes run beside the relay; past this much waiting, the relay waits for the disk.
MAX_BUFFERED = 4 * 1024 * 1024

log = logging.getLogger("corral.sessions")


class Recorder:
    def __init__(self, directory: Path, clock: Clock, started: float) -> None:
        self.directory = directory
        self._clock = clock
        self._started = started
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._first_waiting: float | None = None
        self._digest = hashlib.sha256()
        self.size = 0
        self.chunks = 0
        self.truncated = False
        self._lock = asyncio.Lock()
        self._flushing: asyncio.Task[None] | None = None

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def add(self, kind: int, data: bytes) -> bool:
        """Buffer one event; True when a flush is due."""
        if self.truncated:
            return False
        event = recording.encode(recording.Event(self._clock() - self._started, kind, data))
        if self.size + self._buffered + len(event) > MAX_RECORDING_BYTES:
            self.truncated = True
            return True
        self._buffer.append(event)
        self._buffered += len(event)
        if self._first_waiting is None:
            self._first_waiting = self._clock()
        return self.due()

    def due(self) -> bool:
        if not self._buffer:
            return False
        waited = self._clock() - (self._first_waiting or self._clock())
        return self._buffered >= FLUSH_BYTES or waited >= FLUSH_SECONDS

    async def flush_soon(self) -> None:
        """After ``add``: start a due flush beside the relay (a frame never waits for the
        disk), and wait only when a flush is running and MAX_BUFFERED bytes are waiting."""
        running = self._flushing is not None and not self._flushing.done()
        if running and self._buffered >= MAX_BUFFERED:
            assert self._flushing is not None
            await asyncio.shield(self._flushing)
        elif not running and self.due():
            self._flushing = asyncio.create_task(self.flush(), name="session-recording")

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            data = b"".join(self._buffer)
            self._buffer, self._buffered, self._first_waiting = [], 0, None
            path = self.directory / f"{self.chunks:06d}.rec"
            try:
                await asyncio.to_thread(_write_durably, path, data)
            except OSError as exc:  # kept to try again; a disk that stays broken cuts it
                log.error(
                    "cannot write a session recording", extra={"path": str(path), "error": str(exc)}
                )
                self._buffer.insert(0, data)
                self._buffered += len(data)
                if self._buffered > MAX_BUFFERED:
                    self._buffer, self._buffered, self.truncated = [], 0, True
                return
            self.chunks += 1
            self.size += len(data)
            self._digest.update(data)


def chunk_paths(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".rec")


def read_all(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in chunk_paths(directory))


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _write_durably(path: Path, data: bytes) -> None:
    new_dir = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    for directory in [path.parent, path.parent.parent] if new_dir else [path.parent]:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
