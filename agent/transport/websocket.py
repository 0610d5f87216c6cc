"""The websocket control channel (``/v1/agent/connect``, the ``websockets`` library): one
connection carrying the wire's messages both ways, pushed the moment they exist.

Behind the same seam as the long-poll (agent/transport/base.py): ``poll`` acknowledges what
arrived and waits for pushed messages; ``send`` sends a ``messages`` frame and waits for the
server's ``acked`` (or ``error``) answer; a step's full output still goes by HTTPS PUT, on the
credentials' keep-alive connection.  The token the channel was opened with is renewed on the
open channel (a ``token`` frame) before it expires.

A refused upgrade is read as a refused HTTP request (the same error codes); the close codes
of agent/wire.py say what to do after a close: 4403 the node is deregistered (the daemon
stops), 4401 buy a token and reconnect, anything else reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent import __version__, wire
from agent.config import AgentConfig
from agent.credentials import REFRESH_MARGIN, Credentials
from agent.errors import CredentialRevoked, ServerRejected, TransportError
from agent.http import check_response, pinned_context
from agent.transport.https import HttpsTransport
from agent.wire import Message

log = logging.getLogger("corral.agent.channel")

OPEN_TIMEOUT = 10.0
ANSWER_TIMEOUT = 30.0
PING_SECONDS = 20.0


class ChannelUnavailable(TransportError):
    """The server (or a proxy before it) does not speak websockets here: fall back."""


class WebSocketTransport:
    def __init__(self, config: AgentConfig, credentials: Credentials) -> None:
        self._config = config
        self.credentials = credentials
        base = credentials.registration.url.rstrip("/")
        self._url = "wss://" + base.split("://", 1)[1] + wire.ROUTE_CONNECT
        self._ssl = pinned_context(config.ca_file)
        self._https = HttpsTransport(config, credentials)
        self._conn: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: dict[str, asyncio.Future[list[str]]] = {}
        self._failure: TransportError | None = None
        self._requests = itertools.count(1)
        self._connecting = asyncio.Lock()

    # The seam -----------------------------------------------------------------------------
    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        conn = await self._connected()
        if acks:
            await self._frame(conn, {"type": wire.FRAME_ACK, "ids": acks})
        messages: list[Message] = []
        if self._inbox.empty():
            getter = asyncio.ensure_future(self._inbox.get())
            closed = asyncio.ensure_future(conn.wait_closed())
            try:
                done, _ = await asyncio.wait(
                    {getter, closed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                closed.cancel()
                if not getter.done():
                    getter.cancel()
            if getter in done:
                messages.append(getter.result())
            elif closed in done:
                self._raise_failure()
        while not self._inbox.empty():
            messages.append(self._inbox.get_nowait())
        return messages

    async def send(self, messages: list[Message]) -> list[str]:
        conn = await self._connected()
        req = f"r{next(self._requests)}"
        answer: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._answers[req] = answer
        try:
            await self._frame(conn, {"type": wire.FRAME_MESSAGES, "req": req, "messages": messages})
            async with asyncio.timeout(ANSWER_TIMEOUT):
                return await answer
        except TimeoutError:
            raise TransportError("the server did not answer on the control channel") from None
        finally:
            self._answers.pop(req, None)

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        return await self._https.upload_output(command_id, step_index, stream, path)

    async def aclose(self) -> None:
        for task in (self._renewer, self._reader):
            if task is not None:
                task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a socket already gone
                await conn.close()
        for task in (self._renewer, self._reader):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # Connection -----------------------------------------------------------------------------
    async def _connected(self) -> ClientConnection:
        async with self._connecting:
            if self._conn is not None and self._failure is None:
                return self._conn
            await self.aclose()
            self._failure = None
            for attempt in (1, 2):
                token = await self.credentials.token()
                try:
                    conn = await connect(
                        self._url,
                        ssl=self._ssl,
                        additional_headers={"authorization": f"Bearer {token}"},
                        user_agent_header=f"corral-agent/{__version__}",
                        open_timeout=OPEN_TIMEOUT,
                        max_size=wire.MAX_FRAME_BYTES,
                        ping_interval=PING_SECONDS,
                        ping_timeout=PING_SECONDS,
                        compression=None,
                    )
                except InvalidStatus as exc:
                    refusal = _refusal(exc)
                    if (
                        isinstance(refusal, ServerRejected)
                        and not isinstance(refusal, CredentialRevoked)
                        and refusal.status == 401
                        and attempt == 1
                    ):
                        self.credentials.invalidate()
                        continue
                    raise refusal from None
                except InvalidHandshake as exc:
                    raise ChannelUnavailable(f"no control channel at {self._url}: {exc}") from None
                except (OSError, TimeoutError) as exc:
                    reason = str(exc) or type(exc).__name__
                    raise TransportError(f"cannot reach {self._url}: {reason}") from None
                break
            hello = await self._hello(conn)
            log.info("control channel open", extra={"node_id": hello.get("node_id")})
            self._conn = conn
            self._reader = asyncio.create_task(self._read(conn), name="channel-read")
            self._renewer = asyncio.create_task(self._renew(conn), name="channel-token")
            return conn

    async def _hello(self, conn: ClientConnection) -> dict[str, Any]:
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                frame = json.loads(await conn.recv())
        except (ConnectionClosed, TimeoutError, ValueError) as exc:
            with contextlib.suppress(Exception):
                await conn.close()
            raise ChannelUnavailable(f"the control channel sent no hello: {exc}") from None
        if not isinstance(frame, dict) or frame.get("type") != wire.FRAME_HELLO:
            await conn.close()
            raise ChannelUnavailable("the control channel did not start with hello")
        return frame

    async def _read(self, conn: ClientConnection) -> None:
        try:
            async for raw in conn:
                frame = json.loads(raw)
                kind = frame.get("type") if isinstance(frame, dict) else None
                if kind == wire.FRAME_DELIVER:
                    for message in frame.get("messages", []):
                        self._inbox.put_nowait(message)
                elif kind in (wire.FRAME_ACKED, wire.FRAME_ERROR):
                    answer = self._answers.get(str(frame.get("req")))
                    if answer is not None and not answer.done():
                        if kind == wire.FRAME_ACKED:
                            answer.set_result(list(frame.get("ids", [])))
                        else:
                            answer.set_exception(_frame_error(frame.get("error")))
                else:
                    log.warning("ignoring an unknown frame", extra={"type": str(kind)[:32]})
        except (ConnectionClosed, ValueError):
            pass
        self._fail(_closed(conn))

    async def _renew(self, conn: ClientConnection) -> None:
        """Send a fresh token before the one the channel holds expires."""
        while True:
            # token() buys a new one once less than REFRESH_MARGIN is left.
            left = self.credentials.expires_at - time.time() - REFRESH_MARGIN + 1.0
            await asyncio.sleep(max(left, 1.0))
            try:
                token = await self.credentials.token()
            except TransportError as exc:
                log.warning("could not renew the channel's token", extra={"error": exc.message})
                continue
            with contextlib.suppress(ConnectionClosed):
                await conn.send(json.dumps({"type": wire.FRAME_TOKEN, "token": token}))

    async def _frame(self, conn: ClientConnection, frame: dict[str, Any]) -> None:
        try:
            await conn.send(json.dumps(frame, separators=(",", ":")))
        except ConnectionClosed:
            self._fail(_closed(conn))
            self._raise_failure()

    def _fail(self, error: TransportError) -> None:
        if self._failure is None:
            self._failure = error
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(error)

    def _raise_failure(self) -> None:
        if self._failure is None:
            self._failure = TransportError("the control channel closed")
        raise self._failure


def _closed(conn: ClientConnection) -> TransportError:
    """What a closed channel means for the daemon."""
    code = conn.close_code
    reason = conn.close_reason or ""
    if code == wire.CLOSE_DEREGISTERED:
        return CredentialRevoked(
            f"the server closed the channel: {reason}", 401, wire.ERR_NODE_DEREGISTERED
        )
    return TransportError(f"the control channel closed ({code} {reason})".rstrip())


def _refusal(exc: InvalidStatus) -> TransportError:
    """A refused upgrade, read like a refused HTTP request."""
    response = exc.response
    status = response.status_code
    if status in (400, 404, 405, 426):  # a proxy that does not pass the upgrade, mostly
        return ChannelUnavailable(f"the server refused a control channel (HTTP {status})")
    body = bytes(response.body or b"")
    fake = httpx.Response(status, content=body, request=httpx.Request("GET", wire.ROUTE_CONNECT))
    try:
        check_response(fake)
    except TransportError as refusal:
        return refusal
    return TransportError(f"the server refused a control channel (HTTP {status})")


def _frame_error(error: Any) -> TransportError:
    info = error if isinstance(error, dict) else {}
    status = info.get("status")
    code = str(info.get("code", "invalid_request"))
    message = str(info.get("message", "refused"))
    if isinstance(status, int) and 400 <= status < 500 and status != 429:
        return ServerRejected(message, status, code)
    return TransportError(f"server error: {message}")
