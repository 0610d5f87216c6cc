"""The blob store: a directory under the data dir holding each step's full output.

``blobs/commands/<command id>/<node id>/<step index>.<stdout|stderr>``.  Writes go to a
temporary file renamed into place, so a reader sees a whole blob or none; an upload is
idempotent (the same PUT again replaces it).
"""

from __future__ import annotations

import hashlib
import os
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
        """Store an upload (at most OUTPUT_BLOB_MAX_BYTES); returns (size, sha256)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        digest = hashlib.sha256()
        size = 0
        with tmp.open("wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > wire.OUTPUT_BLOB_MAX_BYTES:
                    fh.close()
                    tmp.unlink(missing_ok=True)
                    raise PayloadTooLarge(
                        f"output is larger than {wire.OUTPUT_BLOB_MAX_BYTES} bytes"
                    )
                digest.update(chunk)
                fh.write(chunk)
        os.replace(tmp, path)
        return size, digest.hexdigest()

    @staticmethod
    def read_chunks(path: Path) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return gen()
