"""Group commit of what agents send: their messages (stored idempotently by id, then handed
to each type's handler) and their acknowledgements (messages leaving their inbox).

Every request waits for the transaction that stores it: nothing is acknowledged to an agent
before it is committed.  One writer task takes what has queued up while the previous
transaction ran, from every node at once, and stores it in one transaction with a few
statements for the whole group (issue 10: a fleet's reports cost a transaction per group,
not one per report).  A group holds at most MAX_GROUP_MESSAGES messages.

Each message gets its own answer (issue 17): ``accepted`` (stored now), ``duplicate`` (stored
before, or earlier in the same group: handled once) or ``rejected`` with a reason.  A handler
that refuses a message (an InvalidRequest) rejects that message alone: the group is written
again a request per transaction, and the request refused again a message per transaction,
so the rest of it is stored.  Any other failure (the database) fails the group's requests;
their agents retry.

A message refused before it reached the writer, that concerns an invocation, comes with a
:class:`Rejection`: the invocation becomes Failed ("result rejected: <reason>") through the
``invocation_update`` handler, so a buried result is never a silent InProgress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, NotRequired, TypedDict

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest
from control_plane.services.clock import Clock
from control_plane.store import messages as store
from control_plane.store.db import Database

log = logging.getLogger("corral.channel")

MAX_GROUP_MESSAGES = 1000
# A rejection's reason, as answered to the agent and written into the invocation.
MAX_REASON_CHARS: Final = 500
MAX_REJECTED_DETAILS_CHARS: Final = 256
REJECTED_PREFIX: Final = "result rejected: "
# The id of the invocation_update the server makes for a rejected message: not a message id
# an agent can send (wire.MESSAGE_ID_RE has no ':'), so a handler can tell it apart.
REJECTION_ID: Final = "server:rejection"

# A handler stores what the messages of one type say (in arrival order, with their node)
# inside the group's transaction, and may return a callback to run once it has committed.
AfterCommit = Callable[[], None]
BatchHandler = Callable[
    [AsyncConnection, list[tuple[str, Message]]], Awaitable[AfterCommit | None]
]


class MessageResult(TypedDict):
    """The answer about one message of a batch (``results`` on the wire)."""

    index: int  # its place in the batch
    id: str | None  # None: the element had no usable id
    status: str  # wire.RESULT_ACCEPTED | RESULT_DUPLICATE | RESULT_REJECTED
    reason: NotRequired[str]  # why it was rejected


def rejected(index: int, msg_id: str | None, reason: str) -> MessageResult:
    return MessageResult(
        index=index, id=msg_id, status=wire.RESULT_REJECTED, reason=reason[:MAX_REASON_CHARS]
    )


@dataclass(frozen=True)
class Rejection:
    """A rejected message about this invocation of the node (``command_id``)."""

    command_id: str
    reason: str


def rejection_update(rejection: Rejection, now: float) -> Message:
    """The invocation_update that records a rejected result: Failed, with the reason."""
    details = (REJECTED_PREFIX + rejection.reason)[:MAX_REJECTED_DETAILS_CHARS]
    body = {
        "command_id": rejection.command_id,
        "status": wire.ST_FAILED,
        "status_details": details,
        "ended_at": now,
    }
    return Message(id=REJECTION_ID, type=wire.MSG_INVOCATION_UPDATE, body=body, created_at=now)


@dataclass
class _Request:
    node_id: str
    messages: list[Message] = field(default_factory=list)  # to store
    indexes: list[int] = field(default_factory=list)  # each message's place in its batch
    rejections: list[Rejection] = field(default_factory=list)  # invocations to fail
    acks: list[str] = field(default_factory=list)  # inbox messages to remove
    results: dict[int, MessageResult] = field(default_factory=dict)  # by position in messages
    done: asyncio.Future[list[MessageResult]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return len(self.messages) + len(self.acks) + len(self.rejections)


@dataclass
class _Entry:
    """One message of a group, and where its answer goes."""

    request: _Request
    position: int

    @property
    def message(self) -> Message:
        return self.request.messages[self.position]

    @property
    def pair(self) -> tuple[str, str]:
        return self.request.node_id, self.message["id"]

    @property
    def received(self) -> tuple[str, Message]:
        return self.request.node_id, self.message

    def answer(self, status: str, reason: str | None = None) -> None:
        index = self.request.indexes[self.position]
        if reason is not None:
            self.request.results[self.position] = rejected(index, self.message["id"], reason)
        else:
            self.request.results[self.position] = MessageResult(
                index=index, id=self.message["id"], status=status
            )


class ChannelWriter:
    def __init__(self, db: Database, clock: Clock, handlers: dict[str, BatchHandler]) -> None:
        self._db = db
        self._clock = clock
        self._handlers = handlers
        self._queue: list[_Request] = []
        self._work = asyncio.Event()

    async def store(
        self,
        node_id: str,
        messages: list[Message],
        indexes: list[int] | None = None,
        rejections: list[Rejection] | None = None,
    ) -> list[MessageResult]:
        """Store the node's messages (``indexes``: their places in the agent's batch) and
        fail the invocations of ``rejections``; one result per message, in order, once the
        transaction holding them has committed."""
        request = _Request(
            node_id,
            messages=messages,
            indexes=indexes if indexes is not None else list(range(len(messages))),
            rejections=rejections or [],
        )
        return await self._submit(request)

    async def acknowledge(self, node_id: str, ids: list[str]) -> None:
        await self._submit(_Request(node_id, acks=ids))

    async def _submit(self, request: _Request) -> list[MessageResult]:
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
        entries = [_Entry(r, i) for r in group for i in range(len(r.messages))]
        callbacks: list[AfterCommit] = []
        try:
            try:
                callbacks += await self._commit(group, entries, everything=True)
            except InvalidRequest:
                # A handler refused a message: store each request alone, then the messages
                # of a request refused again one at a time, to reject that message only.
                callbacks += await self._commit(group, [], everything=True)
                for request in group:
                    callbacks += await self._commit_request(
                        [e for e in entries if e.request is request]
                    )
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
                request.done.set_result([request.results[i] for i in range(len(request.messages))])
        for callback in callbacks:
            callback()

    async def _commit_request(self, entries: list[_Entry]) -> list[AfterCommit]:
        if not entries:
            return []
        try:
            return await self._commit([], entries)
        except InvalidRequest:
            callbacks: list[AfterCommit] = []
            for entry in entries:
                callbacks += await self._commit_alone(entry)
            return callbacks

    async def _commit_alone(self, entry: _Entry) -> list[AfterCommit]:
        try:
            return await self._commit([], [entry])
        except InvalidRequest as exc:
            entry.answer(wire.RESULT_REJECTED, exc.message)
            log.warning(
                "agent message rejected",
                extra={
                    "node_id": entry.request.node_id,
                    "message_id": entry.message["id"],
                    "why": exc.message[:300],
                },
            )
            rejection = _rejection_of(entry.message, exc.message)
            if rejection is None:
                return []
            return await self._commit([], [], failed=[(entry.request.node_id, rejection)])

    async def _commit(
        self,
        group: list[_Request],
        entries: list[_Entry],
        *,
        everything: bool = False,
        failed: list[tuple[str, Rejection]] | None = None,
    ) -> list[AfterCommit]:
        """One transaction: the entries' messages, and with ``everything`` the group's acks
        and rejections too.  The entries are answered once it has committed."""
        now = self._clock()
        failed = list(failed or [])
        if everything:
            failed += [(r.node_id, rejection) for r in group for rejection in r.rejections]
        callbacks: list[AfterCommit] = []
        answers: list[tuple[_Entry, str]] = []
        async with self._db.transaction() as conn:
            if everything:
                await store.acknowledge_many(conn, [(r.node_id, i) for r in group for i in r.acks])
            fresh = await store.mark_processed_many(conn, [e.received for e in entries], now)
            by_type: dict[str, list[tuple[str, Message]]] = {}
            for entry in entries:
                if entry.pair in fresh:
                    fresh.discard(entry.pair)  # a second copy in the group is a duplicate
                    answers.append((entry, wire.RESULT_ACCEPTED))
                    by_type.setdefault(entry.message["type"], []).append(
                        (entry.request.node_id, entry.message)
                    )
                else:
                    answers.append((entry, wire.RESULT_DUPLICATE))
            if failed and wire.MSG_INVOCATION_UPDATE in self._handlers:
                # After the group's own reports: a result that did arrive wins.
                by_type.setdefault(wire.MSG_INVOCATION_UPDATE, []).extend(
                    (node_id, rejection_update(rejection, now)) for node_id, rejection in failed
                )
            for msg_type, items in by_type.items():
                handler = self._handlers.get(msg_type)
                if handler is not None:
                    callback = await handler(conn, items)
                    if callback is not None:
                        callbacks.append(callback)
        for entry, status in answers:
            entry.answer(status)
        return callbacks


def _rejection_of(message: Message, reason: str) -> Rejection | None:
    """The invocation a rejected message is about, if it names one."""
    return rejection_for(message.get("type"), message.get("body"), reason)


def rejection_for(msg_type: object, body: object, reason: str) -> Rejection | None:
    """A rejected element that is a result (invocation_update, output_uploaded) naming a
    command: its invocation is to be failed."""
    if msg_type not in (wire.MSG_INVOCATION_UPDATE, wire.MSG_OUTPUT_UPLOADED):
        return None
    if not isinstance(body, dict):
        return None
    command_id = body.get("command_id")
    if not isinstance(command_id, str) or not 1 <= len(command_id) <= 64:
        return None
    return Rejection(command_id, reason[:MAX_REASON_CHARS])
