"""The blob store under the output upload (services/blobs.py): an upload is answered only
once the blob and the directory entries naming it are fsynced, so an agent that forgets its
copy after the answer loses nothing to a crash or a power cut (issue 17)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent import wire
from control_plane.errors import PayloadTooLarge
from control_plane.services import blobs
from control_plane.services.blobs import BlobStore


class Syncs:
    """Every fsync, in order, named by the path of what was synced."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, fd: int) -> None:
        self.names.append(os.readlink(f"/proc/self/fd/{fd}"))


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Syncs]:
    record = Syncs()
    real = os.fsync

    def fsync(fd: int) -> None:
        record(fd)
        real(fd)

    monkeypatch.setattr(blobs.os, "fsync", fsync)
    yield record


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_an_upload_is_fsynced_with_its_directories_before_it_is_answered(
    tmp_path: Path, syncs: Syncs
) -> None:
    store = BlobStore(tmp_path / "blobs")
    path = store.path("cmd-1", "mi-00000000000000001", 0, "stdout")
    size, digest = asyncio.run(store.write(path, chunks(b"hello ", b"world")))
    assert (size, digest) == (11, hashlib.sha256(b"hello world").hexdigest())
    assert path.read_bytes() == b"hello world"
    # The data first (under its temporary name), then the directory holding the rename, then
    # every directory this upload created, up to the data dir that holds blobs/.
    assert syncs.names[0].startswith(str(path) + ".") and syncs.names[0].endswith(".part")
    assert syncs.names[1:] == [
        str(path.parent),
        str(path.parent.parent),
        str(tmp_path / "blobs" / "commands"),
        str(tmp_path / "blobs"),
        str(tmp_path),
    ]
    # A second step's upload creates nothing: only its own file and directory are synced.
    syncs.names.clear()
    other = store.path("cmd-1", "mi-00000000000000001", 1, "stderr")
    asyncio.run(store.write(other, chunks(b"x")))
    assert syncs.names[1:] == [str(other.parent)]
    assert sorted(p.name for p in path.parent.iterdir()) == ["0.stdout", "1.stderr"]


def test_a_refused_upload_leaves_nothing_behind(tmp_path: Path, syncs: Syncs) -> None:
    store = BlobStore(tmp_path / "blobs")
    path = store.path("cmd-1", "mi-00000000000000001", 0, "stdout")
    too_big = b"x" * (wire.OUTPUT_BLOB_MAX_BYTES // 2 + 1)
    with pytest.raises(PayloadTooLarge):
        asyncio.run(store.write(path, chunks(too_big, too_big)))
    assert list(path.parent.iterdir()) == []
    assert syncs.names == []  # nothing was answered, nothing needed syncing


def test_an_upload_cut_short_leaves_the_previous_blob_whole(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    path = store.path("cmd-1", "mi-00000000000000001", 0, "stdout")
    asyncio.run(store.write(path, chunks(b"first, whole")))

    async def cut() -> AsyncIterator[bytes]:
        yield b"second, half"
        raise ConnectionResetError("the agent went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(store.write(path, cut()))
    assert path.read_bytes() == b"first, whole"
    assert [p.name for p in path.parent.iterdir()] == ["0.stdout"]


def test_two_uploads_of_one_blob_at_once_never_mix(tmp_path: Path) -> None:
    """A retried upload can overlap the first (the agent gave up waiting): each writes a
    file of its own, and the blob is one of them, whole."""
    store = BlobStore(tmp_path / "blobs")
    path = store.path("cmd-1", "mi-00000000000000001", 0, "stdout")

    async def slow(fill: bytes) -> AsyncIterator[bytes]:
        for _ in range(50):
            yield fill * 1000
            await asyncio.sleep(0)  # a slow body: the loop turns between chunks

    async def both() -> None:
        await asyncio.gather(store.write(path, slow(b"a")), store.write(path, slow(b"b")))

    asyncio.run(both())
    assert path.read_bytes() in (b"a" * 50_000, b"b" * 50_000)
    assert [p.name for p in path.parent.iterdir()] == ["0.stdout"]
