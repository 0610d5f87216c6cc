"""The operator's terminal during ``corral session start``: raw mode, its size, what is typed.

* :func:`raw_mode` puts a tty in raw mode (as ssh does: no echo, no line editing, no signals
  from keys, no output processing; the remote PTY does all that) and restores it on every
  way out of the block.
* :class:`EscapeFilter` is ssh's escape character: ``~.`` typed at the start of a line (after
  Enter, or as the very first input) disconnects; ``~~`` sends one ``~``; a ``~`` followed by
  anything else is sent as it was typed.
* :func:`tty_chunks` and :func:`pipe_chunks` read stdin as it arrives: a tty through the event
  loop, anything else (a pipe, a file) in a thread of its own, one chunk ahead at most, so a
  full session window stops the reading.

POSIX only (termios); the Windows console is not supported yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO, Final

DEFAULT_SIZE: Final = (80, 24)
ESCAPE: Final = ord("~")
DISCONNECT: Final = ord(".")
LINE_ENDS: Final = frozenset(b"\r\n")
READ_BYTES: Final = 32 * 1024


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The tty ``fd`` in raw mode for the block; its settings put back however it ends."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(*fds: int) -> tuple[int, int]:
    """(cols, rows) of the first of ``fds`` that is a terminal; 80x24 if none is."""
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
        except (OSError, ValueError):
            continue
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    return DEFAULT_SIZE


class EscapeFilter:
    """ssh's ``~`` escape over the bytes typed, chunk after chunk (state is kept between)."""

    def __init__(self) -> None:
        self._line_start = True  # the next byte starts a line
        self._held = False  # a ``~`` typed at the start of a line, not sent yet

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(the bytes to send, whether ``~.`` was typed: send those bytes, then leave)."""
        out = bytearray()
        for byte in data:
            if self._held:
                self._held = False
                if byte == DISCONNECT:
                    return bytes(out), True
                if byte != ESCAPE:
                    out.append(ESCAPE)
                out.append(byte)
                self._line_start = byte in LINE_ENDS
            elif self._line_start and byte == ESCAPE:
                self._held = True
            else:
                out.append(byte)
                self._line_start = byte in LINE_ENDS
        return bytes(out), False


async def tty_chunks(fd: int) -> AsyncIterator[bytes]:
    """What is typed on the tty ``fd``, as the event loop sees it readable; ends at EOF
    (the terminal hung up)."""
    loop = asyncio.get_running_loop()
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _set, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            data = os.read(fd, READ_BYTES)
        except OSError:  # EIO: the terminal is gone
            data = b""
        if not data:
            return
        yield data


def _set(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def pipe_chunks(stream: BinaryIO) -> AsyncIterator[bytes]:
    """What ``stream`` holds, read in a daemon thread (a blocking read cannot be cancelled;
    the thread is left behind if the session ends first); ends at EOF."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    turn = threading.Semaphore(1)  # the thread reads one chunk ahead of the consumer
    read = getattr(stream, "read1", stream.read)

    def reader() -> None:
        while True:
            turn.acquire()
            try:
                data = read(READ_BYTES)
            except (OSError, ValueError):
                data = b""
            try:
                loop.call_soon_threadsafe(queue.put_nowait, data or b"")
            except RuntimeError:  # the loop is closed: nobody is reading any more
                return
            if not data:
                return

    threading.Thread(target=reader, name="corral-stdin", daemon=True).start()
    while data := await queue.get():
        turn.release()
        yield data
