"""Port: no process; each OPEN from the peer is a new TCP connection from the node to the
session's host and port, carried on that frame's stream, as TCP would:

* the socket's bytes -> DATA; its EOF -> CLOSE with FLAG_HALF (the node sends no more);
* the peer's DATA -> written (drained: a socket that does not read holds the session back,
  as the window is the session's); the peer's CLOSE with FLAG_HALF -> ``write_eof``; once
  both halves are closed the connection is closed;
* connecting fails, or the socket errs -> a full CLOSE with the reason; the peer's full
  CLOSE -> the connection is closed.

At most MAX_STREAMS connections at once: one more is refused with a CLOSE and a reason.  The
peer's DATA for a stream waits in a small queue while it connects; past that, the session's
frames wait (the window is the session's, as with a socket that does not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Endpoint, SessionLost
from agent.sessions.program import Refused

log = logging.getLogger("corral.sessions")

CONNECT_TIMEOUT_SECONDS: Final = 10.0
MAX_STREAMS: Final = 256
QUEUED_FRAMES: Final = 8  # per stream, before the receiving loop waits for the socket
_EOF: Final = b""


@dataclass
class _Stream:
    inbox: asyncio.Queue[bytes] = field(
        default_factory=lambda: asyncio.Queue(QUEUED_FRAMES)
    )  # the peer's bytes; _EOF for its half-close
    task: asyncio.Task[None] | None = None


class PortForward:
    def __init__(self, body: Mapping[str, Any]) -> None:
        port, host = body.get("port"), body.get("host")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise Refused(f"a Port session needs a port from 1 to 65535, not {port!r}")
        if host is not None and not (isinstance(host, str) and host):
            raise Refused(f"a Port session's host must be a name or an address, not {host!r}")
        self.session_id = str(body.get("session_id"))
        self.host = host or "localhost"
        self.port = port
        self.streams: dict[int, _Stream] = {}

    async def run(self, endpoint: Endpoint) -> None:
        try:
            while True:
                frame = await endpoint.receive()
                if frame is None or frame.type in (dc.CLOSED, dc.TERMINATE):
                    return None
                await self._handle(endpoint, frame)
        finally:
            tasks = [s.task for s in self.streams.values() if s.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, endpoint: Endpoint, frame: dc.Frame) -> None:
        number = frame.stream
        stream = self.streams.get(number)
        if frame.type == dc.OPEN:
            if stream is not None:
                log.warning(
                    "ignoring OPEN of a stream already open",
                    extra={"session_id": self.session_id, "stream": number},
                )
            elif len(self.streams) >= MAX_STREAMS:
                reason = f"too many connections: at most {MAX_STREAMS} at once"
                await endpoint.send_json(dc.CLOSE, {"reason": reason}, number)
            else:
                stream = self.streams[number] = _Stream()
                stream.task = asyncio.create_task(self._serve(endpoint, number, stream))
                stream.task.add_done_callback(self._finished)
        elif stream is None:  # the stream ended here; the peer's frames crossed our CLOSE
            return
        elif frame.type == dc.DATA and frame.payload:
            await stream.inbox.put(frame.payload)
        elif frame.type == dc.CLOSE and frame.flags & dc.FLAG_HALF:
            await stream.inbox.put(_EOF)
        elif frame.type == dc.CLOSE:
            self.streams.pop(number, None)
            if stream.task is not None:
                stream.task.cancel()

    async def _serve(self, endpoint: Endpoint, number: int, stream: _Stream) -> None:
        """One connection, from connecting to both halves closed (or a failure)."""
        where = f"{self.host}:{self.port}"
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except TimeoutError:
                raise OSError(f"cannot connect to {where}: no answer within 10 s") from None
            except OSError as exc:  # asyncio's text names the address again: the errno's
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise OSError(f"cannot connect to {where}: {why}") from None
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_upstream(endpoint, number, reader))
                tg.create_task(_downstream(stream.inbox, writer))
        except* OSError as group:
            reason = str(group.exceptions[0]) or type(group.exceptions[0]).__name__
            log.info(
                "port forwarding stream failed",
                extra={"session_id": self.session_id, "stream": number, "error": reason},
            )
            with contextlib.suppress(SessionLost):
                await endpoint.send_json(dc.CLOSE, {"reason": reason}, number)
        except* SessionLost:
            pass  # the session is over: so is every stream
        finally:
            if self.streams.get(number) is stream:
                del self.streams[number]
            if writer is not None:
                writer.close()

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "port forwarding stream crashed",
                extra={"session_id": self.session_id},
                exc_info=task.exception(),
            )


async def _upstream(endpoint: Endpoint, number: int, reader: asyncio.StreamReader) -> None:
    while chunk := await reader.read(dc.MAX_PAYLOAD):
        await endpoint.send(dc.DATA, chunk, number)
    await endpoint.send(dc.CLOSE, b"", number, flags=dc.FLAG_HALF)


async def _downstream(inbox: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
    while data := await inbox.get():
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
