"""The agent channel: delivery of server -> agent messages (long-polls here, control
channels in services/agent_link.py), and storage of the agent's messages (idempotent by
message id, group-committed by services/channel_writer.py).

A poll acknowledges what the agent has safely received, then returns pending messages at
once, or waits on the node's in-memory wake-up until the hold time runs out.  The wake-up is
never lost: the pending flag is taken and the wake-up cleared before the inbox is read, and
senders set both only after their transaction commits.

What an agent sends is answered per message (docs/wire.md): accepted, duplicate, or
rejected alone with its reason; the rest of its batch is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest, NodeDeregistered
from control_plane.services.channel_writer import (
    AfterCommit,
    BatchHandler,
    ChannelWriter,
    MessageResult,
    Rejection,
    rejected,
    rejection_for,
)
from control_plane.services.clock import Clock
from control_plane.services.presence import Presence
from control_plane.store import messages as store
from control_plane.store.db import Database

log = logging.getLogger("corral.channel")

# A handler stores what the message says inside the receiving transaction, and may return a
# callback to run once that transaction has committed (e.g. wake a waiting ping).  A batch
# handler gets every message of its type in a group commit at once (the hot types).
Handler = Callable[[AsyncConnection, str, Message], Awaitable[AfterCommit | None]]
# Checks a message before it is stored: an InvalidRequest rejects that message alone.
Validator = Callable[[Message], None]

# An expander turns a compact inbox body into what the agent receives (e.g. a run_command
# stored once per command, not once per node).
# (an inbox body, the node it is for) -> the body as the node receives it.
Expander = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]

MAX_DELIVERY_BATCH = 50


class AgentChannel:
    def __init__(self, db: Database, presence: Presence, clock: Clock) -> None:
        self._db = db
        self._presence = presence
        self._clock = clock
        self._handlers: dict[str, BatchHandler] = {}
        self._validators: dict[str, Validator] = {}
        self._expanders: dict[str, Expander] = {}
        self._writer = ChannelWriter(db, clock, self._handlers)
        self.polls_held = 0  # long-polls held open now (/metrics: corral_agent_connections)

    def register_handler(self, msg_type: str, handler: Handler) -> None:
        """A handler called once per message (within the group's transaction)."""

        async def each(conn: AsyncConnection, items: list[tuple[str, Message]]) -> AfterCommit:
            callbacks = [await handler(conn, node_id, message) for node_id, message in items]

            def after() -> None:
                for callback in callbacks:
                    if callback is not None:
                        callback()

            return after

        self.register_batch_handler(msg_type, each)

    def register_batch_handler(self, msg_type: str, handler: BatchHandler) -> None:
        if msg_type not in wire.AGENT_TO_SERVER_TYPES:
            raise ValueError(f"{msg_type} is not an agent -> server message type")
        self._handlers[msg_type] = handler

    def register_validator(self, msg_type: str, validator: Validator) -> None:
        self._validators[msg_type] = validator

    async def run(self) -> None:
        """The group-commit writer of agents' messages, until cancelled."""
        await self._writer.run()

    def register_expander(self, msg_type: str, expander: Expander) -> None:
        if msg_type not in wire.SERVER_TO_AGENT_TYPES:
            raise ValueError(f"{msg_type} is not a server -> agent message type")
        self._expanders[msg_type] = expander

    async def send(self, node_id: str, message: Message) -> None:
        """Queue a message for a node; it is delivered until the agent acknowledges it."""
        async with self._db.transaction() as conn:
            await store.enqueue(conn, node_id, message)
        self._presence.push(node_id, message)

    async def poll(self, node_id: str, acks: list[str], wait: float) -> list[Message]:
        if acks:
            await self.acknowledge(node_id, acks)
        node = self._presence.get(node_id)
        if node is None:  # pragma: no cover - token checks make this unreachable
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        node.polls_held += 1
        self.polls_held += 1
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
            self.polls_held -= 1
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
        if len(pending) > limit or (pending and exclude is None):
            self._presence.notify(node_id)  # more to come, or due again until acknowledged
        return await self.expand(pending[:limit], node_id)

    async def expand(self, messages: list[Message], node_id: str) -> list[Message]:
        """Messages as the agent receives them (compact inbox bodies made whole)."""
        for message in messages:
            expander = self._expanders.get(message["type"])
            if expander is not None:
                message["body"] = await expander(message["body"], node_id)
        return messages

    async def acknowledge(self, node_id: str, ids: list[str]) -> None:
        """The agent has these messages safely: they leave its inbox."""
        if ids:
            await self._writer.acknowledge(node_id, ids)

    async def receive(self, node_id: str, batch: list[Any]) -> list[MessageResult]:
        """Store a batch of agent messages; one result per element, in batch order, once what
        is stored has committed.  A malformed element, one of an unknown type, or one a
        validator refuses is rejected alone (a result among them also fails its
        invocation); the rest is stored."""
        results: dict[int, MessageResult] = {}
        messages: list[Message] = []
        indexes: list[int] = []
        rejections: list[Rejection] = []
        for index, raw in enumerate(batch):
            try:
                message = _check_message(raw)
                validator = self._validators.get(message["type"])
                if validator is not None:
                    validator(message)
            except InvalidRequest as exc:
                msg_id = raw.get("id") if isinstance(raw, dict) else None
                usable = msg_id if isinstance(msg_id, str) and _usable_id(msg_id) else None
                results[index] = rejected(index, usable, exc.message)
                if isinstance(raw, dict):
                    rejection = rejection_for(raw.get("type"), raw.get("body"), exc.message)
                    if rejection is not None:
                        rejections.append(rejection)
                log.warning(
                    "agent message rejected",
                    extra={"node_id": node_id, "message_id": usable, "why": exc.message[:300]},
                )
                continue
            messages.append(message)
            indexes.append(index)
        self._presence.seen(node_id, self._clock())
        if messages or rejections:
            stored = await self._writer.store(node_id, messages, indexes, rejections)
            results.update((result["index"], result) for result in stored)
        return [results[index] for index in range(len(batch))]


def acked(results: list[MessageResult]) -> list[str]:
    """The ids the agent may forget: stored now or before (``acked`` on the wire)."""
    return [
        r["id"]
        for r in results
        if r["id"] is not None and r["status"] in (wire.RESULT_ACCEPTED, wire.RESULT_DUPLICATE)
    ]


def _usable_id(msg_id: str) -> bool:
    return wire.MESSAGE_ID_RE.match(msg_id) is not None


def _check_message(raw: object) -> Message:
    if not isinstance(raw, dict):
        raise InvalidRequest("a message must be a JSON object")
    msg_id, msg_type, body, created = (
        raw.get("id"),
        raw.get("type"),
        raw.get("body"),
        raw.get("created_at"),
    )
    if not isinstance(msg_id, str) or not _usable_id(msg_id):
        raise InvalidRequest("message id must be 8-64 characters of [A-Za-z0-9_-]")
    if msg_type not in wire.AGENT_TO_SERVER_TYPES:
        raise InvalidRequest(f"unknown message type {str(msg_type)[:64]!r}")
    if not isinstance(body, dict):
        raise InvalidRequest(f"message {msg_id}: body must be an object")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise InvalidRequest(f"message {msg_id}: created_at must be a number")
    if not math.isfinite(created):
        raise InvalidRequest(f"message {msg_id}: created_at must be a finite number")
    return Message(id=msg_id, type=str(msg_type), body=body, created_at=float(created))
