"""Webhooks and their pending deliveries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import webhook_deliveries, webhooks


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(webhooks.insert().values(**row))


async def list_all(conn: AsyncConnection) -> list[dict[str, Any]]:
    result = await conn.execute(sa.select(webhooks).order_by(webhooks.c.created_at))
    return [dict(r) for r in result.mappings()]


async def get(conn: AsyncConnection, webhook_id: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id))
    row = result.mappings().first()
    return dict(row) if row else None


async def delete(conn: AsyncConnection, webhook_id: str) -> bool:
    await conn.execute(
        webhook_deliveries.delete().where(webhook_deliveries.c.webhook_id == webhook_id)
    )
    return (await conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))).rowcount > 0


async def enqueue(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(webhook_deliveries.insert(), rows)


async def due(conn: AsyncConnection, now: float, limit: int) -> list[dict[str, Any]]:
    query = (
        sa.select(webhook_deliveries, webhooks.c.url, webhooks.c.secret, webhooks.c.created_by)
        .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
        .where(webhook_deliveries.c.next_attempt_at <= now)
        .order_by(webhook_deliveries.c.id)
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def delivered(conn: AsyncConnection, delivery_id: int) -> None:
    await conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.id == delivery_id))


async def retry_later(
    conn: AsyncConnection, delivery_id: int, attempts: int, at: float, error: str
) -> None:
    await conn.execute(
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id == delivery_id)
        .values(attempts=attempts, next_attempt_at=at, last_error=error[:256])
    )
