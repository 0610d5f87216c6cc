"""Hybrid activations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import activations


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(activations.insert().values(**row))


async def get(conn: AsyncConnection, activation_id: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(activations).where(activations.c.id == activation_id))
    row = result.mappings().first()
    return dict(row) if row else None


async def list_all(conn: AsyncConnection) -> list[dict[str, Any]]:
    result = await conn.execute(sa.select(activations).order_by(activations.c.created_at))
    return [dict(r) for r in result.mappings()]


async def delete(conn: AsyncConnection, activation_id: str) -> bool:
    result = await conn.execute(activations.delete().where(activations.c.id == activation_id))
    return result.rowcount > 0


async def claim_registration(conn: AsyncConnection, activation_id: str) -> bool:
    """Count one registration, atomically refusing past the limit."""
    result = await conn.execute(
        activations.update()
        .where(
            activations.c.id == activation_id,
            activations.c.registrations_count < activations.c.registration_limit,
        )
        .values(registrations_count=activations.c.registrations_count + 1)
    )
    return result.rowcount == 1
