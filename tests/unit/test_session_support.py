"""Helpers for the agent's Session Manager tests (no tests here): a relay on loopback (a real
websockets server) whose connections are served by the operator's end, an ``Endpoint`` as
the CLI has; the agent's SessionManager dials it as it dials the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from agent import wire
from agent.config import AgentConfig
from agent.sessions import datachannel as dc
from agent.sessions.dial import describe_close, websocket_dial
from agent.sessions.endpoint import Connection, Dial, Endpoint
from agent.sessions.manager import SessionManager

DEADLINE = 30.0  # for a condition that should hold within milliseconds


def new_session_id() -> str:
    return "s-" + secrets.token_hex(10)


def start_body(kind: str, command: str = "", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_id": new_session_id(),
        "session_type": kind,
        "command": command,
        "run_as": None,
        "port": None,
        "host": None,
        "cols": 80,
        "rows": 24,
        "expires_at": time.time() + 600,
        "window": 64 * 1024,
    }
    body.update(fields)
    return body


class Relay:
    """The server's relay, reduced to handing each websocket the agent opens for a session to
    that session's operator (``client_dial``).  ``drop`` closes a session's current websocket,
    as a restarting server would."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[ServerConnection]] = {}
        self.current: dict[str, ServerConnection] = {}
        self.accepted: dict[str, int] = {}
        self.headers: list[str | None] = []
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> Relay:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, max_size=dc.MAX_FRAME, compression=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop listening and close every websocket, as a server that went away."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _queue(self, session_id: str) -> asyncio.Queue[ServerConnection]:
        return self._queues.setdefault(session_id, asyncio.Queue())

    async def _handler(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        session_id = conn.request.path.split("/")[-2]
        self.accepted[session_id] = self.accepted.get(session_id, 0) + 1
        self.headers.append(conn.request.headers.get("Authorization"))
        self.current[session_id] = conn
        await self._queue(session_id).put(conn)
        await conn.wait_closed()

    def url(self, session_id: str) -> str:
        path = wire.ROUTE_AGENT_SESSION.format(session_id=session_id)
        return f"ws://127.0.0.1:{self.port}{path}"

    def dial_for(self, session_id: str) -> Dial:
        async def token() -> str:
            return "node-token"

        return websocket_dial(self.url(session_id), token=token)

    def client_dial(self, session_id: str) -> Dial:
        async def dial() -> Connection:
            return await self._queue(session_id).get()

        return dial

    async def drop(self, session_id: str) -> None:
        await self.current[session_id].close(1012, "the relay restarts")

    async def ended(self, session_id: str) -> None:
        """As the server's relay does once a CLOSED went through: close the stream."""
        conn = self.current.get(session_id)
        if conn is not None:
            await conn.close(wire.CLOSE_SESSION_ENDED, "the session ended")


class Operator:
    """The operator's end of one session: everything it receives, kept by kind."""

    def __init__(self, relay: Relay, session_id: str, window: int = 64 * 1024) -> None:
        self.relay = relay
        self.endpoint = Endpoint(
            session_id,
            relay.client_dial(session_id),
            window=window,
            grace=DEADLINE,
            backoff=(0.01, 0.05),
            describe_close=describe_close,
        )
        self.output = bytearray()
        self.streams: dict[int, bytearray] = {}
        self.closes: dict[int, dc.Frame] = {}
        self.status: int | None = None
        self.closed: dict[str, Any] | None = None
        self.runner = asyncio.create_task(self.endpoint.run())

    async def send(self, data: bytes, stream: int = 0) -> None:
        await self.endpoint.send(dc.DATA, data, stream)

    async def take(self) -> bool:
        """Receive one frame; False once the session is over."""
        frame = await self.endpoint.receive()
        if frame is None:
            return False
        if frame.type == dc.DATA and frame.stream == 0:
            self.output += frame.payload
        elif frame.type == dc.DATA:
            self.streams.setdefault(frame.stream, bytearray()).extend(frame.payload)
        elif frame.type == dc.CLOSE:
            self.closes[frame.stream] = frame
        elif frame.type == dc.EXIT:
            self.status = json.loads(frame.payload)["status"]
        elif frame.type in (dc.CLOSED, dc.TERMINATE):
            self.closed = json.loads(frame.payload)
            await self.relay.ended(self.endpoint.session_id)
        return True

    async def until(self, condition: Callable[[], object], what: str) -> None:
        """Receive until ``condition()`` holds (AssertionError past the deadline)."""
        try:
            async with asyncio.timeout(DEADLINE):
                while not condition():
                    if not await self.take():
                        raise AssertionError(f"the session ended before {what}: {self.closed}")
        except TimeoutError:
            tail = bytes(self.output[-300:])
            raise AssertionError(f"timed out waiting for {what}; output ends {tail!r}") from None

    async def until_output(self, needle: bytes) -> None:
        await self.until(lambda: needle in self.output, f"{needle!r} in the output")

    async def until_closed(self) -> dict[str, Any]:
        await self.until(lambda: self.closed is not None, "CLOSED")
        assert self.closed is not None
        return self.closed

    async def finish(self, reason: str) -> None:
        """Send CLOSED; done once the agent acknowledged it or closed the stream."""
        ender = asyncio.create_task(self.endpoint.end(reason))
        await asyncio.wait({ender, self.runner}, timeout=DEADLINE,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        ender.cancel()
        await asyncio.gather(ender, return_exceptions=True)

    async def aclose(self) -> None:
        self.runner.cancel()
        await asyncio.gather(self.runner, return_exceptions=True)


@contextlib.asynccontextmanager
async def agent_side(
    tmp_path: Path, grace: float = DEADLINE, **config: Any
) -> AsyncIterator[tuple[Relay, SessionManager]]:
    """A relay, and a SessionManager dialling it, running; on exit the manager is stopped as
    the daemon stops it (cancelled: every session ends, its processes killed)."""
    cfg = AgentConfig(state_dir=tmp_path, shutdown_budget_seconds=10.0, **config)
    async with Relay() as relay:
        manager = SessionManager(cfg, relay.dial_for, grace=grace, peer_wait=DEADLINE)
        runner = asyncio.create_task(manager.run())
        try:
            yield relay, manager
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


async def wait_until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` without blocking the loop, until it holds or the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
