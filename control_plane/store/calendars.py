"""Change calendars (services/calendars/)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import change_calendars as C


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(C.insert().values(**row))


async def get(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    found = (await conn.execute(sa.select(C).where(C.c.name == name))).mappings().first()
    return dict(found) if found else None


async def get_many(conn: AsyncConnection, names: list[str]) -> dict[str, dict[str, Any]]:
    rows = (await conn.execute(sa.select(C).where(C.c.name.in_(names)))).mappings()
    return {r["name"]: dict(r) for r in rows}


async def list_after(
    conn: AsyncConnection, limit: int, after: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(C).order_by(C.c.name).limit(limit)
    if after is not None:
        query = query.where(C.c.name > after)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def delete(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(C.delete().where(C.c.name == name))
    return bool(result.rowcount)
