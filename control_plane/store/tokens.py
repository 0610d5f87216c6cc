"""Operator tokens (stored as digests only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import tokens


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(tokens.insert().values(**row))


async def by_digest(conn: AsyncConnection, digest: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(tokens).where(tokens.c.secret_digest == digest))
    row = result.mappings().first()
    return dict(row) if row else None
