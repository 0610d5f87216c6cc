"""Session Manager's queries (table: store/session_tables.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.session_tables import sessions

ACTIVE = ("Connecting", "Connected", "Disconnected")


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(sessions.insert().values(**row))


async def update(conn: AsyncConnection, session_id: str, **values: Any) -> None:
    await conn.execute(
        sessions.update().where(sessions.c.session_id == session_id).values(**values)
    )


async def get(conn: AsyncConnection, session_id: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id))
    row = result.mappings().first()
    return dict(row) if row else None


async def page(
    conn: AsyncConnection,
    *,
    active: bool,
    node_id: str | None,
    after: tuple[float, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first; ``after`` is the (created_at, session_id) the previous page ended at."""
    query = sa.select(sessions)
    status = sessions.c.status.in_(ACTIVE)
    query = query.where(status if active else sa.not_(status))
    if node_id is not None:
        query = query.where(sessions.c.node_id == node_id)
    if after is not None:
        created, sid = after
        query = query.where(
            sa.or_(
                sessions.c.created_at < created,
                sa.and_(sessions.c.created_at == created, sessions.c.session_id < sid),
            )
        )
    query = query.order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc()).limit(limit)
    result = await conn.execute(query)
    return [dict(r) for r in result.mappings()]


async def active_ids(conn: AsyncConnection) -> list[str]:
    """Sessions a previous run of the server left open (ended at start: their relay is gone)."""
    result = await conn.execute(
        sa.select(sessions.c.session_id).where(sessions.c.status.in_(ACTIVE))
    )
    return [str(r[0]) for r in result]
