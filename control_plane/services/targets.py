"""Target specs, resolved to node ids when a command is sent.

``mi-…`` node ids, ``tag:KEY=V1,V2`` (any of the values), ``tag-key:KEY``, ``group:NAME``
(a saved target query), ``all``.  Several specs are a union.  Deregistered nodes are never
targets.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services.validation import check_tag_key
from control_plane.store.schema import node_groups, node_tags, nodes

MAX_SPECS = 50


def check_specs(specs: list[Any], allow_groups: bool = True) -> list[str]:
    if not specs:
        raise InvalidRequest("give at least one target")
    if len(specs) > MAX_SPECS:
        raise InvalidRequest(f"at most {MAX_SPECS} target specs")
    out: list[str] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise InvalidRequest("targets must be strings")
        kind, sep, rest = spec.partition(":")
        if spec == "all" or wire.NODE_ID_RE.match(spec):
            pass
        elif kind == "tag" and sep:
            key, eq, values = rest.partition("=")
            check_tag_key(key)
            if not eq or not all(values.split(",")):
                raise InvalidRequest(f"target {spec!r}: expected tag:KEY=VALUE[,VALUE...]")
        elif kind == "tag-key" and sep:
            check_tag_key(rest)
        elif kind == "group" and sep and allow_groups:
            if not rest:
                raise InvalidRequest(f"target {spec!r}: expected group:NAME")
        else:
            raise InvalidRequest(
                f"unknown target {spec!r}: use a node id, tag:KEY=VALUE, tag-key:KEY, "
                "group:NAME or all"
            )
        out.append(spec)
    return out


async def resolve(conn: AsyncConnection, specs: list[str], depth: int = 0) -> list[str]:
    """Node ids (registered, not deregistered) matching any spec, in registration order."""
    live = sa.select(nodes.c.id).where(nodes.c.deregistered_at.is_(None))
    found: set[str] = set()
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if spec == "all":
            query = live
        elif wire.NODE_ID_RE.match(spec):
            query = live.where(nodes.c.id == spec)
        elif kind == "tag":
            key, _, values = rest.partition("=")
            query = live.where(
                sa.exists().where(
                    node_tags.c.node_id == nodes.c.id,
                    node_tags.c.key == key,
                    node_tags.c.value.in_(values.split(",")),
                )
            )
        elif kind == "tag-key":
            query = live.where(
                sa.exists().where(node_tags.c.node_id == nodes.c.id, node_tags.c.key == rest)
            )
        else:  # group
            row = (
                await conn.execute(
                    sa.select(node_groups.c.targets).where(node_groups.c.name == rest)
                )
            ).first()
            if row is None:
                raise NotFound(f"group {rest} not found")
            if depth > 0:
                raise InvalidRequest("a group cannot contain another group")
            found.update(await resolve(conn, list(row.targets), depth + 1))
            continue
        found.update((await conn.execute(query)).scalars())
    if not found:
        return []
    ordered = await conn.execute(
        sa.select(nodes.c.id)
        .where(nodes.c.id.in_(found))
        .order_by(nodes.c.registered_at, nodes.c.id)
    )
    return list(ordered.scalars())
