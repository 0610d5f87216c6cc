"""Associations, their versions, executions, per-node state and the sets sent to nodes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import (
    association_executions,
    association_targets,
    association_versions,
    associations,
    commands,
    node_association_sets,
)

# The revision of an empty set (services/associations/node_sets.py: sha256 of "[]").
EMPTY_SET_REVISION = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in result.mappings()]


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(associations.insert().values(**row))


async def get(conn: AsyncConnection, association_id: str) -> dict[str, Any] | None:
    found = _rows(
        await conn.execute(sa.select(associations).where(associations.c.id == association_id))
    )
    return found[0] if found else None


async def name_taken(conn: AsyncConnection, name: str, other_than: str | None = None) -> bool:
    query = sa.select(associations.c.id).where(associations.c.name == name)
    if other_than is not None:
        query = query.where(associations.c.id != other_than)
    return (await conn.scalar(query)) is not None


async def list_page(
    conn: AsyncConnection, limit: int, after: tuple[str, str] | None
) -> list[dict[str, Any]]:
    """By name (then id); ``after``: (name, id) of the last one seen."""
    query = sa.select(associations).order_by(associations.c.name, associations.c.id).limit(limit)
    if after is not None:
        query = query.where(sa.tuple_(associations.c.name, associations.c.id) > sa.tuple_(*after))
    return _rows(await conn.execute(query))


async def versions_now(conn: AsyncConnection) -> dict[str, int]:
    """Every association's id and version (cheap: no JSON read)."""
    rows = await conn.execute(sa.select(associations.c.id, associations.c.version))
    return {r.id: r.version for r in rows}


async def rows_of(conn: AsyncConnection, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out += _rows(
            await conn.execute(sa.select(associations).where(associations.c.id.in_(chunk)))
        )
    return out


async def applied_versions(conn: AsyncConnection) -> list[tuple[str, str, int | None]]:
    """(association, node, version applied) of every target."""
    t = association_targets
    rows = await conn.execute(sa.select(t.c.association_id, t.c.node_id, t.c.version_applied))
    return [(r[0], r[1], r[2]) for r in rows]


async def all_rows(conn: AsyncConnection) -> list[dict[str, Any]]:
    return _rows(await conn.execute(sa.select(associations)))


async def update(
    conn: AsyncConnection, association_id: str, expect_version: int | None, values: dict[str, Any]
) -> bool:
    """Change it if its version is still ``expect_version`` (None: whatever it is)."""
    query = associations.update().where(associations.c.id == association_id)
    if expect_version is not None:
        query = query.where(associations.c.version == expect_version)
    return (await conn.execute(query.values(**values))).rowcount == 1


async def insert_version(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(association_versions.insert().values(**row))


async def versions(conn: AsyncConnection, association_id: str) -> list[dict[str, Any]]:
    return _rows(
        await conn.execute(
            sa.select(association_versions)
            .where(association_versions.c.association_id == association_id)
            .order_by(association_versions.c.version.desc())
        )
    )


async def delete(conn: AsyncConnection, association_id: str) -> None:
    for table in (association_targets, association_versions, association_executions):
        await conn.execute(table.delete().where(table.c.association_id == association_id))
    await conn.execute(associations.delete().where(associations.c.id == association_id))


async def due(conn: AsyncConnection, now: float, limit: int) -> list[dict[str, Any]]:
    query = (
        sa.select(associations)
        .where(associations.c.next_run_at <= now)
        .order_by(associations.c.next_run_at)
        .limit(limit)
    )
    return _rows(await conn.execute(query))


async def next_due(conn: AsyncConnection) -> float | None:
    value = await conn.scalar(sa.select(sa.func.min(associations.c.next_run_at)))
    return None if value is None else float(value)


async def claim(
    conn: AsyncConnection,
    association_id: str,
    version: int,
    last_slot: float | None,
    values: dict[str, Any],
) -> bool:
    """Advance the schedule if nobody did since we read it (same version, same last slot)."""
    query = associations.update().where(
        associations.c.id == association_id, associations.c.version == version
    )
    query = query.where(
        associations.c.last_slot.is_(None)
        if last_slot is None
        else associations.c.last_slot == last_slot
    )
    return (await conn.execute(query.values(**values))).rowcount == 1


async def claim_many(
    conn: AsyncConnection, claims: list[tuple[dict[str, Any], dict[str, Any]]]
) -> bool:
    """Claim many slots in one statement: each (association as read, its new schedule
    state); True if every one was still as read (else the caller rolls back)."""
    a = associations
    statement = (
        a.update()
        .where(a.c.id == sa.bindparam("b_id"))
        .where(a.c.version == sa.bindparam("b_version"))
        .where(a.c.last_slot.is_not_distinct_from(sa.bindparam("b_last", type_=sa.Float)))
        .values(next_run_at=sa.bindparam("b_next"), last_slot=sa.bindparam("b_slot"))
    )
    params = [
        {
            "b_id": assoc["id"],
            "b_version": assoc["version"],
            "b_last": assoc["last_slot"],
            "b_next": claim["next_run_at"],
            "b_slot": claim.get("last_slot", assoc["last_slot"]),
        }
        for assoc, claim in claims
    ]
    result = await conn.execute(statement, params)
    return bool(result.rowcount == len(params))


# Executions ------------------------------------------------------------------------------
async def insert_executions(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(association_executions.insert(), rows)


def _executions() -> sa.Select[Any]:
    """Executions with their command's status (None where nothing ran)."""
    return sa.select(
        association_executions,
        commands.c.status.label("command_status"),
        commands.c.status_details.label("command_status_details"),
        commands.c.target_count,
        commands.c.completed_at,
    ).select_from(
        association_executions.outerjoin(
            commands, commands.c.id == association_executions.c.command_id
        )
    )


async def execution(conn: AsyncConnection, execution_id: str) -> dict[str, Any] | None:
    found = _rows(
        await conn.execute(_executions().where(association_executions.c.id == execution_id))
    )
    return found[0] if found else None


async def executions_page(
    conn: AsyncConnection, association_id: str, limit: int, after: tuple[float, str] | None
) -> list[dict[str, Any]]:
    """Newest first; ``after``: (created_at, id) of the last one seen."""
    query = (
        _executions()
        .where(association_executions.c.association_id == association_id)
        .order_by(association_executions.c.created_at.desc(), association_executions.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.or_(
                association_executions.c.created_at < after[0],
                sa.and_(
                    association_executions.c.created_at == after[0],
                    association_executions.c.id > after[1],
                ),
            )
        )
    return _rows(await conn.execute(query))


async def unsynced(
    conn: AsyncConnection, limit: int, after: tuple[float, str] | None = None
) -> list[dict[str, Any]]:
    """Executions whose command has ended but whose nodes' results are not all applied yet
    (oldest first; ``after``: (created_at, id) of the last one seen)."""
    ex = association_executions
    query = (
        _executions()
        .where(ex.c.synced_at.is_(None))
        .where(ex.c.command_id.is_not(None))
        .where(commands.c.completed_at.is_not(None))
        .order_by(ex.c.created_at, ex.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.or_(
                ex.c.created_at > after[0], sa.and_(ex.c.created_at == after[0], ex.c.id > after[1])
            )
        )
    return _rows(await conn.execute(query))


async def unsynced_of(conn: AsyncConnection, command_ids: list[str]) -> list[dict[str, Any]]:
    """Those of these commands that are association runs not yet applied (an execution's id
    is its command's)."""
    ex = association_executions
    query = _executions().where(ex.c.id.in_(command_ids)).where(ex.c.synced_at.is_(None))
    return _rows(await conn.execute(query))


async def mark_synced(conn: AsyncConnection, execution_id: str, now: float) -> None:
    await conn.execute(
        association_executions.update()
        .where(association_executions.c.id == execution_id)
        .values(synced_at=now)
    )


# Targets ---------------------------------------------------------------------------------
async def targets_of(
    conn: AsyncConnection, association_id: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(association_targets)
    if association_id is not None:
        query = query.where(association_targets.c.association_id == association_id)
    return _rows(await conn.execute(query.order_by(association_targets.c.node_id)))


async def upsert_targets(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert or replace per-node rows (a row's last success is kept unless the new one has
    one): one INSERT ... ON CONFLICT DO UPDATE (SQLite and PostgreSQL say it alike)."""
    if not rows:
        return
    t = association_targets
    insert: Any = sqlite_insert(t) if conn.dialect.name == "sqlite" else postgresql_insert(t)
    changed = ("version_applied", "last_execution_id", "status", "detailed_status", "updated_at")
    statement = insert.on_conflict_do_update(
        index_elements=[t.c.association_id, t.c.node_id],
        set_={
            **{name: insert.excluded[name] for name in changed},
            "last_success_at": sa.func.coalesce(
                insert.excluded.last_success_at, t.c.last_success_at
            ),
        },
    )
    await conn.execute(statement, rows)


async def delete_targets(conn: AsyncConnection, association_id: str, node_ids: list[str]) -> None:
    if node_ids:
        await conn.execute(
            association_targets.delete().where(
                association_targets.c.association_id == association_id,
                association_targets.c.node_id.in_(node_ids),
            )
        )


# Node sets -------------------------------------------------------------------------------
async def node_revisions(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(
        sa.select(node_association_sets.c.node_id, node_association_sets.c.revision)
    )
    return {r.node_id: r.revision for r in rows}


async def set_node_revisions(conn: AsyncConnection, revisions: dict[str, str], now: float) -> None:
    if not revisions:
        return
    await conn.execute(
        node_association_sets.delete().where(node_association_sets.c.node_id.in_(list(revisions)))
    )
    await conn.execute(
        node_association_sets.insert(),
        [{"node_id": n, "revision": r, "sent_at": now} for n, r in revisions.items()],
    )


async def targets_of_nodes(conn: AsyncConnection, node_ids: list[str]) -> list[dict[str, Any]]:
    query = sa.select(association_targets).where(association_targets.c.node_id.in_(node_ids))
    return _rows(await conn.execute(query))


async def node_lost_set(
    conn: AsyncConnection, node_id: str, held: str | None, sent_before: float
) -> bool:
    """The node says it holds revision ``held`` (None: no set at all); if it was sent another
    set before ``sent_before`` (time enough to have received it), forget the sending (True):
    the next pass sends it again."""
    row = (
        await conn.execute(
            sa.select(node_association_sets).where(node_association_sets.c.node_id == node_id)
        )
    ).first()
    if row is None or row.sent_at >= sent_before or row.revision == held:
        return False
    if held is None and row.revision == EMPTY_SET_REVISION:
        return False
    await conn.execute(
        node_association_sets.delete().where(node_association_sets.c.node_id == node_id)
    )
    return True
