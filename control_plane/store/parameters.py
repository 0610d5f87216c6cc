"""Parameters, their versions and the schedule of their policies."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import parameter_schedule, parameter_versions, parameters


async def get(conn: AsyncConnection, name: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The parameter; ``lock`` holds its row until the transaction ends (PostgreSQL; SQLite
    serialises writers anyway), so concurrent puts get distinct versions."""
    query = sa.select(parameters).where(parameters.c.name == name)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(parameters.insert().values(**row))


async def update(conn: AsyncConnection, name: str, **values: Any) -> None:
    await conn.execute(parameters.update().where(parameters.c.name == name).values(**values))


async def delete(conn: AsyncConnection, name: str) -> bool:
    await conn.execute(parameter_versions.delete().where(parameter_versions.c.name == name))
    await conn.execute(parameter_schedule.delete().where(parameter_schedule.c.name == name))
    result = await conn.execute(parameters.delete().where(parameters.c.name == name))
    return result.rowcount > 0


async def insert_version(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(parameter_versions.insert().values(**row))


async def versions(conn: AsyncConnection, name: str) -> list[dict[str, Any]]:
    result = await conn.execute(
        sa.select(parameter_versions)
        .where(parameter_versions.c.name == name)
        .order_by(parameter_versions.c.version)
    )
    return [dict(r) for r in result.mappings()]


async def get_version(conn: AsyncConnection, name: str, version: int) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.select(parameter_versions).where(
            parameter_versions.c.name == name, parameter_versions.c.version == version
        )
    )
    row = result.mappings().first()
    return dict(row) if row else None


async def set_labels(conn: AsyncConnection, name: str, version: int, labels: list[str]) -> None:
    await conn.execute(
        parameter_versions.update()
        .where(parameter_versions.c.name == name, parameter_versions.c.version == version)
        .values(labels=labels)
    )


async def delete_version(conn: AsyncConnection, name: str, version: int) -> None:
    await conn.execute(
        parameter_versions.delete().where(
            parameter_versions.c.name == name, parameter_versions.c.version == version
        )
    )


async def under_path(
    conn: AsyncConnection, path: str, *, limit: int, after: str | None = None
) -> list[dict[str, Any]]:
    """Parameters whose name starts with ``path`` + "/" (at any depth), by name."""
    prefix = path.rstrip("/") + "/"
    query = sa.select(parameters).where(parameters.c.name.startswith(prefix, autoescape=True))
    if after is not None:
        query = query.where(parameters.c.name > after)
    result = await conn.execute(query.order_by(parameters.c.name).limit(limit))
    return [dict(r) for r in result.mappings()]


async def list_page(
    conn: AsyncConnection, *, type_: str | None, limit: int, after: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(parameters)
    if type_ is not None:
        query = query.where(parameters.c.type == type_)
    if after is not None:
        query = query.where(parameters.c.name > after)
    result = await conn.execute(query.order_by(parameters.c.name).limit(limit))
    return [dict(r) for r in result.mappings()]


async def current_values(
    conn: AsyncConnection, rows: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The current version row of each parameter (one query)."""
    if not rows:
        return {}
    pairs = [(r["name"], r["version"]) for r in rows]
    result = await conn.execute(
        sa.select(parameter_versions).where(
            sa.tuple_(parameter_versions.c.name, parameter_versions.c.version).in_(pairs)
        )
    )
    return {r["name"]: dict(r) for r in result.mappings()}


async def secure_versions(conn: AsyncConnection) -> list[dict[str, Any]]:
    result = await conn.execute(
        sa.select(parameter_versions).where(parameter_versions.c.type == "SecureString")
    )
    return [dict(r) for r in result.mappings()]


async def set_value(conn: AsyncConnection, name: str, version: int, value: str) -> None:
    await conn.execute(
        parameter_versions.update()
        .where(parameter_versions.c.name == name, parameter_versions.c.version == version)
        .values(value=value)
    )


# The policies' schedule ---------------------------------------------------------------------
async def replace_schedule(
    conn: AsyncConnection, name: str, fires: list[tuple[str, float]]
) -> None:
    await conn.execute(parameter_schedule.delete().where(parameter_schedule.c.name == name))
    if fires:
        await conn.execute(
            parameter_schedule.insert(),
            [{"name": name, "event": e, "fire_at": at, "fired_at": None} for e, at in fires],
        )


async def due(conn: AsyncConnection, now: float, limit: int = 500) -> list[dict[str, Any]]:
    result = await conn.execute(
        sa.select(parameter_schedule)
        .where(parameter_schedule.c.fired_at.is_(None), parameter_schedule.c.fire_at <= now)
        .order_by(parameter_schedule.c.fire_at)
        .limit(limit)
    )
    return [dict(r) for r in result.mappings()]


async def next_due(conn: AsyncConnection) -> float | None:
    result = await conn.execute(
        sa.select(sa.func.min(parameter_schedule.c.fire_at)).where(
            parameter_schedule.c.fired_at.is_(None)
        )
    )
    value = result.scalar()
    return float(value) if value is not None else None


async def mark_fired(conn: AsyncConnection, name: str, event: str, now: float) -> None:
    await conn.execute(
        parameter_schedule.update()
        .where(parameter_schedule.c.name == name, parameter_schedule.c.event == event)
        .values(fired_at=now)
    )
