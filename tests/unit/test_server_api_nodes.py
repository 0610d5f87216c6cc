"""/v1/nodes: tag and untag rules, deregistration and what it does to the node's tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from agent import wire
from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    from tests.unit.conftest import Api, RunApi

UNKNOWN = "mi-00000000000000000"


async def tag(api: Api, node_id: str, tags: Any) -> Any:
    return await api.client.post(
        f"/v1/nodes/{node_id}/tags", json={"tags": tags}, headers=api.admin
    )


async def untag(api: Api, node_id: str, keys: Any) -> Any:
    return await api.client.post(
        f"/v1/nodes/{node_id}/untag", json={"keys": keys}, headers=api.admin
    )


def test_tag_adds_and_overwrites_untag_removes(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"env": "prod"})
        response = await tag(api, node.node_id, {"env": "dev", "role": "web", "empty": ""})
        assert response.status_code == 200, response.text
        assert response.json()["tags"] == {"empty": "", "env": "dev", "role": "web"}
        response = await untag(api, node.node_id, ["role", "never-set"])
        assert response.status_code == 200, response.text
        assert response.json()["tags"] == {"empty": "", "env": "dev"}
        assert (await api.node(node.node_id))["tags"] == {"empty": "", "env": "dev"}

    run_api(scenario)


def test_a_node_may_have_at_most_50_tags(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"env": "prod", "role": "web"})
        over = {f"k{i}": "v" for i in range(49)}
        response = await tag(api, node.node_id, over)
        assert "at most 50 tags" in assert_error(response, 400, "invalid_request")
        assert (await api.node(node.node_id))["tags"] == {"env": "prod", "role": "web"}
        # 48 new + 2 existing = 50; overwriting an existing key does not count twice.
        response = await tag(api, node.node_id, {f"k{i}": "v" for i in range(48)})
        assert len(response.json()["tags"]) == 50
        response = await tag(api, node.node_id, {"env": "dev", "k0": "w"})
        assert response.status_code == 200, response.text
        assert_error(await tag(api, node.node_id, {"one-more": "v"}), 400, "invalid_request")
        # Untag makes room again.
        await untag(api, node.node_id, ["k0"])
        assert (await tag(api, node.node_id, {"one-more": "v"})).status_code == 200

    run_api(scenario)


@pytest.mark.parametrize(
    ("tags", "hint"),
    [
        ({}, "at least one tag"),
        ({"aws:name": "x"}, "may not start with 'aws:'"),
        ({"Aws:Name": "x"}, "may not start with 'aws:'"),
        ({"": "x"}, "1 to 128"),
        ({"k" * 129: "x"}, "1 to 128"),
        ({"k": "v" * 257}, "at most 256"),
        ({"k!": "v"}, "may contain only"),
        ({"k": "v;rm"}, "may contain only"),
        ({"k": "two\nlines"}, "may contain only"),
        ({"tab\tkey": "v"}, "may contain only"),
        ({"k": 5}, "tags"),
        ({"k": None}, "tags"),
        ("env=prod", "tags"),
    ],
)
def test_bad_tags_are_400_and_change_nothing(run_api: RunApi, tags: Any, hint: str) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"env": "prod"})
        response = await tag(api, node.node_id, tags)
        assert hint in assert_error(response, 400, "invalid_request")
        assert (await api.node(node.node_id))["tags"] == {"env": "prod"}

    run_api(scenario)


@pytest.mark.parametrize(
    ("keys", "hint"),
    [
        ([], "at least one tag key"),
        (["aws:name"], "may not start with 'aws:'"),
        ([""], "1 to 128"),
        (["k*"], "may contain only"),
        ([f"k{i}" for i in range(51)], "keys"),
        ("env", "keys"),
        ([5], "keys"),
    ],
)
def test_bad_untag_is_400_and_changes_nothing(run_api: RunApi, keys: Any, hint: str) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"env": "prod"})
        response = await untag(api, node.node_id, keys)
        assert hint in assert_error(response, 400, "invalid_request")
        assert (await api.node(node.node_id))["tags"] == {"env": "prod"}

    run_api(scenario)


def test_tagging_an_unknown_node_is_404(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert_error(await tag(api, UNKNOWN, {"k": "v"}), 404, "not_found")
        assert_error(await untag(api, UNKNOWN, ["k"]), 404, "not_found")

    run_api(scenario)


def test_list_filters_by_tags(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"env": "prod", "role": "web"})
        api.clock.advance(1)
        db = await api.new_node(tags={"env": "prod", "role": "db"})

        async def ids(*filters: str) -> list[str]:
            response = await api.client.get(
                "/v1/nodes", params=[("filter", f) for f in filters], headers=api.admin
            )
            assert response.status_code == 200, response.text
            return [n["node_id"] for n in response.json()["nodes"]]

        assert await ids() == [web.node_id, db.node_id]
        assert await ids("tag:env=prod") == [web.node_id, db.node_id]
        assert await ids("tag:env=prod", "tag:role=db") == [db.node_id]
        assert await ids("tag:env=dev") == []
        bad = await api.client.get("/v1/nodes", params={"filter": "env=prod"}, headers=api.admin)
        assert "expected tag:KEY=VALUE" in assert_error(bad, 400, "invalid_request")

    run_api(scenario)


# Deregistration -------------------------------------------------------------------------------


def test_deregistered_node_token_is_refused_with_node_deregistered(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        bystander = await api.new_node()
        response = await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "Deregistered"
        assert response.json()["deregistered_at"] is not None

        polled = await api.client.post(wire.ROUTE_POLL, json={"wait_seconds": 0}, headers=node.auth)
        assert_error(polled, 401, wire.ERR_NODE_DEREGISTERED)
        sent = await api.send(node, [])
        assert_error(sent, 401, wire.ERR_NODE_DEREGISTERED)
        # Nor can it buy a new token.
        assert_error(await api.challenge(node.node_id), 401, wire.ERR_NODE_DEREGISTERED)
        # Other nodes are unaffected.
        ok = await api.client.post(
            wire.ROUTE_POLL, json={"wait_seconds": 0}, headers=bystander.auth
        )
        assert ok.status_code == 200
        assert (await api.node(node.node_id))["status"] == "Deregistered"

    run_api(scenario)


def test_deregister_is_idempotent_and_unknown_is_404(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        first = await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        api.clock.advance(10)
        again = await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        assert again.status_code == 200
        assert again.json()["deregistered_at"] == first.json()["deregistered_at"]
        unknown = await api.client.post(f"/v1/nodes/{UNKNOWN}/deregister", headers=api.admin)
        assert_error(unknown, 404, "not_found")

    run_api(scenario)


def test_deregistration_survives_a_server_restart(run_api: RunApi) -> None:
    async def first_run(api: Api) -> tuple[str, str]:
        node = await api.new_node()
        await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        return node.node_id, node.token

    node_id, token = run_api(first_run)

    async def second_run(api: Api) -> None:
        polled = await api.client.post(
            wire.ROUTE_POLL, json={"wait_seconds": 0}, headers={"authorization": f"Bearer {token}"}
        )
        assert_error(polled, 401, wire.ERR_NODE_DEREGISTERED)
        assert (await api.node(node_id))["status"] == "Deregistered"

    run_api(second_run)


def test_ping_of_a_deregistered_node_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await api.client.post(f"/v1/nodes/{node.node_id}/deregister", headers=api.admin)
        response = await api.client.post(
            f"/v1/nodes/{node.node_id}/ping", json={"timeout_seconds": 1}, headers=api.admin
        )
        assert "deregistered" in assert_error(response, 400, "invalid_request")

    run_api(scenario)
