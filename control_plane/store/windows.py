"""Maintenance windows, their targets and tasks, and their executions (services/windows/).

A start is claimed by :func:`claim`: a conditional UPDATE of ``next_run_at`` from the value the
scheduler read, in the transaction that inserts the execution; a second claimer of the same
start updates nothing (and the unique (window_id, scheduled_at) refuses a second row)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import (
    commands,
    maintenance_windows,
    window_executions,
    window_targets,
    window_task_executions,
    window_tasks,
)

W = maintenance_windows
E = window_executions
TE = window_task_executions


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in result.mappings()]


# Windows ------------------------------------------------------------------------------------


async def insert_window(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(W.insert().values(**row))


async def get_window(conn: AsyncConnection, window_id: str) -> dict[str, Any] | None:
    found = _rows(await conn.execute(sa.select(W).where(W.c.id == window_id)))
    return found[0] if found else None


async def list_windows(
    conn: AsyncConnection, limit: int, after: tuple[str] | None = None
) -> list[dict[str, Any]]:
    query = sa.select(W).order_by(W.c.id).limit(limit)
    if after is not None:
        query = query.where(W.c.id > after[0])
    return _rows(await conn.execute(query))


async def update_window(conn: AsyncConnection, window_id: str, **values: Any) -> bool:
    result = await conn.execute(W.update().where(W.c.id == window_id).values(**values))
    return bool(result.rowcount)


async def delete_window(conn: AsyncConnection, window_id: str) -> bool:
    # The executions' task rows go with their executions (ON DELETE CASCADE is not enforced
    # by every SQLite connection: delete children explicitly).
    runs = sa.select(E.c.id).where(E.c.window_id == window_id)
    await conn.execute(TE.delete().where(TE.c.window_execution_id.in_(runs)))
    await conn.execute(E.delete().where(E.c.window_id == window_id))
    await conn.execute(window_tasks.delete().where(window_tasks.c.window_id == window_id))
    await conn.execute(window_targets.delete().where(window_targets.c.window_id == window_id))
    result = await conn.execute(W.delete().where(W.c.id == window_id))
    return bool(result.rowcount)


async def due_windows(conn: AsyncConnection, now: float) -> list[dict[str, Any]]:
    query = (
        sa.select(W)
        .where(W.c.enabled.is_(True), W.c.next_run_at.is_not(None), W.c.next_run_at <= now)
        .order_by(W.c.next_run_at)
    )
    return _rows(await conn.execute(query))


async def next_start(conn: AsyncConnection) -> float | None:
    value = await conn.scalar(sa.select(sa.func.min(W.c.next_run_at)).where(W.c.enabled.is_(True)))
    return float(value) if value is not None else None


async def claim(
    conn: AsyncConnection, window_id: str, seen: float, next_run_at: float | None
) -> bool:
    """Move the window's next start from ``seen`` to ``next_run_at``; False: someone else
    did (or the window changed) since it was read."""
    result = await conn.execute(
        W.update()
        .where(W.c.id == window_id, W.c.enabled.is_(True), W.c.next_run_at == seen)
        .values(next_run_at=next_run_at)
    )
    return bool(result.rowcount)


# Targets and tasks --------------------------------------------------------------------------


async def insert_target(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(window_targets.insert().values(**row))


async def targets_of(conn: AsyncConnection, window_id: str) -> list[dict[str, Any]]:
    t = window_targets
    query = sa.select(t).where(t.c.window_id == window_id).order_by(t.c.created_at, t.c.id)
    return _rows(await conn.execute(query))


async def delete_target(conn: AsyncConnection, window_id: str, target_id: str) -> bool:
    t = window_targets
    result = await conn.execute(t.delete().where(t.c.window_id == window_id, t.c.id == target_id))
    return bool(result.rowcount)


async def insert_task(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(window_tasks.insert().values(**row))


async def tasks_of(conn: AsyncConnection, window_id: str) -> list[dict[str, Any]]:
    t = window_tasks
    query = sa.select(t).where(t.c.window_id == window_id).order_by(t.c.priority, t.c.created_at)
    return _rows(await conn.execute(query))


async def delete_task(conn: AsyncConnection, window_id: str, task_id: str) -> bool:
    t = window_tasks
    result = await conn.execute(t.delete().where(t.c.window_id == window_id, t.c.id == task_id))
    return bool(result.rowcount)


# Executions ---------------------------------------------------------------------------------


async def insert_execution(
    conn: AsyncConnection, row: dict[str, Any], tasks: list[dict[str, Any]]
) -> None:
    await conn.execute(E.insert().values(**row))
    if tasks:
        await conn.execute(TE.insert(), tasks)


async def get_execution(conn: AsyncConnection, execution_id: str) -> dict[str, Any] | None:
    found = _rows(await conn.execute(sa.select(E).where(E.c.id == execution_id)))
    return found[0] if found else None


async def executions_with_status(
    conn: AsyncConnection, statuses: Iterable[str], window_id: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(E).where(E.c.status.in_(list(statuses))).order_by(E.c.start_time)
    if window_id is not None:
        query = query.where(E.c.window_id == window_id)
    return _rows(await conn.execute(query))


async def executions_of(
    conn: AsyncConnection, window_id: str, limit: int, after: tuple[float, str] | None = None
) -> list[dict[str, Any]]:
    """Newest first; ``after``: (scheduled_at, id) of the last one seen."""
    query = (
        sa.select(E)
        .where(E.c.window_id == window_id)
        .order_by(E.c.scheduled_at.desc(), E.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.or_(
                E.c.scheduled_at < after[0],
                sa.and_(E.c.scheduled_at == after[0], E.c.id > after[1]),
            )
        )
    return _rows(await conn.execute(query))


async def update_execution(conn: AsyncConnection, execution_id: str, **values: Any) -> None:
    await conn.execute(E.update().where(E.c.id == execution_id).values(**values))


async def task_executions_of(conn: AsyncConnection, execution_id: str) -> list[dict[str, Any]]:
    query = (
        sa.select(TE)
        .where(TE.c.window_execution_id == execution_id)
        .order_by(TE.c.priority, TE.c.id)
    )
    return _rows(await conn.execute(query))


async def update_task_execution(
    conn: AsyncConnection, task_execution_id: str, **values: Any
) -> None:
    await conn.execute(TE.update().where(TE.c.id == task_execution_id).values(**values))


async def command_states(
    conn: AsyncConnection, command_ids: list[str]
) -> dict[str, tuple[str, float | None]]:
    """The commands among ``command_ids`` that exist: id -> (status, completed_at)."""
    if not command_ids:
        return {}
    query = sa.select(commands.c.id, commands.c.status, commands.c.completed_at).where(
        commands.c.id.in_(command_ids)
    )
    return {r.id: (r.status, r.completed_at) for r in await conn.execute(query)}
