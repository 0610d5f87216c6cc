"""Audit entries, the chain's head and signed checkpoints (see services.audit)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import (
    audit_checkpoints,
    audit_entries,
    audit_entry_resources,
    audit_head,
)

HEAD_ID = 1


async def head(conn: AsyncConnection, *, lock: bool = False) -> tuple[int, str] | None:
    """The last entry's (seq, hash); ``lock``: row-locked until the transaction ends.

    ``FOR UPDATE`` serialises writers on PostgreSQL; SQLite ignores it, and its writers are
    already serialised (``Database.transaction``, and SQLite's one write lock).
    """
    query = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return (int(row.seq), str(row.hash)) if row else None


async def set_head(conn: AsyncConnection, seq: int, hash_: str) -> None:
    await conn.execute(
        audit_head.update().where(audit_head.c.id == HEAD_ID).values(seq=seq, hash=hash_)
    )


async def advance_head(
    conn: AsyncConnection, expected: tuple[int, str], seq: int, hash_: str
) -> bool:
    """Move the head to (seq, hash) if it is still ``expected`` (compare-and-swap).

    The UPDATE takes the row lock; on PostgreSQL a concurrent writer waits for it and then
    re-checks the condition against the committed row, so a stale ``expected`` never wins.
    """
    c = audit_head.c
    query = (
        audit_head.update()
        .where(c.id == HEAD_ID, c.seq == expected[0], c.hash == expected[1])
        .values(seq=seq, hash=hash_)
    )
    return bool((await conn.execute(query)).rowcount == 1)


async def insert_entry(
    conn: AsyncConnection, row: dict[str, Any], concerned: list[str] | None = None
) -> None:
    """The entry, and the other resources it concerns (the search index of ``search``)."""
    await conn.execute(audit_entries.insert().values(**row))
    if concerned:
        await conn.execute(
            audit_entry_resources.insert(),
            [{"resource": resource, "seq": row["seq"]} for resource in concerned],
        )


async def entries(
    conn: AsyncConnection, after_seq: int, upto_seq: int | None, limit: int
) -> list[dict[str, Any]]:
    """Entries with ``after_seq < seq <= upto_seq`` in seq order (a page of a scan)."""
    query = (
        sa.select(audit_entries)
        .where(audit_entries.c.seq > after_seq)
        .order_by(audit_entries.c.seq)
        .limit(limit)
    )
    if upto_seq is not None:
        query = query.where(audit_entries.c.seq <= upto_seq)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


def _glob(column: sa.ColumnElement[str], pattern: str) -> sa.ColumnElement[bool]:
    """``*`` and ``?`` wildcards (IAM style) as SQL LIKE; no wildcard is an exact match."""
    if "*" not in pattern and "?" not in pattern:
        return column == pattern
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


def _about(resource: str) -> sa.ColumnElement[bool]:
    """Entries whose resource matches, or that concern a matching one (a send names its
    nodes: ``audit_entry_resources``).  An exact name looks both up by index; a pattern
    scans newest first, as it did before the index existed."""
    c, r = audit_entries.c, audit_entry_resources.c
    if "*" in resource or "?" in resource:
        named = sa.select(r.seq).where(_glob(r.resource, resource))
        return sa.or_(_glob(c.resource, resource), c.seq.in_(named))
    own = audit_entries.alias("own")
    return c.seq.in_(
        sa.union(
            sa.select(own.c.seq).where(own.c.resource == resource),
            sa.select(r.seq).where(r.resource == resource),
        )
    )


async def search(
    conn: AsyncConnection,
    *,
    before_seq: int | None,
    since: float | None,
    until: float | None,
    identity: str | None,
    action: str | None,
    resource: str | None,
    outcome: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Matching entries, newest first."""
    c = audit_entries.c
    query = sa.select(audit_entries).order_by(c.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(c.seq < before_seq)
    if since is not None:
        query = query.where(c.time >= since)
    if until is not None:
        query = query.where(c.time <= until)
    if identity:
        query = query.where(sa.or_(c.identity_id == identity, c.identity_name == identity))
    if action:
        query = query.where(_glob(c.action, action))
    if resource and resource != "*":
        query = query.where(_about(resource))
    if outcome:
        query = query.where(c.outcome == outcome)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def first_seq_since(conn: AsyncConnection, since: float) -> int | None:
    query = sa.select(sa.func.min(audit_entries.c.seq)).where(audit_entries.c.time >= since)
    value = (await conn.execute(query)).scalar()
    return None if value is None else int(value)


async def last_seq_until(conn: AsyncConnection, until: float) -> int | None:
    query = sa.select(sa.func.max(audit_entries.c.seq)).where(audit_entries.c.time <= until)
    value = (await conn.execute(query)).scalar()
    return None if value is None else int(value)


async def last_seq_before(conn: AsyncConnection, cutoff: float) -> int | None:
    query = sa.select(sa.func.max(audit_entries.c.seq)).where(audit_entries.c.time < cutoff)
    value = (await conn.execute(query)).scalar()
    return None if value is None else int(value)


async def entry_hash(conn: AsyncConnection, seq: int) -> str | None:
    query = sa.select(audit_entries.c.hash).where(audit_entries.c.seq == seq)
    value = (await conn.execute(query)).scalar()
    return None if value is None else str(value)


async def delete_entries_upto(conn: AsyncConnection, seq: int) -> int:
    await conn.execute(audit_entry_resources.delete().where(audit_entry_resources.c.seq <= seq))
    result = await conn.execute(audit_entries.delete().where(audit_entries.c.seq <= seq))
    return int(result.rowcount)


# Checkpoints ----------------------------------------------------------------------------------


async def insert_checkpoint(conn: AsyncConnection, row: dict[str, Any]) -> int:
    result = await conn.execute(audit_checkpoints.insert().values(**row))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def checkpoints(
    conn: AsyncConnection, from_seq: int | None = None, upto_seq: int | None = None
) -> list[dict[str, Any]]:
    """Checkpoints with ``from_seq <= seq_upto <= upto_seq``, in seq then signing order."""
    c = audit_checkpoints.c
    query = sa.select(audit_checkpoints).order_by(c.seq_upto, c.id)
    if from_seq is not None:
        query = query.where(c.seq_upto >= from_seq)
    if upto_seq is not None:
        query = query.where(c.seq_upto <= upto_seq)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def latest_checkpoint(
    conn: AsyncConnection, kind: str | None = None, before_seq: int | None = None
) -> dict[str, Any] | None:
    """The last checkpoint signed (of this kind, with ``seq_upto < before_seq``)."""
    c = audit_checkpoints.c
    query = sa.select(audit_checkpoints).order_by(c.seq_upto.desc(), c.id.desc()).limit(1)
    if kind is not None:
        query = query.where(c.kind == kind)
    if before_seq is not None:
        query = query.where(c.seq_upto < before_seq)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def delete_checkpoints_before(conn: AsyncConnection, seq: int) -> int:
    """Checkpoints over entries that were pruned (``seq_upto < seq``)."""
    result = await conn.execute(
        audit_checkpoints.delete().where(audit_checkpoints.c.seq_upto < seq)
    )
    return int(result.rowcount)
