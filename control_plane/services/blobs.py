"""The blob store: a directory under the data dir holding each step's full output.

``blobs/commands/<command id>/<node id>/<step index>.<stdout|stderr>``.  Writes go to a
temporary file renamed into place, so a reader sees a whole blob or none; an upload is
idempotent (the same PUT again replaces it).  An upload is answered only once the blob is
durable (fsynced, with the directories that name it), so the agent may then forget it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from agent import wire
from control_plane.errors import InvalidRequest, PayloadTooLarge

STREAMS = ("stdout", "stderr")
CHUNK = 64 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, command_id: str, node_id: str, step_index: int, stream: str) -> Path:
        if stream not in STREAMS:
            raise InvalidRequest(f"stream must be stdout or stderr, not {stream!r}")
        if not 0 <= step_index < 1000:
            raise InvalidRequest("step index out of range")
        return self.root / "commands" / command_id / node_id / f"{step_index}.{stream}"

    async def write(self, path: Path, chunks: AsyncIterator[bytes]) -> tuple[int, str]:
        """Store an upload (at most OUTPUT_BLOB_MAX_BYTES); returns (size, sha256) once the
        blob is durable: the file and every directory entry leading to it are fsynced (in a
        thread) before the upload is answered, as an acknowledged result must survive a
        crash or a power cut."""
        created = _missing_dirs(path.parent, self.root)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Its own temporary name: two uploads of one blob (a retry) never share a file.
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        digest = hashlib.sha256()
        size = 0
        with tmp.open("wb") as fh:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > wire.OUTPUT_BLOB_MAX_BYTES:
                        raise PayloadTooLarge(
                            f"output is larger than {wire.OUTPUT_BLOB_MAX_BYTES} bytes"
                        )
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            except BaseException:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise
        os.replace(tmp, path)
        await asyncio.to_thread(_sync_dirs, [path.parent, *(d.parent for d in created)])
        return size, digest.hexdigest()

    @staticmethod
    def read_chunks(path: Path) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return gen()


def _missing_dirs(directory: Path, root: Path) -> list[Path]:
    """The directories from ``directory`` up to ``root`` that do not exist yet."""
    missing: list[Path] = []
    while not directory.exists() and directory != root.parent and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _sync_dirs(directories: list[Path]) -> None:
    """fsync directories, so the entries made in them (a rename, a new directory) persist."""
    for directory in dict.fromkeys(directories):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
