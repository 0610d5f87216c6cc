"""The fleet's figures at scrape time: what the database holds, with each node's status
decided as ``corral nodes list`` decides it (services/presence.py).

One read per scrape, shared: scrapes that arrive while a read is under way (two Prometheus
servers, a dashboard refresh) wait for that read instead of starting their own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from control_plane.services.clock import Clock
from control_plane.services.presence import Presence
from control_plane.store import metrics as store
from control_plane.store.db import Database
from control_plane.store.metrics import AuditFigures, NodeRow

UNKNOWN_PLATFORM = "Unknown"  # registered, no heartbeat yet
UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True, slots=True)
class Fleet:
    now: float
    nodes: dict[tuple[str, str], int]  # (status, platform) -> nodes
    versions: dict[str, int]  # agent version -> registered nodes
    live: list[NodeRow]  # registered nodes (not deregistered), for the per-node figures
    commands: dict[str, int]
    invocations: dict[str, int]
    audit: AuditFigures
    database_bytes: int | None


async def read_fleet(db: Database, presence: Presence, clock: Clock) -> Fleet:
    async with db.read() as conn:
        rows = await store.node_rows(conn)
        commands = await store.commands_by_status(conn)
        invocations = await store.invocations_by_status(conn)
        audit = await store.audit_figures(conn)
        size = await store.database_size(conn)
    now = clock()
    by_status: Counter[tuple[str, str]] = Counter()
    versions: Counter[str] = Counter()
    live: list[NodeRow] = []
    for row in rows:
        status = presence.status(row.node_id, row.deregistered, row.last_seen, now)
        by_status[(status, row.platform or UNKNOWN_PLATFORM)] += 1
        if not row.deregistered:
            versions[row.agent_version or UNKNOWN_VERSION] += 1
            live.append(row)
    return Fleet(
        now=now,
        nodes=dict(by_status),
        versions=dict(versions),
        live=live,
        commands=commands,
        invocations=invocations,
        audit=audit,
        database_bytes=size,
    )


class SharedRead:
    """``await read()``: the fleet, read once for every scrape waiting at the same time."""

    def __init__(self, db: Database, presence: Presence, clock: Clock) -> None:
        self._db = db
        self._presence = presence
        self._clock = clock
        self._pending: asyncio.Future[Fleet] | None = None

    async def read(self) -> Fleet:
        if self._pending is None:
            task = asyncio.ensure_future(read_fleet(self._db, self._presence, self._clock))
            self._pending = task
            task.add_done_callback(self._done)
        # A scrape that goes away (its client closed) does not cancel the others' read.
        return await asyncio.shield(self._pending)

    def _done(self, task: asyncio.Future[Fleet]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved: a failed read is raised to its waiters only
