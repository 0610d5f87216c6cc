"""The control channel's server side (services/agent_link.py), driven frame by frame against a
real control plane: delivery until acknowledged, answers to the agent's frames, and every
reason it closes (issue 10)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from agent import wire
from control_plane.security.node_tokens import NodeClaims
from control_plane.services import agent_link
from control_plane.services.agent_link import AgentLink, LinkGone
from tests.unit.conftest import Api, Node, RunApi
from tests.unit.test_execution_support import eventually


class Peer:
    """The agent's end of one channel: what the server sent, and frames to send it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._changed = asyncio.Event()

    async def send(self, text: str) -> None:
        if self.closed is not None:
            raise LinkGone
        self.sent.append(json.loads(text))
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._inbox.put_nowait(None)
        self._changed.set()

    def frame(self, frame: Any) -> None:
        self._inbox.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def leave(self) -> None:
        self._inbox.put_nowait(None)

    async def frames(self) -> AsyncIterator[str]:
        while (text := await self._inbox.get()) is not None:
            yield text

    async def expect(self, kind: str) -> dict[str, Any]:
        """The first frame of this type not yet taken."""
        async with asyncio.timeout(5):
            while True:
                for i, frame in enumerate(self.sent):
                    if frame["type"] == kind:
                        return self.sent.pop(i)
                self._changed.clear()
                await self._changed.wait()

    async def expect_close(self) -> tuple[int, str]:
        async with asyncio.timeout(5):
            while self.closed is None:
                self._changed.clear()
                await self._changed.wait()
        return self.closed


def open_link(
    api: Api,
    node: Node,
    peer: Peer,
    claims: NodeClaims | str | None = None,
    denied: Callable[[str], Awaitable[None]] | None = None,
    max_request_bytes: int = wire.MAX_REQUEST_BYTES,
) -> asyncio.Task[None]:
    """A channel opened with ``claims`` (default: the node's token), or, given the node's id,
    one where the node is to sign in."""
    cp = api.cp
    link = AgentLink(
        claims=claims or cp.registration.authenticate(node.token),
        denied=denied,
        channel=cp.channel,
        presence=cp.presence,
        registration=cp.registration,
        rate_limits=cp.rate_limits,
        clock=cp.clock,
        send=peer.send,
        close=peer.close,
        max_request_bytes=max_request_bytes,
    )
    return asyncio.create_task(link.run(peer.frames()))


async def queue(api: Api, node: Node, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        message = wire.make_message(wire.MSG_PING, {})
        await api.cp.channel.send(node.node_id, message)
        ids.append(message["id"])
    return ids


async def inbox(api: Api, node: Node) -> list[str]:
    from control_plane.store import messages

    async with api.cp.db.read() as conn:
        return [m["id"] for m in await messages.pending(conn, node.node_id, 1000)]


def test_messages_are_pushed_and_leave_the_inbox_only_when_acknowledged(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        hello = await peer.expect(wire.FRAME_HELLO)
        assert hello["node_id"] == node.node_id
        assert hello["max_frame_bytes"] == wire.MAX_FRAME_BYTES
        assert (await api.node(node.node_id))["status"] == "Online"
        ids = await queue(api, node, 2)
        delivered: list[str] = []
        while len(delivered) < 2:
            delivered += [m["id"] for m in (await peer.expect(wire.FRAME_DELIVER))["messages"]]
        assert delivered == ids
        assert await inbox(api, node) == ids  # not acknowledged yet
        peer.frame({"type": wire.FRAME_ACK, "ids": ids[:1]})
        await eventually(
            lambda: _equals(inbox(api, node), ids[1:]), "the acknowledged message gone", 5
        )
        # The channel is cut: what was not acknowledged comes again on the next one.
        peer.leave()
        await task
        again = Peer()
        task = open_link(api, node, again)
        redelivered = await again.expect(wire.FRAME_DELIVER)
        assert [m["id"] for m in redelivered["messages"]] == ids[1:]
        again.leave()
        await task

    run_api(scenario)


def test_the_agents_messages_are_stored_and_answered(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        hello = await peer.expect(wire.FRAME_HELLO)
        assert hello[wire.KEY_MAX_REQUEST_BYTES] == api.cp.config.max_request_bytes
        beat = dict(wire.make_message(wire.MSG_HEARTBEAT, {"hostname": "web-9"}))
        peer.frame({"type": wire.FRAME_MESSAGES, "req": "r1", "messages": [beat]})
        acked = await peer.expect(wire.FRAME_ACKED)
        assert acked == {
            "type": wire.FRAME_ACKED,
            "req": "r1",
            "ids": [beat["id"]],
            "results": [{"index": 0, "id": beat["id"], "status": wire.RESULT_ACCEPTED}],
        }
        assert (await api.node(node.node_id))["hostname"] == "web-9"
        # A bad message is rejected alone, beside the others' answers; the same message
        # again is a duplicate (stored once).
        bad = {"id": "x", "type": "heartbeat", "body": {}, "created_at": 1}
        odd = {**beat, "id": "0123456789abcdef", "type": "telemetry"}
        peer.frame({"type": wire.FRAME_MESSAGES, "req": "r2", "messages": [bad, beat, odd]})
        answer = await peer.expect(wire.FRAME_ACKED)
        assert answer["req"] == "r2" and answer["ids"] == [beat["id"]]
        results = answer["results"]
        assert [(r["index"], r["id"], r["status"]) for r in results] == [
            (0, None, wire.RESULT_REJECTED),
            (1, beat["id"], wire.RESULT_DUPLICATE),
            (2, odd["id"], wire.RESULT_REJECTED),
        ]
        assert "message id" in results[0]["reason"]
        assert "unknown message type 'telemetry'" in results[2]["reason"]
        # A frame that is not a batch is refused as a whole, and the channel stays open.
        peer.frame({"type": wire.FRAME_MESSAGES, "req": "r3", "messages": "nope"})
        error = await peer.expect(wire.FRAME_ERROR)
        assert error["req"] == "r3" and error["error"]["status"] == 400
        too_many = [beat] * (wire.MAX_MESSAGES_PER_BATCH + 1)
        peer.frame({"type": wire.FRAME_MESSAGES, "req": "r4", "messages": too_many})
        assert (await peer.expect(wire.FRAME_ERROR))["req"] == "r4"
        assert peer.closed is None
        peer.leave()
        await task

    run_api(scenario)


def test_hello_tells_at_most_what_a_frame_can_hold(run_api: RunApi) -> None:
    """A server configured for larger requests than a frame holds tells the frame's limit
    on the channel (a batch sized to the request limit would not fit in one frame)."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        for configured, told in (
            (4 * wire.MAX_REQUEST_BYTES, wire.MAX_REQUEST_BYTES),
            (65536,) * 2,
        ):
            peer = Peer()
            task = open_link(api, node, peer, max_request_bytes=configured)
            hello = await peer.expect(wire.FRAME_HELLO)
            assert hello[wire.KEY_MAX_REQUEST_BYTES] == told
            peer.leave()
            await task

    run_api(scenario)


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ({"type": "subscribe"}, "unknown type 'subscribe'"),
        ({"type": wire.FRAME_MESSAGES, "messages": []}, "req"),
        ({"type": wire.FRAME_ACK, "ids": "all"}, "ack ids"),
    ],
)
def test_a_frame_that_breaks_the_protocol_closes_the_channel(
    run_api: RunApi, frame: Any, says: str
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        await peer.expect(wire.FRAME_HELLO)
        peer.frame(frame)
        code, reason = await peer.expect_close()
        assert code == wire.CLOSE_BAD_FRAME and says in reason
        await task

    run_api(scenario)


def test_deregistration_closes_the_channel_at_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        await peer.expect(wire.FRAME_HELLO)
        gone = await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        assert gone.status_code == 200, gone.text
        assert await peer.expect_close() == (wire.CLOSE_DEREGISTERED, wire.ERR_NODE_DEREGISTERED)
        await task

    run_api(scenario)


def test_a_newer_channel_replaces_the_older(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peers = [Peer() for _ in range(20)]
        tasks = []
        for peer in peers:
            tasks.append(open_link(api, node, peer))
            await peer.expect(wire.FRAME_HELLO)
        for peer in peers[:-1]:
            assert (await peer.expect_close())[0] == wire.CLOSE_REPLACED
        await asyncio.gather(*tasks[:-1])
        assert peers[-1].closed is None
        assert api.cp.presence.connected() == 1
        ids = await queue(api, node)
        assert [m["id"] for m in (await peers[-1].expect(wire.FRAME_DELIVER))["messages"]] == ids
        peers[-1].leave()
        await tasks[-1]
        assert api.cp.presence.connected() == 0

    run_api(scenario)


def test_tokens_expire_on_the_open_channel_unless_renewed(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        other = await api.new_node()
        peer = Peer()
        # The channel's token expires in half a second (tokens expire in real time).
        claims = replace(api.cp.registration.authenticate(node.token), expires_at=time.time() + 0.5)
        task = open_link(api, node, peer, claims)
        await peer.expect(wire.FRAME_HELLO)
        peer.frame(
            {"type": wire.FRAME_TOKEN, "token": await api.node_token(node.node_id, node.key)}
        )
        # Past the first token's expiry (real time): the renewed one holds the channel open.
        await eventually(lambda: time.time() > claims.expires_at + 0.3, "the first token expired")
        ids = await queue(api, node)
        assert [m["id"] for m in (await peer.expect(wire.FRAME_DELIVER))["messages"]] == ids
        peer.leave()
        await task
        # Not renewed: closed when it expires.
        peer = Peer()
        claims = replace(claims, expires_at=time.time() + 0.3)
        task = open_link(api, node, peer, claims)
        assert await peer.expect_close() == (wire.CLOSE_UNAUTHORIZED, wire.ERR_TOKEN_EXPIRED)
        await task
        # Another node's token, or garbage, on a channel closes it.
        for token in (await api.node_token(other.node_id, other.key), "garbage"):
            peer = Peer()
            task = open_link(api, node, peer)
            await peer.expect(wire.FRAME_HELLO)
            peer.frame({"type": wire.FRAME_TOKEN, "token": token})
            assert (await peer.expect_close())[0] == wire.CLOSE_UNAUTHORIZED
            await task


def test_a_node_that_stops_acknowledging_is_disconnected(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_link, "MAX_IN_FLIGHT", 3)
    monkeypatch.setattr(agent_link, "STALL_SECONDS", 0.2)

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        ids = await queue(api, node, 5)
        sent: list[str] = []
        while len(sent) < 3:
            sent += [m["id"] for m in (await peer.expect(wire.FRAME_DELIVER))["messages"]]
        assert sent == ids[:3]  # the cap: no more is sent until some is acknowledged
        assert (await peer.expect_close())[0] == wire.CLOSE_TOO_SLOW
        await task
        assert await inbox(api, node) == ids  # nothing lost: all come again later

    run_api(scenario)


def test_a_server_shutdown_closes_channels_for_a_reconnect(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        await peer.expect(wire.FRAME_HELLO)
        api.cp.begin_shutdown()
        assert (await peer.expect_close())[0] == wire.CLOSE_SHUTDOWN
        await task

    run_api(scenario)


def sign(node: Node, challenge: dict[str, Any], nonce: str | None = None) -> dict[str, Any]:
    stamp = int(time.time())
    nonce = challenge["nonce"] if nonce is None else nonce
    payload = wire.token_signing_payload(node.node_id, challenge["nonce"], stamp)
    return {
        "type": wire.FRAME_AUTH,
        "nonce": nonce,
        "timestamp": stamp,
        "signature": node.key.sign_b64(payload),
    }


def test_a_node_signs_in_on_the_channel_and_renews_its_token_there(run_api: RunApi) -> None:
    """No token at the upgrade: challenge, auth, authorized, then hello; renew on the open
    channel gives a new token before the old one expires.  Nothing is attached (or
    delivered) before the proof."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        ids = await queue(api, node)
        peer = Peer()
        task = open_link(api, node, peer, node.node_id)
        challenge = await peer.expect(wire.FRAME_CHALLENGE)
        assert peer.sent == [] and api.cp.presence.connected() == 0
        peer.frame(sign(node, challenge))
        authorized = await peer.expect(wire.FRAME_AUTHORIZED)
        claims = api.cp.registration.authenticate(authorized["token"])
        assert claims.node_id == node.node_id and authorized["expires_at"] > time.time()
        await peer.expect(wire.FRAME_HELLO)
        assert [m["id"] for m in (await peer.expect(wire.FRAME_DELIVER))["messages"]] == ids
        peer.frame({"type": wire.FRAME_RENEW})
        renewal = await peer.expect(wire.FRAME_CHALLENGE)
        assert renewal["nonce"] != challenge["nonce"]
        peer.frame(sign(node, renewal))
        renewed = await peer.expect(wire.FRAME_AUTHORIZED)
        assert renewed["token"] != authorized["token"]
        assert api.cp.registration.authenticate(renewed["token"]).node_id == node.node_id
        peer.leave()
        await task

    run_api(scenario)


def test_a_failed_proof_closes_the_channel_unattached_and_is_audited(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        other = await api.new_node()
        denied: list[str] = []

        async def audit(reason: str) -> None:
            denied.append(reason)

        cases: list[Any] = [
            lambda c: sign(other, c),  # another node's key
            lambda c: sign(node, c, nonce="not-the-challenge"),
            lambda c: {**sign(node, c), "timestamp": "now"},
        ]
        for make in cases:
            peer = Peer()
            task = open_link(api, node, peer, node.node_id, denied=audit)
            peer.frame(make(await peer.expect(wire.FRAME_CHALLENGE)))
            assert (await peer.expect_close())[0] == wire.CLOSE_UNAUTHORIZED
            await task
            assert not [f for f in peer.sent if f["type"] == wire.FRAME_HELLO]
        assert len(denied) == 3
        # A replayed proof (the same answer twice) is refused the second time.
        peer = Peer()
        task = open_link(api, node, peer, node.node_id)
        answer = sign(node, await peer.expect(wire.FRAME_CHALLENGE))
        peer.frame(answer)
        await peer.expect(wire.FRAME_HELLO)
        peer.frame(answer)
        assert (await peer.expect_close())[0] == wire.CLOSE_UNAUTHORIZED
        await task
        # Anything but auth first, or nothing in time, closes it too.
        peer = Peer()
        task = open_link(api, node, peer, node.node_id)
        await peer.expect(wire.FRAME_CHALLENGE)
        peer.frame({"type": wire.FRAME_ACK, "ids": []})
        assert (await peer.expect_close())[0] == wire.CLOSE_UNAUTHORIZED
        await task
        assert api.cp.presence.connected() == 0

    run_api(scenario)


def test_a_deregistered_node_cannot_sign_in(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer, node.node_id)
        challenge = await peer.expect(wire.FRAME_CHALLENGE)
        gone = await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        assert gone.status_code == 200, gone.text
        peer.frame(sign(node, challenge))
        assert await peer.expect_close() == (wire.CLOSE_DEREGISTERED, wire.ERR_NODE_DEREGISTERED)
        await task

    run_api(scenario)


def test_a_failed_store_is_answered_and_the_channel_stays_open(run_api: RunApi) -> None:
    """The group commit failing (the database) refuses that frame (500, the agent sends it
    again); the channel, which carries the node's other work, stays open."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        broken = True

        async def flaky(conn: Any, items: Any) -> None:
            if broken:
                raise RuntimeError("database is locked")

        api.cp.channel.register_batch_handler(wire.MSG_PONG, flaky)
        peer = Peer()
        task = open_link(api, node, peer)
        await peer.expect(wire.FRAME_HELLO)
        pong = dict(wire.make_message(wire.MSG_PONG, {"ping_id": "p"}))
        peer.frame({"type": wire.FRAME_MESSAGES, "req": "r1", "messages": [pong]})
        error = await peer.expect(wire.FRAME_ERROR)
        assert error["req"] == "r1" and error["error"]["status"] == 500
        assert "database is locked" not in error["error"]["message"]  # no internals shown
        broken = False
        peer.frame({"type": wire.FRAME_MESSAGES, "req": "r2", "messages": [pong]})
        acked = await peer.expect(wire.FRAME_ACKED)
        assert acked["ids"] == [pong["id"]] and peer.closed is None
        peer.leave()
        await task

    run_api(scenario)


def test_a_message_left_unacknowledged_is_delivered_again_on_the_open_channel(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that could not make a message durable (its disk full) does not acknowledge
    it and counts on seeing it again; a channel that stays open must send it again (the
    fault harness found the command hanging InProgress forever)."""
    monkeypatch.setattr(agent_link, "REDELIVER_SECONDS", 0.3)

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        peer = Peer()
        task = open_link(api, node, peer)
        ids = await queue(api, node, 2)
        delivered: list[str] = []
        while len(delivered) < 2:
            delivered += [m["id"] for m in (await peer.expect(wire.FRAME_DELIVER))["messages"]]
        peer.frame({"type": wire.FRAME_ACK, "ids": ids[:1]})  # the second could not be kept
        again = await peer.expect(wire.FRAME_DELIVER)
        assert [m["id"] for m in again["messages"]] == ids[1:]
        assert peer.closed is None
        peer.frame({"type": wire.FRAME_ACK, "ids": ids[1:]})

        async def emptied() -> bool:
            return not await inbox(api, node)

        await eventually(emptied, "the inbox emptied", timeout=5)
        peer.leave()
        await task

    run_api(scenario)


async def _equals(found: Awaitable[Any], expected: Any) -> bool:
    return bool(await found == expected)
