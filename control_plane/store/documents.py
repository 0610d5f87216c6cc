"""User documents and their immutable versions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import document_versions, documents

# Everything about a version except its (up to 64 KB) content.
_META = [c for c in document_versions.c if c.name not in ("content", "parsed")]


async def insert_document(
    conn: AsyncConnection, row: dict[str, Any], first: dict[str, Any]
) -> bool:
    """The document and its first version; False if the name is taken."""
    try:
        await conn.execute(documents.insert().values(**row))
    except IntegrityError:
        return False
    await conn.execute(document_versions.insert().values(**first))
    return True


async def get(conn: AsyncConnection, name: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The document's row; ``lock`` holds it (PostgreSQL) until the transaction ends."""
    query = sa.select(documents).where(documents.c.name == name)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def list_with_defaults(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every document, with its default version's ``schema_version`` and ``description``."""
    v = document_versions
    query = (
        sa.select(documents, v.c.schema_version, v.c.description)
        .join(v, sa.and_(v.c.name == documents.c.name, v.c.version == documents.c.default_version))
        .order_by(documents.c.name)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_version(
    conn: AsyncConnection,
    name: str,
    *,
    number: int | None = None,
    version_name: str | None = None,
    content: bool = False,
) -> dict[str, Any] | None:
    """One version by number or by version name; with its content and parsed form if asked."""
    v = document_versions
    query = sa.select(*(v.c if content else _META)).where(v.c.name == name)
    if number is not None:
        query = query.where(v.c.version == number)
    if version_name is not None:
        query = query.where(v.c.version_name == version_name)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def list_versions(conn: AsyncConnection, name: str) -> list[dict[str, Any]]:
    v = document_versions
    query = sa.select(*_META).where(v.c.name == name).order_by(v.c.version)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def add_version(conn: AsyncConnection, row: dict[str, Any], updated_at: float) -> None:
    """A new latest version; its number must be the document's ``last_version`` + 1."""
    await conn.execute(document_versions.insert().values(**row))
    await conn.execute(
        documents.update()
        .where(documents.c.name == row["name"])
        .values(last_version=row["version"], latest_version=row["version"], updated_at=updated_at)
    )


async def set_default(conn: AsyncConnection, name: str, number: int, updated_at: float) -> None:
    await conn.execute(
        documents.update()
        .where(documents.c.name == name)
        .values(default_version=number, updated_at=updated_at)
    )


async def delete_version(conn: AsyncConnection, name: str, number: int, updated_at: float) -> None:
    """Delete one version (never the default) and point ``latest_version`` at what is left."""
    v = document_versions
    await conn.execute(v.delete().where(v.c.name == name, v.c.version == number))
    latest = sa.select(sa.func.max(v.c.version)).where(v.c.name == name).scalar_subquery()
    await conn.execute(
        documents.update()
        .where(documents.c.name == name)
        .values(latest_version=latest, updated_at=updated_at)
    )


async def delete(conn: AsyncConnection, name: str) -> bool:
    """The document and all its versions."""
    await conn.execute(document_versions.delete().where(document_versions.c.name == name))
    result = await conn.execute(documents.delete().where(documents.c.name == name))
    return result.rowcount > 0
