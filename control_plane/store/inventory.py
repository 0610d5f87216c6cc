"""Inventory's queries (tables: store/inventory_tables.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.inventory_tables import (
    inventory_changes,
    inventory_custom_types,
    inventory_items,
    inventory_nodes,
    inventory_parts,
    inventory_types,
)
from control_plane.store.schema import node_tags, nodes

items_t = inventory_items


def _upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    return sqlite_insert(table) if conn.dialect.name == "sqlite" else postgresql_insert(table)


# Parts -------------------------------------------------------------------------------------
async def add_part(conn: AsyncConnection, row: dict[str, Any]) -> None:
    statement = _upsert(conn, inventory_parts).values(**row).on_conflict_do_nothing()
    await conn.execute(statement)


async def parts_of(
    conn: AsyncConnection, node_id: str, type_name: str, content_hash: str
) -> list[dict[str, Any]]:
    result = await conn.execute(
        sa.select(inventory_parts)
        .where(
            inventory_parts.c.node_id == node_id,
            inventory_parts.c.type_name == type_name,
            inventory_parts.c.content_hash == content_hash,
        )
        .order_by(inventory_parts.c.part)
    )
    return [dict(r) for r in result.mappings()]


async def pending_hashes(conn: AsyncConnection, node_id: str) -> set[tuple[str, str]]:
    """(type, content hash) of the node's incomplete uploads."""
    result = await conn.execute(
        sa.select(inventory_parts.c.type_name, inventory_parts.c.content_hash)
        .where(inventory_parts.c.node_id == node_id)
        .distinct()
    )
    return {(str(r[0]), str(r[1])) for r in result}


async def drop_parts(conn: AsyncConnection, node_id: str, type_name: str) -> None:
    await conn.execute(
        inventory_parts.delete().where(
            inventory_parts.c.node_id == node_id, inventory_parts.c.type_name == type_name
        )
    )


async def prune_parts(conn: AsyncConnection, before: float) -> int:
    result = await conn.execute(
        inventory_parts.delete().where(inventory_parts.c.received_at < before)
    )
    return int(result.rowcount or 0)


# Types and items ---------------------------------------------------------------------------
async def type_row(conn: AsyncConnection, node_id: str, type_name: str) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.select(inventory_types).where(
            inventory_types.c.node_id == node_id, inventory_types.c.type_name == type_name
        )
    )
    row = result.mappings().first()
    return dict(row) if row else None


async def types_of(conn: AsyncConnection, node_id: str) -> list[dict[str, Any]]:
    result = await conn.execute(
        sa.select(inventory_types)
        .where(inventory_types.c.node_id == node_id)
        .order_by(inventory_types.c.type_name)
    )
    return [dict(r) for r in result.mappings()]


async def put_type(conn: AsyncConnection, row: dict[str, Any]) -> None:
    statement = _upsert(conn, inventory_types).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=["node_id", "type_name"],
        set_={k: statement.excluded[k] for k in row if k not in ("node_id", "type_name")},
    )
    await conn.execute(statement)


async def delete_type(conn: AsyncConnection, node_id: str, type_name: str) -> None:
    for table in (inventory_types, inventory_items):
        await conn.execute(
            table.delete().where(table.c.node_id == node_id, table.c.type_name == type_name)
        )


async def item_rows(conn: AsyncConnection, node_id: str, type_name: str) -> dict[str, Any]:
    """The node's items of the type: item key -> (row id, data)."""
    result = await conn.execute(
        sa.select(items_t.c.id, items_t.c.item_key, items_t.c.data).where(
            items_t.c.node_id == node_id, items_t.c.type_name == type_name
        )
    )
    return {str(r[1]): (int(r[0]), r[2]) for r in result}


async def insert_items(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(items_t.insert(), rows)


async def delete_items(conn: AsyncConnection, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 500):
        await conn.execute(items_t.delete().where(items_t.c.id.in_(ids[start : start + 500])))


async def update_items(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Rows with ``row_id`` and the new columns."""
    if rows:
        await conn.execute(
            items_t.update()
            .where(items_t.c.id == sa.bindparam("row_id"))
            .values(
                name=sa.bindparam("name"),
                version=sa.bindparam("version"),
                manager=sa.bindparam("manager"),
                version_key=sa.bindparam("version_key"),
                data=sa.bindparam("data"),
            ),
            rows,
        )


async def items_page(
    conn: AsyncConnection, node_id: str, type_name: str, after: int | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        sa.select(items_t.c.id, items_t.c.data)
        .where(items_t.c.node_id == node_id, items_t.c.type_name == type_name)
        .order_by(items_t.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(items_t.c.id > after)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def search(
    conn: AsyncConnection,
    type_name: str,
    conditions: list[sa.ColumnElement[bool]],
    node_ids: Sequence[str] | None,
    after: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Items of the type across registered nodes matching every condition, by row id."""
    query = (
        sa.select(items_t.c.id, items_t.c.node_id, items_t.c.data)
        .where(items_t.c.type_name == type_name, *conditions)
        .order_by(items_t.c.id)
        .limit(limit)
    )
    if node_ids is not None:
        query = query.where(items_t.c.node_id.in_(node_ids))
    if after is not None:
        query = query.where(items_t.c.id > after)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def group_counts(
    conn: AsyncConnection,
    type_name: str,
    columns: list[sa.ColumnElement[Any]],
    conditions: list[sa.ColumnElement[bool]],
    node_ids: Sequence[str] | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """(values..., distinct nodes, items) per group of ``columns``, at most ``limit`` groups."""
    query = (
        sa.select(
            *columns,
            sa.func.count(sa.distinct(items_t.c.node_id)),
            sa.func.count(),
        )
        .where(items_t.c.type_name == type_name, *conditions)
        .group_by(*columns)
        .limit(limit)
    )
    if node_ids is not None:
        query = query.where(items_t.c.node_id.in_(node_ids))
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def delete_type_everywhere(conn: AsyncConnection, type_name: str) -> tuple[list[str], int]:
    """Drop a type from every node: (the nodes that had it, items removed)."""
    result = await conn.execute(
        sa.select(inventory_types.c.node_id).where(inventory_types.c.type_name == type_name)
    )
    node_ids = [str(r[0]) for r in result]
    removed = await conn.execute(items_t.delete().where(items_t.c.type_name == type_name))
    for table in (inventory_types, inventory_parts):
        await conn.execute(table.delete().where(table.c.type_name == type_name))
    await conn.execute(
        inventory_custom_types.delete().where(inventory_custom_types.c.type_name == type_name)
    )
    return node_ids, int(removed.rowcount or 0)


# Node summaries ----------------------------------------------------------------------------
async def put_node(conn: AsyncConnection, row: dict[str, Any]) -> None:
    statement = _upsert(conn, inventory_nodes).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=["node_id"],
        set_={k: statement.excluded[k] for k in row if k != "node_id"},
    )
    await conn.execute(statement)


async def node_row(conn: AsyncConnection, node_id: str) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.select(inventory_nodes).where(inventory_nodes.c.node_id == node_id)
    )
    row = result.mappings().first()
    return dict(row) if row else None


async def registered_nodes(conn: AsyncConnection) -> list[tuple[str, dict[str, str]]]:
    """(node id, tags) of every registered node (for a caller's visible set)."""
    result = await conn.execute(sa.select(nodes.c.id).where(nodes.c.deregistered_at.is_(None)))
    ids = [str(r[0]) for r in result]
    tags: dict[str, dict[str, str]] = {}
    rows = await conn.execute(sa.select(node_tags.c.node_id, node_tags.c.key, node_tags.c.value))
    for node_id, key, value in rows:
        tags.setdefault(str(node_id), {})[str(key)] = str(value)
    return [(node_id, tags.get(node_id, {})) for node_id in ids]


async def node_active(conn: AsyncConnection, node_id: str) -> bool:
    result = await conn.execute(
        sa.select(nodes.c.id).where(nodes.c.id == node_id, nodes.c.deregistered_at.is_(None))
    )
    return result.first() is not None


# History -----------------------------------------------------------------------------------
async def add_changes(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(inventory_changes.insert(), rows)


async def changes_page(
    conn: AsyncConnection,
    node_id: str,
    *,
    since: float | None,
    type_name: str | Sequence[str] | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The node's changes (of one type, or of several), newest first."""
    c = inventory_changes.c
    query = sa.select(inventory_changes).where(c.node_id == node_id)
    if since is not None:
        query = query.where(c.time >= since)
    if isinstance(type_name, str):
        query = query.where(c.type_name == type_name)
    elif type_name is not None:
        query = query.where(c.type_name.in_(list(type_name)))
    if before_id is not None:
        query = query.where(c.id < before_id)
    query = query.order_by(c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def prune_changes(conn: AsyncConnection, before: float) -> int:
    result = await conn.execute(inventory_changes.delete().where(inventory_changes.c.time < before))
    return int(result.rowcount or 0)


# Custom types ------------------------------------------------------------------------------
async def custom_types(conn: AsyncConnection) -> dict[str, list[str]]:
    result = await conn.execute(sa.select(inventory_custom_types))
    return {str(r.type_name): list(r.attributes) for r in result}


async def put_custom_type(
    conn: AsyncConnection, type_name: str, attributes: list[str], now: float
) -> None:
    statement = _upsert(conn, inventory_custom_types).values(
        type_name=type_name, attributes=attributes, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["type_name"],
        set_={"attributes": statement.excluded.attributes, "updated_at": now},
    )
    await conn.execute(statement)
