"""``corral nodes list --filter agent_version<0.2.0`` (and platform=, status=): the CLI's
checks, the API's filtering (server-side, so paging stays exact) and version order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from agent import wire
from agent.updates.versions import compare, is_version
from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from tests.unit.conftest import Api, RunApi, assert_error
from tests.unit.test_cli_nodes import NODE, Server, profile  # noqa: F401 (the fixture)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("0.9.0", "0.10.0"),
        ("0.2.0~rc1", "0.2.0"),  # dpkg's rule, which the package managers apply
        ("0.2.0~dev", "0.2.0~rc1"),
        ("0.2.0", "0.2.0rc1"),
        ("0.2.0", "0.2.0-1"),
        ("0.2.0", "0.2.0+local"),
        ("0.2.0-1", "0.2.0-10"),
        ("1.9", "1.10.1"),
    ],
)
def test_versions_compare_as_versions(older: str, newer: str) -> None:
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1
    assert compare(newer, newer) == 0


def test_junk_is_no_version() -> None:
    assert not is_version("latest")
    assert not is_version("")
    assert not is_version("1.0; rm -rf /")


def cli_run(server: Server, *args: str) -> Any:
    return CliRunner().invoke(
        cli, ["nodes", "list", *args], obj=Runtime(transport=httpx.MockTransport(server))
    )


def test_cli_sends_the_filters_to_the_server() -> None:
    server = Server({"nodes": [NODE]})
    result = cli_run(
        server, "--filter", "agent_version<0.2.0", "--filter", "status=Online", "--filter",
        "tag:env=prod",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    query = server.requests[0].url.params.get_list("filter")
    assert query == ["agent_version<0.2.0", "status=Online", "tag:env=prod"]
    assert "0.1.0" in result.stdout  # the agent_version column


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("agent_version<latest", "is not a version"),
        ("agent_version~0.2.0", "expected tag:KEY=VALUE"),
        ("platform<Linux", "platform takes = or !="),
        ("version<0.2.0", "expected tag:KEY=VALUE"),
        ("tag:env", "must be tag:KEY=VALUE"),
    ],
)
def test_cli_refuses_a_bad_filter_in_one_line_before_asking(bad: str, says: str) -> None:
    server = Server({"nodes": []})
    result = cli_run(server, "--filter", bad)
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output
    assert server.requests == []


async def fleet(api: Api) -> dict[str, str]:
    """Nodes whose agents reported these versions and platforms (one never reported)."""
    nodes: dict[str, str] = {}
    for version, platform in (
        ("0.1.0", "Linux"), ("0.9.0", "Linux"), ("0.10.0", "Windows"), ("0.2.0", "Linux"),
        ("0.2.0~rc1", "MacOS"), (None, None),
    ):  # fmt: skip
        node = await api.new_node()
        if version is not None:
            body = {"agent_version": version, "platform": platform, "hostname": "h"}
            message = wire.make_message(wire.MSG_HEARTBEAT, body)
            assert (await api.send(node, [dict(message)])).status_code == 200
        nodes[version or "none"] = node.node_id
    return nodes


async def listed(api: Api, *filters: str, limit: int = 100) -> list[str]:
    """Versions of the nodes listed, page after page of ``limit`` (sorted: nodes registered
    in the same instant list in id order)."""
    versions: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"filter": list(filters), "limit": limit}
        if token:
            params["next_token"] = token
        response = await api.client.get("/v1/nodes", params=params, headers=api.admin)
        assert response.status_code == 200, response.text
        versions += [n["agent_version"] or "none" for n in response.json()["nodes"]]
        token = response.json().get("next_token")
        if not token:
            assert len(set(versions)) == len(versions)  # none twice
            return sorted(versions)


def test_the_api_filters_by_agent_version_platform_and_status(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await fleet(api)
        assert await listed(api, "agent_version<0.2.0") == sorted(["0.1.0", "0.2.0~rc1"])
        assert await listed(api, "agent_version>=0.2.0") == sorted(["0.9.0", "0.10.0", "0.2.0"])
        assert await listed(api, "agent_version=0.2.0") == ["0.2.0"]
        assert await listed(api, "agent_version!=0.2.0") == sorted(
            ["0.1.0", "0.9.0", "0.10.0", "0.2.0~rc1"]
        )
        assert await listed(api, "agent_version>0.9.0") == ["0.10.0"]
        assert await listed(api, "agent_version<=0.1.0") == ["0.1.0"]
        # Paging through a filtered list misses nothing and repeats nothing.
        assert await listed(api, "agent_version<0.2.0", limit=1) == sorted(["0.1.0", "0.2.0~rc1"])
        assert await listed(api, "platform=linux") == sorted(["0.1.0", "0.9.0", "0.2.0"])
        assert await listed(api, "platform!=Linux", "agent_version>0.1.0") == sorted(
            ["0.10.0", "0.2.0~rc1"]
        )
        # The nodes polled once (Online); the last one has never been seen.
        online = await listed(api, "status=Online")
        assert "none" not in online
        assert await listed(api, "status!=online") == [
            v for v in await listed(api) if v not in online
        ]

    run_api(scenario)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("agent_version<latest", "is not a version"),
        ("agent_version=", "is not a version"),
        ("agent_version~0.2.0", "expected tag:KEY=VALUE"),
        ("status=Sleeping", "status is one of Online, ConnectionLost, Deregistered"),
        ("status>Online", "status takes = or !="),
        ("platform=", "give a value"),
        ("tag:", "expected tag:KEY=VALUE"),
        ("x" * 301, "at most 300 characters"),
    ],
)
def test_the_api_refuses_a_bad_filter_in_one_line(run_api: RunApi, bad: str, says: str) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.get("/v1/nodes", params={"filter": bad}, headers=api.admin)
        message = assert_error(response, 400, "invalid_request")
        assert says in message and "\n" not in message

    run_api(scenario)
