"""No lost wake-up between "a message is queued" and "the poll (or the channel) finds nothing
and waits" (issue 17): thousands of races, in-process with the real SQLite store, each
queueing a message at a different point of the poll's loop (before it starts, before and
after its inbox read, or after a random number of event-loop turns).  Every poll is held
for an hour, so a lost wake-up shows as a poll that does not return: each round has a
generous deadline that correct code never comes near."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent import wire
from control_plane.services import agent_link
from control_plane.services.ratelimit import RateLimits
from control_plane.store import messages
from tests.unit.conftest import Api, Node, RunApi
from tests.unit.test_agent_link import Peer, open_link
from tests.unit.test_execution_support import eventually
from tests.unit.test_server_api_messages import poll as http_poll

HOLD = 3600.0  # a lost wake-up would hold the poll this long
DEADLINE = 30.0  # per round: correct code answers in milliseconds
ROUNDS = 2000

Queue = Callable[[], Awaitable[str]]


class ReadHook:
    """Runs ``fire`` inside the inbox read of the node's next poll: before or after its
    SELECT (then the message is committed after the read's snapshot)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.when: str | None = None
        self.fire: Queue | None = None
        self.fired = 0
        self.reads = 0  # inbox reads finished
        self._sending: set[asyncio.Task[str]] = set()
        real = messages.pending

        async def pending(conn: Any, node_id: str, limit: int, exclude: Any = frozenset()) -> Any:
            if self.when == "before-read":
                await self._fire()
            found = await real(conn, node_id, limit, exclude)
            self.reads += 1
            if self.when == "after-read":
                await self._fire()
            return found

        monkeypatch.setattr(messages, "pending", pending)

    async def _fire(self) -> None:
        fire, self.fire = self.fire, None
        if fire is not None:
            self.fired += 1
            # Shielded: a channel closing under its pump cancels the read, not the sender.
            sending = asyncio.create_task(fire())
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
            await asyncio.shield(sending)


def ping_queue(api: Api, node: Node, sent: list[str]) -> Queue:
    async def queue() -> str:
        message = wire.make_message(wire.MSG_PING, {})
        sent.append(message["id"])
        await api.cp.channel.send(node.node_id, message)
        return message["id"]

    return queue


async def yields(n: int) -> None:
    """``n`` turns of the event loop: where, among the channel's own steps, the test's next
    action lands (the interleaving under test, chosen at random; not a wait)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def bounded(what: str, awaitable: Awaitable[Any]) -> Any:
    try:
        async with asyncio.timeout(DEADLINE):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{what}: still waiting (a lost wake-up)") from None


def test_a_message_queued_while_a_poll_starts_is_always_returned_at_once(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(17)
    hook = ReadHook(monkeypatch)

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        sent: list[str] = []
        queue = ping_queue(api, node, sent)
        acks: list[str] = []
        modes = ["before-poll", "before-read", "after-read", "turns"]
        for round_ in range(ROUNDS):
            mode = modes[round_ % len(modes)]
            if mode == "before-poll":
                await queue()
            elif mode in ("before-read", "after-read"):
                hook.when, hook.fire = mode, queue
            polling = asyncio.create_task(api.cp.channel.poll(node.node_id, acks, HOLD))
            if mode == "turns":
                await yields(rng.randrange(40))
                await queue()
            got = await bounded(f"round {round_} ({mode})", polling)
            hook.when = None
            assert [m["id"] for m in got] == sent[-1:], f"round {round_} ({mode})"
            acks = [m["id"] for m in got]
        assert hook.fired == ROUNDS // 2
        assert await http_poll(api, node, acks, 0) == []  # every message was acknowledged

    run_api(scenario)


def test_a_command_queued_while_a_poll_starts_is_returned_at_once(run_api: RunApi) -> None:
    """The same race through the real path: the API queues a command, the dispatcher
    commits it to the inbox and wakes the node."""
    rng = random.Random(1017)

    async def scenario(api: Api) -> None:
        api.cp.rate_limits = RateLimits(operator_rate=0, auth_base_delay=0, clock=api.clock)
        node = await api.new_node()
        acks: list[str] = []
        for round_ in range(200):
            polling = asyncio.create_task(api.cp.channel.poll(node.node_id, acks, HOLD))
            await yields(rng.randrange(40))
            sent = await api.client.post(
                "/v1/commands",
                json={"targets": [node.node_id], "parameters": {"commands": ["true"]}},
                headers=api.admin,
            )
            assert sent.status_code == 201, sent.text
            got = await bounded(f"round {round_}", polling)
            assert [m["body"]["command_id"] for m in got] == [sent.json()["command_id"]]
            acks = [m["id"] for m in got]

    run_api(scenario)


def test_messages_queued_while_the_channel_sends_or_closes_are_all_delivered(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control channel's pump, and the hand-over when a channel closes: bursts queued
    at every point of its loop (from memory, from the inbox, while it sends), while the
    agent stays, reconnects, or falls back to long-polls (then what was pushed to the closed
    channel's memory must be found by the poll).  Deliveries hold two messages at most, so
    the pump often has more to send than one frame holds."""
    monkeypatch.setattr(agent_link, "MAX_DELIVERY_BATCH", 2)
    rng = random.Random(2017)
    hook = ReadHook(monkeypatch)

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        sent: list[str] = []
        queue = ping_queue(api, node, sent)
        delivered: set[str] = set()

        async def burst(size: int) -> None:
            for _ in range(size):
                await yields(rng.randrange(6))
                await queue()

        async def drain(peer: Peer, what: str) -> None:
            while set(sent) - delivered:
                frame = await bounded(what, peer.expect(wire.FRAME_DELIVER))
                ids = [m["id"] for m in frame["messages"]]
                delivered.update(ids)
                peer.frame({"type": wire.FRAME_ACK, "ids": ids})

        peer = Peer()
        link = open_link(api, node, peer)
        await peer.expect(wire.FRAME_HELLO)
        modes = {"stay": 0, "reconnect": 0, "poll": 0}
        for round_ in range(ROUNDS // 2):
            mode = rng.choice(list(modes))
            modes[mode] += 1
            if rng.random() < 0.3:  # the next inbox read has one more committed behind it
                hook.when, hook.fire = rng.choice(["before-read", "after-read"]), queue
            queued = asyncio.create_task(burst(rng.randrange(1, 5)))
            await yields(rng.randrange(6))
            if mode != "stay":
                peer.leave()
                await bounded(f"round {round_}: closing", link)
            if mode == "poll":  # the agent falls back to the long-poll for a while
                await queued
                acks: list[str] = []
                while set(sent) - delivered:
                    got = await bounded(
                        f"round {round_}: poll", api.cp.channel.poll(node.node_id, acks, HOLD)
                    )
                    acks = [m["id"] for m in got]
                    delivered.update(acks)
                await api.cp.channel.acknowledge(node.node_id, acks)
            if mode != "stay":
                peer = Peer()
                link = open_link(api, node, peer)
            await queued
            await drain(peer, f"round {round_} ({mode})")
            hook.when = None
        assert delivered == set(sent)
        assert min(modes.values()) > ROUNDS // 10 and hook.fired > 0
        peer.leave()
        await link

    run_api(scenario)


def test_a_channel_sends_what_was_pushed_behind_its_inbox_read(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages committed before the channel's inbox read but pushed to its memory after it
    (the dispatcher pushes once its transaction is over), and one more behind them: the
    copies already sent are skipped, and the one behind is sent without another wake-up."""
    monkeypatch.setattr(agent_link, "MAX_DELIVERY_BATCH", 2)
    hook = ReadHook(monkeypatch)

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        link = open_link(api, node, peer)
        await peer.expect(wire.FRAME_HELLO)
        # The channel's first read (of an empty inbox) is over before anything is queued: it
        # is the next read, the one the test wakes, that the hook runs in.
        await eventually(lambda: hook.reads >= 1, "the channel's first inbox read", DEADLINE)
        first = [wire.make_message(wire.MSG_PING, {}) for _ in range(2)]
        last = wire.make_message(wire.MSG_PING, {})
        async with api.cp.db.transaction() as conn:
            await messages.enqueue_many(conn, [(node.node_id, m) for m in first])

        async def pushed_late() -> str:
            for message in first:
                api.cp.presence.push(node.node_id, message)
            await api.cp.channel.send(node.node_id, last)
            return last["id"]

        hook.when, hook.fire = "after-read", pushed_late
        api.cp.presence.notify(node.node_id)  # the channel reads its inbox
        frame = await bounded("the inbox read", peer.expect(wire.FRAME_DELIVER))
        assert [m["id"] for m in frame["messages"]] == [m["id"] for m in first]
        assert hook.fired == 1
        frame = await bounded("the message behind", peer.expect(wire.FRAME_DELIVER))
        assert [m["id"] for m in frame["messages"]] == [last["id"]]
        peer.leave()
        await link

    run_api(scenario)
