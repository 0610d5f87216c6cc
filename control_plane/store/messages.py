"""The node inbox (server -> agent, until acknowledged) and processed agent message ids."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.wire import Message
from control_plane.store.schema import node_inbox, processed_messages


async def enqueue(conn: AsyncConnection, node_id: str, message: Message) -> None:
    await conn.execute(
        node_inbox.insert().values(
            id=message["id"],
            node_id=node_id,
            type=message["type"],
            body=message["body"],
            created_at=message["created_at"],
        )
    )


async def pending(
    conn: AsyncConnection, node_id: str, limit: int, exclude: frozenset[str] = frozenset()
) -> list[Message]:
    """The node's oldest messages not yet acknowledged (but those in ``exclude``: sent on an
    open channel and awaiting their acknowledgement)."""
    query = (
        sa.select(node_inbox)
        .where(node_inbox.c.node_id == node_id)
        .order_by(node_inbox.c.created_at, node_inbox.c.id)
        .limit(limit)
    )
    if exclude:
        query = query.where(node_inbox.c.id.not_in(exclude))
    result = await conn.execute(query)
    return [
        Message(id=r["id"], type=r["type"], body=r["body"], created_at=r["created_at"])
        for r in result.mappings()
    ]


async def nodes_with_pending(conn: AsyncConnection) -> set[str]:
    result = await conn.execute(sa.select(node_inbox.c.node_id).distinct())
    return set(result.scalars())


async def acknowledge(conn: AsyncConnection, node_id: str, ids: list[str]) -> None:
    if ids:
        await conn.execute(
            node_inbox.delete().where(node_inbox.c.node_id == node_id, node_inbox.c.id.in_(ids))
        )


async def drop_for_node(conn: AsyncConnection, node_id: str) -> None:
    await conn.execute(node_inbox.delete().where(node_inbox.c.node_id == node_id))


async def mark_processed(conn: AsyncConnection, node_id: str, message: Message, now: float) -> bool:
    """Record a message id; False if it was already stored (a redelivery)."""
    values: dict[str, Any] = {
        "id": message["id"],
        "node_id": node_id,
        "type": message["type"],
        "received_at": now,
    }
    dialect = conn.dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(processed_messages)
    result = await conn.execute(insert.values(**values).on_conflict_do_nothing())
    return result.rowcount == 1


async def prune_processed(conn: AsyncConnection, before: float) -> None:
    await conn.execute(processed_messages.delete().where(processed_messages.c.received_at < before))
