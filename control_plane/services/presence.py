"""Who is connected, in memory: so a waiting long-poll costs no database query.

Holds, per node: its credential generation (to check tokens without a query), the last time it
was seen (flushed to the database in batches), whether messages wait for it, and the wake-up
event a held poll waits on.  With replicas, wake-ups will be fed by PostgreSQL LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent import wire


@dataclass
class NodePresence:
    generation: int
    deregistered: bool
    last_seen: float | None = None
    polls_held: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Presence:
    def __init__(self) -> None:
        self._nodes: dict[str, NodePresence] = {}
        self._dirty: dict[str, float] = {}
        self._pending: set[str] = set()
        self.shutting_down = asyncio.Event()

    def load(self, generations: dict[str, tuple[int, bool]], pending: set[str]) -> None:
        for node_id, (generation, deregistered) in generations.items():
            self._nodes[node_id] = NodePresence(generation, deregistered)
        self._pending = set(pending)

    def add(self, node_id: str, generation: int) -> None:
        self._nodes[node_id] = NodePresence(generation, False)

    def get(self, node_id: str) -> NodePresence | None:
        return self._nodes.get(node_id)

    def deregister(self, node_id: str, generation: int) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            node.generation = generation
            node.deregistered = True
            node.wake.set()
        self._pending.discard(node_id)

    def seen(self, node_id: str, now: float) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            node.last_seen = now
            self._dirty[node_id] = now

    def take_dirty(self) -> dict[str, float]:
        dirty, self._dirty = self._dirty, {}
        return dirty

    def status(self, node_id: str, deregistered: bool, last_seen: float | None, now: float) -> str:
        if deregistered:
            return "Deregistered"
        node = self._nodes.get(node_id)
        if node is not None and node.polls_held > 0:
            return "Online"
        if node is not None and node.last_seen is not None:
            last_seen = max(node.last_seen, last_seen or 0.0)
        if last_seen is not None and now - last_seen <= wire.CONNECTION_LOST_AFTER_SECONDS:
            return "Online"
        return "ConnectionLost"

    def last_seen(self, node_id: str, stored: float | None) -> float | None:
        node = self._nodes.get(node_id)
        if node is None or node.last_seen is None:
            return stored
        return max(node.last_seen, stored or 0.0)

    # Pending messages and wake-ups ---------------------------------------------------------
    def has_pending(self, node_id: str) -> bool:
        return node_id in self._pending

    def clear_pending(self, node_id: str) -> None:
        self._pending.discard(node_id)

    def notify(self, node_id: str) -> None:
        self._pending.add(node_id)
        node = self._nodes.get(node_id)
        if node is not None:
            node.wake.set()

    def wake_all(self) -> None:
        for node in self._nodes.values():
            node.wake.set()
