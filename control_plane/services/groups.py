"""Node groups: named, saved target queries (SSM resource groups), resolved at send time."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.targets import check_specs, resolve
from control_plane.services.validation import check_text
from control_plane.store.db import Database
from control_plane.store.schema import node_groups

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _view(row: Any, node_ids: list[str] | None = None) -> dict[str, Any]:
    view = {
        "name": row.name,
        "description": row.description,
        "targets": row.targets,
        "created_at": rfc3339(row.created_at),
    }
    if node_ids is not None:
        view["node_ids"] = node_ids
    return view


class GroupService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, name: str, targets: list[Any], description: str = "") -> dict[str, Any]:
        if not _NAME.match(name):
            raise InvalidRequest("group name must be 1-128 characters of [A-Za-z0-9_.-]")
        check_text("description", description, 256)
        specs = check_specs(targets, allow_groups=False)
        async with self._db.transaction() as conn:
            exists = await conn.execute(
                sa.select(node_groups.c.name).where(node_groups.c.name == name)
            )
            if exists.first() is not None:
                raise Conflict(f"group {name} already exists")
            await conn.execute(
                node_groups.insert().values(
                    name=name,
                    description=description,
                    targets=specs,
                    created_at=self._clock(),
                )
            )
        return await self.get(name)

    async def list_all(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(node_groups).order_by(node_groups.c.name))).all()
        return [_view(r) for r in rows]

    async def get(self, name: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(node_groups).where(node_groups.c.name == name))
            ).first()
            if row is None:
                raise NotFound(f"group {name} not found")
            node_ids = await resolve(conn, list(row.targets))
        return _view(row, node_ids)

    async def delete(self, name: str) -> None:
        async with self._db.transaction() as conn:
            result = await conn.execute(node_groups.delete().where(node_groups.c.name == name))
            if result.rowcount == 0:
                raise NotFound(f"group {name} not found")
