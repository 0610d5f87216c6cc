"""Group commit of what agents send: their messages (stored idempotently by id, then handed
to each type's handler) and their acknowledgements (messages leaving their inbox).

Every request waits for the transaction that stores it: nothing is acknowledged to an agent
before it is committed.  One writer task takes what has queued up while the previous
transaction ran, from every node at once, and stores it in one transaction with a few
statements for the whole group (issue 10: a fleet's reports cost a transaction per group,
not one per report).  A group holds at most MAX_GROUP_MESSAGES messages; a failed
transaction fails the requests of that group only (their agents retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.wire import Message
from control_plane.services.clock import Clock
from control_plane.store import messages as store
from control_plane.store.db import Database

log = logging.getLogger("corral.channel")

MAX_GROUP_MESSAGES = 1000

# A handler stores what the messages of one type say (in arrival order, with their node)
# inside the group's transaction, and may return a callback to run once it has committed.
AfterCommit = Callable[[], None]
BatchHandler = Callable[
    [AsyncConnection, list[tuple[str, Message]]], Awaitable[AfterCommit | None]
]


@dataclass
class _Request:
    node_id: str
    messages: list[Message] = field(default_factory=list)  # to store
    acks: list[str] = field(default_factory=list)  # inbox messages to remove
    done: asyncio.Future[list[str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return len(self.messages) + len(self.acks)


class ChannelWriter:
    def __init__(self, db: Database, clock: Clock, handlers: dict[str, BatchHandler]) -> None:
        self._db = db
        self._clock = clock
        self._handlers = handlers
        self._queue: list[_Request] = []
        self._work = asyncio.Event()

    async def store(self, node_id: str, messages: list[Message]) -> list[str]:
        """Store the node's messages; the ids now safely stored (redeliveries included)."""
        return await self._submit(_Request(node_id, messages=messages))

    async def acknowledge(self, node_id: str, ids: list[str]) -> None:
        await self._submit(_Request(node_id, acks=ids))

    async def _submit(self, request: _Request) -> list[str]:
        self._queue.append(request)
        self._work.set()
        return await request.done  # a cancelled caller's request is still stored (idempotent)

    async def run(self) -> None:
        """The writer: one transaction per group, until cancelled."""
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                await self._write(self._take())

    def _take(self) -> list[_Request]:
        group: list[_Request] = []
        size = 0
        while self._queue and (not group or size + self._queue[0].size <= MAX_GROUP_MESSAGES):
            request = self._queue.pop(0)
            group.append(request)
            size += request.size
        return group

    async def _write(self, group: list[_Request]) -> None:
        now = self._clock()
        callbacks: list[AfterCommit] = []
        try:
            async with self._db.transaction() as conn:
                acks = [(r.node_id, msg_id) for r in group for msg_id in r.acks]
                await store.acknowledge_many(conn, acks)
                received = [(r.node_id, m) for r in group for m in r.messages]
                fresh = await store.mark_processed_many(conn, received, now)
                by_type: dict[str, list[tuple[str, Message]]] = {}
                for node_id, message in received:
                    if (node_id, message["id"]) in fresh:
                        by_type.setdefault(message["type"], []).append((node_id, message))
                for msg_type, items in by_type.items():
                    handler = self._handlers.get(msg_type)
                    if handler is not None:
                        callback = await handler(conn, items)
                        if callback is not None:
                            callbacks.append(callback)
        except Exception as exc:  # the group's requests fail; the writer goes on
            log.warning(
                "storing agent messages failed",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300], "requests": len(group)},
            )
            for request in group:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        for request in group:
            if not request.done.done():
                request.done.set_result([m["id"] for m in request.messages])
        for callback in callbacks:
            callback()
