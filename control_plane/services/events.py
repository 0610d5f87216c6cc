"""Status-change events: an in-process bus for ``GET /v1/events`` (Server-Sent Events) and
durable webhook deliveries.

Event names: ``command.status_changed`` (the command's overall status) and
``command.invocation_status_changed`` (one node's).  Webhooks subscribe with a glob
(``command.*``); each event is queued in ``webhook_deliveries`` in the same transaction as the
change it reports, and POSTed until the receiver answers 2xx.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store import webhooks as webhook_store

log = logging.getLogger("corral.events")

SUBSCRIBER_QUEUE = 1000


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._hooks: list[tuple[str, str]] | None = None  # (webhook id, pattern), cached

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def invalidate_hooks(self) -> None:
        self._hooks = None

    async def record(self, conn: AsyncConnection, events: list[dict[str, Any]], now: float) -> None:
        """Queue webhook deliveries inside the caller's transaction."""
        if not events:
            return
        if self._hooks is None:
            self._hooks = [(h["id"], h["events"]) for h in await webhook_store.list_all(conn)]
        rows = [
            {"webhook_id": hook_id, "event": event, "next_attempt_at": now}
            for event in events
            for hook_id, pattern in self._hooks
            if fnmatch.fnmatchcase(event["type"], pattern)
        ]
        await webhook_store.enqueue(conn, rows)

    def publish(self, events: list[dict[str, Any]]) -> None:
        """After commit: hand events to live subscribers (a slow one loses events, not memory)."""
        for queue in list(self._subscribers):
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("event subscriber too slow; dropping an event")
                    break
