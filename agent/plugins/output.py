"""A step's output stream: written to a file up to a cap, counted (and dropped) beyond it.

Nothing is held in memory but the chunk being written, however much a command prints.  The
record kept in the command result is read back from the head of the file at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent import wire

CHUNK_BYTES = 64 * 1024


class CappedOutput:
    def __init__(self, path: Path, cap: int = wire.OUTPUT_BLOB_MAX_BYTES) -> None:
        self.path = path
        self.cap = cap
        self.total = 0  # every byte the step wrote, kept or not
        self.kept = 0
        self._last = b""
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - self.kept
        if room <= 0 or self._fd is None:
            return
        chunk = data[:room]
        view = memoryview(chunk)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.kept += len(chunk)
        if chunk:
            self._last = chunk[-1:]

    def note(self, text: str) -> None:
        """A line of the agent's own (why a step failed or was skipped)."""
        if self.kept and not self._ends_with_newline():
            text = "\n" + text
        self.write((text.rstrip("\n") + "\n").encode("utf-8", "replace"))

    def _ends_with_newline(self) -> bool:
        return self._last in (b"", b"\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def head(self, chars: int) -> str:
        """The first ``chars`` characters of what was kept (UTF-8, bad bytes replaced)."""
        return read_head(self.path, chars)


def read_head(path: Path, chars: int) -> str:
    with path.open("rb") as fh:
        raw = fh.read(chars * 4)
    return raw.decode("utf-8", "replace")[:chars]
