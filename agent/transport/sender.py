"""The sender: drains the outbox into the transport, one bounded batch at a time.

A batch holds at most MAX_MESSAGES_PER_BATCH messages, and its JSON body stays under
REQUEST_FILL (3/4) of the request limit the server last told (agent/wire.py); a proxy in
front of the server may hold a lower one.  So on 413 the batch is halved and sent again, down
to a single message, and the smaller size that worked is kept for SHRUNK_SECONDS before the
server's own limit is tried again.  A 400 or 422 for a whole batch (an older server that
refuses a batch for one bad message) is halved the same way, to find that message.  A proxy
may also cut the connection instead of answering 413 (it refuses before reading the body):
after LOST_BEFORE_HALVING transport errors in a row, a batch of several messages is halved
for this attempt only (an outage looks the same, and must not shrink the batches after it).

Only a single message the server refuses (413, 400, 422), or one it answers ``rejected``,
moves to the outbox's dead table, with the reason; any other refusal or a transport error
is retried with backoff.  Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable

from agent import wire
from agent.backoff import Backoff
from agent.errors import CredentialRevoked, ServerRejected, TransportError
from agent.outbox import Outbox
from agent.transport.base import SendAnswer, Transport, encode
from agent.wire import Message

log = logging.getLogger("corral.agent")

TOO_LARGE = 413
# Answers that blame what was sent: halved until one message is left, that one is buried.
REFUSED = frozenset({400, TOO_LARGE, 422})
SHRUNK_SECONDS = 600.0
LOST_BEFORE_HALVING = 2
_ENVELOPE = len(encode({"messages": []}))


# Marks the small Failed result that stands in for one a proxy refused (see _stand_in).
STAND_IN = "stand_in"

def message_size(message: Message) -> int:
    """Bytes this message adds to a batch's body (with its comma)."""
    return len(encode(message)) + 1


class BatchLimits:
    """How many messages, and how many bytes of them, go in one request."""

    def __init__(self, told: Callable[[], int | None], clock: Callable[[], float]) -> None:
        self._told = told
        self._clock = clock
        self._shrunk: tuple[int, int, float] | None = None  # count, bytes, until

    @property
    def byte_budget(self) -> int:
        told = self._told() or wire.MAX_REQUEST_BYTES
        budget = int(told * wire.REQUEST_FILL)
        shrunk = self._current_shrink()
        return min(budget, shrunk[1]) if shrunk else budget

    @property
    def count(self) -> int:
        shrunk = self._current_shrink()
        return shrunk[0] if shrunk else wire.MAX_MESSAGES_PER_BATCH

    def _current_shrink(self) -> tuple[int, int, float] | None:
        if self._shrunk is not None and self._clock() >= self._shrunk[2]:
            self._shrunk = None
        return self._shrunk

    def fit(self, messages: list[Message]) -> list[Message]:
        """The longest prefix within the limits; at least one message."""
        budget, total = self.byte_budget, _ENVELOPE
        for index, message in enumerate(messages[: self.count]):
            total += message_size(message)
            if total > budget and index > 0:
                return messages[:index]
        return messages[: self.count]

    def shrink(self, refused: list[Message]) -> list[Message]:
        """A proxy refused ``refused`` as too large: half of it now, and for a while."""
        half = refused[: max(1, len(refused) // 2)]
        size = _ENVELOPE + sum(message_size(m) for m in half)
        self._shrunk = (len(half), size, self._clock() + SHRUNK_SECONDS)
        return half


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        backoff: Callable[[], Backoff],
        on_contact: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self._backoff = backoff
        self._on_contact = on_contact
        self.limits = BatchLimits(lambda: transport.max_request_bytes, clock)

    async def flush_once(self) -> bool | None:
        """Send one batch.  None: the outbox is empty; True: the server took or refused
        something; False: it answered, but about none of the batch (back off)."""
        batch = self.limits.fit(await self.outbox.peek(self.limits.count))
        await self._report_unreadable()
        if not batch:
            return None
        backoff = self._backoff()
        lost = 0  # transport errors in a row
        while True:
            try:
                answer = await self.transport.send(batch)
                break
            except CredentialRevoked:
                raise
            except ServerRejected as exc:
                if exc.status in REFUSED and len(batch) > 1:
                    batch = self._halve(batch, exc)
                    continue
                if exc.status in REFUSED:
                    reason = f"refused by the server (HTTP {exc.status}): {exc.message}"
                    await self._bury(SendAnswer(rejected={batch[0]["id"]: reason}))
                    await self._stand_in(batch[0], reason)
                    return True
                # Not the batch's fault (auth, not found, ...): keep it and retry.
                delay = backoff.next_delay()
                log.warning(
                    "server refused results; retrying",
                    extra={"error": exc.message, "status": exc.status, "retry_in": round(delay, 2)},
                )
            except TransportError as exc:
                delay = backoff.next_delay()
                lost += 1
                if lost >= LOST_BEFORE_HALVING and len(batch) > 1:
                    batch, lost = batch[: len(batch) // 2], 0
                log.warning(
                    "sending results failed; retrying",
                    extra={"error": exc.message, "retry_in": round(delay, 2), "outbox": len(batch)},
                )
            await asyncio.sleep(delay)
        await self.outbox.remove(answer.acked)
        await self._bury(answer)
        self._on_contact()
        return bool(answer.acked or answer.rejected)

    def _halve(self, batch: list[Message], exc: ServerRejected) -> list[Message]:
        # Too large: remember it; refused for its content: look for the one to blame.
        half = self.limits.shrink(batch) if exc.status == TOO_LARGE else batch[: len(batch) // 2]
        log.warning(
            "the server refused a batch; sending half of it",
            extra={"status": exc.status, "error": exc.message, "count": len(half)},
        )
        return half

    async def _report_unreadable(self) -> None:
        """Rows the outbox found unreadable (and buried): the operator hears of each."""
        while self.outbox.buried_unreadable:
            msg_id, why = self.outbox.buried_unreadable.pop(0)
            log.error(
                "an outbox row was unreadable; moved to the dead table",
                extra={"message_id": msg_id, "reason": why},
            )
            body = {
                "code": wire.EVENT_OUTBOX_ROW_CORRUPT,
                "severity": "error",
                "message": f"the outbox row {msg_id[:64]} was unreadable ({why}); it is in "
                "the dead table (corral-agent outbox list-dead)"[: wire.MAX_REASON_CHARS],
                "time": time.time(),
            }
            await self.outbox.put(wire.make_message(wire.MSG_NODE_EVENT, body))

    async def _bury(self, answer: SendAnswer) -> None:
        for msg_id, reason in answer.rejected.items():
            log.error(
                "the server rejected a message; moved to the dead table",
                extra={"message_id": msg_id, "reason": reason},
            )
            await self.outbox.bury([msg_id], reason)

    async def _stand_in(self, buried: Message, reason: str) -> None:
        """A result refused before the server could read it (a proxy's 413: the server never
        saw it, so it cannot fail the invocation as it does a result it rejects itself) is
        replaced by a small Failed one that says why, so the invocation does not wait for
        its no-report timeout.  Never for a stand-in: one that is refused too is only buried."""
        body = buried.get("body")
        if buried.get("type") != wire.MSG_INVOCATION_UPDATE or not isinstance(body, dict):
            return
        if body.get(STAND_IN) or not isinstance(body.get("command_id"), str):
            return
        note = (
            f"the result could not be delivered ({reason}); it is kept in the agent's dead "
            "table: corral-agent outbox list-dead, then retry-dead once the limit is raised"
        )[: wire.MAX_REASON_CHARS]
        step = {"name": "corral:agent", "action": "", "status": wire.ST_FAILED, "stderr": note}
        await self.outbox.put(
            wire.make_message(
                wire.MSG_INVOCATION_UPDATE,
                {
                    "command_id": body["command_id"],
                    "status": wire.ST_FAILED,
                    "status_details": "result rejected",
                    "steps": [step],
                    STAND_IN: True,
                },
            )
        )

    async def run(self, stopping: asyncio.Event, rescan_seconds: float) -> None:
        """Send until the outbox is empty, then wait for a new message (or ``rescan_seconds``:
        ``corral-agent outbox retry-dead`` writes from another process)."""
        backoff = self._backoff()
        while True:
            try:
                sent = await self.flush_once()
            except (OSError, sqlite3.Error) as exc:  # the outbox's disk (full, ...): wait
                delay = backoff.next_delay()
                log.warning(
                    "the outbox cannot be read or written; retrying",
                    extra={"error": str(exc), "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                continue
            if sent is None:
                if stopping.is_set():
                    return
                await self.outbox.wait_for_new(rescan_seconds)
                continue
            if sent:
                backoff.reset()
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(backoff.next_delay())
