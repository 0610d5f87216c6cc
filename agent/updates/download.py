"""A package streamed from the server into ``<state_dir>/updates/``, checked against its
manifest entry: never more bytes than the entry's size, then the size and SHA-256.  It is
written under a temporary name and renamed only once it matches; a mismatch leaves nothing
behind (and nothing is installed)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from agent.updates.base import Entry, UpdateError

UPDATES_DIR = "updates"

Source = Callable[[str], AbstractAsyncContextManager[AsyncIterator[bytes]]]


def updates_dir(state_dir: Path) -> Path:
    folder = state_dir / UPDATES_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


async def download(source: Source, entry: Entry, folder: Path) -> Path:
    """``entry``'s file in ``folder``, its size and SHA-256 checked; UpdateError otherwise."""
    dest = folder / entry.file
    part = folder / f".{entry.file}.part"
    hasher = hashlib.sha256()
    size = 0
    try:
        async with source(entry.file) as chunks:
            with part.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > entry.size:
                        raise UpdateError(
                            f"{entry.file}: the server sent more than the manifest's "
                            f"{entry.size} bytes: refusing it"
                        )
                    out.write(chunk)
                    hasher.update(chunk)
                out.flush()
                os.fsync(out.fileno())
        if size != entry.size:
            raise UpdateError(
                f"{entry.file}: {size} bytes received, the manifest says {entry.size}: refusing it"
            )
        digest = hasher.hexdigest()
        if digest != entry.sha256:
            raise UpdateError(
                f"{entry.file}: sha256 {digest} does not match the signed manifest's "
                f"{entry.sha256}: refusing it"
            )
        os.replace(part, dest)
    except OSError as exc:
        raise UpdateError(f"cannot write {part}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    return dest


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            hasher.update(block)
    return hasher.hexdigest()


def prune(folder: Path, keep: set[str]) -> None:
    """Remove the packages of earlier upgrades (``keep``: file names still needed)."""
    for path in folder.iterdir():
        if path.name not in keep and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
