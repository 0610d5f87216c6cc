"""A new node's default name: its activation's default name, else its host name, made unique
among registered nodes with a suffix, as ``web``, ``web-2``, ``web-3`` ... so ten nodes
registered from one activation are not all called the same.

A name the operator gave (``corral-agent register --name``) is kept as given.  A
deregistered node's name is free again.
"""

from __future__ import annotations

from collections.abc import Set

from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.store import node_names

MAX_NAME = 256  # nodes.name


def first_free(base: str, taken: Set[str]) -> str:
    """``base`` if free, else ``base-N`` for the smallest free N >= 2 (cut to fit)."""
    base = base[:MAX_NAME]
    if base not in taken:
        return base
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = base[: MAX_NAME - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        n += 1


async def default_name(conn: AsyncConnection, base: str) -> str:
    """A unique default name from ``base``, inside the registration's transaction (the
    registrations that choose one take turns until it commits)."""
    await node_names.lock(conn)
    # Every candidate (base, or base cut to make room for its suffix) starts with this.
    stem = base[: MAX_NAME - 8]
    return first_free(base, await node_names.starting_with(conn, stem))
