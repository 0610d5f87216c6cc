"""The agent channel: the server stores agent messages idempotently by id, answers for each
message of a batch (accepted, duplicate, rejected alone with its reason), and delivers
server messages until acknowledged."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from agent import wire
from agent.identity import NodeKey
from control_plane.store.schema import processed_messages
from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    from tests.unit.conftest import Api, Node, RunApi, ServerDir


def heartbeat(msg_id: str | None = None, **body: Any) -> dict[str, Any]:
    message = dict(wire.make_message(wire.MSG_HEARTBEAT, body))
    if msg_id is not None:
        message["id"] = msg_id
    return message


async def processed_ids(api: Api) -> list[tuple[str, str]]:
    async with api.cp.db.read() as conn:
        rows = await conn.execute(
            sa.select(processed_messages.c.id, processed_messages.c.node_id).order_by(
                processed_messages.c.id
            )
        )
        return [(r.id, r.node_id) for r in rows]


def accepted(*messages: dict[str, Any]) -> dict[str, Any]:
    """The answer to a batch all of whose messages were stored now."""
    return answer(*[(m["id"], wire.RESULT_ACCEPTED) for m in messages])


def answer(*results: tuple[str, str]) -> dict[str, Any]:
    return {
        "acked": [msg_id for msg_id, _ in results],
        "results": [
            {"index": i, "id": msg_id, "status": status}
            for i, (msg_id, status) in enumerate(results)
        ],
    }


async def poll(api: Api, node: Node, acks: list[str], wait: float) -> list[dict[str, Any]]:
    response = await api.client.post(
        wire.ROUTE_POLL, json={"acks": acks, "wait_seconds": wait}, headers=node.auth
    )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def test_heartbeat_updates_the_node(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        message = heartbeat(
            agent_version="1.2.3",
            hostname="web-7",
            platform="linux",
            platform_name="Debian GNU/Linux",
            platform_version="12",
            ip_addresses=["10.0.0.7", "fe80::1", 5],
            boot_time=1_700_000_000,
        )
        response = await api.send(node, [message])
        assert (response.status_code, response.json()) == (200, accepted(message))
        shown = await api.node(node.node_id)
        assert shown["agent_version"] == "1.2.3"
        assert shown["hostname"] == "web-7"
        assert (shown["platform"], shown["platform_name"], shown["platform_version"]) == (
            "linux",
            "Debian GNU/Linux",
            "12",
        )
        assert shown["ip_addresses"] == ["10.0.0.7", "fe80::1"]
        assert shown["boot_time"] == "2023-11-14T22:13:20.000Z"

    run_api(scenario)


def test_the_nodes_dead_table_is_shown_from_its_heartbeat(run_api: RunApi) -> None:
    """`corral nodes show` tells an operator that results are stuck on a node."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        assert (await api.node(node.node_id))["outbox_dead"] is None  # not told yet
        message = heartbeat(outbox_depth=3, outbox_dead=2)
        assert (await api.send(node, [message])).status_code == 200
        shown = await api.node(node.node_id)
        assert (shown["outbox_depth"], shown["outbox_dead"]) == (3, 2)
        bogus = heartbeat(outbox_depth=-1, outbox_dead="many")
        assert (await api.send(node, [bogus])).status_code == 200
        shown = await api.node(node.node_id)
        assert (shown["outbox_depth"], shown["outbox_dead"]) == (None, None)

    run_api(scenario)


def test_the_same_heartbeat_twice_is_stored_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        first = heartbeat(hostname="first", agent_version="1.0.0")
        # A redelivery carries the same id; if it were processed again, its body would win.
        resend = {**first, "body": {"hostname": "second", "agent_version": "2.0.0"}}
        assert (await api.send(node, [first])).json() == accepted(first)
        response = await api.send(node, [resend])
        assert response.json() == answer((first["id"], wire.RESULT_DUPLICATE))
        shown = await api.node(node.node_id)
        assert (shown["hostname"], shown["agent_version"]) == ("first", "1.0.0")
        assert await processed_ids(api) == [(first["id"], node.node_id)]
        # Duplicates inside one batch are acknowledged and stored once too.
        other = heartbeat(hostname="third")
        response = await api.send(node, [other, other])
        assert response.json() == answer(
            (other["id"], wire.RESULT_ACCEPTED), (other["id"], wire.RESULT_DUPLICATE)
        )
        assert len(await processed_ids(api)) == 2
        assert (await api.node(node.node_id))["hostname"] == "third"

    run_api(scenario)


def test_redelivery_after_a_server_restart_is_still_stored_once(run_api: RunApi) -> None:
    async def first_run(api: Api) -> tuple[Node, dict[str, Any]]:
        node = await api.new_node()
        message = heartbeat(hostname="first")
        assert (await api.send(node, [message])).status_code == 200
        return node, message

    node, message = run_api(first_run)

    async def second_run(api: Api) -> None:
        response = await api.send(node, [{**message, "body": {"hostname": "second"}}])
        assert response.json() == answer((message["id"], wire.RESULT_DUPLICATE))
        assert (await api.node(node.node_id))["hostname"] == "first"

    run_api(second_run)


def test_message_ids_are_deduplicated_per_node(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        a = await api.new_node()
        b = await api.new_node()
        shared = heartbeat(hostname="a-host")
        await api.send(a, [shared])
        response = await api.send(b, [{**shared, "body": {"hostname": "b-host"}}])
        assert response.json() == accepted(shared)
        assert (await api.node(b.node_id))["hostname"] == "b-host"

    run_api(scenario)


@pytest.mark.parametrize(
    ("change", "hint", "id_kept"),
    [
        ({"id": "short"}, "message id must be 8-64 characters", False),
        ({"id": "x" * 65}, "message id must be 8-64 characters", False),
        ({"id": "has spaces in it"}, "message id must be 8-64 characters", False),
        ({"id": 12345678}, "message id must be 8-64 characters", False),
        ({"type": wire.MSG_PING}, "unknown message type 'ping'", True),
        ({"type": "run_command"}, "unknown message type", True),
        ({"type": "inventory_v9"}, "unknown message type 'inventory_v9'", True),
        ({"body": ["x"]}, "body must be an object", True),
        ({"body": None}, "body must be an object", True),
        ({"created_at": "yesterday"}, "created_at must be a number", True),
        ({"created_at": True}, "created_at must be a number", True),
    ],
)
def test_a_bad_message_is_rejected_alone_and_the_rest_is_stored(
    run_api: RunApi, change: dict[str, Any], hint: str, id_kept: bool
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        good = heartbeat(hostname="from-good")
        bad = {**heartbeat(), **change}
        later = heartbeat(hostname="from-later", agent_version="9.9.9")
        response = await api.send(node, [good, bad, later])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["acked"] == [good["id"], later["id"]]
        first, refused, last = body["results"]
        assert first == {"index": 0, "id": good["id"], "status": wire.RESULT_ACCEPTED}
        assert last == {"index": 2, "id": later["id"], "status": wire.RESULT_ACCEPTED}
        assert refused["index"] == 1 and refused["status"] == wire.RESULT_REJECTED
        assert refused["id"] == (bad["id"] if id_kept else None)
        assert hint in refused["reason"]
        # The others were stored (and handled); the rejected one was not recorded as seen.
        assert sorted(i for i, _ in await processed_ids(api)) == sorted([good["id"], later["id"]])
        assert (await api.node(node.node_id))["hostname"] == "from-later"

    run_api(scenario)


def test_elements_that_are_not_messages_are_rejected_alone(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        good = heartbeat(hostname="kept")
        response = await api.send(node, [{}, "heartbeat", None, 7, [good], good])
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [(r["index"], r["id"], r["status"]) for r in results] == [
            (0, None, wire.RESULT_REJECTED),
            (1, None, wire.RESULT_REJECTED),
            (2, None, wire.RESULT_REJECTED),
            (3, None, wire.RESULT_REJECTED),
            (4, None, wire.RESULT_REJECTED),
            (5, good["id"], wire.RESULT_ACCEPTED),
        ]
        assert "must be a JSON object" in results[1]["reason"]
        assert response.json()["acked"] == [good["id"]]
        assert (await api.node(node.node_id))["hostname"] == "kept"

    run_api(scenario)


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": "all"}, {"messages": {"id": "x"}}, [], {"messages": [], "extra": 1}],
)
def test_a_request_that_is_not_a_batch_is_400(run_api: RunApi, body: Any) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        response = await api.client.post(wire.ROUTE_MESSAGES, json=body, headers=node.auth)
        assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_an_empty_batch_is_answered_empty(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        assert (await api.send(node, [])).json() == {"acked": [], "results": []}

    run_api(scenario)


def test_batches_hold_at_most_100_messages(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        batch = [heartbeat() for _ in range(wire.MAX_MESSAGES_PER_BATCH)]
        response = await api.send(node, batch)
        assert len(response.json()["acked"]) == 100
        too_many = [heartbeat() for _ in range(wire.MAX_MESSAGES_PER_BATCH + 1)]
        assert_error(await api.send(node, too_many), 400, "invalid_request")

    run_api(scenario)


def test_the_server_tells_its_request_limit(run_api: RunApi) -> None:
    """At registration, with every token and on every poll answer (the agent sizes its
    batches by it)."""

    async def scenario(api: Api) -> None:
        limit = api.cp.config.max_request_bytes
        activation = await api.create_activation()
        key = NodeKey.generate()
        registered = await api.register(activation, key)
        assert registered.json()[wire.KEY_MAX_REQUEST_BYTES] == limit
        node_id = registered.json()["node_id"]
        nonce = (await api.challenge(node_id)).json()["nonce"]
        issued = await api.token_request(node_id, key, nonce)
        assert issued.json()[wire.KEY_MAX_REQUEST_BYTES] == limit
        node = await api.new_node()
        response = await api.client.post(
            wire.ROUTE_POLL, json={"acks": [], "wait_seconds": 0}, headers=node.auth
        )
        assert response.json() == {"messages": [], wire.KEY_MAX_REQUEST_BYTES: limit}

    run_api(scenario)


def test_ping_is_delivered_until_acknowledged_and_pong_answers_it(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        ping = asyncio.create_task(
            api.client.post(
                f"/v1/nodes/{node.node_id}/ping", json={"timeout_seconds": 30}, headers=api.admin
            )
        )
        # The held poll returns as soon as the ping is queued (30 s is only a deadline).
        delivered = await poll(api, node, [], wait=15)
        assert [m["type"] for m in delivered] == [wire.MSG_PING]
        ping_id = delivered[0]["id"]
        # Not acknowledged yet: delivered again (at-least-once).
        assert [m["id"] for m in await poll(api, node, [], wait=0)] == [ping_id]
        pong = dict(wire.make_message(wire.MSG_PONG, {"ping_id": ping_id}))
        assert (await api.send(node, [pong])).json() == accepted(pong)
        answered = await ping
        assert answered.status_code == 200, answered.text
        assert answered.json()["node_id"] == node.node_id
        assert answered.json()["rtt_ms"] >= 0
        # Acknowledged: never delivered again.
        assert await poll(api, node, [ping_id], wait=0) == []
        assert await poll(api, node, [], wait=0) == []

    run_api(scenario)


def test_unanswered_ping_times_out_and_is_withdrawn(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        response = await api.client.post(
            f"/v1/nodes/{node.node_id}/ping", json={"timeout_seconds": 0.05}, headers=api.admin
        )
        assert "did not answer" in assert_error(response, 504, "timeout")
        assert await poll(api, node, [], wait=0) == []

    run_api(scenario)


@pytest.mark.parametrize("timeout", [0, -1, 301])
def test_ping_timeout_must_be_sensible(run_api: RunApi, timeout: float) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        response = await api.client.post(
            f"/v1/nodes/{node.node_id}/ping", json={"timeout_seconds": timeout}, headers=api.admin
        )
        assert "timeout_seconds" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_the_limit_told_is_the_limit_enforced(run_api: RunApi, server_dir: ServerDir) -> None:
    """A server configured with a smaller request limit tells that one, and a batch over it
    is refused whole with 413 (the agent then halves it), one under it is stored."""
    limit = 65536
    config = server_dir.path / "config.toml"
    text = config.read_text() if config.exists() else ""
    assert "max_request_bytes" not in text
    if "[server]" in text:
        config.write_text(text.replace("[server]", f"[server]\nmax_request_bytes = {limit}", 1))
    else:
        config.write_text(f"{text}\n[server]\nmax_request_bytes = {limit}\n")

    async def scenario(api: Api) -> None:
        assert api.cp.config.max_request_bytes == limit
        node = await api.new_node()
        answer = await api.client.post(
            wire.ROUTE_POLL, json={"acks": [], "wait_seconds": 0}, headers=node.auth
        )
        assert answer.json()[wire.KEY_MAX_REQUEST_BYTES] == limit
        big = [heartbeat(hostname="x" * 600) for _ in range(wire.MAX_MESSAGES_PER_BATCH)]
        half = big[: len(big) // 2]
        assert len(json.dumps({"messages": big})) > limit > len(json.dumps({"messages": half}))
        assert_error(await api.send(node, big), 413, "payload_too_large")
        assert await processed_ids(api) == []
        assert (await api.send(node, half)).json()["acked"] == [m["id"] for m in half]

    run_api(scenario)
