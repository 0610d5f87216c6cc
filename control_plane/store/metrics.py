"""What ``GET /metrics`` reads at scrape time (services/metrics): narrow, cheap queries.

Commands and invocations are counted by status from their status indexes (migration 0018);
the nodes are read as one narrow row each (their status is decided in memory by presence);
the audit figures come from the chain's one-row head and the small checkpoint table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import (
    audit_checkpoints,
    audit_entries,
    audit_head,
    commands,
    invocations,
    nodes,
)


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    platform: str
    agent_version: str
    deregistered: bool
    last_seen: float | None
    outbox_depth: int | None
    outbox_dead: int | None
    workers: int | None
    rss_bytes: int | None


@dataclass(frozen=True, slots=True)
class AuditFigures:
    chain_length: int  # the head's seq: entries ever appended (pruned ones included)
    signed_upto: int  # the last checkpoint's seq (0: none yet)
    last_checkpoint_at: float | None
    first_entry_at: float | None  # the oldest entry kept (the anchor while none is signed)


async def node_rows(conn: AsyncConnection) -> list[NodeRow]:
    c = nodes.c
    query = sa.select(
        c.id,
        c.platform,
        c.agent_version,
        c.deregistered_at,
        c.last_seen,
        c.outbox_depth,
        c.outbox_dead,
        c.workers,
        c.rss_bytes,
    )
    rows = (await conn.execute(query)).all()
    # Unpacked by position: by name it took as long as the query itself on 10,000 nodes.
    return [
        NodeRow(node, platform, version, gone is not None, seen, depth, dead, workers, rss)
        for node, platform, version, gone, seen, depth, dead, workers, rss in rows
    ]


async def commands_by_status(conn: AsyncConnection) -> dict[str, int]:
    return await _by_status(conn, commands)


async def invocations_by_status(conn: AsyncConnection) -> dict[str, int]:
    return await _by_status(conn, invocations)


async def _by_status(conn: AsyncConnection, table: sa.Table) -> dict[str, int]:
    status = table.c.status
    rows = await conn.execute(sa.select(status, sa.func.count()).group_by(status))
    return {str(name): int(count) for name, count in rows}


async def audit_figures(conn: AsyncConnection) -> AuditFigures:
    head = (await conn.execute(sa.select(audit_head.c.seq))).scalar()
    c = audit_checkpoints.c
    last = (
        await conn.execute(
            sa.select(c.seq_upto, c.time).order_by(c.seq_upto.desc(), c.id.desc()).limit(1)
        )
    ).first()
    first = (
        await conn.execute(sa.select(audit_entries.c.time).order_by(audit_entries.c.seq).limit(1))
    ).scalar()
    return AuditFigures(
        chain_length=int(head or 0),
        signed_upto=int(last.seq_upto) if last else 0,
        last_checkpoint_at=float(last.time) if last else None,
        first_entry_at=float(first) if first is not None else None,
    )


async def database_size(conn: AsyncConnection) -> int | None:
    """Bytes the database takes: SQLite's pages (its WAL aside), PostgreSQL's
    ``pg_database_size``; None on another database."""
    name = conn.dialect.name
    if name == "sqlite":
        pages = (await conn.execute(sa.text("PRAGMA page_count"))).scalar()
        size = (await conn.execute(sa.text("PRAGMA page_size"))).scalar()
        return int(pages or 0) * int(size or 0)
    if name == "postgresql":
        value: Any = (
            await conn.execute(sa.text("SELECT pg_database_size(current_database())"))
        ).scalar()
        return int(value)
    return None
