"""The websocket control channel (``/v1/agent/connect``, the ``websockets`` library): one
connection carrying the wire's messages both ways, pushed the moment they exist.

Behind the same seam as the long-poll (agent/transport/base.py): ``poll`` acknowledges what
arrived and waits for pushed messages; ``send`` sends a ``messages`` frame and waits for the
server's ``acked`` (or ``error``) answer.  The node signs in on the channel itself: the
upgrade names the node, the server sends a challenge, the agent answers with its key's
signature and is given the token the channel holds (and HTTPS may use); before it expires
the agent asks for a new challenge on the open channel.  So an agent on the channel makes no
HTTPS request at all (and loads no HTTP client) unless a step's output is too large for its
record and goes by HTTPS PUT.

A refused upgrade is read as a refused HTTP request (the same error codes); the close codes
of agent/wire.py say what to do after a close: 4403 the node is deregistered (the daemon
stops), anything else reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent import __version__, wire
from agent.answers import frame_error, refusal
from agent.config import AgentConfig
from agent.credentials import REFRESH_MARGIN, Credentials
from agent.errors import CredentialRevoked, TransportError
from agent.tls import pinned_context
from agent.transport.base import SendAnswer, encode, told_limit
from agent.wire import Message

if TYPE_CHECKING:
    from agent.transport.https import HttpsTransport

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
        self._https: HttpsTransport | None = None
        self._conn: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.max_request_bytes: int | None = None
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

    async def send(self, messages: list[Message]) -> SendAnswer:
        conn = await self._connected()
        req = f"r{next(self._requests)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[req] = answer
        try:
            await self._frame(conn, {"type": wire.FRAME_MESSAGES, "req": req, "messages": messages})
            async with asyncio.timeout(ANSWER_TIMEOUT):
                acked = await answer
            return SendAnswer.parse(
                {wire.KEY_ACKED: acked.get("ids"), wire.KEY_RESULTS: acked.get("results")},
                messages,
            )
        except TimeoutError:
            raise TransportError("the server did not answer on the control channel") from None
        finally:
            self._answers.pop(req, None)

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        if self._https is None:
            from agent.transport.https import HttpsTransport

            self._https = HttpsTransport(self._config, self.credentials)
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
            try:
                conn = await connect(
                    self._url,
                    ssl=self._ssl,
                    additional_headers={wire.HEADER_NODE_ID: self.credentials.node_id},
                    user_agent_header=f"corral-agent/{__version__}",
                    open_timeout=OPEN_TIMEOUT,
                    max_size=wire.MAX_FRAME_BYTES,
                    ping_interval=PING_SECONDS,
                    ping_timeout=PING_SECONDS,
                    compression=None,
                )
            except InvalidStatus as exc:
                raise _refusal(exc) from None
            except InvalidHandshake as exc:
                raise ChannelUnavailable(f"no control channel at {self._url}: {exc}") from None
            except (OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                raise TransportError(f"cannot reach {self._url}: {reason}") from None
            try:
                await self._sign_in(conn)
                hello = await self._expect(conn, wire.FRAME_HELLO)
            except ConnectionClosed:  # closed mid sign-in (a server shutting down): retried
                raise _closed(conn) from None
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            log.info("control channel open", extra={"node_id": hello.get("node_id")})
            self._limits(hello)
            self._conn = conn
            self._reader = asyncio.create_task(self._read(conn), name="channel-read")
            self._renewer = asyncio.create_task(self._renew(conn), name="channel-token")
            return conn

    async def _sign_in(self, conn: ClientConnection) -> None:
        """challenge, auth, authorized: the channel holds a token, and so do the credentials."""
        challenge = await self._expect(conn, wire.FRAME_CHALLENGE)
        await conn.send(json.dumps(self._auth(challenge)))
        self._authorized(await self._expect(conn, wire.FRAME_AUTHORIZED))

    def _auth(self, challenge: dict[str, Any]) -> dict[str, Any]:
        nonce = str(challenge.get("nonce", ""))
        timestamp, signature = self.credentials.proof(nonce)
        return {
            "type": wire.FRAME_AUTH,
            "nonce": nonce,
            "timestamp": timestamp,
            "signature": signature,
        }

    def _authorized(self, frame: dict[str, Any]) -> None:
        token, expires = frame.get("token"), frame.get("expires_at")
        if isinstance(token, str) and isinstance(expires, int | float):
            self.credentials.adopt(token, float(expires))

    async def _expect(self, conn: ClientConnection, kind: str) -> dict[str, Any]:
        """The next frame, which must be a ``kind`` frame."""
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                frame = json.loads(await conn.recv())
        except ConnectionClosed:
            raise _closed(conn) from None
        except (TimeoutError, ValueError) as exc:
            raise ChannelUnavailable(f"the control channel sent no {kind}: {exc}") from None
        if not isinstance(frame, dict) or frame.get("type") != kind:
            raise ChannelUnavailable(f"the control channel did not send {kind}")
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
                            answer.set_result(frame)
                        else:
                            answer.set_exception(frame_error(frame.get("error")))
                elif kind == wire.FRAME_CHALLENGE:  # the renewal we asked for
                    await conn.send(json.dumps(self._auth(frame)))
                elif kind == wire.FRAME_AUTHORIZED:
                    self._authorized(frame)
                else:
                    log.warning("ignoring an unknown frame", extra={"type": str(kind)[:32]})
        except (ConnectionClosed, ValueError):
            pass
        self._fail(_closed(conn))

    async def _renew(self, conn: ClientConnection) -> None:
        """Ask for a new token (a challenge to sign) before the channel's expires."""
        while True:
            left = self.credentials.expires_at - time.time() - REFRESH_MARGIN + 1.0
            if left > 0:
                await asyncio.sleep(left)
                continue
            with contextlib.suppress(ConnectionClosed):
                await conn.send(json.dumps({"type": wire.FRAME_RENEW}))
            # The reader adopts the new token; ask again only if none came.
            await asyncio.sleep(REFRESH_MARGIN / 4)

    def _limits(self, hello: dict[str, Any]) -> None:
        """What the hello says a ``messages`` frame may hold: the request limit, and no
        more than a frame (an older server tells only max_frame_bytes)."""
        told = [
            limit
            for limit in (
                told_limit(hello.get(wire.KEY_MAX_REQUEST_BYTES)),
                told_limit(hello.get("max_frame_bytes")),
                wire.MAX_FRAME_BYTES,
            )
            if limit is not None
        ]
        self.max_request_bytes = min(told) if len(told) > 1 else None

    async def _frame(self, conn: ClientConnection, frame: dict[str, Any]) -> None:
        try:
            await conn.send(encode(frame).decode("ascii"))
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
    return refusal(status, bytes(response.body or b""), response.reason_phrase)
