"""Managed nodes: listing, tags, heartbeats, ping and deregistration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest, NotFound, Timeout
from control_plane.services import node_filters, paging
from control_plane.services.channel import AgentChannel
from control_plane.services.channel_writer import AfterCommit
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.presence import Presence
from control_plane.services.targets import check_specs, resolve
from control_plane.services.validation import MAX_TAGS, check_tag_key, check_tags
from control_plane.store import associations as association_store
from control_plane.store import messages
from control_plane.store import nodes as store
from control_plane.store.db import Database

log = logging.getLogger("corral.nodes")

MAX_PING_TIMEOUT = 300.0
TAGS_CACHE_SECONDS = 30.0


def _key(row: dict[str, Any]) -> paging.Key:
    return (row["registered_at"], row["id"])


class NodeService:
    def __init__(
        self, db: Database, presence: Presence, channel: AgentChannel, clock: Clock
    ) -> None:
        self._db = db
        self._presence = presence
        self._channel = channel
        self._clock = clock
        self._pings: dict[str, asyncio.Future[float]] = {}
        # Tags for authorization, kept TAGS_CACHE_SECONDS; tagging through this server drops
        # the node's entry at once (a replica's change is seen within the TTL).
        self._tags: dict[str, tuple[float, dict[str, str]]] = {}
        # Told once a deregistration has committed (the hub wires the dispatcher in, which
        # ends the node's invocations).
        self.on_deregistered: Callable[[str], None] | None = None
        # What a node is targeted by changed (tags, deregistration): State Manager re-checks.
        self.on_targeting_changed: Callable[[], None] = lambda: None
        channel.register_handler(wire.MSG_HEARTBEAT, self._on_heartbeat)
        channel.register_handler(wire.MSG_PONG, self._on_pong)

    def _view(self, row: dict[str, Any], tags: dict[str, str], now: float) -> dict[str, Any]:
        deregistered = row["deregistered_at"] is not None
        return {
            "node_id": row["id"],
            "name": row["name"],
            "status": self._presence.status(row["id"], deregistered, row["last_seen"], now),
            "platform": row["platform"],
            "platform_name": row["platform_name"],
            "platform_version": row["platform_version"],
            "agent_version": row["agent_version"],
            "hostname": row["hostname"],
            "ip_addresses": row["ip_addresses"],
            "tags": tags,
            "activation_id": row["activation_id"],
            "registered_at": rfc3339(row["registered_at"]),
            "last_seen": rfc3339(self._presence.last_seen(row["id"], row["last_seen"], now)),
            "boot_time": rfc3339(row["boot_time"]),
            "deregistered_at": rfc3339(row["deregistered_at"]),
            # The agent's outbox (last heartbeat): messages waiting to be sent, and messages
            # the server refused, kept on the node (`corral-agent outbox list-dead`).
            "outbox_depth": row["outbox_depth"],
            "outbox_dead": row["outbox_dead"],
        }

    async def list_page(
        self,
        filters: list[str],
        targets: list[str] | None = None,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
        visible: Callable[[dict[str, Any]], bool] = lambda _node: True,
    ) -> paging.Page[dict[str, Any]]:
        """Nodes in registration order, a page at a time: every node, or those matching
        every filter (services/node_filters.py); with ``targets``, only the nodes those
        target specs resolve to (what a command to them would reach); only those
        ``visible(view)``."""
        parsed = node_filters.parse(filters)
        tag_filters = parsed.tags
        specs = check_specs(targets) if targets else None
        ids: list[str] | None = None
        if tag_filters or specs is not None:
            async with self._db.read() as conn:
                if tag_filters:
                    ids = await store.list_ids_with_tags(conn, tag_filters)
                if specs is not None:
                    matched = await resolve(conn, specs)
                    tagged = None if ids is None else set(ids)
                    ids = [i for i in matched if tagged is None or i in tagged]

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            async with self._db.read() as conn:
                rows = await store.list_rows(conn, ids, after=after, limit=n)
                tags = await store.tags_for(conn, [r["id"] for r in rows])
            now = self._clock()
            return [{**self._view(r, tags[r["id"]], now), "_key": _key(r)} for r in rows]

        page = await paging.scan(
            fetch,
            key=lambda view: view["_key"],
            limit=limit,
            next_token=next_token,
            shape=(float, str),
            visible=lambda view: parsed.matches(view) and visible(view),
        )
        return paging.Page(
            [{k: v for k, v in n.items() if k != "_key"} for n in page.items], page.next_token
        )

    async def tags_of(self, node_id: str) -> dict[str, str]:
        """The node's tags (for authorization; an unknown node has none)."""
        now = self._clock()
        cached = self._tags.get(node_id)
        if cached is not None and now - cached[0] < TAGS_CACHE_SECONDS:
            return cached[1]
        async with self._db.read() as conn:
            tags = (await store.tags_for(conn, [node_id])).get(node_id, {})
        if len(self._tags) > 100_000:
            self._tags.clear()
        self._tags[node_id] = (now, tags)
        return tags

    async def get(self, node_id: str, conn: AsyncConnection | None = None) -> dict[str, Any]:
        if conn is None:
            async with self._db.read() as read:
                return await self.get(node_id, read)
        row = await store.get(conn, node_id)
        if row is None:
            raise NotFound(f"node {node_id} not found")
        tags = await store.tags_for(conn, [node_id])
        return self._view(row, tags[node_id], self._clock())

    async def tag(self, node_id: str, tags: dict[str, Any]) -> dict[str, Any]:
        if not tags:
            raise InvalidRequest("give at least one tag")
        async with self._db.transaction() as conn:
            current = (await self.get(node_id, conn))["tags"]
            new = check_tags(tags)
            if len(set(current) | set(new)) > MAX_TAGS:
                raise InvalidRequest(f"a node may have at most {MAX_TAGS} tags")
            await store.set_tags(conn, node_id, new)
            shown = await self.get(node_id, conn)
        self._tags.pop(node_id, None)  # after the commit: a read in between saw the old tags
        self.on_targeting_changed()
        return shown

    async def untag(self, node_id: str, keys: list[Any]) -> dict[str, Any]:
        if not keys:
            raise InvalidRequest("give at least one tag key")
        clean = [check_tag_key(k) for k in keys]
        async with self._db.transaction() as conn:
            await self.get(node_id, conn)
            await store.remove_tags(conn, node_id, clean)
            shown = await self.get(node_id, conn)
        self._tags.pop(node_id, None)
        self.on_targeting_changed()
        return shown

    async def deregister(self, node_id: str) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            row = await store.get(conn, node_id)
            if row is None:
                raise NotFound(f"node {node_id} not found")
            generation = row["generation"]
            if row["deregistered_at"] is None:
                generation += 1
                await store.update(
                    conn, node_id, deregistered_at=self._clock(), generation=generation
                )
                await messages.drop_for_node(conn, node_id)
            view = await self.get(node_id, conn)
        self._presence.deregister(node_id, generation)
        if self.on_deregistered is not None:
            self.on_deregistered(node_id)
        self.on_targeting_changed()
        log.info("node deregistered", extra={"node_id": node_id})
        return view

    async def ping(self, node_id: str, timeout_seconds: float) -> dict[str, Any]:
        timeout = timeout_seconds
        if not 0 < timeout <= MAX_PING_TIMEOUT:
            raise InvalidRequest(f"timeout_seconds must be between 0 and {MAX_PING_TIMEOUT:g}")
        node = await self.get(node_id)
        if node["status"] == "Deregistered":
            raise InvalidRequest(f"node {node_id} is deregistered")
        message = wire.make_message(wire.MSG_PING, {})
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[message["id"]] = waiter
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await self._channel.send(node_id, message)
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            async with self._db.transaction() as conn:
                await messages.acknowledge(conn, node_id, [message["id"]])
            raise Timeout(f"node {node_id} did not answer within {timeout:g} s") from None
        finally:
            self._pings.pop(message["id"], None)
        return {"node_id": node_id, "rtt_ms": round((loop.time() - start) * 1000, 3)}

    async def _on_pong(self, conn: AsyncConnection, node_id: str, msg: Message) -> AfterCommit:
        ping_id = msg["body"].get("ping_id")

        def wake() -> None:
            waiter = self._pings.get(str(ping_id))
            if waiter is not None and not waiter.done():
                waiter.set_result(self._clock())

        return wake

    async def _on_heartbeat(self, conn: AsyncConnection, node_id: str, msg: Message) -> None:
        body = msg["body"]

        def text(key: str, limit: int) -> str:
            value = body.get(key, "")
            return value[:limit] if isinstance(value, str) else ""

        addresses = body.get("ip_addresses", [])
        if not isinstance(addresses, list):
            addresses = []
        boot = body.get("boot_time")

        def count(key: str, limit: int = 2**31) -> int | None:
            value = body.get(key)
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < limit
            return value if ok else None

        await store.update(
            conn,
            node_id,
            agent_version=text("agent_version", 32),
            hostname=text("hostname", 256),
            platform=text("platform", 32),
            platform_name=text("platform_name", 128),
            platform_version=text("platform_version", 128),
            ip_addresses=[a for a in addresses if isinstance(a, str) and len(a) <= 64][:64],
            boot_time=float(boot) if isinstance(boot, int | float) else None,
            last_seen=self._clock(),
            outbox_depth=count("outbox_depth"),
            outbox_dead=count("outbox_dead"),
            # The agent's own figures (GET /metrics shows them per node); an older agent
            # omits them, a value out of bounds is dropped.
            workers=count("workers"),
            rss_bytes=count("rss_bytes", 2**48),
        )
        held = body.get("associations_revision")
        held = held[:64] if isinstance(held, str) else None
        if await association_store.node_lost_set(conn, node_id, held, self._clock() - 600):
            # The node holds another set than it was sent (its state dir lost the file, or
            # was rebuilt): forget what was sent, so the next pass sends it again.
            self.on_targeting_changed()
        return None
