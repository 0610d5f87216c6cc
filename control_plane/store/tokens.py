"""Operator tokens (stored as digests only) and stored policies (the roles)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import policies, tokens

_PUBLIC = [c for c in tokens.c if c.name != "secret_digest"]


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(tokens.insert().values(**row))


async def by_digest(conn: AsyncConnection, digest: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(tokens).where(tokens.c.secret_digest == digest))
    row = result.mappings().first()
    return dict(row) if row else None


async def active_digests(conn: AsyncConnection, now: float) -> list[str]:
    """The digests of the tokens that may authenticate now (not revoked, not expired)."""
    query = sa.select(tokens.c.secret_digest).where(
        tokens.c.revoked_at.is_(None),
        sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
    )
    return list((await conn.execute(query)).scalars())


async def get(conn: AsyncConnection, token_id: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(*_PUBLIC).where(tokens.c.id == token_id))
    row = result.mappings().first()
    return dict(row) if row else None


async def list_all(conn: AsyncConnection) -> list[dict[str, Any]]:
    result = await conn.execute(sa.select(*_PUBLIC).order_by(tokens.c.created_at, tokens.c.id))
    return [dict(r) for r in result.mappings()]


async def revoke(conn: AsyncConnection, token_id: str, now: float) -> bool:
    result = await conn.execute(
        tokens.update()
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount > 0


async def get_policy(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(policies).where(policies.c.name == name))
    row = result.mappings().first()
    return dict(row) if row else None


async def list_policies(conn: AsyncConnection) -> list[dict[str, Any]]:
    result = await conn.execute(sa.select(policies).order_by(policies.c.name))
    return [dict(r) for r in result.mappings()]


async def put_builtin_policy(
    conn: AsyncConnection, name: str, document: dict[str, Any], now: float
) -> None:
    """Insert or refresh a built-in role (an upgrade may change what a role allows)."""
    current = await get_policy(conn, name)
    if current is None:
        await conn.execute(
            policies.insert().values(name=name, document=document, builtin=True, updated_at=now)
        )
    elif current["document"] != document:
        await conn.execute(
            policies.update()
            .where(policies.c.name == name)
            .values(document=document, builtin=True, updated_at=now)
        )
