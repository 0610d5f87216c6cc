"""Who is connected, in memory: so a waiting long-poll costs no database query.

Holds, per node: its credential generation (to check tokens without a query), the last time it
was seen (flushed to the database in batches), whether messages wait for it, and the wake-up
event a held poll waits on.  With replicas, wake-ups will be fed by PostgreSQL LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent import wire
from agent.wire import Message

# A node whose control channel closed is Online this long, time to reconnect.
CHANNEL_GRACE_SECONDS = 10.0
MAX_FRESH = 1000


@dataclass
class NodePresence:
    generation: int
    deregistered: bool
    last_seen: float | None = None
    polls_held: int = 0  # long-polls held and control channels open: Online while > 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    link: object | None = None  # the open control channel (services/agent_link.py)
    link_closed_at: float | None = None  # when the last one closed (None: one is open)
    # Messages committed to the node's inbox since its channel last read the inbox, in
    # memory, so the channel sends them without reading the database; None: read it.
    fresh: list[Message] | None = None


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

    def attach(self, node_id: str, link: object) -> object | None:
        """``link`` is now the node's control channel; the one it replaces, if any."""
        node = self._nodes.get(node_id)
        if node is None:
            return None
        previous, node.link = node.link, link
        node.link_closed_at = None
        node.fresh = None  # the new channel starts from the inbox
        node.polls_held += 1
        return previous

    def detach(self, node_id: str, link: object, now: float) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            return
        if node.link is link:
            node.link = None
            node.link_closed_at = now
            if node.fresh:  # pushed for the channel, never sent: a poll must read them
                self._pending.add(node_id)
            node.fresh = None
        node.polls_held -= 1

    def connected(self) -> int:
        """How many nodes have a control channel open."""
        return sum(1 for node in self._nodes.values() if node.link is not None)

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
        if node is not None and node.link_closed_at is not None and (
            node.last_seen is None or node.last_seen <= node.link_closed_at
        ):
            # Its channel closed (a half-open one is found by pings) and nothing since: lost
            # unless it reconnects within the grace.
            return "Online" if now - node.link_closed_at <= CHANNEL_GRACE_SECONDS else (
                "ConnectionLost"
            )
        if node is not None and node.last_seen is not None:
            last_seen = max(node.last_seen, last_seen or 0.0)
        if last_seen is not None and now - last_seen <= wire.CONNECTION_LOST_AFTER_SECONDS:
            return "Online"
        return "ConnectionLost"

    def last_seen(self, node_id: str, stored: float | None, now: float) -> float | None:
        """When the node was last heard from (now, while its control channel is open: the
        channel's pings prove it is there)."""
        node = self._nodes.get(node_id)
        if node is not None and node.link is not None:
            return now
        if node is None or node.last_seen is None:
            return stored
        return max(node.last_seen, stored or 0.0)

    # Pending messages and wake-ups ---------------------------------------------------------
    def take_pending(self, node_id: str) -> bool:
        """Whether messages may wait for the node, clearing the flag (see
        AgentChannel.next_batch for why it is cleared before the read)."""
        if node_id in self._pending:
            self._pending.discard(node_id)
            return True
        return False

    def push(self, node_id: str, message: Message) -> None:
        """``message`` was committed to the node's inbox: a channel takes it from memory,
        a poll (or a channel past MAX_FRESH) from the inbox."""
        node = self._nodes.get(node_id)
        if node is None or node.link is None:
            self.notify(node_id)
            return
        if node.fresh is not None:
            if len(node.fresh) < MAX_FRESH:
                node.fresh.append(message)
            else:
                node.fresh = None  # too many: the channel reads the inbox instead
                self._pending.add(node_id)
        node.wake.set()

    def take_fresh(self, node_id: str, limit: int) -> list[Message] | None:
        """Up to ``limit`` messages pushed since the channel last looked; None when the
        channel must read the inbox (it starts collecting again from this call)."""
        node = self._nodes.get(node_id)
        if node is None:
            return []
        if node.fresh is None:
            node.fresh = []
            return None
        taken, node.fresh = node.fresh[:limit], node.fresh[limit:]
        return taken

    def notify(self, node_id: str) -> None:
        self._pending.add(node_id)
        node = self._nodes.get(node_id)
        if node is not None:
            node.wake.set()

    def wake_all(self) -> None:
        for node in self._nodes.values():
            node.wake.set()
