"""Managed nodes and their tags."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import node_tags, nodes


async def insert(conn: AsyncConnection, row: dict[str, Any], tags: dict[str, str]) -> None:
    await conn.execute(nodes.insert().values(**row))
    await set_tags(conn, row["id"], tags)


async def get(conn: AsyncConnection, node_id: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(nodes).where(nodes.c.id == node_id))
    row = result.mappings().first()
    return dict(row) if row else None


async def list_ids_with_tags(
    conn: AsyncConnection, tag_filters: list[tuple[str, str]]
) -> list[str]:
    query = sa.select(nodes.c.id).order_by(nodes.c.registered_at, nodes.c.id)
    for key, value in tag_filters:
        query = query.where(
            sa.exists().where(
                node_tags.c.node_id == nodes.c.id,
                node_tags.c.key == key,
                node_tags.c.value == value,
            )
        )
    return list((await conn.execute(query)).scalars())


async def list_rows(
    conn: AsyncConnection,
    node_ids: list[str] | None = None,
    *,
    after: tuple[Any, ...] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """In registration order; ``after``: (registered_at, id) of the last row seen."""
    query = sa.select(nodes).order_by(nodes.c.registered_at, nodes.c.id)
    if node_ids is not None:
        query = query.where(nodes.c.id.in_(node_ids))
    if after is not None:
        query = query.where(
            sa.or_(
                nodes.c.registered_at > after[0],
                sa.and_(nodes.c.registered_at == after[0], nodes.c.id > after[1]),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def live_ids(conn: AsyncConnection, node_ids: list[str]) -> list[str]:
    """Those of ``node_ids`` still registered, in the order given."""
    live: set[str] = set()
    for start in range(0, len(node_ids), 500):
        chunk = node_ids[start : start + 500]
        rows = await conn.execute(
            sa.select(nodes.c.id).where(nodes.c.id.in_(chunk), nodes.c.deregistered_at.is_(None))
        )
        live.update(r.id for r in rows)
    return [n for n in node_ids if n in live]


async def tags_for(conn: AsyncConnection, node_ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {n: {} for n in node_ids}
    if not node_ids:
        return out
    result = await conn.execute(
        sa.select(node_tags).where(node_tags.c.node_id.in_(node_ids)).order_by(node_tags.c.key)
    )
    for row in result.mappings():
        out[row["node_id"]][row["key"]] = row["value"]
    return out


async def set_tags(conn: AsyncConnection, node_id: str, tags: dict[str, str]) -> None:
    if not tags:
        return
    await conn.execute(
        node_tags.delete().where(node_tags.c.node_id == node_id, node_tags.c.key.in_(list(tags)))
    )
    await conn.execute(
        node_tags.insert(), [{"node_id": node_id, "key": k, "value": v} for k, v in tags.items()]
    )


async def remove_tags(conn: AsyncConnection, node_id: str, keys: list[str]) -> None:
    await conn.execute(
        node_tags.delete().where(node_tags.c.node_id == node_id, node_tags.c.key.in_(keys))
    )


async def update(conn: AsyncConnection, node_id: str, **values: Any) -> None:
    await conn.execute(nodes.update().where(nodes.c.id == node_id).values(**values))


async def update_last_seen(conn: AsyncConnection, seen: dict[str, float]) -> None:
    if not seen:
        return
    stmt = (
        nodes.update()
        .where(nodes.c.id == sa.bindparam("nid"))
        .values(last_seen=sa.bindparam("seen"))
    )
    await conn.execute(stmt, [{"nid": k, "seen": v} for k, v in seen.items()])


async def generations(conn: AsyncConnection) -> dict[str, tuple[int, bool]]:
    """Every node's credential generation and whether it is deregistered (for the token cache)."""
    result = await conn.execute(sa.select(nodes.c.id, nodes.c.generation, nodes.c.deregistered_at))
    return {r.id: (r.generation, r.deregistered_at is not None) for r in result}
