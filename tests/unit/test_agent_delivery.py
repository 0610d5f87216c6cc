"""The sender (agent/transport/sender.py): batches bounded by bytes as well as count, halved
on 413 down to one message, per-message answers (only what the server rejected is buried),
an unreadable outbox row moved to the dead table, and the answers parsed as the wire says."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.backoff import Backoff
from agent.errors import ServerRejected, TransportError
from agent.outbox import Outbox
from agent.transport.base import SendAnswer, encode
from agent.transport.sender import SHRUNK_SECONDS, Sender
from agent.wire import Message

SIX = "\u2028"  # escaped to six bytes


def msg(n: int, size: int = 10) -> Message:
    return Message(
        id=f"msg-{n:06d}",
        type=wire.MSG_INVOCATION_UPDATE,
        body={"command_id": f"c{n}", "status": wire.ST_SUCCESS, "pad": "x" * size},
        created_at=1_700_000_000.0 + n,
    )


class FakeServer:
    """A transport with a request limit in bytes (what a proxy enforces: 413 beyond it) and
    per-message answers decided by ``judge``."""

    def __init__(
        self,
        limit: int = 10**9,
        told: int | None = None,
        judge: Callable[[Message], str] = lambda _m: wire.RESULT_ACCEPTED,
        results: bool = True,
    ) -> None:
        self.limit = limit
        self.max_request_bytes = told
        self.judge = judge
        self.results = results
        self.requests: list[tuple[int, int]] = []  # (count, bytes) of each request
        self.stored: list[str] = []
        self.bodies: dict[str, dict[str, Any]] = {}
        self.errors: list[Exception] = []

    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        return []

    async def send(self, messages: list[Message]) -> SendAnswer:
        size = len(encode({"messages": messages}))
        self.requests.append((len(messages), size))
        if self.errors:
            raise self.errors.pop(0)
        if size > self.limit:
            raise ServerRejected("Request Entity Too Large", 413, "http_413")
        results = []
        for m in messages:
            status = self.judge(m)
            if status == wire.RESULT_ACCEPTED:
                self.stored.append(m["id"])
                self.bodies[m["id"]] = m["body"]
            results.append({"id": m["id"], "status": status, "reason": f"bad {m['id']}"})
        answer: dict[str, Any] = {
            "acked": [
                r["id"]
                for r in results
                if r["status"] in (wire.RESULT_ACCEPTED, wire.RESULT_DUPLICATE)
            ]
        }
        if self.results:
            answer["results"] = results
        return SendAnswer.parse(answer, messages)

    async def upload_output(self, *args: Any) -> tuple[int, str]:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


def backoff() -> Backoff:
    return Backoff(0.001, 0.002)


async def drain(sender: Sender, rounds: int = 1000) -> None:
    for _ in range(rounds):
        if await sender.flush_once() is None:
            return
    raise AssertionError("the outbox never emptied")


def run(scenario: Callable[[Outbox], Any], tmp_path: Path) -> None:
    async def main() -> None:
        box = Outbox(tmp_path / "outbox.db")
        try:
            await scenario(box)
        finally:
            box.close()

    asyncio.run(main())


def test_batches_stay_under_three_quarters_of_the_limit_the_server_told(tmp_path: Path) -> None:
    told = 64 * 1024

    async def scenario(box: Outbox) -> None:
        for n in range(40):
            await box.put(msg(n, size=5_000))  # 40 x ~5 KB = ~200 KB: more than one request
        server = FakeServer(told=told)
        await drain(Sender(box, server, backoff))
        assert len(server.stored) == 40 and box.depth() == 0 and box.dead_count() == 0
        assert len(server.requests) > 1
        assert all(size <= told * wire.REQUEST_FILL for _, size in server.requests)

    run(scenario, tmp_path)


def test_without_a_told_limit_the_wire_default_bounds_the_batch(tmp_path: Path) -> None:
    async def scenario(box: Outbox) -> None:
        for n in range(30):
            await box.put(msg(n, size=60_000))  # 30 x 60 KB = 1.8 MB
        server = FakeServer()
        await drain(Sender(box, server, backoff))
        assert len(server.stored) == 30
        assert max(size for _, size in server.requests) <= wire.MAX_REQUEST_BYTES * 0.75

    run(scenario, tmp_path)


def test_a_batch_stays_within_the_count_limit(tmp_path: Path) -> None:
    async def scenario(box: Outbox) -> None:
        for n in range(wire.MAX_MESSAGES_PER_BATCH + 30):
            await box.put(msg(n))
        server = FakeServer()
        await drain(Sender(box, server, backoff))
        assert [count for count, _ in server.requests] == [wire.MAX_MESSAGES_PER_BATCH, 30]

    run(scenario, tmp_path)


def test_a_proxy_with_a_lower_limit_halves_the_batch_and_nothing_is_buried(
    tmp_path: Path,
) -> None:
    """The issue's outage: 79 results of ~40 KB queued, the server told 1 MiB, a proxy in
    front takes 200 KB.  Every one arrives; the dead table stays empty."""
    now = [1000.0]

    async def scenario(box: Outbox) -> None:
        for n in range(79):
            await box.put(msg(n, size=40_000))
        server = FakeServer(limit=200_000, told=wire.MAX_REQUEST_BYTES)
        sender = Sender(box, server, backoff, clock=lambda: now[0])
        await drain(sender)
        assert sorted(server.stored) == sorted(msg(n)["id"] for n in range(79))
        assert box.dead_count() == 0
        refused = [r for r in server.requests if r[1] > 200_000]
        # It learnt: after the first halvings, the smaller size that worked is used.
        assert len(refused) <= 3
        assert sender.limits.byte_budget <= 200_000
        # ... for a while, then the server's own limit is tried again.
        now[0] += SHRUNK_SECONDS + 1
        assert sender.limits.byte_budget == int(wire.MAX_REQUEST_BYTES * wire.REQUEST_FILL)

    run(scenario, tmp_path)


def test_only_a_single_message_refused_as_too_large_goes_to_the_dead_table(
    tmp_path: Path,
) -> None:
    async def scenario(box: Outbox) -> None:
        await box.put(msg(1, size=100))
        await box.put(msg(2, size=50_000))  # larger than the proxy takes, even alone
        await box.put(msg(3, size=100))
        server = FakeServer(limit=20_000)
        await drain(Sender(box, server, backoff))
        assert {msg(1)["id"], msg(3)["id"]} <= set(server.stored) and len(server.stored) == 3
        # The server never saw it: a small Failed result stands in, saying why.
        (stand_in,) = [b for i, b in server.bodies.items() if not i.startswith("msg-")]
        assert (stand_in["command_id"], stand_in["status"]) == ("c2", wire.ST_FAILED)
        assert stand_in["status_details"] == "result rejected"
        assert "413" in stand_in["steps"][0]["stderr"]
        assert "list-dead" in stand_in["steps"][0]["stderr"]
        dead = box.list_dead()
        assert [d.id for d in dead] == [msg(2)["id"]]
        assert "413" in dead[0].reason
        # Tried alone before it was buried.
        assert (1, len(encode({"messages": [msg(2, size=50_000)]}))) in server.requests

    run(scenario, tmp_path)


def test_a_stand_in_refused_too_is_only_buried(tmp_path: Path) -> None:
    """A limit below even the small stand-in: both are buried, nothing loops."""

    async def scenario(box: Outbox) -> None:
        await box.put(msg(2, size=50_000))
        server = FakeServer(limit=100)
        await drain(Sender(box, server, backoff))
        assert server.stored == []
        assert len(box.list_dead()) == 2

    run(scenario, tmp_path)


def test_only_what_the_server_rejected_is_buried_with_its_reason(tmp_path: Path) -> None:
    def judge(m: Message) -> str:
        return {
            msg(2)["id"]: wire.RESULT_REJECTED,
            msg(3)["id"]: wire.RESULT_DUPLICATE,
        }.get(m["id"], wire.RESULT_ACCEPTED)

    async def scenario(box: Outbox) -> None:
        for n in (1, 2, 3, 4):
            await box.put(msg(n))
        server = FakeServer(judge=judge)
        assert await Sender(box, server, backoff).flush_once() is True
        assert box.depth() == 0
        dead = box.list_dead()
        assert [(d.id, d.reason) for d in dead] == [(msg(2)["id"], f"bad {msg(2)['id']}")]

    run(scenario, tmp_path)


def test_what_the_server_neither_acked_nor_rejected_stays_for_a_retry(tmp_path: Path) -> None:
    async def scenario(box: Outbox) -> None:
        for n in (1, 2):
            await box.put(msg(n))

        def judge(m: Message) -> str:
            return wire.RESULT_ACCEPTED if m["id"] == msg(1)["id"] else "later"

        server = FakeServer(judge=judge)
        sender = Sender(box, server, backoff)
        assert await sender.flush_once() is True
        assert [m["id"] for m in await box.peek(10)] == [msg(2)["id"]]
        assert box.dead_count() == 0
        # An answer about none of the batch is no progress: the sender backs off.
        assert await sender.flush_once() is False

    run(scenario, tmp_path)


def test_an_older_server_without_results_acks_as_before(tmp_path: Path) -> None:
    async def scenario(box: Outbox) -> None:
        for n in (1, 2, 3):
            await box.put(msg(n))
        server = FakeServer(results=False)
        await drain(Sender(box, server, backoff))
        assert len(server.stored) == 3 and box.dead_count() == 0

    run(scenario, tmp_path)


def test_an_older_server_refusing_a_batch_for_one_message_buries_only_that_one(
    tmp_path: Path,
) -> None:
    """400 for the whole batch (one unknown type): halving finds the one to blame."""
    bad = msg(5)["id"]

    class Strict(FakeServer):
        async def send(self, messages: list[Message]) -> SendAnswer:
            if any(m["id"] == bad for m in messages):
                self.requests.append((len(messages), 0))
                raise ServerRejected("unknown message type", 400, "invalid_request")
            return await super().send(messages)

    async def scenario(box: Outbox) -> None:
        for n in range(1, 9):
            await box.put(msg(n))
        server = Strict()
        await drain(Sender(box, server, backoff))
        assert len(server.stored) == 8  # the seven, and the Failed stand-in for the one
        assert [d.id for d in box.list_dead()] == [bad]

    run(scenario, tmp_path)


def test_transport_errors_and_other_refusals_are_retried_never_buried(tmp_path: Path) -> None:
    async def scenario(box: Outbox) -> None:
        await box.put(msg(1))
        server = FakeServer()
        server.errors = [
            TransportError("connection refused"),
            ServerRejected("unauthorized", 401, "unauthorized"),
            TransportError("server error 503"),
        ]
        assert await Sender(box, server, backoff).flush_once() is True
        assert server.stored == [msg(1)["id"]] and box.dead_count() == 0

    run(scenario, tmp_path)


def test_a_corrupt_outbox_row_is_moved_to_the_dead_table_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    async def scenario(box: Outbox) -> None:
        await box.put(msg(1))
        await box.put(msg(2))
        conn = sqlite3.connect(path)
        conn.execute("UPDATE outbox SET body = ? WHERE id = ?", ("{not json", msg(1)["id"]))
        conn.commit()
        conn.close()
        server = FakeServer()
        await drain(Sender(box, server, backoff))
        dead = box.list_dead()
        assert [d.id for d in dead] == [msg(1)["id"]]
        assert "not JSON" in dead[0].reason
        assert msg(2)["id"] in server.stored
        # The operator hears of it: a node_event went out.
        assert box.depth() == 0 and len(server.stored) == 2

    run(scenario, tmp_path)


def test_the_answer_parser_ignores_ids_it_did_not_send() -> None:
    sent = [msg(1), msg(2)]
    answer = SendAnswer.parse(
        {
            "acked": [msg(1)["id"], "not-sent"],
            "results": [
                {"id": msg(1)["id"], "status": "accepted"},
                {"id": msg(2)["id"], "status": "rejected"},
                {"id": "other", "status": "rejected", "reason": "x"},
                "garbage",
            ],
        },
        sent,
    )
    assert answer.acked == [msg(1)["id"]]
    assert answer.rejected == {msg(2)["id"]: "rejected"}
    assert SendAnswer.parse(["not", "an", "object"], sent) == SendAnswer()


@pytest.mark.parametrize("told", [None, 4096, 10**6])
def test_a_batch_is_never_empty_even_when_one_message_is_larger_than_the_budget(
    tmp_path: Path, told: int | None
) -> None:
    async def scenario(box: Outbox) -> None:
        await box.put(msg(1, size=20_000))
        server = FakeServer(told=told)
        await drain(Sender(box, server, backoff))
        assert server.stored == [msg(1)["id"]]

    run(scenario, tmp_path)


def test_the_https_body_is_exactly_what_was_measured() -> None:
    body = {"messages": [msg(1) | {"body": {"t": "\u2028\x01\U0001f600é"}}]}
    raw = encode(body)
    assert raw.isascii() and json.loads(raw) == body
    assert b"\\u2028" in raw and b"\\ud83d\\ude00" in raw


class FakeCredentials:
    """What HttpsTransport uses of the credentials: a client, the URL, a token."""

    def __init__(self, handler: Callable[[Any], Any]) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url="https://corral.test", transport=httpx.MockTransport(handler)
        )
        self.registration = type("Reg", (), {"url": "https://corral.test"})()

    async def token(self) -> str:
        return "tok"

    def invalidate(self) -> None:
        pass


def test_https_learns_the_limit_and_reads_per_message_answers() -> None:
    import httpx

    from agent.transport.https import HttpsTransport

    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        assert request.headers["content-type"] == "application/json"
        if request.url.path == wire.ROUTE_POLL:
            return httpx.Response(200, json={"messages": [], "max_request_bytes": 200_000})
        sent = json.loads(request.content)["messages"]
        results = [
            {"id": sent[0]["id"], "status": "accepted"},
            {"id": sent[1]["id"], "status": "duplicate"},
            {"id": sent[2]["id"], "status": "rejected", "reason": "unknown type 'x'"},
        ]
        return httpx.Response(
            200, json={"acked": [sent[0]["id"], sent[1]["id"]], "results": results}
        )

    async def scenario() -> None:
        credentials = FakeCredentials(handler)
        transport = HttpsTransport(None, credentials)  # type: ignore[arg-type]
        assert transport.max_request_bytes is None
        await transport.poll([], 0)
        assert transport.max_request_bytes == 200_000
        messages = [msg(1), msg(2), msg(3) | {"body": {"t": SIX}}]
        answer = await transport.send(messages)
        assert answer == SendAnswer(
            acked=[msg(1)["id"], msg(2)["id"]], rejected={msg(3)["id"]: "unknown type 'x'"}
        )
        # The body is the measured encoding: compact, ASCII.
        assert bodies[-1] == encode({"messages": messages})
        await credentials.client.aclose()

    asyncio.run(scenario())


def test_the_channel_hello_sets_the_limit_within_a_frame() -> None:
    from agent.transport.websocket import WebSocketTransport

    channel = WebSocketTransport.__new__(WebSocketTransport)
    channel._limits({"type": "hello", "max_frame_bytes": wire.MAX_FRAME_BYTES})
    assert channel.max_request_bytes == wire.MAX_FRAME_BYTES  # an older server
    channel._limits({"type": "hello", "max_request_bytes": 300_000})
    assert channel.max_request_bytes == 300_000
    channel._limits({"type": "hello", "max_request_bytes": 10**9})
    assert channel.max_request_bytes == wire.MAX_FRAME_BYTES
    channel._limits({"type": "hello", "max_request_bytes": "lots"})
    assert channel.max_request_bytes is None


def test_a_proxy_that_cuts_the_connection_on_a_large_body_is_got_past(tmp_path: Path) -> None:
    """Some proxies refuse before reading the body and close: no 413 reaches the agent, only
    a transport error.  Halving after repeated errors gets every message through."""

    class Cutting(FakeServer):
        async def send(self, messages: list[Message]) -> SendAnswer:
            if len(encode({"messages": messages})) > self.limit:
                self.requests.append((len(messages), 0))
                raise TransportError("connection reset by peer")
            return await super().send(messages)

    async def scenario(box: Outbox) -> None:
        for n in range(20):
            await box.put(msg(n, size=30_000))
        server = Cutting(limit=100_000)
        sender = Sender(box, server, backoff)
        await drain(sender)
        assert len(server.stored) == 20 and box.dead_count() == 0
        # Nothing learnt from errors that an outage also gives.
        assert sender.limits.byte_budget == int(wire.MAX_REQUEST_BYTES * wire.REQUEST_FILL)

    run(scenario, tmp_path)
