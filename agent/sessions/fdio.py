"""Reading and writing a non-blocking file descriptor (a PTY's master) on the event loop,
never blocking it: the loop watches the descriptor only while a read or a write waits, so a
reader that is not called (its consumer's window is full) leaves the data in the kernel,
which then blocks the writer on the other side."""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any, Final

DRAIN_SECONDS: Final = 1.0


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class FdReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False

    async def read(self, limit: int, drain: asyncio.Event) -> bytes:
        """Up to ``limit`` bytes (as many as are there, in several reads); b"" at the end: EOF,
        EIO (a PTY whose every slave is closed), or, once ``drain`` is set, nothing to read
        for DRAIN_SECONDS (a process outside the session still holds the other side)."""
        while True:
            data = self._available(limit)
            if data or self.eof:
                return data
            if not await self._readable(drain):
                return b""

    def _available(self, limit: int) -> bytes:
        buf = bytearray()
        while len(buf) < limit and not self.eof:
            try:
                chunk = os.read(self.fd, limit - len(buf))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                self.eof = True
            buf += chunk
        return bytes(buf)

    async def _readable(self, drain: asyncio.Event) -> bool:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self.fd, _wake, ready)
        draining = asyncio.ensure_future(drain.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {ready, draining}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                await asyncio.wait({ready}, timeout=DRAIN_SECONDS)
            return ready.done()
        finally:
            loop.remove_reader(self.fd)
            draining.cancel()
            ready.cancel()


class FdWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def write(self, data: bytes) -> None:
        """All of ``data``, waiting for room; OSError (EIO: the PTY's other side is gone)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await self._writable()

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(self.fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_writer(self.fd)
