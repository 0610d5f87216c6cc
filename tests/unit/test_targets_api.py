"""Targeting nodes the way Salt and Ansible users do (issue 9, item 8): ``name:GLOB``,
``platform:NAME`` and ``ip:CIDR`` in commands, groups and the ``nodes list`` preview, each
node still authorized one by one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import Api, Node, RunApi, ServerDir, assert_error
from tests.unit.test_authz_api import hdr, token
from tests.unit.test_nested_documents_api import command_count
from tests.unit.test_server_api_messages import heartbeat

FLEET = {
    "web-1": ("Linux", ["10.0.3.11", "fe80::1%eth0"], "web"),
    "web-2": ("Linux", ["10.0.3.12"], "web"),
    "WEB-3": ("MacOS", ["192.168.1.3"], "web"),
    "db-1": ("Windows", ["10.0.4.21", "fd00::21"], "db"),
}


async def fleet(api: Api) -> dict[str, Node]:
    nodes = {}
    for name, (platform, addresses, team) in FLEET.items():
        activation = await api.create_activation(tags={"team": team})
        from agent.identity import NodeKey

        key = NodeKey.generate()
        made = await api.register(activation, key, name=name)
        assert made.status_code == 201, made.text
        node = Node(node_id=made.json()["node_id"], key=key)
        node.token = await api.node_token(node.node_id, key)
        beat = heartbeat(platform=platform, ip_addresses=addresses, hostname=name.lower())
        assert (await api.send(node, [beat])).status_code == 200
        nodes[name] = node
    return nodes


async def preview(api: Api, *specs: str, headers: dict[str, str] | None = None) -> Any:
    return await api.client.get(
        "/v1/nodes", params={"targets": list(specs)}, headers=headers or api.admin
    )


async def names(api: Api, *specs: str) -> list[str]:
    response = await preview(api, *specs)
    assert response.status_code == 200, response.text
    return sorted(n["name"] for n in response.json()["nodes"])


def test_name_platform_and_address_specs(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await fleet(api)
        assert await names(api, "name:web-*") == ["web-1", "web-2"]
        assert await names(api, "name:db-1") == ["db-1"]
        # Case matters, as in Salt's glob on minion ids and Ansible's host patterns.
        assert await names(api, "name:DB-1") == []
        assert await names(api, "name:WEB-*") == ["WEB-3"]
        assert await names(api, "name:[wW][eE][bB]-*") == ["WEB-3", "web-1", "web-2"]
        assert await names(api, "name:web-[!1]") == ["web-2"]
        assert await names(api, "name:?eb-1") == ["web-1"]
        assert await names(api, "platform:linux") == ["web-1", "web-2"]
        assert await names(api, "platform:MACOS") == ["WEB-3"]
        assert await names(api, "platform:Windows") == ["db-1"]
        assert await names(api, "ip:10.0.3.0/24") == ["web-1", "web-2"]
        assert await names(api, "ip:10.0.4.21") == ["db-1"]
        assert await names(api, "ip:fd00::/64") == ["db-1"]
        assert await names(api, "ip:fe80::/10") == ["web-1"]  # the zone does not count
        assert await names(api, "ip:10.0.3.0/24", "platform:Windows") == ["db-1", "web-1", "web-2"]
        assert await names(api, "name:nothing-*") == []
        both = await api.client.get(
            "/v1/nodes",
            params={"filter": "tag:team=web", "targets": ["platform:MacOS", "name:db-*"]},
            headers=api.admin,
        )
        assert [n["name"] for n in both.json()["nodes"]] == ["WEB-3"]  # filters narrow it
        # Groups take them too.
        made = await api.client.post(
            "/v1/groups", json={"name": "webs", "targets": ["name:web-*"]}, headers=api.admin
        )
        assert made.status_code == 201, made.text
        assert await names(api, "group:webs") == ["web-1", "web-2"]

    run_api(scenario)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("name:", "name:GLOB"),
        ("name:" + "x" * 300, "name:GLOB"),
        ("platform:", "Linux, MacOS, Windows"),
        ("platform:Solaris", "Linux, MacOS, Windows"),
        ("ip:10.0.3.0/33", "ip:NETWORK/PREFIX"),
        ("ip:banana", "ip:NETWORK/PREFIX"),
        ("ip:", "ip:NETWORK/PREFIX"),
        ("host:web-1", "unknown target"),
    ],
)
def test_bad_specs_are_one_line_errors_and_change_nothing(
    run_api: RunApi, server_dir: ServerDir, spec: str, says: str
) -> None:
    async def scenario(api: Api) -> None:
        await fleet(api)
        before = command_count(server_dir)
        for response in (
            await preview(api, spec),
            await api.client.post(
                "/v1/commands",
                json={"targets": [spec], "parameters": {"commands": ["true"]}},
                headers=api.admin,
            ),
            await api.client.post(
                "/v1/groups", json={"name": "g", "targets": [spec]}, headers=api.admin
            ),
        ):
            message = assert_error(response, 400, "invalid_request")
            assert says in message and "\n" not in message
        assert command_count(server_dir) == before
        groups = await api.client.get("/v1/groups", headers=api.admin)
        assert groups.json()["groups"] == []

    run_api(scenario)


WEB_TEAM = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["commands:Send", "nodes:List"],
            "Resource": "node/*",
            "Condition": {"StringEquals": {"node:tag/team": "web"}},
        },
        {"Effect": "Allow", "Action": "commands:Send", "Resource": "document/*"},
        {"Effect": "Allow", "Action": "identity:WhoAmI", "Resource": "*"},  # corral login
    ],
}


def test_every_node_a_spec_reaches_is_authorized(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        nodes = await fleet(api)
        web = hdr(await token(api, "web-team", policy=WEB_TEAM))
        listed = await preview(api, "name:*", headers=web)
        assert sorted(n["name"] for n in listed.json()["nodes"]) == ["WEB-3", "web-1", "web-2"]
        before = command_count(server_dir)
        for spec in ("name:*-1", "ip:10.0.0.0/8", "platform:windows"):
            refused = await api.client.post(
                "/v1/commands",
                json={"targets": [spec], "parameters": {"commands": ["true"]}},
                headers=web,
            )
            message = assert_error(refused, 403, "forbidden")
            assert nodes["db-1"].node_id in message
        assert command_count(server_dir) == before
        sent = await api.client.post(
            "/v1/commands",
            json={"targets": ["name:web-*"], "parameters": {"commands": ["true"]}},
            headers=web,
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["target_count"] == 2

    run_api(scenario)
