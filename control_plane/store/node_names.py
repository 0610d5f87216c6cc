"""The names registered nodes already use, for a new node's default name (``web``, ``web-2``).

Registrations that choose a default name take turns: on PostgreSQL a transaction-scoped
advisory lock, released at commit, so the second one sees the first one's node; on SQLite
every write transaction already takes turns (``Database.transaction`` and SQLite's one
writer), and registration writes (claims its activation) before it reads the names.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store.schema import nodes

# pg_advisory_xact_lock's key for "choosing a default node name" (any constant: a 64-bit int).
NAME_LOCK_KEY = 0x636F7272616C4E4D  # "corralNM"


async def lock(conn: AsyncConnection) -> None:
    """Until this transaction ends, no other registration chooses a default name."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(NAME_LOCK_KEY)))


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def starting_with(conn: AsyncConnection, prefix: str) -> set[str]:
    """Names of registered (not deregistered) nodes that start with ``prefix``."""
    c = nodes.c
    query = sa.select(c.name).where(
        c.deregistered_at.is_(None), c.name.like(_like_prefix(prefix) + "%", escape="\\")
    )
    return set((await conn.execute(query)).scalars())
