"""The agent channel: long-poll delivery of server -> agent messages, and storage of the
agent's messages (idempotent by message id).

A poll acknowledges what the agent has safely received, then returns pending messages at
once, or waits on the node's in-memory wake-up until the hold time runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest, NodeDeregistered
from control_plane.services.clock import Clock
from control_plane.services.presence import Presence
from control_plane.store import messages as store
from control_plane.store.db import Database

log = logging.getLogger("corral.channel")

# A handler stores what the message says inside the receiving transaction, and may return a
# callback to run once that transaction has committed (e.g. wake a waiting ping).
AfterCommit = Callable[[], None]
Handler = Callable[[AsyncConnection, str, Message], Awaitable[AfterCommit | None]]

# An expander turns a compact inbox body into what the agent receives (e.g. a run_command
# stored once per command, not once per node).
Expander = Callable[[dict[str, Any], AsyncConnection], Awaitable[dict[str, Any]]]

MAX_DELIVERY_BATCH = 50


class AgentChannel:
    def __init__(self, db: Database, presence: Presence, clock: Clock) -> None:
        self._db = db
        self._presence = presence
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._expanders: dict[str, Expander] = {}

    def register_handler(self, msg_type: str, handler: Handler) -> None:
        if msg_type not in wire.AGENT_TO_SERVER_TYPES:
            raise ValueError(f"{msg_type} is not an agent -> server message type")
        self._handlers[msg_type] = handler

    def register_expander(self, msg_type: str, expander: Expander) -> None:
        if msg_type not in wire.SERVER_TO_AGENT_TYPES:
            raise ValueError(f"{msg_type} is not a server -> agent message type")
        self._expanders[msg_type] = expander

    async def send(
        self, node_id: str, message: Message, conn: AsyncConnection | None = None
    ) -> None:
        """Queue a message for a node; it is delivered until the agent acknowledges it."""
        if conn is not None:
            await store.enqueue(conn, node_id, message)
        else:
            async with self._db.transaction() as tx:
                await store.enqueue(tx, node_id, message)
        self._presence.notify(node_id)

    async def poll(self, node_id: str, acks: list[str], wait: float) -> list[Message]:
        if acks:
            await self.acknowledge(node_id, acks)
        node = self._presence.get(node_id)
        if node is None:  # pragma: no cover - token checks make this unreachable
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        node.polls_held += 1
        try:
            while True:
                self._presence.seen(node_id, self._clock())
                node.wake.clear()
                if node.deregistered:
                    raise NodeDeregistered(f"node {node_id} is deregistered")
                pending = await self.next_batch(node_id)
                if pending:
                    return pending
                remaining = deadline - loop.time()
                if remaining <= 0 or self._presence.shutting_down.is_set():
                    return []
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await node.wake.wait()
        finally:
            node.polls_held -= 1
            self._presence.seen(node_id, self._clock())

    async def next_batch(
        self, node_id: str, exclude: frozenset[str] | None = None, limit: int = MAX_DELIVERY_BATCH
    ) -> list[Message]:
        """The node's next messages to deliver (none without a database read when nothing was
        queued for it).  The pending flag is taken *before* the read: a message queued during
        the read sets it again, so no wake-up is lost between "read nothing" and "wait".

        ``exclude``: the messages an open channel has sent and awaits acknowledgements for.
        Without it (a long-poll) what is returned stays pending until acknowledged: a poll
        whose answer was lost gets the same messages again."""
        if not self._presence.take_pending(node_id):
            return []
        async with self._db.read() as conn:
            pending = await store.pending(conn, node_id, limit + 1, exclude or frozenset())
            for message in pending[:limit]:
                expander = self._expanders.get(message["type"])
                if expander is not None:
                    message["body"] = await expander(message["body"], conn)
        if len(pending) > limit or (pending and exclude is None):
            self._presence.notify(node_id)  # more to come, or due again until acknowledged
        return pending[:limit]

    async def acknowledge(self, node_id: str, ids: list[str]) -> None:
        """The agent has these messages safely: they leave its inbox."""
        if ids:
            async with self._db.transaction() as conn:
                await store.acknowledge(conn, node_id, ids)

    async def receive(self, node_id: str, batch: list[dict[str, Any]]) -> list[str]:
        """Store a batch of agent messages; returns the ids now safely stored (acks)."""
        messages = [_check_message(raw) for raw in batch]
        acked: list[str] = []
        callbacks: list[AfterCommit] = []
        now = self._clock()
        self._presence.seen(node_id, now)
        async with self._db.transaction() as conn:
            for msg in messages:
                if await store.mark_processed(conn, node_id, msg, now):
                    handler = self._handlers.get(msg["type"])
                    if handler is not None:
                        callback = await handler(conn, node_id, msg)
                        if callback is not None:
                            callbacks.append(callback)
                acked.append(msg["id"])
        for callback in callbacks:
            callback()
        return acked


def _check_message(raw: dict[str, Any]) -> Message:
    msg_id, msg_type, body, created = (
        raw.get("id"),
        raw.get("type"),
        raw.get("body"),
        raw.get("created_at"),
    )
    if not isinstance(msg_id, str) or not wire.MESSAGE_ID_RE.match(msg_id):
        raise InvalidRequest("message id must be 8-64 characters of [A-Za-z0-9_-]")
    if msg_type not in wire.AGENT_TO_SERVER_TYPES:
        raise InvalidRequest(f"unknown message type {msg_type!r}")
    if not isinstance(body, dict):
        raise InvalidRequest(f"message {msg_id}: body must be an object")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise InvalidRequest(f"message {msg_id}: created_at must be a number")
    return Message(id=msg_id, type=str(msg_type), body=body, created_at=float(created))
