"""Inventory's queries and upkeep: a node's types and items, fleet-wide search and summaries
with filters pushed into SQL, a node's change history, the schema, deleting a custom type,
and pruning history past the retention.

Who may see what is the caller's ``visible(node_id, tags)``: a node it may not see is left
out of every answer, fleet-wide counts included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from agent.inventory import schema
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services import paging
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.inventory import filters
from control_plane.services.inventory.ingest import Ingest
from control_plane.store import inventory as store
from control_plane.store.db import Database

log = logging.getLogger("corral.inventory")

Visible = Callable[[str, dict[str, str]], bool]
DEFAULT_RETENTION_SECONDS: Final = 30 * 86400.0
PARTS_KEPT_SECONDS: Final = 7 * 86400.0
PRUNE_INTERVAL: Final = 3600.0
MAX_GROUPS: Final = 10_000
MAX_GROUP_BY: Final = 5


class InventoryService:
    def __init__(
        self,
        db: Database,
        ingest: Ingest,
        clock: Clock,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self._db = db
        self.ingest = ingest
        self._clock = clock
        self.retention_seconds = retention_seconds
        self._pruned_at: float | None = None

    # The schema ----------------------------------------------------------------------------
    async def attributes(self, type_name: str) -> list[str]:
        """The type's attributes; InvalidRequest listing the types for an unknown one."""
        known = schema.known_type(type_name)
        if known is not None:
            return list(known.all_attributes)
        if schema.is_custom(type_name):
            async with self._db.read() as conn:
                found = (await store.custom_types(conn)).get(type_name)
            if found is not None:
                return found
        async with self._db.read() as conn:
            custom = sorted(await store.custom_types(conn))
        raise InvalidRequest(
            f"unknown inventory type {type_name[:100]!r} (known: "
            f"{', '.join([*sorted(schema.TYPES), *custom])})"
        )

    async def schema(self, type_name: str | None = None) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            custom = await store.custom_types(conn)
        out = []
        for t in schema.TYPES.values():
            out.append(
                {
                    "type_name": t.name,
                    "version": t.version,
                    "attributes": [
                        {"name": a, "data_type": "NUMBER" if a in t.numbers else "STRING"}
                        for a in t.all_attributes
                    ],
                    "key": list(t.key),
                    "custom": False,
                    "platforms": sorted(t.platforms),
                    "gathered_by": "server" if t.server_side else "agent",
                }
            )
        for name, attributes in sorted(custom.items()):
            out.append(
                {
                    "type_name": name,
                    "version": "1.0",
                    "attributes": [{"name": a, "data_type": "STRING"} for a in attributes],
                    "key": [],
                    "custom": True,
                    "platforms": ["Linux", "MacOS", "Windows"],
                    "gathered_by": "agent",
                }
            )
        if type_name is not None:
            out = [t for t in out if t["type_name"] == type_name]
            if not out:
                await self.attributes(type_name)  # raises, listing the known types
        return out

    # One node ------------------------------------------------------------------------------
    async def node(self, node_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            await self._known(conn, node_id)
            gathering = await store.node_row(conn, node_id)
            types = await store.types_of(conn, node_id)
        return {
            "node_id": node_id,
            "capture_time": rfc3339(gathering["capture_time"]) if gathering else None,
            "received_at": rfc3339(gathering["received_at"]) if gathering else None,
            "types": [
                {
                    "type_name": t["type_name"],
                    "item_count": t["item_count"],
                    "content_hash": t["content_hash"],
                    "schema_version": t["schema_version"],
                    "capture_time": rfc3339(t["capture_time"]),
                    "updated_at": rfc3339(t["updated_at"]),
                }
                for t in types
            ],
            "errors": list(gathering["errors"]) if gathering else [],
        }

    async def node_items(
        self, node_id: str, type_name: str, *, limit: int, next_token: str | None
    ) -> paging.Page[dict[str, Any]]:
        await self.attributes(type_name)
        paging.check_limit(limit)
        after = paging.decode(next_token, (int,))
        async with self._db.read() as conn:
            await self._known(conn, node_id)
            rows = await store.items_page(
                conn, node_id, type_name, None if after is None else after[0], limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        token = paging.encode((rows[-1]["id"],)) if more and rows else None
        return paging.Page([dict(r["data"]) for r in rows], token)

    async def changes(
        self,
        node_id: str,
        *,
        since: str | None,
        type_name: str | Sequence[str] | None,
        limit: int,
        next_token: str | None,
    ) -> paging.Page[dict[str, Any]]:
        paging.check_limit(limit)
        start = parse_time(since) if since is not None else None
        after = paging.decode(next_token, (int,))
        async with self._db.read() as conn:
            await self._known(conn, node_id)
            rows = await store.changes_page(
                conn,
                node_id,
                since=start,
                type_name=type_name,
                before_id=None if after is None else after[0],
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        token = paging.encode((rows[-1]["id"],)) if more and rows else None
        return paging.Page([_change_view(r) for r in rows], token)

    # The fleet -----------------------------------------------------------------------------
    async def search(
        self,
        type_name: str,
        filter_texts: list[str],
        *,
        visible: Visible,
        limit: int,
        next_token: str | None,
    ) -> paging.Page[dict[str, Any]]:
        attributes = await self.attributes(type_name)
        found = filters.parse_all(filter_texts, type_name, attributes)
        paging.check_limit(limit)
        after = paging.decode(next_token, (int,))
        async with self._db.read() as conn:
            scope = await self._scope(conn, visible)
            conditions = [filters.condition(type_name, f, conn.dialect.name) for f in found]
            rows = await store.search(
                conn, type_name, conditions, scope, None if after is None else after[0], limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        token = paging.encode((rows[-1]["id"],)) if more and rows else None
        return paging.Page(
            [
                {"node_id": r["node_id"], "type_name": type_name, "item": dict(r["data"])}
                for r in rows
            ],
            token,
        )

    async def summary(
        self,
        type_name: str,
        group_by: list[str],
        filter_texts: list[str],
        *,
        visible: Visible,
        limit: int,
        next_token: str | None,
    ) -> dict[str, Any]:
        attributes = await self.attributes(type_name)
        if not group_by or len(group_by) > MAX_GROUP_BY:
            raise InvalidRequest(f"group_by: 1 to {MAX_GROUP_BY} attributes")
        for attribute in group_by:
            if attribute not in attributes:
                raise InvalidRequest(
                    f"group_by: {type_name} has no attribute {attribute[:64]!r} "
                    f"(its attributes: {', '.join(attributes)})"
                )
        found = filters.parse_all(filter_texts, type_name, attributes)
        columns = [filters.column(type_name, a) for a in group_by]
        async with self._db.read() as conn:
            scope = await self._scope(conn, visible)
            conditions = [filters.condition(type_name, f, conn.dialect.name) for f in found]
            rows = await store.group_counts(
                conn, type_name, columns, conditions, scope, MAX_GROUPS + 1
            )
        groups: list[dict[str, Any]] = [
            {
                "values": {a: r[i] for i, a in enumerate(group_by)},
                "nodes": int(r[len(group_by)]),
                "items": int(r[len(group_by) + 1]),
            }
            for r in rows[:MAX_GROUPS]
        ]
        page = paging.paginate(
            groups,
            key=lambda g: tuple(str(g["values"].get(a) or "") for a in group_by),
            limit=limit,
            next_token=next_token,
            shape=tuple(str for _ in group_by),
        )
        return {
            "type_name": type_name,
            "group_by": group_by,
            "groups": page.items,
            "next_token": page.next_token,
            "truncated": len(rows) > MAX_GROUPS,
        }

    async def _scope(self, conn: Any, visible: Visible) -> list[str] | None:
        """The node ids the caller may see; None when that is every registered node."""
        nodes = await store.registered_nodes(conn)
        shown = [node_id for node_id, tags in nodes if visible(node_id, tags)]
        return None if len(shown) == len(nodes) else shown

    # Deleting ------------------------------------------------------------------------------
    async def delete_custom_type(self, type_name: str) -> dict[str, Any]:
        if not schema.is_custom(type_name) or not schema.CUSTOM_TYPE_RE.match(type_name):
            raise InvalidRequest(
                f"{type_name[:100]!r}: only a custom type (Custom:NAME) can be deleted"
            )
        now = self._clock()
        async with self._db.transaction() as conn:
            node_ids, items = await store.delete_type_everywhere(conn, type_name)
            if not node_ids and type_name not in await store.custom_types(conn):
                raise NotFound(f"inventory type {type_name} not found")
            await store.add_changes(
                conn,
                [
                    {
                        "node_id": n,
                        "type_name": type_name,
                        "time": now,
                        "change": "deleted",
                        "item_key": "",
                        "old": None,
                        "new": None,
                    }
                    for n in node_ids
                ],
            )
        log.info(
            "inventory type deleted",
            extra={"type_name": type_name, "nodes": len(node_ids), "items": items},
        )
        return {"type_name": type_name, "nodes": len(node_ids), "items": items}

    # Upkeep --------------------------------------------------------------------------------
    async def prune_if_due(self, now: float) -> int:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return 0
        self._pruned_at = now
        async with self._db.transaction() as conn:
            pruned = await store.prune_changes(conn, now - self.retention_seconds)
            await store.prune_parts(conn, now - PARTS_KEPT_SECONDS)
        if pruned:
            log.info("inventory history past retention pruned", extra={"count": pruned})
        return pruned

    async def _known(self, conn: Any, node_id: str) -> None:
        if not await store.node_active(conn, node_id):
            raise NotFound(f"node {node_id} not found")


def _change_view(row: dict[str, Any]) -> dict[str, Any]:
    type_name = row["type_name"]
    sample = row["new"] or row["old"] or {}
    key = {} if row["change"] in ("captured", "deleted") else _key(type_name, sample)
    return {
        "time": rfc3339(row["time"]),
        "type_name": type_name,
        "change": row["change"],
        "key": key,
        "old": row["old"],
        "new": row["new"],
    }


def _key(type_name: str, item: dict[str, str]) -> dict[str, str]:
    from control_plane.services.inventory.model import key_view

    return key_view(type_name, item)


def parse_time(text: str) -> float:
    """Seconds since the epoch, or an RFC 3339 time; InvalidRequest otherwise."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"since {text[:40]!r}: expected an RFC 3339 time or seconds since the epoch"
        ) from None
    if stamp.tzinfo is None:
        raise InvalidRequest(f"since {text[:40]!r}: give a time zone (Z or +HH:MM)")
    return stamp.timestamp()
