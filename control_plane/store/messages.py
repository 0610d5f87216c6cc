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


async def enqueue_many(conn: AsyncConnection, rows: list[tuple[str, Message]]) -> None:
    """Queue messages for nodes, (node id, message) each, in one statement."""
    if rows:
        await conn.execute(
            node_inbox.insert(),
            [
                {
                    "id": m["id"],
                    "node_id": node_id,
                    "type": m["type"],
                    "body": m["body"],
                    "created_at": m["created_at"],
                }
                for node_id, m in rows
            ],
        )


async def acknowledge_many(conn: AsyncConnection, pairs: list[tuple[str, str]]) -> None:
    """Remove (node id, message id) pairs from the inboxes, in one statement."""
    if pairs:
        await conn.execute(
            node_inbox.delete().where(
                node_inbox.c.id == sa.bindparam("b_id"),
                node_inbox.c.node_id == sa.bindparam("b_node"),
            ),
            [{"b_id": msg_id, "b_node": node_id} for node_id, msg_id in pairs],
        )


async def mark_processed_many(
    conn: AsyncConnection, received: list[tuple[str, Message]], now: float
) -> set[tuple[str, str]]:
    """Record the ids of received messages; the (node id, message id) pairs that are new
    (the others were stored before: redeliveries, or twice in this very batch)."""
    if not received:
        return set()
    pairs = list(dict.fromkeys((node_id, m["id"]) for node_id, m in received))
    known: set[tuple[str, str]] = set()
    for start in range(0, len(pairs), 400):  # bound the statement's parameters
        chunk = pairs[start : start + 400]
        result = await conn.execute(
            sa.select(processed_messages.c.node_id, processed_messages.c.id).where(
                sa.tuple_(processed_messages.c.node_id, processed_messages.c.id).in_(chunk)
            )
        )
        known.update((row.node_id, row.id) for row in result)
    types = {(node_id, m["id"]): m["type"] for node_id, m in received}
    fresh = [pair for pair in pairs if pair not in known]
    if fresh:
        await conn.execute(
            processed_messages.insert(),
            [{"node_id": n, "id": i, "type": types[(n, i)], "received_at": now} for n, i in fresh],
        )
    return set(fresh)


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
