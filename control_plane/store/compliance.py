"""Compliance items, the summary row of each (node, type) put, and the items' history."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import (
    compliance_history,
    compliance_items,
    compliance_summaries,
    nodes,
)


async def node_state(conn: AsyncConnection, node_id: str) -> str | None:
    """ "active", "deregistered", or None for a node that was never registered."""
    row = (
        await conn.execute(sa.select(nodes.c.deregistered_at).where(nodes.c.id == node_id))
    ).first()
    if row is None:
        return None
    return "active" if row[0] is None else "deregistered"


async def items_of(conn: AsyncConnection, node_id: str, compliance_type: str) -> dict[str, Any]:
    """The node's items of that type, by item id."""
    result = await conn.execute(
        sa.select(compliance_items).where(
            compliance_items.c.node_id == node_id,
            compliance_items.c.compliance_type == compliance_type,
        )
    )
    return {r["item_id"]: dict(r) for r in result.mappings()}


async def replace_items(
    conn: AsyncConnection, node_id: str, compliance_type: str, rows: list[dict[str, Any]]
) -> None:
    await conn.execute(
        compliance_items.delete().where(
            compliance_items.c.node_id == node_id,
            compliance_items.c.compliance_type == compliance_type,
        )
    )
    if rows:
        await conn.execute(compliance_items.insert(), rows)


async def summary(
    conn: AsyncConnection, node_id: str, compliance_type: str
) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.select(compliance_summaries).where(
            compliance_summaries.c.node_id == node_id,
            compliance_summaries.c.compliance_type == compliance_type,
        )
    )
    row = result.mappings().first()
    return dict(row) if row else None


async def put_summary(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(
        compliance_summaries.delete().where(
            compliance_summaries.c.node_id == row["node_id"],
            compliance_summaries.c.compliance_type == row["compliance_type"],
        )
    )
    await conn.execute(compliance_summaries.insert().values(**row))


async def types_of(conn: AsyncConnection, node_id: str) -> list[str]:
    result = await conn.execute(
        sa.select(compliance_summaries.c.compliance_type).where(
            compliance_summaries.c.node_id == node_id
        )
    )
    return [str(r[0]) for r in result]


async def summaries_of(conn: AsyncConnection, node_id: str) -> list[dict[str, Any]]:
    result = await conn.execute(
        sa.select(compliance_summaries)
        .where(compliance_summaries.c.node_id == node_id)
        .order_by(compliance_summaries.c.compliance_type)
    )
    return [dict(r) for r in result.mappings()]


async def summaries_page(
    conn: AsyncConnection,
    *,
    compliance_type: str | None,
    status: str | None,
    limit: int,
    after: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """(node, type) summaries of registered nodes, by node id then type."""
    query = (
        sa.select(compliance_summaries)
        .join(nodes, nodes.c.id == compliance_summaries.c.node_id)
        .where(nodes.c.deregistered_at.is_(None))
    )
    if compliance_type is not None:
        query = query.where(compliance_summaries.c.compliance_type == compliance_type)
    if status is not None:
        query = query.where(compliance_summaries.c.status == status)
    if after is not None:
        query = query.where(
            sa.tuple_(compliance_summaries.c.node_id, compliance_summaries.c.compliance_type)
            > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
        )
    query = query.order_by(
        compliance_summaries.c.node_id, compliance_summaries.c.compliance_type
    ).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def items_page(
    conn: AsyncConnection,
    node_id: str,
    *,
    compliance_type: str | None,
    status: str | None,
    limit: int,
    after: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The node's items by type then id."""
    query = sa.select(compliance_items).where(compliance_items.c.node_id == node_id)
    if compliance_type is not None:
        query = query.where(compliance_items.c.compliance_type == compliance_type)
    if status is not None:
        query = query.where(compliance_items.c.status == status)
    if after is not None:
        query = query.where(
            sa.tuple_(compliance_items.c.compliance_type, compliance_items.c.item_id)
            > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
        )
    query = query.order_by(compliance_items.c.compliance_type, compliance_items.c.item_id)
    return [dict(r) for r in (await conn.execute(query.limit(limit))).mappings()]


async def add_history(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(compliance_history.insert(), rows)


async def history_page(
    conn: AsyncConnection,
    node_id: str,
    *,
    compliance_type: str | None,
    limit: int,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """The node's history, newest first (by id: the order the server recorded it)."""
    query = sa.select(compliance_history).where(compliance_history.c.node_id == node_id)
    if compliance_type is not None:
        query = query.where(compliance_history.c.compliance_type == compliance_type)
    if before is not None:
        query = query.where(compliance_history.c.id < before)
    query = query.order_by(compliance_history.c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def prune_history(conn: AsyncConnection, before: float) -> int:
    result = await conn.execute(
        compliance_history.delete().where(compliance_history.c.time < before)
    )
    return int(result.rowcount or 0)
