"""Status-change events: an in-process bus for ``GET /v1/events`` (Server-Sent Events) and
durable webhook deliveries.

Event names: ``command.status_changed`` (the command's overall status),
``command.invocation_status_changed`` (one node's), ``parameter.changed`` /
``parameter.deleted`` / ``parameter.expired`` and the parameter policies' notifications,
``node.event`` (what an agent reports about itself, services/node_events.py),
``inventory.changed`` (a node's items of one type were added, removed or changed, with
them: services/inventory/ingest.py).
Webhooks subscribe with a glob (``command.*``); each event is queued in
``webhook_deliveries`` in the same transaction as the change it reports, and POSTed until the
receiver answers 2xx.

Who may see an event is :func:`read_permission`'s answer, one rule for every reader (an
``/v1/events`` subscriber, a webhook's owner).  Events carry statuses and names, never
command output or parameter values.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.security.actions import resource_name
from control_plane.store import webhooks as webhook_store

log = logging.getLogger("corral.events")

SUBSCRIBER_QUEUE = 1000


def read_permission(event: dict[str, Any]) -> tuple[str, str] | None:
    """The action and resource a reader needs to see ``event``; None: no one (an event type
    without a rule here is never shown, so a new one cannot leak by default)."""
    kind = str(event.get("type", ""))
    if kind.startswith("command."):
        return "commands:Get", f"command/{event.get('command_id', '')}"
    if kind.startswith("parameter."):
        return "parameters:List", resource_name("parameter", str(event.get("name", "")))
    if kind.startswith("node."):
        return "nodes:Get", f"node/{event.get('node_id', '')}"
    if kind.startswith("inventory."):
        return "inventory:Get", f"node/{event.get('node_id', '')}"
    return None


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        # In-process listeners (State Manager follows its runs' commands): called after
        # commit with each event; they must be quick and must not raise.
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._hooks: list[tuple[str, str]] | None = None  # (webhook id, pattern), cached

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

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
        for listener in self._listeners:
            for event in events:
                listener(event)
        for queue in list(self._subscribers):
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("event subscriber too slow; dropping an event")
                    break
