"""Node events: what an agent tells the operator about itself, beyond its results.

Today: a state file it found unreadable, moved aside and rebuilt (``state_file_corrupt``,
``journal_entry_corrupt``; see agent/state_recovery.py), which can mean lost results.  Each
event is stored (the newest 1,000 per node), logged, and published as ``node.event`` to
``/v1/events`` and to webhooks (read with ``nodes:Get`` on the node).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services import paging
from control_plane.services.channel import AgentChannel
from control_plane.services.channel_writer import AfterCommit
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.events import EventBus
from control_plane.store import node_events as store
from control_plane.store import nodes as node_store
from control_plane.store.db import Database

log = logging.getLogger("corral.nodes")

MAX_MESSAGE = 1024
MAX_DETAIL = 256
DETAIL_KEYS = ("file", "moved_to", "command_id")


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "node_id": row["node_id"],
        "time": rfc3339(row["time"]),
        "received_at": rfc3339(row["received_at"]),
        "code": row["code"],
        "severity": row["severity"],
        "message": row["message"],
        **row["details"],
    }


class NodeEventService:
    def __init__(self, db: Database, channel: AgentChannel, events: EventBus, clock: Clock) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        channel.register_handler(wire.MSG_NODE_EVENT, self._on_event)

    async def _on_event(self, conn: AsyncConnection, node_id: str, msg: Message) -> AfterCommit:
        body = msg["body"]
        code = body.get("code")
        if not isinstance(code, str) or not 1 <= len(code) <= 64:
            raise InvalidRequest("node_event: code must be a short string")
        severity = body.get("severity")
        if severity not in wire.NODE_EVENT_SEVERITIES:
            raise InvalidRequest(f"node_event: unknown severity {str(severity)[:16]!r}")
        now = self._clock()
        stamp = body.get("time")
        row = {
            "node_id": node_id,
            "time": float(stamp) if isinstance(stamp, int | float) else now,
            "received_at": now,
            "code": code,
            "severity": str(severity),
            "message": str(body.get("message", ""))[:MAX_MESSAGE],
            "details": {
                k: str(body[k])[:MAX_DETAIL] for k in DETAIL_KEYS if isinstance(body.get(k), str)
            },
        }
        await store.insert(conn, row)
        event = {"type": "node.event", **_view(row)}
        await self._events.record(conn, [event], now)
        log.log(
            logging.ERROR if severity == "error" else logging.WARNING,
            "node event",
            extra={"node_id": node_id, "code": code, "event": row["message"]},
        )
        return lambda: self._events.publish([event])

    async def list_page(
        self, node_id: str, *, limit: int, next_token: str | None
    ) -> paging.Page[dict[str, Any]]:
        """The node's events, newest first, a page at a time."""
        paging.check_limit(limit)
        after = paging.decode(next_token, (int,))
        async with self._db.read() as conn:
            if await node_store.get(conn, node_id) is None:
                raise NotFound(f"node {node_id} not found")
            rows = await store.page(conn, node_id, None if after is None else after[0], limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        token = paging.encode((rows[-1]["id"],)) if more else None
        return paging.Page([_view(r) for r in rows], token)
