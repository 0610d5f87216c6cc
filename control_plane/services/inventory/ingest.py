"""Storing what agents upload: parts until a type's content is whole, then the type replaced
on the node by a diff (added, removed, changed items: written as history and published as
``inventory.changed``), and each gathering's summary (which may ask the node to send a type
again).  Everything happens in the channel writer's transaction: an upload is acknowledged
only once it is stored.

Not stored twice: a content hash the node already has stored costs nothing; a node that
uploads more than its hourly byte budget has its parts refused (it sends them again later:
the summary that follows asks for them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.inventory import schema
from agent.wire import Message
from control_plane.errors import InvalidRequest
from control_plane.services.channel_writer import AfterCommit
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.events import EventBus
from control_plane.services.inventory import checks, model
from control_plane.services.presence import Presence
from control_plane.services.ratelimit import TokenBuckets
from control_plane.store import compliance as compliance_store
from control_plane.store import inventory as store
from control_plane.store import messages as inbox

log = logging.getLogger("corral.inventory")

EVENT_MAX_ITEMS: Final = 100  # of each kind (added, removed, changed) in one event
DEFAULT_BYTES_PER_HOUR: Final = 64 * 1024 * 1024


class Budget:
    """Each node's upload bytes: ``per_hour``, refilled continuously (one token bucket per
    node, services/ratelimit.py's)."""

    def __init__(self, per_hour: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.per_hour = per_hour

    @property
    def per_hour(self) -> float:
        return self._per_hour

    @per_hour.setter
    def per_hour(self, value: float) -> None:
        self._per_hour = float(value)
        self._buckets = TokenBuckets(value / 3600, max(int(value), 1), self._clock)

    def take(self, node_id: str, size: int) -> bool:
        if size > self._buckets.burst:
            return False
        return self._buckets.take(node_id, size) == 0.0


@dataclass
class Applied:
    """One type replaced on one node."""

    changes: int
    event: dict[str, Any] | None


class Ingest:
    def __init__(
        self,
        events: EventBus,
        presence: Presence,
        clock: Clock,
        bytes_per_hour: float = DEFAULT_BYTES_PER_HOUR,
    ) -> None:
        self._events = events
        self._presence = presence
        self._clock = clock
        self.budget = Budget(bytes_per_hour)
        # Called in the transaction that replaced a type's items on a node (Patch Manager
        # keeps the node's Patch compliance from Corral:Patch and AWS:PatchSummary).
        self.on_applied: dict[str, Callable[[AsyncConnection, str], Awaitable[None]]] = {}

    # Agent messages ----------------------------------------------------------------------
    async def on_parts(
        self, conn: AsyncConnection, received: list[tuple[str, Message]]
    ) -> AfterCommit | None:
        published: list[dict[str, Any]] = []
        for node_id, message in received:
            body = checks.part(message["body"])
            event = await self._part(conn, node_id, body, len(json.dumps(body["items"])))
            if event is not None:
                published.append(event)
        return self._after(published, [])

    async def _part(
        self, conn: AsyncConnection, node_id: str, body: wire.InventoryPartBody, size: int
    ) -> dict[str, Any] | None:
        type_name, digest = body["type_name"], body["content_hash"]
        current = await store.type_row(conn, node_id, type_name)
        if current is not None and current["content_hash"] == digest:
            return None  # already stored: not stored twice
        if not self.budget.take(node_id, size):
            raise InvalidRequest(
                f"inventory uploads from {node_id} are over {self.budget.per_hour / 2**20:.0f} "
                "MiB an hour: part refused (the node sends it again at a later gathering)"
            )
        if current is None and schema.is_custom(type_name):
            await self._check_custom_count(conn, node_id, type_name)
        await store.add_part(
            conn,
            {
                "node_id": node_id,
                "type_name": type_name,
                "content_hash": digest,
                "part": body["part"],
                "parts": body["parts"],
                "schema_version": body["schema_version"],
                "capture_time": body["capture_time"],
                "items": body["items"],
                "received_at": self._clock(),
            },
        )
        parts = await store.parts_of(conn, node_id, type_name, digest)
        if len(parts) < body["parts"]:
            return None
        items = [item for p in parts for item in p["items"]]
        await store.drop_parts(conn, node_id, type_name)
        applied = await self.apply(
            conn,
            node_id,
            type_name,
            items,
            content_hash=digest,
            schema_version=body["schema_version"],
            capture_time=body["capture_time"],
        )
        return applied.event

    async def _check_custom_count(
        self, conn: AsyncConnection, node_id: str, type_name: str
    ) -> None:
        have = {t["type_name"] for t in await store.types_of(conn, node_id)}
        custom = sorted(t for t in have if schema.is_custom(t))
        if len(custom) >= schema.CUSTOM_MAX_TYPES:
            raise InvalidRequest(
                f"{type_name}: node {node_id} already has {schema.CUSTOM_MAX_TYPES} custom "
                f"inventory types ({', '.join(custom[:5])} ...): no more are allowed"
            )

    async def on_summaries(
        self, conn: AsyncConnection, received: list[tuple[str, Message]]
    ) -> AfterCommit | None:
        published: list[dict[str, Any]] = []
        resyncs: list[tuple[str, Message]] = []
        for node_id, message in received:
            body = checks.summary(message["body"])
            events, missing = await self._summary(conn, node_id, body)
            published += events
            if missing:
                resync = wire.make_message(wire.MSG_INVENTORY_RESYNC, {"types": missing})
                await inbox.enqueue(conn, node_id, resync)
                resyncs.append((node_id, resync))
                log.info(
                    "inventory resync asked",
                    extra={"node_id": node_id, "types": ",".join(missing)[:300]},
                )
        return self._after(published, resyncs)

    async def _summary(
        self, conn: AsyncConnection, node_id: str, body: wire.InventoryBody
    ) -> tuple[list[dict[str, Any]], list[str]]:
        now = self._clock()
        row: dict[str, Any] = {
            "node_id": node_id,
            "capture_time": body["capture_time"],
            "received_at": now,
            "hashes": body["hashes"],
            "errors": list(body["errors"]),
        }
        if body.get("partial"):  # a Patch Manager upload: the node's other types stay
            before = await store.node_row(conn, node_id)
            if before is not None:
                row.update(
                    capture_time=before["capture_time"],
                    hashes={**(before["hashes"] or {}), **body["hashes"]},
                    errors=before["errors"],
                )
        await store.put_node(conn, row)
        stored = {t["type_name"]: t["content_hash"] for t in await store.types_of(conn, node_id)}
        pending = await store.pending_hashes(conn, node_id)
        missing = sorted(
            name
            for name, digest in body["hashes"].items()
            if stored.get(name) != digest and (name, digest) not in pending
        )
        events: list[dict[str, Any]] = []
        if body["custom_complete"]:
            for name in sorted(stored):
                if schema.is_custom(name) and name not in body["hashes"]:
                    applied = await self.remove_type(conn, node_id, name, now)
                    if applied.event is not None:
                        events.append(applied.event)
        return events, missing

    def _after(
        self, events: list[dict[str, Any]], resyncs: list[tuple[str, Message]]
    ) -> AfterCommit | None:
        if not events and not resyncs:
            return None

        def after() -> None:
            self._events.publish(events)
            for node_id, message in resyncs:
                self._presence.push(node_id, message)

        return after

    # Replacing a type --------------------------------------------------------------------
    async def apply(
        self,
        conn: AsyncConnection,
        node_id: str,
        type_name: str,
        items: list[dict[str, str]],
        *,
        content_hash: str,
        schema_version: str,
        capture_time: float,
        emit: bool = True,
    ) -> Applied:
        """Make the node's items of ``type_name`` exactly ``items``: write the difference,
        its history and (``emit``) its event, recorded for webhooks in this transaction; the
        caller publishes it after commit."""
        now = self._clock()
        current = await store.type_row(conn, node_id, type_name)
        if current is not None and current["content_hash"] == content_hash:
            return Applied(0, None)
        before = await store.item_rows(conn, node_id, type_name)
        wanted = model.unique_keys(type_name, items)
        added = [k for k in wanted if k not in before]
        removed = [k for k in before if k not in wanted]
        changed = [k for k in wanted if k in before and before[k][1] != wanted[k]]
        await store.delete_items(conn, [before[k][0] for k in removed])
        await store.insert_items(
            conn,
            [
                {"node_id": node_id, "type_name": type_name, "item_key": k}
                | model.columns(type_name, wanted[k])
                for k in added
            ],
        )
        await store.update_items(
            conn, [{"row_id": before[k][0]} | model.columns(type_name, wanted[k]) for k in changed]
        )
        await store.put_type(
            conn,
            {
                "node_id": node_id,
                "type_name": type_name,
                "content_hash": content_hash,
                "schema_version": schema_version,
                "capture_time": capture_time,
                "updated_at": now,
                "item_count": len(wanted),
            },
        )
        if schema.is_custom(type_name):
            await self._note_custom_attributes(conn, type_name, wanted.values(), now)
        first = current is None
        history: list[dict[str, Any]] = []

        def change(kind: str, key: str, old: Any, new: Any) -> None:
            history.append(
                {
                    "node_id": node_id,
                    "type_name": type_name,
                    "time": capture_time,
                    "change": kind,
                    "item_key": key,
                    "old": old,
                    "new": new,
                }
            )

        if first:
            change("captured", "", None, {"items": len(wanted)})
        else:
            for k in added:
                change("added", k, None, wanted[k])
            for k in removed:
                change("removed", k, before[k][1], None)
            for k in changed:
                change("changed", k, before[k][1], wanted[k])
        await store.add_changes(conn, history)
        event = self._event(
            node_id,
            type_name,
            capture_time,
            first,
            [wanted[k] for k in added],
            [before[k][1] for k in removed],
            [(before[k][1], wanted[k]) for k in changed],
        )
        if not emit:
            event = None
        if event is not None:
            await self._events.record(conn, [event], now)
        hook = self.on_applied.get(type_name)
        if hook is not None:
            await hook(conn, node_id)
        log.info(
            "inventory stored",
            extra={
                "node_id": node_id,
                "type_name": type_name,
                "items": len(wanted),
                "added": len(added),
                "removed": len(removed),
                "changed": len(changed),
            },
        )
        return Applied(len(added) + len(removed) + len(changed), event)

    async def remove_type(
        self, conn: AsyncConnection, node_id: str, type_name: str, now: float
    ) -> Applied:
        """The node no longer has the type (its custom file went): drop it, note it."""
        before = await store.item_rows(conn, node_id, type_name)
        await store.delete_type(conn, node_id, type_name)
        await store.add_changes(
            conn,
            [
                {
                    "node_id": node_id,
                    "type_name": type_name,
                    "time": now,
                    "change": "deleted",
                    "item_key": "",
                    "old": {"items": len(before)},
                    "new": None,
                }
            ],
        )
        event = self._event(
            node_id, type_name, now, False, [], [data for _, data in before.values()], []
        )
        if event is not None:
            await self._events.record(conn, [event], now)
        return Applied(len(before), event)

    async def _note_custom_attributes(
        self, conn: AsyncConnection, type_name: str, items: Any, now: float
    ) -> None:
        known = (await store.custom_types(conn)).get(type_name, [])
        seen = set(known)
        for item in items:
            seen.update(item)
        if seen != set(known):
            await store.put_custom_type(conn, type_name, sorted(seen), now)

    def _event(
        self,
        node_id: str,
        type_name: str,
        capture_time: float,
        first: bool,
        added: list[dict[str, str]],
        removed: list[dict[str, str]],
        changed: list[tuple[dict[str, str], dict[str, str]]],
    ) -> dict[str, Any] | None:
        if not (added or removed or changed or first):
            return None
        cut = max(len(added), len(removed), len(changed)) > EVENT_MAX_ITEMS
        return {
            "type": "inventory.changed",
            "node_id": node_id,
            "type_name": type_name,
            "capture_time": rfc3339(capture_time),
            "first_capture": first,
            "counts": {"added": len(added), "removed": len(removed), "changed": len(changed)},
            "added": added[:EVENT_MAX_ITEMS],
            "removed": removed[:EVENT_MAX_ITEMS],
            "changed": [{"old": o, "new": n} for o, n in changed[:EVENT_MAX_ITEMS]],
            "truncated": cut,
        }

    # AWS:ComplianceItem ------------------------------------------------------------------
    async def compliance_changed(self, conn: AsyncConnection, node_id: str) -> Applied:
        """Rebuild the node's AWS:ComplianceItem type from its compliance (same transaction
        as the compliance change)."""
        from agent.inventory.content import content_hash

        items: list[dict[str, str]] = []
        for summary in await compliance_store.summaries_of(conn, node_id):
            ctype = summary["compliance_type"]
            for item_id, row in sorted(
                (await compliance_store.items_of(conn, node_id, ctype)).items()
            ):
                details = row.get("details") or {}
                item = {
                    "ComplianceType": ctype,
                    "ExecutionId": summary.get("execution_id") or "",
                    "ExecutionType": summary.get("execution_type") or "",
                    "ExecutionTime": rfc3339(summary["execution_time"]),
                    "Id": item_id,
                    "Title": row.get("title") or "",
                    "Status": row["status"],
                    "Severity": row["severity"],
                }
                for attr in schema.TYPES[schema.COMPLIANCE_ITEM].attributes:
                    if attr not in item and isinstance(details.get(attr), str) and details[attr]:
                        item[attr] = details[attr][: schema.VALUE_MAX_CHARS]
                items.append({k: v for k, v in item.items() if v})
        return await self.apply(
            conn,
            node_id,
            schema.COMPLIANCE_ITEM,
            items,
            content_hash=content_hash(items),
            schema_version="1.0",
            capture_time=self._clock(),
            emit=False,  # compliance has its own history; the items' changes are kept here
        )
