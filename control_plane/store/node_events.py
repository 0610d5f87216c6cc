"""Node events (what agents report about themselves), newest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import node_events

KEEP_PER_NODE = 1000


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Store one event and forget the node's oldest beyond KEEP_PER_NODE."""
    await conn.execute(node_events.insert().values(**row))
    cutoff = (
        sa.select(node_events.c.id)
        .where(node_events.c.node_id == row["node_id"])
        .order_by(node_events.c.id.desc())
        .offset(KEEP_PER_NODE)
        .limit(1)
        .scalar_subquery()
    )
    await conn.execute(
        node_events.delete().where(
            node_events.c.node_id == row["node_id"], node_events.c.id <= cutoff
        )
    )


async def page(
    conn: AsyncConnection, node_id: str, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        sa.select(node_events)
        .where(node_events.c.node_id == node_id)
        .order_by(node_events.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(node_events.c.id < before_id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]
