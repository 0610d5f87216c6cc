"""One session on the node, from dialling the relay to the end of everything it started.

The data channel comes first: the program starts only once the operator's end has answered
(its HELLO), so that a failure to start reaches the operator as the CLOSED frame's reason
(``refusal``: decided before, e.g. too many sessions; ``Refused``: raised by the program).
The session ends when the program does (EXIT with its status, then CLOSED), when the peer or
the relay ends it (the program is stopped: its processes killed), when ``stop`` is called (a
terminate_session, the agent stopping: processes killed, then CLOSED with the reason), or
when the relay cannot be reached for the endpoint's grace (SessionLost: processes killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from agent import wire
from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Connection, ConnectionGone, Dial, Endpoint, SessionLost
from agent.sessions.program import Program, Refused

log = logging.getLogger("corral.sessions")

PEER_WAIT_SECONDS: Final = 60.0


class _LastDialled:
    """A Dial that remembers its last connection, to close it when the session is over."""

    def __init__(self, dial: Dial) -> None:
        self._dial = dial
        self.conn: Connection | None = None

    async def __call__(self) -> Connection:
        self.conn = await self._dial()
        return self.conn

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a websocket already gone
                await conn.close(wire.CLOSE_SESSION_ENDED, "the session ended")


class Session:
    def __init__(
        self,
        session_id: str,
        dial: Dial,
        program: Program | None,
        *,
        refusal: str | None = None,
        window: int = dc.DEFAULT_WINDOW,
        grace: float = 30.0,
        peer_wait: float = PEER_WAIT_SECONDS,
        describe_close: Callable[[Exception], ConnectionGone] | None = None,
    ) -> None:
        self.session_id = session_id
        self._dialled = _LastDialled(dial)
        self.endpoint = Endpoint(
            session_id, self._dialled, window=window, grace=grace, describe_close=describe_close
        )
        self.program = program
        self.refusal = refusal
        self.peer_wait = peer_wait
        self.stop_reason: str | None = None
        self._stopped = asyncio.Event()

    def stop(self, reason: str) -> None:
        """End the session from this side: processes killed, then CLOSED with ``reason``."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self._stopped.set()

    async def run(self) -> None:
        extra = {"session_id": self.session_id}
        link = asyncio.create_task(self.endpoint.run(), name=f"session-link-{self.session_id}")
        stopped = asyncio.create_task(self._stopped.wait())
        try:
            await self._serve(link, stopped)
            await link
        except SessionLost as exc:
            log.warning("session lost", extra={**extra, "reason": str(exc)[:500]})
        except Exception as exc:  # a fault of ours: the operator hears of it, the agent goes on
            log.exception("session failed", extra=extra)
            await self._end(link, f"the session failed on the node: {exc}")
        finally:
            stopped.cancel()
            if not link.done():
                link.cancel()
            await asyncio.gather(link, stopped, return_exceptions=True)
            await self._dialled.close()
        log.info("session ended", extra={**extra, "reason": (self.endpoint.ended or "")[:500]})

    async def _serve(self, link: asyncio.Task[None], stopped: asyncio.Task[Any]) -> None:
        peer = asyncio.create_task(self.endpoint.connected.wait())
        try:
            done, _ = await asyncio.wait(
                {link, stopped, peer}, timeout=self.peer_wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            peer.cancel()
        if link in done:
            return
        if stopped in done:
            await self._end(link, self.stop_reason or "stopped")
        elif peer not in done:
            await self._end(link, f"the operator's end did not join within {self.peer_wait:g} s")
        elif self.refusal is not None or self.program is None:
            await self._end(link, self.refusal or "no program")
        else:
            await self._run_program(self.program, link, stopped)

    async def _run_program(
        self, program: Program, link: asyncio.Task[None], stopped: asyncio.Task[Any]
    ) -> None:
        running = asyncio.create_task(program.run(self.endpoint), name="session-program")
        try:
            await asyncio.wait({running, link, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not running.done():  # the session ended otherwise: the program goes
                running.cancel()
                await asyncio.wait({running})
        if running.cancelled():
            if self.stop_reason is not None:
                await self._end(link, self.stop_reason)
            return
        try:
            status = running.result()
        except Refused as exc:
            log.info("session refused", extra={"session_id": self.session_id, "reason": str(exc)})
            await self._end(link, str(exc))
            return
        if status is not None:
            with contextlib.suppress(SessionLost):
                await self.endpoint.send_json(dc.EXIT, {"status": status})
            await self._end(link, "exited", {"status": status})

    async def _end(
        self, link: asyncio.Task[None], reason: str, body: dict[str, Any] | None = None
    ) -> None:
        """CLOSED; done once the peer acknowledged it or the relay, having passed it on,
        closed the stream (the endpoint's own wait would last its full timeout then)."""
        if link.done():
            return
        ender = asyncio.create_task(self.endpoint.end(reason[:500], body=body))
        try:
            await asyncio.wait({ender, link}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not ender.done():
                ender.cancel()
            await asyncio.gather(ender, return_exceptions=True)
