"""One end of a session's data channel (agent/sessions/datachannel.py) over a websocket to the
server's relay that may drop and be dialled again: the agent's end and the operator's CLI
both use it.

``send`` numbers a frame and writes it (or, while the websocket is down, keeps it for the
resend); it waits while the window is full, so whatever feeds it (a PTY, a socket) stops
being read.  ``receive`` hands over the peer's frames once each, in order; a frame counts as
consumed when ``receive`` is called again, and only then is it acknowledged, so the peer
never has more than a window of bytes in flight towards an end that is slow to consume them.

A dropped websocket is dialled again (with backoff) until ``grace`` seconds have passed
without one: then ``SessionLost``.  On each (re)connection the end sends HELLO with the last
sequence number it received, the peer resends what came after it and answers with its own
HELLO (FLAG_REPLY), and this end resends in turn.  The relay's close codes for an unknown
session, a forbidden one or a newer connection of the same end are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from agent import wire
from agent.sessions import datachannel as dc

log = logging.getLogger("corral.sessions")

ACK_DELAY_SECONDS = 0.005
FINAL_CLOSE_CODES = frozenset(
    {wire.CLOSE_SESSION_UNKNOWN, wire.CLOSE_SESSION_FORBIDDEN, wire.CLOSE_SESSION_REPLACED}
)


class Connection(Protocol):
    """What the endpoint needs of a websocket (websockets' ClientConnection has it)."""

    async def send(self, message: bytes) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


Dial = Callable[[], Awaitable[Connection]]


class SessionLost(Exception):
    """The session cannot go on; the message says why, on one line."""


class ConnectionGone(Exception):
    """The websocket dropped (to be dialled again), or closed with ``code``."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(reason or f"closed ({code})")
        self.code = code
        self.reason = reason


class Endpoint:
    def __init__(
        self,
        session_id: str,
        dial: Dial,
        *,
        window: int = dc.DEFAULT_WINDOW,
        grace: float = 30.0,
        backoff: tuple[float, float] = (0.1, 2.0),
        describe_close: Callable[[Exception], ConnectionGone] | None = None,
    ) -> None:
        self.session_id = session_id
        self._dial = dial
        self.grace = grace
        self._backoff = backoff
        self._describe = describe_close or (lambda exc: ConnectionGone(None, str(exc)))
        self.out = dc.Outgoing(window)
        self.inc = dc.Incoming()
        self._conn: Connection | None = None
        self._write = asyncio.Lock()  # frames reach the wire in sequence order
        self._sending = asyncio.Lock()  # one sender at a time waits for the window
        self._room = asyncio.Condition()
        self._frames: asyncio.Queue[dc.Frame | None] = asyncio.Queue()
        self._owed = 0  # bytes received and consumed, not acknowledged yet
        self._ack_timer: asyncio.TimerHandle | None = None
        self._pending_consume: dc.Frame | None = None
        self.ended: str | None = None  # why the session ended, once it has
        self.connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # Sending -----------------------------------------------------------------------------

    async def send(
        self, kind: int, payload: bytes = b"", stream: int = 0, *, flags: int = 0
    ) -> None:
        """Number and send one frame; waits while the window is full.  Payloads longer than
        MAX_PAYLOAD are cut into several frames (each with ``flags``)."""
        for start in range(0, max(len(payload), 1), dc.MAX_PAYLOAD):
            await self._send_one(kind, payload[start : start + dc.MAX_PAYLOAD], stream, flags)

    async def send_json(self, kind: int, body: dict[str, Any], stream: int = 0) -> None:
        await self.send(kind, json.dumps(body).encode(), stream)

    async def _send_one(self, kind: int, payload: bytes, stream: int, flags: int = 0) -> None:
        async with self._sending:
            async with self._room:
                await self._room.wait_for(
                    lambda: (
                        self.ended is not None
                        or len(payload) <= self.out.room()
                        or self.out.unacked_bytes == 0
                    )
                )
            if self.ended is not None:
                raise SessionLost(self.ended)
            async with self._write:
                frame = self.out.number(kind, payload, stream, self.inc.last, flags=flags)
                self._owed = 0
                await self._put(frame)

    async def _put(self, frame: dc.Frame) -> None:
        """Write to the current websocket, if any (call with ``_write`` held); a failure
        leaves the frame to the resend after the next HELLO."""
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.send(frame.encode())
        except Exception as exc:  # any failure of the link: dial again
            log.debug(
                "session send failed", extra={"session_id": self.session_id, "error": str(exc)}
            )
            if self._conn is conn:
                self._conn = None
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await conn.close()

    # Receiving ---------------------------------------------------------------------------

    async def receive(self) -> dc.Frame | None:
        """The peer's next frame (DATA, RESIZE, OPEN, CLOSE, EXIT, CLOSED, TERMINATE), or None
        once the session has ended and everything was received."""
        self._consumed()
        frame = await self._frames.get()
        self._pending_consume = frame
        return frame

    def _consumed(self) -> None:
        frame, self._pending_consume = self._pending_consume, None
        if frame is None or frame.type in dc.UNNUMBERED:
            return
        self._owed += max(len(frame.payload), 1)
        if self._owed >= self.out.window // 4:
            self._ack_soon(0.0)
        elif self._ack_timer is None:
            self._ack_soon(ACK_DELAY_SECONDS)

    def _ack_soon(self, delay: float) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        loop = asyncio.get_running_loop()
        self._ack_timer = loop.call_later(delay, lambda: self._spawn(self._send_ack()))

    async def _send_ack(self) -> None:
        self._ack_timer = None
        if self._owed == 0:
            return
        async with self._write:
            self._owed = 0
            await self._put(dc.Frame(dc.ACK, ack=self.inc.last))

    # The connection ----------------------------------------------------------------------

    async def run(self) -> None:
        """Dial and serve until the session ends (CLOSED either way, TERMINATE, ``end``);
        SessionLost when the relay cannot be reached for ``grace`` seconds or says no."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        delay = self._backoff[0]
        try:
            while self.ended is None:
                try:
                    conn = await self._dial()
                except ConnectionGone as exc:
                    if exc.code in FINAL_CLOSE_CODES:
                        raise SessionLost(exc.reason or f"refused ({exc.code})") from None
                    reason = str(exc)
                except (OSError, TimeoutError) as exc:
                    reason = str(exc) or type(exc).__name__
                else:
                    try:
                        await self._serve(conn)
                    except ConnectionGone as exc:
                        if exc.code in FINAL_CLOSE_CODES:
                            raise SessionLost(exc.reason or f"closed ({exc.code})") from None
                        if exc.code == wire.CLOSE_SESSION_ENDED:
                            self._end(exc.reason or "the relay ended the session")
                            break
                        reason = str(exc)
                        deadline = loop.time() + self.grace
                        delay = self._backoff[0]
                    finally:
                        self._conn = None
                        self.connected.clear()
                        # Let go of the websocket beside what follows (a dead link's close
                        # handshake must not delay the next dial).
                        self._spawn(_let_go(conn))
                    if self.ended is not None:
                        break
                if loop.time() >= deadline:
                    raise SessionLost(
                        f"the session's relay could not be reached for {self.grace:g} s: {reason}"
                    )
                log.info(
                    "session link lost; dialling again",
                    extra={"session_id": self.session_id, "error": reason[:200]},
                )
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, self._backoff[1])
        except SessionLost as exc:
            self._end(str(exc))
            raise
        finally:
            if self._ack_timer is not None:
                self._ack_timer.cancel()
            self._frames.put_nowait(None)

    async def _serve(self, conn: Connection) -> None:
        """Send HELLO; new frames wait (kept, not written) until the peer's HELLO has been
        answered with the resend, so they never overtake it."""
        hello = {"session_id": self.session_id, "last_received": self.inc.last}
        try:
            await conn.send(
                dc.Frame(dc.HELLO, json.dumps(hello).encode(), ack=self.inc.last).encode()
            )
        except Exception as exc:  # the link's own error: dial again
            raise self._describe(exc) from None
        while self.ended is None:
            try:
                raw = await conn.recv()
            except Exception as exc:  # the link's own error: dial again
                raise self._describe(exc) from None
            if isinstance(raw, str):
                raise SessionLost("the relay sent text on a session's data channel")
            try:
                frame = dc.decode(raw)
                await self._take(frame, conn)
            except dc.ProtocolError as exc:
                raise SessionLost(f"data channel: {exc}") from None

    async def _take(self, frame: dc.Frame, conn: Connection) -> None:
        if frame.ack:
            self.out.acknowledged(frame.ack)
            async with self._room:
                self._room.notify_all()
        if frame.type == dc.HELLO:
            peer = _json(frame.payload)
            last = peer.get("last_received")
            if not isinstance(last, int) or last < 0:
                raise dc.ProtocolError("HELLO without last_received")
            async with self._write:
                self._conn = conn
                if not frame.flags & dc.FLAG_REPLY:
                    mine = {"session_id": self.session_id, "last_received": self.inc.last}
                    reply = dc.Frame(
                        dc.HELLO, json.dumps(mine).encode(), ack=self.inc.last, flags=dc.FLAG_REPLY
                    )
                    await self._put(reply)
                for old in self.out.resend(last, self.inc.last):
                    await self._put(old)
            self.connected.set()
            async with self._room:
                self._room.notify_all()
            return
        if frame.type == dc.ACK:
            return
        if frame.type == dc.TERMINATE:
            self._end(str(_json(frame.payload).get("reason") or "terminated"))
            self._frames.put_nowait(frame)
            return
        if not self.inc.accept(frame):
            return
        if frame.type == dc.CLOSED:
            # Acknowledged at once: the peer waits for that before it lets go.
            async with self._write:
                self._owed = 0
                await self._put(dc.Frame(dc.ACK, ack=self.inc.last))
            self._end(str(_json(frame.payload).get("reason") or "closed by the peer"))
        self._frames.put_nowait(frame)

    def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._spawn(_notify(self._room))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def end(self, reason: str, *, body: dict[str, Any] | None = None) -> None:
        """Send CLOSED (``reason`` and ``body``), give the relay a moment to pass it on (until
        the peer acknowledges it or the link drops, at most ``grace``), then stop."""
        if self.ended is not None:
            return
        with contextlib.suppress(SessionLost):
            await self.send_json(dc.CLOSED, {"reason": reason, **(body or {})})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self.grace, 5.0)):
                async with self._room:
                    await self._room.wait_for(
                        lambda: self.out.unacked_frames == 0 or self.ended is not None
                    )
        self._end(reason)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(wire.CLOSE_SESSION_ENDED, reason[:100])


async def _let_go(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            await conn.close()


async def _notify(condition: asyncio.Condition) -> None:
    async with condition:
        condition.notify_all()


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload or b"{}")
    except ValueError:
        raise dc.ProtocolError("a frame's JSON payload does not parse") from None
    if not isinstance(value, dict):
        raise dc.ProtocolError("a frame's JSON payload is not an object")
    return value
