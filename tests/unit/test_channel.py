"""The agent channel's own tests (services/channel.py, services/channel_writer.py): one answer
per message, duplicates handled once, a bad message rejected alone (and a rejected result
ending its invocation as Failed), group commits in arrival order, and nothing acknowledged
before the transaction that stores it has committed (issue 17)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest
from control_plane.services import channel_writer
from control_plane.services.channel_writer import AfterCommit, MessageResult
from control_plane.store.schema import processed_messages
from tests.unit.conftest import Api, Node, RunApi
from tests.unit.test_execution_support import eventually
from tests.unit.test_server_api_messages import heartbeat, poll

Items = list[tuple[str, Message]]


def update(command_id: str, status: str, **body: Any) -> dict[str, Any]:
    full = {"command_id": command_id, "status": status, "status_details": status, **body}
    return dict(wire.make_message(wire.MSG_INVOCATION_UPDATE, full))


def statuses(results: list[MessageResult]) -> list[str]:
    return [r["status"] for r in results]


async def stored_ids(api: Api) -> set[str]:
    async with api.cp.db.read() as conn:
        return set((await conn.execute(sa.select(processed_messages.c.id))).scalars())


async def run_command(api: Api, node: Node) -> str:
    """A command sent to ``node``, delivered to it (its invocation is the node's)."""
    await poll(api, node, [], 0)  # online: the command goes out at once
    sent = await api.client.post(
        "/v1/commands",
        json={"targets": [node.node_id], "parameters": {"commands": ["echo"]}},
        headers=api.admin,
    )
    assert sent.status_code == 201, sent.text
    command_id: str = sent.json()["command_id"]
    async with asyncio.timeout(10):
        while True:
            got = await poll(api, node, [], 1)
            if any(m["body"].get("command_id") == command_id for m in got):
                await poll(api, node, [m["id"] for m in got], 0)
                return command_id


async def invocation(api: Api, command_id: str, node: Node) -> dict[str, Any]:
    shown = await api.client.get(
        f"/v1/commands/{command_id}/invocations/{node.node_id}", headers=api.admin
    )
    assert shown.status_code == 200, shown.text
    found: dict[str, Any] = shown.json()
    return found


async def command_status(api: Api, command_id: str, want: str) -> None:
    """Wait for the dispatcher to move the command to ``want`` (it runs after the commit)."""

    async def reached() -> bool:
        shown = await api.client.get(f"/v1/commands/{command_id}", headers=api.admin)
        return bool(shown.json()["status"] == want)

    await eventually(reached, f"command {command_id} {want}", timeout=10)


def writers_waiting(api: Api) -> int:
    """Transactions queued behind the one writer SQLite allows (Database's write lock)."""
    waiters = api.cp.db._write_lock._waiters  # type: ignore[attr-defined]
    return len(waiters or ())


class Gate:
    """A handler (for pongs) that records what it is given and can hold the writer inside
    its transaction until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.open.set()

    def close(self) -> None:
        self.open.clear()
        self.entered.clear()

    async def __call__(self, conn: AsyncConnection, items: Items) -> AfterCommit | None:
        self.calls.append([m["id"] for _, m in items])
        self.entered.set()
        await self.open.wait()
        return None


def pong(msg_id: str | None = None) -> dict[str, Any]:
    message = dict(wire.make_message(wire.MSG_PONG, {"ping_id": "none"}))
    if msg_id is not None:
        message["id"] = msg_id
    return message


def test_a_rejected_result_fails_its_invocation_and_the_command_moves_on(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        command_id = await run_command(api, node)
        started = update(command_id, wire.ST_IN_PROGRESS)
        bad = update(command_id, "Exploded")
        response = await api.send(node, [started, bad])
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert statuses(results) == [wire.RESULT_ACCEPTED, wire.RESULT_REJECTED]
        assert results[1]["reason"] == "invocation_update: unknown status 'Exploded'"
        # Recorded with the answer (not later): a buried result is never a silent InProgress.
        shown = await invocation(api, command_id, node)
        assert shown["status"] == wire.ST_FAILED
        assert shown["status_details"] == (
            "result rejected: invocation_update: unknown status 'Exploded'"
        )
        await command_status(api, command_id, wire.ST_FAILED)
        # The real result arriving after that changes nothing: the invocation is final.
        late = update(command_id, wire.ST_SUCCESS)
        assert statuses((await api.send(node, [late])).json()["results"]) == ["accepted"]
        assert (await invocation(api, command_id, node))["status"] == wire.ST_FAILED

    run_api(scenario)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"created_at": "now"}, "created_at must be a number"),
        ({"type": "output_uploadedd"}, None),
    ],
)
def test_a_rejected_output_upload_fails_its_invocation(
    run_api: RunApi, change: dict[str, Any], says: str | None
) -> None:
    """output_uploaded is a result too; an element of an unknown type concerns nothing."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        command_id = await run_command(api, node)
        body = {"command_id": command_id, "step_index": 0, "stream": "stdout", "size": 1}
        message = {**wire.make_message(wire.MSG_OUTPUT_UPLOADED, body), **change}
        response = await api.send(node, [message])
        assert statuses(response.json()["results"]) == [wire.RESULT_REJECTED]
        shown = await invocation(api, command_id, node)
        if says is None:  # not a result: the invocation is untouched
            assert shown["status"] != wire.ST_FAILED
        else:
            assert shown["status"] == wire.ST_FAILED
            assert shown["status_details"].startswith("result rejected: ")
            assert says in shown["status_details"]

    run_api(scenario)


def test_a_result_that_arrived_wins_over_a_rejected_copy(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        command_id = await run_command(api, node)
        bad = {**update(command_id, wire.ST_SUCCESS), "created_at": None}
        good = update(command_id, wire.ST_SUCCESS, response_code=0)
        response = await api.send(node, [bad, good])
        assert statuses(response.json()["results"]) == ["rejected", "accepted"]
        shown = await invocation(api, command_id, node)
        assert (shown["status"], shown["response_code"]) == (wire.ST_SUCCESS, 0)
        await command_status(api, command_id, wire.ST_SUCCESS)

    run_api(scenario)


def test_a_rejected_result_about_another_nodes_command_changes_nothing(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        owner = await api.new_node()
        other = await api.new_node()
        command_id = await run_command(api, owner)
        response = await api.send(other, [update(command_id, "Bogus")])
        assert statuses(response.json()["results"]) == [wire.RESULT_REJECTED]
        assert (await invocation(api, command_id, owner))["status"] != wire.ST_FAILED

    run_api(scenario)


def test_reasons_are_bounded(run_api: RunApi) -> None:
    """A validator's message can be long (it may quote the agent): the answer and the
    invocation's details hold a bounded part of it."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        command_id = await run_command(api, node)

        def refuse(message: Message) -> None:
            raise InvalidRequest("é" * 10_000)

        api.cp.channel.register_validator(wire.MSG_OUTPUT_UPLOADED, refuse)
        body = {"command_id": command_id, "step_index": 0, "stream": "stdout"}
        message = wire.make_message(wire.MSG_OUTPUT_UPLOADED, body)
        (result,) = (await api.send(node, [message])).json()["results"]
        assert result["reason"] == "é" * channel_writer.MAX_REASON_CHARS
        details = (await invocation(api, command_id, node))["status_details"]
        assert details.startswith("result rejected: éé")
        assert len(details) == channel_writer.MAX_REJECTED_DETAILS_CHARS

    run_api(scenario)


def test_a_handler_that_refuses_a_message_rejects_it_alone(run_api: RunApi) -> None:
    """A refusal found while storing (a node_event with an unknown severity) fails neither
    the rest of its batch nor the other nodes' batches of the same group commit."""

    async def scenario(api: Api) -> None:
        a, b = await api.new_node(), await api.new_node()
        gate = Gate()
        api.cp.channel.register_batch_handler(wire.MSG_PONG, gate)
        gate.close()
        holding = asyncio.create_task(api.cp.channel.receive(a.node_id, [pong()]))
        await gate.entered.wait()  # the writer is inside a transaction: the next group waits
        bad_event = dict(wire.make_message(wire.MSG_NODE_EVENT, {"code": "x", "severity": "fatal"}))
        first = [heartbeat(hostname="a-host"), bad_event, pong()]
        second = [heartbeat(hostname="b-host")]
        tasks = [
            asyncio.create_task(api.cp.channel.receive(a.node_id, first)),
            asyncio.create_task(api.cp.channel.receive(b.node_id, second)),
        ]
        # Both batches wait in the writer's queue behind the held group.
        await eventually(lambda: len(api.cp.channel._writer._queue) == 2, "both batches queued")
        gate.open.set()
        await holding
        got_a, got_b = await asyncio.gather(*tasks)
        assert statuses(got_a) == ["accepted", "rejected", "accepted"]
        assert "unknown severity 'fatal'" in got_a[1].get("reason", "")
        assert statuses(got_b) == ["accepted"]
        assert (await api.node(a.node_id))["hostname"] == "a-host"
        assert (await api.node(b.node_id))["hostname"] == "b-host"
        assert bad_event["id"] not in await stored_ids(api)
        # The whole group in one transaction (rolled back), then a request at a time (node
        # b's stored), then node a's a message at a time: the pong, handled last, stored.
        assert gate.calls[-1] == [first[2]["id"]]
        assert first[2]["id"] in await stored_ids(api)

    run_api(scenario)


def test_one_group_commit_handles_each_id_once_in_arrival_order(run_api: RunApi) -> None:
    """Requests that queued while a transaction ran are stored together, in the order they
    came; the same id twice (an agent's retry racing its first try) is handled once, and
    answered duplicate the second time."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        gate = Gate()
        api.cp.channel.register_batch_handler(wire.MSG_PONG, gate)
        gate.close()
        holding = asyncio.create_task(api.cp.channel.receive(node.node_id, [pong()]))
        await gate.entered.wait()
        a, b, c = pong("pong-aaaaaaaa"), pong("pong-bbbbbbbb"), pong("pong-cccccccc")
        batches = [[a, b], [c, a], [b]]
        tasks = [
            asyncio.create_task(api.cp.channel.receive(node.node_id, batch)) for batch in batches
        ]
        # One turn of the loop: the three receives start, in this order, and queue behind the
        # held group; their arrival order is what the test is about.  (Polling until three
        # writers wait instead made the test sit out SQLite's 10 s busy timeout.)
        await asyncio.sleep(0)
        gate.open.set()
        await holding
        answers = await asyncio.gather(*tasks)
        assert [statuses(r) for r in answers] == [
            ["accepted", "accepted"],
            ["accepted", "duplicate"],
            ["duplicate"],
        ]
        assert gate.calls[-1] == [a["id"], b["id"], c["id"]]  # one group, arrival order
        # Sent again later (a redelivery after a lost answer): duplicate, not handled again.
        again = await api.cp.channel.receive(node.node_id, [c])
        assert statuses(again) == ["duplicate"] and len(gate.calls) == 2

    run_api(scenario)


def test_nothing_is_acknowledged_before_its_transaction_commits(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        gate = Gate()
        api.cp.channel.register_batch_handler(wire.MSG_PONG, gate)
        gate.close()
        message = pong()
        task = asyncio.create_task(api.cp.channel.receive(node.node_id, [message]))
        await gate.entered.wait()
        # The writer is held inside its transaction: 20 turns of the loop in which an answer
        # sent before the commit would arrive (what the test rules out; not a wait).
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        assert message["id"] not in await stored_ids(api)  # not committed, not answered
        gate.open.set()
        assert statuses(await task) == ["accepted"]
        assert message["id"] in await stored_ids(api)

    run_api(scenario)


def test_a_failed_transaction_acknowledges_nothing_and_the_writer_goes_on(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        broken = True

        async def flaky(conn: AsyncConnection, items: Items) -> AfterCommit | None:
            if broken:
                raise RuntimeError("disk I/O error")
            return None

        api.cp.channel.register_batch_handler(wire.MSG_PONG, flaky)
        batch = [heartbeat(hostname="lost"), pong()]
        with pytest.raises(RuntimeError, match="disk I/O error"):
            await api.cp.channel.receive(node.node_id, batch)
        assert await stored_ids(api) == set()  # the heartbeat beside it was rolled back too
        response = await api.send(node, batch)
        assert response.status_code == 500  # the agent keeps the batch and retries
        broken = False
        assert statuses(await api.cp.channel.receive(node.node_id, batch)) == ["accepted"] * 2
        assert (await api.node(node.node_id))["hostname"] == "lost"

    run_api(scenario)


def test_acknowledgements_of_the_inbox_ride_the_same_group(run_api: RunApi) -> None:
    """A poll's acks are written by the group commit too, and only then answered."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        ping = wire.make_message(wire.MSG_PING, {})
        await api.cp.channel.send(node.node_id, ping)
        assert [m["id"] for m in await poll(api, node, [], 0)] == [ping["id"]]
        gate = Gate()
        api.cp.channel.register_batch_handler(wire.MSG_PONG, gate)
        gate.close()
        holding = asyncio.create_task(api.cp.channel.receive(node.node_id, [pong()]))
        await gate.entered.wait()
        acking = asyncio.create_task(api.cp.channel.acknowledge(node.node_id, [ping["id"]]))
        await eventually(lambda: writers_waiting(api) == 1, "the acknowledgement to queue")
        assert not acking.done()
        gate.open.set()
        await asyncio.gather(holding, acking)
        assert await poll(api, node, [], 0) == []

    run_api(scenario)
