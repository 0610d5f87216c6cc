"""Patch Manager's queries (tables: store/patch_tables.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.inventory_tables import inventory_items
from control_plane.store.patch_tables import (
    patch_baselines,
    patch_defaults,
    patch_groups,
    patch_snapshots,
)
from control_plane.store.schema import nodes


# Baselines ---------------------------------------------------------------------------------
async def insert_baseline(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(patch_baselines.insert().values(**row))


async def update_baseline(conn: AsyncConnection, baseline_id: str, **values: Any) -> None:
    await conn.execute(
        patch_baselines.update().where(patch_baselines.c.id == baseline_id).values(**values)
    )


async def baseline(conn: AsyncConnection, baseline_id: str) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.select(patch_baselines).where(patch_baselines.c.id == baseline_id)
    )
    row = result.mappings().first()
    return dict(row) if row else None


async def baseline_named(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    result = await conn.execute(sa.select(patch_baselines).where(patch_baselines.c.name == name))
    row = result.mappings().first()
    return dict(row) if row else None


async def baselines(conn: AsyncConnection, ids: list[str] | None = None) -> list[dict[str, Any]]:
    query = sa.select(patch_baselines).order_by(patch_baselines.c.name)
    if ids is not None:
        query = query.where(patch_baselines.c.id.in_(ids))
    result = await conn.execute(query)
    return [dict(r) for r in result.mappings()]


async def delete_baseline(conn: AsyncConnection, baseline_id: str) -> None:
    await conn.execute(patch_baselines.delete().where(patch_baselines.c.id == baseline_id))


# Defaults ----------------------------------------------------------------------------------
async def defaults(conn: AsyncConnection) -> dict[str, str]:
    result = await conn.execute(sa.select(patch_defaults))
    return {str(r.operating_system): str(r.baseline_id) for r in result}


async def set_default(conn: AsyncConnection, operating_system: str, baseline_id: str) -> None:
    await conn.execute(
        patch_defaults.delete().where(patch_defaults.c.operating_system == operating_system)
    )
    await conn.execute(
        patch_defaults.insert().values(operating_system=operating_system, baseline_id=baseline_id)
    )


async def clear_default(conn: AsyncConnection, operating_system: str) -> None:
    await conn.execute(
        patch_defaults.delete().where(patch_defaults.c.operating_system == operating_system)
    )


# Patch groups ------------------------------------------------------------------------------
async def group_baseline(
    conn: AsyncConnection, patch_group: str, operating_system: str
) -> str | None:
    result = await conn.execute(
        sa.select(patch_groups.c.baseline_id).where(
            patch_groups.c.patch_group == patch_group,
            patch_groups.c.operating_system == operating_system,
        )
    )
    found = result.scalar()
    return str(found) if found is not None else None


async def register_group(
    conn: AsyncConnection, patch_group: str, operating_system: str, baseline_id: str
) -> None:
    await conn.execute(
        patch_groups.insert().values(
            patch_group=patch_group, operating_system=operating_system, baseline_id=baseline_id
        )
    )


async def deregister_group(conn: AsyncConnection, patch_group: str, operating_system: str) -> int:
    result = await conn.execute(
        patch_groups.delete().where(
            patch_groups.c.patch_group == patch_group,
            patch_groups.c.operating_system == operating_system,
        )
    )
    return int(result.rowcount or 0)


async def groups(
    conn: AsyncConnection,
    *,
    baseline_id: str | None = None,
    names: list[str] | None = None,
) -> list[dict[str, Any]]:
    query = sa.select(patch_groups).order_by(
        patch_groups.c.patch_group, patch_groups.c.operating_system
    )
    if baseline_id is not None:
        query = query.where(patch_groups.c.baseline_id == baseline_id)
    if names is not None:
        query = query.where(patch_groups.c.patch_group.in_(names))
    result = await conn.execute(query)
    return [dict(r) for r in result.mappings()]


# Snapshots ---------------------------------------------------------------------------------
async def snapshot(conn: AsyncConnection, snapshot_id: str) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.select(patch_snapshots.c.content).where(patch_snapshots.c.snapshot_id == snapshot_id)
    )
    found = result.scalar()
    return dict(found) if isinstance(found, dict) else None


async def put_snapshot(
    conn: AsyncConnection, snapshot_id: str, content: dict[str, Any], now: float
) -> None:
    await conn.execute(
        patch_snapshots.insert().values(snapshot_id=snapshot_id, content=content, created_at=now)
    )


async def prune_snapshots(conn: AsyncConnection, before: float) -> int:
    result = await conn.execute(
        patch_snapshots.delete().where(patch_snapshots.c.created_at < before)
    )
    return int(result.rowcount or 0)


async def update_snapshot(conn: AsyncConnection, snapshot_id: str, content: dict[str, Any]) -> None:
    await conn.execute(
        patch_snapshots.update()
        .where(patch_snapshots.c.snapshot_id == snapshot_id)
        .values(content=content)
    )


# Per-node states (inventory's tables) ------------------------------------------------------
async def summaries(conn: AsyncConnection, type_name: str) -> list[tuple[str, dict[str, Any]]]:
    """(node id, AWS:PatchSummary item) of every registered node that has one."""
    i = inventory_items.c
    query = (
        sa.select(i.node_id, i.data)
        .join(nodes, nodes.c.id == i.node_id)
        .where(i.type_name == type_name, nodes.c.deregistered_at.is_(None))
    )
    return [(str(r[0]), dict(r[1])) for r in await conn.execute(query)]
