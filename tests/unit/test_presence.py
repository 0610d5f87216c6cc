"""Node status from presence: Online while polling or recently seen, ConnectionLost after
three missed long-polls, Deregistered once deregistered."""

from __future__ import annotations

import asyncio

from agent import wire
from control_plane.services.presence import Presence


def make() -> Presence:
    presence = Presence()
    presence.load({"mi-00000000000000001": (1, False)}, set())
    return presence


def test_recently_seen_is_online_then_connection_lost() -> None:
    p = make()
    node = "mi-00000000000000001"
    p.seen(node, 1000.0)
    assert p.status(node, False, None, 1000.0 + wire.CONNECTION_LOST_AFTER_SECONDS) == "Online"
    later = 1000.0 + wire.CONNECTION_LOST_AFTER_SECONDS + 1
    assert p.status(node, False, None, later) == "ConnectionLost"
    # Three long-polls' worth of silence is the threshold.
    assert wire.CONNECTION_LOST_AFTER_SECONDS >= 3 * wire.POLL_HOLD_SECONDS


def test_a_held_poll_is_online_whatever_the_clock() -> None:
    p = make()
    node = "mi-00000000000000001"
    state = p.get(node)
    assert state is not None
    state.polls_held = 1
    assert p.status(node, False, None, 10**12) == "Online"


def test_never_seen_is_connection_lost_and_deregistered_wins() -> None:
    p = make()
    assert p.status("mi-00000000000000001", False, None, 5.0) == "ConnectionLost"
    assert p.status("mi-00000000000000001", True, 5.0, 5.0) == "Deregistered"


def test_stored_last_seen_counts_after_a_restart() -> None:
    p = make()  # a fresh server process knows only the database's last_seen
    assert p.status("mi-00000000000000001", False, 100.0, 110.0) == "Online"


def test_notify_wakes_a_waiting_poll_and_deregister_wakes_it_too() -> None:
    async def scenario() -> None:
        p = make()
        node = p.get("mi-00000000000000001")
        assert node is not None
        node.wake.clear()
        p.notify("mi-00000000000000001")
        assert node.wake.is_set() and p.take_pending("mi-00000000000000001")
        assert not p.take_pending("mi-00000000000000001")  # taken: cleared
        p.notify("mi-00000000000000001")
        node.wake.clear()
        p.deregister("mi-00000000000000001", 2)
        assert node.wake.is_set() and node.deregistered and node.generation == 2
        assert not p.take_pending("mi-00000000000000001")

    asyncio.run(scenario())


def test_messages_pushed_to_a_channel_that_closes_unsent_are_due_to_the_next_poll() -> None:
    """A channel takes what is queued for its node from memory; when it closes before
    sending it, the next long-poll must read the inbox (issue 17: a lost wake-up)."""

    async def scenario() -> None:
        p = make()
        node = "mi-00000000000000001"
        link = object()
        p.attach(node, link)
        assert p.take_fresh(node, 10) is None  # the channel read its inbox: now from memory
        message = wire.make_message(wire.MSG_PING, {})
        p.push(node, message)
        assert not p.take_pending(node)  # held for the channel, not flagged for a poll
        p.detach(node, link, 1.0)
        assert p.take_pending(node)
        # A channel that had nothing left in memory leaves no flag behind.
        p.attach(node, link)
        p.take_fresh(node, 10)
        p.take_pending(node)
        p.detach(node, link, 2.0)
        assert not p.take_pending(node)

    asyncio.run(scenario())
