"""The agent channel: the server stores agent messages idempotently by id, validates every
message of a batch before storing any, and delivers server messages until acknowledged."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from agent import wire
from control_plane.store.schema import processed_messages
from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    from tests.unit.conftest import Api, Node, RunApi


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
        assert (response.status_code, response.json()) == (200, {"acked": [message["id"]]})
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


def test_the_same_heartbeat_twice_is_stored_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        first = heartbeat(hostname="first", agent_version="1.0.0")
        # A redelivery carries the same id; if it were processed again, its body would win.
        resend = {**first, "body": {"hostname": "second", "agent_version": "2.0.0"}}
        for message in (first, resend):
            response = await api.send(node, [message])
            assert response.json() == {"acked": [first["id"]]}
        shown = await api.node(node.node_id)
        assert (shown["hostname"], shown["agent_version"]) == ("first", "1.0.0")
        assert await processed_ids(api) == [(first["id"], node.node_id)]
        # Duplicates inside one batch are acknowledged and stored once too.
        other = heartbeat(hostname="third")
        response = await api.send(node, [other, other])
        assert response.json() == {"acked": [other["id"], other["id"]]}
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
        assert response.json() == {"acked": [message["id"]]}
        assert (await api.node(node.node_id))["hostname"] == "first"

    run_api(second_run)


def test_message_ids_are_deduplicated_per_node(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        a = await api.new_node()
        b = await api.new_node()
        shared = heartbeat(hostname="a-host")
        await api.send(a, [shared])
        response = await api.send(b, [{**shared, "body": {"hostname": "b-host"}}])
        assert response.json() == {"acked": [shared["id"]]}
        assert (await api.node(b.node_id))["hostname"] == "b-host"

    run_api(scenario)


@pytest.mark.parametrize(
    ("change", "hint"),
    [
        ({"id": "short"}, "message id must be 8-64 characters"),
        ({"id": "x" * 65}, "message id must be 8-64 characters"),
        ({"id": "has spaces in it"}, "message id must be 8-64 characters"),
        ({"id": 12345678}, "message id must be 8-64 characters"),
        ({"type": wire.MSG_PING}, "unknown message type 'ping'"),
        ({"type": "run_command"}, "unknown message type"),
        ({"body": ["x"]}, "body must be an object"),
        ({"body": None}, "body must be an object"),
        ({"created_at": "yesterday"}, "created_at must be a number"),
        ({"created_at": True}, "created_at must be a number"),
    ],
)
def test_a_bad_message_refuses_the_whole_batch(
    run_api: RunApi, change: dict[str, Any], hint: str
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        good = heartbeat(hostname="from-good")
        bad = {**heartbeat(), **change}
        response = await api.send(node, [good, bad])
        assert hint in assert_error(response, 400, "invalid_request")
        assert await processed_ids(api) == []
        # The good message was not half-stored: sent alone later, it is processed.
        assert (await api.send(node, [good])).json() == {"acked": [good["id"]]}
        assert (await api.node(node.node_id))["hostname"] == "from-good"

    run_api(scenario)


def test_a_message_without_fields_is_400(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        assert_error(await api.send(node, [{}]), 400, "invalid_request")
        assert_error(await api.send(node, ["heartbeat"]), 400, "invalid_request")
        missing = await api.client.post(wire.ROUTE_MESSAGES, json={}, headers=node.auth)
        assert_error(missing, 400, "invalid_request")

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
        assert (await api.send(node, [pong])).json() == {"acked": [pong["id"]]}
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
