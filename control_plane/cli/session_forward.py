"""``corral session port-forward``: local TCP connections carried over one session's stream.

Each accepted connection gets the next stream id (1, 2, 3 …; 0 is the shell's, never used
here) and an OPEN frame; then, per stream, as TCP would:

* local bytes → DATA; the local end's EOF → CLOSE with ``FLAG_HALF`` (it sends no more);
* the peer's DATA → written (and drained: a local reader that does not read holds the whole
  session back, as the window is the session's); the peer's CLOSE with ``FLAG_HALF`` →
  ``write_eof``; once both halves are closed the connection is closed;
* the peer's full CLOSE (its connection failed or was refused) → the local connection is
  closed, its reason printed; a local connection that fails → a full CLOSE with the reason.

Ctrl-C, SIGTERM or SIGHUP end the session (CLOSED) and the command with status 0; the session
ended by the other side (CLOSED, TERMINATE) ends it with 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Endpoint, SessionLost
from control_plane.cli.errors import CliError
from control_plane.cli.session_stream import Channel, Outcome, cancel, frame_reason, on_signals

MAX_STREAM: Final = 0xFFFF
STOP_SIGNALS: Final = ("SIGINT", "SIGTERM", "SIGHUP")


@dataclass
class _Stream:
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    sent_eof: bool = False  # the local end met EOF; CLOSE/FLAG_HALF sent
    got_eof: bool = False  # the peer sent CLOSE/FLAG_HALF; write_eof done
    closed: bool = False


@dataclass
class Forwarder:
    ep: Endpoint
    note: Callable[[str], None]
    streams: dict[int, _Stream] = field(default_factory=dict)
    _next: int = 1

    def _new_id(self) -> int:
        for _ in range(MAX_STREAM):
            stream, self._next = self._next, self._next % MAX_STREAM + 1
            if stream not in self.streams:
                return stream
        raise CliError(f"more than {MAX_STREAM - 1} connections at once")  # pragma: no cover

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One local connection, from OPEN to its EOF (asyncio.start_server's callback)."""
        stream = self._new_id()
        state = _Stream(writer, asyncio.current_task())
        self.streams[stream] = state
        try:
            await self.ep.send(dc.OPEN, b"", stream)
            while data := await reader.read(dc.MAX_PAYLOAD):
                if state.closed:
                    return
                await self.ep.send(dc.DATA, data, stream)
            if state.closed:
                return
            state.sent_eof = True
            await self.ep.send(dc.CLOSE, b"{}", stream, flags=dc.FLAG_HALF)
            if state.got_eof:
                self._drop(stream)
        except SessionLost:
            self._drop(stream)
        except asyncio.CancelledError:
            # The forwarder is stopping: this handler task belongs to asyncio's server, which
            # would print the cancellation as an error; the connection just closes.
            writer.close()
            return
        except OSError as exc:  # the local connection failed: the peer's is closed too
            if not state.closed:
                self._drop(stream)
                reason = f"local connection failed: {exc.strerror or exc}"
                with contextlib.suppress(SessionLost):
                    await self.ep.send_json(dc.CLOSE, {"reason": reason}, stream)

    async def dispatch(self) -> Outcome | None:
        """The peer's frames, until the session ends: its outcome (None: the stream was lost)."""
        while (frame := await self.ep.receive()) is not None:
            if frame.type in (dc.CLOSED, dc.TERMINATE):
                reason = frame_reason(frame) or "no reason given"
                if frame.type == dc.TERMINATE:
                    return Outcome(1, f"session {self.ep.session_id} terminated: {reason}")
                return Outcome(1, f"session ended: {reason}")
            state = self.streams.get(frame.stream)
            if state is None or state.closed:
                continue  # a connection already closed here
            if frame.type == dc.DATA:
                await self._write(frame.stream, state, frame.payload)
            elif frame.type == dc.CLOSE and frame.flags & dc.FLAG_HALF:
                state.got_eof = True
                with contextlib.suppress(OSError):
                    if state.writer.can_write_eof():
                        state.writer.write_eof()
                if state.sent_eof:
                    self._drop(frame.stream)
            elif frame.type == dc.CLOSE:
                reason = frame_reason(frame)
                if reason:
                    self.note(f"connection {frame.stream} closed: {reason}")
                self._drop(frame.stream)
        return None

    async def _write(self, stream: int, state: _Stream, data: bytes) -> None:
        try:
            state.writer.write(data)
            await state.writer.drain()
        except OSError as exc:
            self._drop(stream)
            reason = f"local connection failed: {exc.strerror or exc}"
            await self.ep.send_json(dc.CLOSE, {"reason": reason}, stream)

    def _drop(self, stream: int) -> None:
        state = self.streams.pop(stream, None)
        if state is not None and not state.closed:
            state.closed = True
            state.writer.close()

    async def close_all(self) -> None:
        tasks = [s.task for s in self.streams.values() if s.task is not None]
        for stream in list(self.streams):
            self._drop(stream)
        await cancel(*tasks)


async def forward(
    channel: Channel, listener: socket.socket, note: Callable[[str], None]
) -> Outcome:
    """Serve ``listener``'s connections over the session until it ends or a signal stops it."""
    forwarder = Forwarder(channel.endpoint, note)
    stopped: list[int] = []
    stop = asyncio.Event()

    def on_stop(signum: int) -> None:
        stopped.append(signum)
        stop.set()

    async with channel:
        server = await asyncio.start_server(forwarder.connected, sock=listener)
        dispatching = asyncio.create_task(forwarder.dispatch())
        stopping = asyncio.create_task(stop.wait())
        try:
            with on_signals(STOP_SIGNALS, on_stop):
                await asyncio.wait([dispatching, stopping], return_when=asyncio.FIRST_COMPLETED)
                if dispatching.done():
                    outcome = dispatching.result()
                    if outcome is None:
                        session_id = channel.endpoint.session_id
                        raise channel.lost() or CliError(f"session {session_id}: the stream ended")
                    return outcome
                name = signal.Signals(stopped[0]).name
                arrived = await channel.finish(f"the client stopped forwarding ({name})")
                return Outcome(0, terminate=not arrived)
        finally:
            server.close()
            await forwarder.close_all()
            await cancel(dispatching, stopping)
