"""One node's control channel (``/v1/agent/connect``): the agent's messages in, the node's
inbox pushed out the moment something is queued for it.

Framework-free: the API hands over the frames it receives and two callables, ``send`` (one
JSON text frame) and ``close`` (a close code and reason).  The protocol is docs/wire.md's
"The control channel":

* server -> agent: ``hello`` once, then ``deliver`` frames of inbox messages.  A message stays
  in the inbox until the agent's ``ack`` frame names it, so a cut connection loses nothing:
  whatever was unacknowledged is delivered again on the next channel (or poll);
* agent -> server: ``messages`` (as ``POST /v1/agent/messages``), answered ``acked`` with the
  ids stored and a result per message (accepted, duplicate, rejected with a reason), or
  ``error`` when the frame as a whole is refused; ``ack``; ``token`` (a renewed access
  token: the channel closes with 4401 when the one it holds expires).
* signing in on the channel: a node that opened it without a token (its id in the upgrade's
  header) is sent ``challenge`` first and must answer ``auth`` within wire.AUTH_SECONDS; its
  proof is checked as ``POST /v1/agent/token`` checks it, and ``authorized`` carries the token
  the channel then holds.  ``renew`` asks for a new ``challenge`` on an open channel.  Only a
  node signed in is attached (can replace an older channel or receive anything).

Bounds: at most MAX_IN_FLIGHT messages sent and not yet acknowledged; a node that leaves
them so for STALL_SECONDS is disconnected (4408) and gets them again when it reconnects, so a
node that stops reading costs the server a bounded amount of memory.  A node has one channel:
a newer one closes the older (4409).  Deregistration closes it at once (4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agent import wire
from control_plane.errors import (
    CorralError,
    CredentialExpired,
    InvalidRequest,
    NodeDeregistered,
    Unauthorized,
)
from control_plane.security.node_tokens import NodeClaims
from control_plane.services.channel import MAX_DELIVERY_BATCH, AgentChannel, acked
from control_plane.services.clock import Clock
from control_plane.services.presence import Presence
from control_plane.services.ratelimit import RateLimits
from control_plane.services.registration import RegistrationService

log = logging.getLogger("corral.channel")

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]
Denied = Callable[[str], Awaitable[None]]  # a failed proof, for the audit log

MAX_IN_FLIGHT = 1000
STALL_SECONDS = 60.0
# A message delivered and not acknowledged for this long is delivered again on the same
# channel: an agent that could not make it durable (a full disk) leaves it unacknowledged
# and counts on seeing it again, which a channel that stays open would otherwise never do.
REDELIVER_SECONDS = 30.0
MAX_ACK_IDS = 1000


class LinkGone(Exception):
    """The connection is gone (the peer left): nothing more can be sent on it."""


class AgentLink:
    def __init__(
        self,
        *,
        claims: NodeClaims | str,
        channel: AgentChannel,
        presence: Presence,
        registration: RegistrationService,
        rate_limits: RateLimits,
        clock: Clock,
        send: Send,
        close: Close,
        denied: Denied | None = None,
        max_request_bytes: int = wire.MAX_REQUEST_BYTES,
        opened: Callable[[], None] | None = None,
    ) -> None:
        """``claims``: those of the token the upgrade carried, or the id of a node that is to
        sign in on the channel.  ``max_request_bytes``: the server's request limit, told in
        ``hello`` (capped by what a frame may hold)."""
        self._max_request_bytes = min(max_request_bytes, wire.MAX_REQUEST_BYTES)
        self._signed_in = isinstance(claims, NodeClaims)
        self.node_id = claims.node_id if isinstance(claims, NodeClaims) else claims
        self._token_expires = claims.expires_at if isinstance(claims, NodeClaims) else 0.0
        self._denied = denied
        self._opened = opened  # called once the channel is open (signed in, hello sent)
        self._challenge: str | None = None
        self._channel = channel
        self._presence = presence
        self._registration = registration
        self._limits = rate_limits
        self._clock = clock
        self._send = send
        self._close_cb = close
        self._in_flight: dict[str, float] = {}  # id -> when it was sent (loop time)
        self._closed: tuple[int, str] | None = None

    # Lifecycle -----------------------------------------------------------------------------
    async def run(self, frames: AsyncIterator[str]) -> None:
        """Serve the channel until the peer leaves or it must close."""
        if not self._signed_in:
            try:
                if not await self._sign_in(frames):
                    return
            except LinkGone:
                return
        previous = self._presence.attach(self.node_id, self)
        if isinstance(previous, AgentLink):
            await previous.close(wire.CLOSE_REPLACED, "a newer channel of this node took over")
        self._presence.notify(self.node_id)  # what waits is delivered (again) on this channel
        log.info("channel opened", extra={"node_id": self.node_id})
        try:
            await self._frame(
                {
                    "type": wire.FRAME_HELLO,
                    "node_id": self.node_id,
                    "max_frame_bytes": wire.MAX_FRAME_BYTES,
                    "max_messages_per_batch": wire.MAX_MESSAGES_PER_BATCH,
                    wire.KEY_MAX_REQUEST_BYTES: self._max_request_bytes,
                }
            )
            if self._opened is not None:
                self._opened()
            reader = asyncio.create_task(self._read(frames), name=f"link-read-{self.node_id}")
            pump = asyncio.create_task(self._pump(), name=f"link-pump-{self.node_id}")
            done, rest = await asyncio.wait({reader, pump}, return_when=asyncio.FIRST_COMPLETED)
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, LinkGone):
                    raise exc
        except LinkGone:
            pass
        finally:
            self._presence.detach(self.node_id, self, self._clock())
            # Due again on the next channel or poll: what was sent and not acknowledged, and
            # what the pump had taken (the pending flag, messages from memory) but not sent
            # when the channel closed under it.  Not only when something is in flight: a
            # lost flag would leave a queued message to wait for the next one (issue 17).
            self._presence.notify(self.node_id)
            log.info(
                "channel closed",
                extra={"node_id": self.node_id, "code": self._closed[0] if self._closed else None},
            )

    async def close(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = (code, reason)
            with contextlib.suppress(LinkGone):
                await self._close_cb(code, reason)
            node = self._presence.get(self.node_id)
            if node is not None:
                node.wake.set()  # the pump sees it is closed

    # Signing in ----------------------------------------------------------------------------
    async def _sign_in(self, frames: AsyncIterator[str]) -> bool:
        """challenge, auth, authorized: True once the node proved it holds its key."""
        await self._send_challenge()
        if self._closed is not None:
            return False
        try:
            async with asyncio.timeout(wire.AUTH_SECONDS):
                text = await anext(aiter(frames))
        except (TimeoutError, StopAsyncIteration):
            await self.close(wire.CLOSE_UNAUTHORIZED, "no auth frame in time")
            return False
        frame = _parse(text)
        if frame is None or frame.get("type") != wire.FRAME_AUTH:
            await self.close(wire.CLOSE_UNAUTHORIZED, "the channel must start with auth")
            return False
        return await self._on_auth(frame)

    async def _send_challenge(self) -> None:
        try:
            challenge = self._registration.challenge(self.node_id)
        except NodeDeregistered as exc:
            await self.close(wire.CLOSE_DEREGISTERED, exc.code)
            return
        except CorralError as exc:
            await self.close(wire.CLOSE_UNAUTHORIZED, exc.message[:120])
            return
        self._challenge = str(challenge["nonce"])
        await self._frame({"type": wire.FRAME_CHALLENGE, **challenge})

    async def _on_auth(self, frame: dict[str, Any]) -> bool:
        nonce, self._challenge = self._challenge, None
        timestamp, signature = frame.get("timestamp"), frame.get("signature")
        try:
            if nonce is None or frame.get("nonce") != nonce:
                raise Unauthorized("auth answers no challenge of this channel")
            if not isinstance(timestamp, int) or not isinstance(signature, str):
                raise Unauthorized("auth needs an integer timestamp and a base64 signature")
            issued = await self._registration.issue_token(
                node_id=self.node_id, nonce=nonce, timestamp=timestamp, signature=signature[:512]
            )
            claims = self._registration.authenticate(str(issued["token"]))
        except (NodeDeregistered, CredentialExpired) as exc:
            await self.close(wire.CLOSE_DEREGISTERED, exc.code)
            return False
        except (Unauthorized, InvalidRequest) as exc:
            if self._denied is not None:
                await self._denied(exc.message)
            await self.close(wire.CLOSE_UNAUTHORIZED, exc.message[:120])
            return False
        self._signed_in = True
        self._token_expires = claims.expires_at
        await self._frame({"type": wire.FRAME_AUTHORIZED, **issued})
        node = self._presence.get(self.node_id)
        if node is not None:
            node.wake.set()  # the pump's wait is measured by the token's life
        return True

    # Server -> agent -----------------------------------------------------------------------
    async def _pump(self) -> None:
        node = self._presence.get(self.node_id)
        if node is None:  # pragma: no cover - the token check makes this unreachable
            return
        loop = asyncio.get_running_loop()
        stalled_since: float | None = None
        while self._closed is None:
            node.wake.clear()
            if node.deregistered:
                await self.close(wire.CLOSE_DEREGISTERED, wire.ERR_NODE_DEREGISTERED)
                return
            if self._presence.shutting_down.is_set():
                await self.close(wire.CLOSE_SHUTDOWN, "the server is restarting")
                return
            left = self._token_expires - time.time()  # tokens expire in real time (the signer's)
            if left <= 0:
                await self.close(wire.CLOSE_UNAUTHORIZED, wire.ERR_TOKEN_EXPIRED)
                return
            wait = left
            if self._in_flight:
                wait = min(wait, self._redeliver_due(loop.time()))
            room = MAX_IN_FLIGHT - len(self._in_flight)
            if room > 0:
                stalled_since = None
                limit = min(room, MAX_DELIVERY_BATCH)
                fresh = self._presence.take_fresh(self.node_id, limit)
                if fresh:  # pushed as they were queued: no need to read the inbox
                    unsent = [m for m in fresh if m["id"] not in self._in_flight]
                    if not unsent:  # all sent already (read from the inbox): look again
                        continue
                    batch = await self._channel.expand(unsent, self.node_id)
                else:
                    batch = await self._channel.next_batch(
                        self.node_id, frozenset(self._in_flight), limit
                    )
                if batch:
                    await self._frame({"type": wire.FRAME_DELIVER, "messages": batch})
                    sent = loop.time()
                    self._in_flight.update((m["id"], sent) for m in batch)
                    continue
            else:
                stalled_since = stalled_since or loop.time()
                if loop.time() - stalled_since >= STALL_SECONDS:
                    log.warning(
                        "node leaves messages unacknowledged; disconnecting it",
                        extra={"node_id": self.node_id, "in_flight": len(self._in_flight)},
                    )
                    await self.close(wire.CLOSE_TOO_SLOW, "too many messages unacknowledged")
                    return
                wait = min(wait, STALL_SECONDS - (loop.time() - stalled_since))
            try:
                async with asyncio.timeout(max(wait, 0.01)):
                    await node.wake.wait()
            except TimeoutError:
                continue

    def _redeliver_due(self, now: float) -> float:
        """Forget messages unacknowledged for REDELIVER_SECONDS, so the inbox read delivers
        them again; seconds until the next one is due."""
        due = [i for i, sent in self._in_flight.items() if now - sent >= REDELIVER_SECONDS]
        if due:
            for msg_id in due:
                del self._in_flight[msg_id]
            log.info(
                "delivering unacknowledged messages again",
                extra={"node_id": self.node_id, "count": len(due)},
            )
            self._presence.notify(self.node_id)
            return 0.0
        if not self._in_flight:
            return REDELIVER_SECONDS
        return REDELIVER_SECONDS - (now - min(self._in_flight.values()))

    async def _frame(self, frame: dict[str, Any]) -> None:
        if self._closed is not None:
            raise LinkGone
        await self._send(json.dumps(frame, separators=(",", ":")))

    # Agent -> server -----------------------------------------------------------------------
    async def _read(self, frames: AsyncIterator[str]) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[object]]] = {
            wire.FRAME_ACK: self._on_ack,
            wire.FRAME_MESSAGES: self._on_messages,
            wire.FRAME_TOKEN: self._on_token,
            wire.FRAME_RENEW: self._on_renew,
            wire.FRAME_AUTH: self._on_auth,
        }
        async for text in frames:
            frame = _parse(text)
            kind = frame.get("type") if frame is not None else None
            handler = handlers.get(kind) if isinstance(kind, str) else None
            if frame is None or handler is None:
                shown = "not a JSON object" if kind is None else f"unknown type {str(kind)[:32]!r}"
                await self.refuse(f"frame refused: {shown}")
                return
            await handler(frame)
            if self._closed is not None:
                return
            self._presence.seen(self.node_id, self._clock())

    async def refuse(self, reason: str) -> None:
        """A frame that breaks the protocol closes this channel (and no other)."""
        log.warning(
            "bad frame; closing the channel", extra={"node_id": self.node_id, "why": reason}
        )
        await self.close(wire.CLOSE_BAD_FRAME, reason[:120])

    async def _on_ack(self, frame: dict[str, Any]) -> None:
        ids = frame.get("ids")
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_ACK_IDS
            or not all(isinstance(i, str) for i in ids)
        ):
            await self.refuse(f"frame refused: ack ids must be a list of at most {MAX_ACK_IDS}")
            return
        await self._channel.acknowledge(self.node_id, ids)
        for msg_id in ids:
            self._in_flight.pop(msg_id, None)
        node = self._presence.get(self.node_id)
        if node is not None:
            node.wake.set()  # room for more

    async def _on_messages(self, frame: dict[str, Any]) -> None:
        req = frame.get("req")
        if not isinstance(req, str) or not 1 <= len(req) <= 64:
            await self.refuse("frame refused: messages needs a req of 1 to 64 characters")
            return
        wait = self._limits.node(self.node_id)
        if wait > 0:  # over its rate: the node waits (its next frame is read later)
            await asyncio.sleep(wait)
        try:
            messages = frame.get("messages")
            if not isinstance(messages, list) or len(messages) > wire.MAX_MESSAGES_PER_BATCH:
                raise InvalidRequest(
                    f"messages must be a list of at most {wire.MAX_MESSAGES_PER_BATCH}"
                )
            results = await self._channel.receive(self.node_id, messages)
        except CorralError as exc:
            await self._refused(req, exc)
            return
        except Exception:  # answered as POST messages answers it (500): the agent resends
            # The group commit failed (the database): nothing of the frame was stored, and
            # the channel, which carries other work, stays open.
            log.exception("storing a node's messages failed", extra={"node_id": self.node_id})
            await self._refused(req, CorralError("storing the messages failed; send them again"))
            return
        await self._frame(
            {"type": wire.FRAME_ACKED, "req": req, "ids": acked(results), "results": results}
        )

    async def _refused(self, req: str, exc: CorralError) -> None:
        error = {"code": exc.code, "message": exc.message, "status": exc.status}
        await self._frame({"type": wire.FRAME_ERROR, "req": req, "error": error})

    async def _on_renew(self, _frame: dict[str, Any]) -> None:
        await self._send_challenge()

    async def _on_token(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        try:
            if not isinstance(token, str) or len(token) > 4096:
                raise Unauthorized("token must be a string")
            claims = self._registration.authenticate(token)
            if claims.node_id != self.node_id:
                raise Unauthorized("a token of another node")
        except NodeDeregistered:
            await self.close(wire.CLOSE_DEREGISTERED, wire.ERR_NODE_DEREGISTERED)
            return
        except Unauthorized as exc:
            await self.close(wire.CLOSE_UNAUTHORIZED, exc.message[:120])
            return
        self._token_expires = claims.expires_at
        node = self._presence.get(self.node_id)
        if node is not None:
            node.wake.set()


def _parse(text: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None
