"""Commands and their per-node invocations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.wire import TERMINAL_STATUSES
from control_plane.store.schema import commands, invocations, nodes

# status is none of the final ones; as SQL constants (our own words), because an executemany
# cannot expand a bound list.
NOT_FINAL = tuple(
    invocations.c.status != sa.literal_column(f"'{s}'") for s in sorted(TERMINAL_STATUSES)
)


async def insert(
    conn: AsyncConnection, row: dict[str, Any], node_ids: list[str], now: float
) -> None:
    await insert_many(conn, [(row, node_ids)], now)


async def insert_many(
    conn: AsyncConnection, rows: list[tuple[dict[str, Any], list[str]]], now: float
) -> None:
    """Commands with their nodes, in two statements (a scheduler's batch)."""
    if not rows:
        return
    await conn.execute(commands.insert(), [row for row, _nodes in rows])
    await conn.execute(
        invocations.insert(),
        [
            {
                "command_id": row["id"],
                "node_id": node_id,
                "seq": seq,
                "status": "Pending",
                "status_details": "Pending",
                "steps": [],
                "updated_at": now,
            }
            for row, node_ids in rows
            for seq, node_id in enumerate(node_ids)
        ],
    )


async def get(conn: AsyncConnection, command_id: str) -> dict[str, Any] | None:
    row = (
        (await conn.execute(sa.select(commands).where(commands.c.id == command_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def list_commands(
    conn: AsyncConnection,
    status: str | None,
    node_id: str | None,
    limit: int,
    after: tuple[float, str] | None = None,
) -> list[dict[str, Any]]:
    """Newest first (ties by id); ``after``: (created_at, id) of the last one seen."""
    query = sa.select(commands).order_by(commands.c.created_at.desc(), commands.c.id).limit(limit)
    if after is not None:
        query = query.where(
            sa.or_(
                commands.c.created_at < after[0],
                sa.and_(commands.c.created_at == after[0], commands.c.id > after[1]),
            )
        )
    if status:
        query = query.where(commands.c.status == status)
    if node_id:
        query = query.where(
            sa.exists().where(
                invocations.c.command_id == commands.c.id, invocations.c.node_id == node_id
            )
        )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def active_ids(conn: AsyncConnection) -> list[str]:
    query = (
        sa.select(commands.c.id)
        .where(commands.c.completed_at.is_(None))
        .order_by(commands.c.created_at)
    )
    return list((await conn.execute(query)).scalars())


async def invocations_of(
    conn: AsyncConnection,
    command_id: str,
    *,
    node_ids: list[str] | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The command's invocations in send order (``seq``), each with its node's name."""
    query = (
        sa.select(invocations, nodes.c.name.label("node_name"))
        .select_from(invocations.outerjoin(nodes, nodes.c.id == invocations.c.node_id))
        .where(invocations.c.command_id == command_id)
        .order_by(invocations.c.seq)
    )
    if node_ids is not None:
        query = query.where(invocations.c.node_id.in_(node_ids))
    if after_seq is not None:
        query = query.where(invocations.c.seq > after_seq)
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def invocation(conn: AsyncConnection, command_id: str, node_id: str) -> dict[str, Any] | None:
    query = sa.select(invocations).where(
        invocations.c.command_id == command_id, invocations.c.node_id == node_id
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def update_invocations(
    conn: AsyncConnection, command_id: str, changes: dict[str, dict[str, Any]]
) -> None:
    """Apply per-node column changes to one command's invocations."""
    await update_invocations_at(
        conn, {(command_id, n): v for n, v in changes.items()}, unless_final=True
    )


async def invocations_at(
    conn: AsyncConnection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The invocations at (command id, node id) keys (those that exist), in one query."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for start in range(0, len(keys), 400):  # bound the statement's parameters
        chunk = keys[start : start + 400]
        query = sa.select(invocations).where(
            sa.tuple_(invocations.c.command_id, invocations.c.node_id).in_(chunk)
        )
        for row in (await conn.execute(query)).mappings():
            found[(row["command_id"], row["node_id"])] = dict(row)
    return found


async def update_invocations_at(
    conn: AsyncConnection,
    changes: dict[tuple[str, str], dict[str, Any]],
    *,
    unless_final: bool = False,
) -> None:
    """Apply column changes to invocations by (command id, node id): one executemany per set
    of columns changed, whatever the commands.  ``unless_final``: leave an invocation that is
    final in the database alone, whatever the caller read before: the dispatcher decides from
    memory and the agents' reports commit beside it, so without this guard a round could put
    a stored Success back to InProgress (the fault harness saw it)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (command_id, node_id), values in changes.items():
        groups.setdefault(tuple(sorted(values)), []).append(
            {"b_command": command_id, "b_node": node_id, **{f"v_{k}": v for k, v in values.items()}}
        )
    for columns, rows in groups.items():
        await conn.execute(
            invocations.update()
            .where(
                invocations.c.command_id == sa.bindparam("b_command"),
                invocations.c.node_id == sa.bindparam("b_node"),
                *(NOT_FINAL if unless_final else ()),
            )
            .values({c: sa.bindparam(f"v_{c}") for c in columns}),
            rows,
        )


async def update_command(conn: AsyncConnection, command_id: str, **values: Any) -> None:
    await conn.execute(commands.update().where(commands.c.id == command_id).values(**values))
