"""Every list is paged (issue 9, item 5): ``limit`` is 1 to 1,000 and applied, ``next_token``
continues exactly where the last page stopped (per-item authorization never skips an item),
and a query parameter a route does not take is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute

from control_plane.services.ratelimit import RateLimits
from tests.unit.conftest import Api, RunApi, ServerDir, assert_error
from tests.unit.test_authz_api import hdr, token
from tests.unit.test_output_visibility import World, build_world, get_routes

BAD_LIMITS = ["-1", "0", "1001", "999999999", "abc", "1.5", ""]


def list_routes(server_dir: ServerDir) -> list[APIRoute]:
    return [r for r in get_routes(server_dir) if "limit" in _query(r)]


def _query(route: APIRoute) -> set[str]:
    return {p.alias for p in route.dependant.query_params}


def url(route: APIRoute, world: World) -> str:
    return route.path.format(**world.path_values(route.path))


NOT_LISTS = {  # answers that hold a list of objects, but are one resource
    "/v1/commands/{command_id}": "its invocations are paged at .../invocations",
    "/v1/commands/{command_id}/invocations/{node_id}": "one invocation, with its steps",
    "/v1/documents/{name}": "one document",
    "/v1/whoami": "the token's own policies",
    "/v1/associations/{association_id}": "one association: its overview counts every node; "
    "node_statuses names the first 1,000 (each run's nodes are paged at .../targets)",
    "/v1/inventory/nodes/{node_id}": "one node's types: at most 14 built-in and 20 custom, "
    "and its last gathering's errors (at most 50)",
    "/v1/packages/manifest": "one signed document: a page of it would not verify",
}
REQUIRED = {  # query parameters some lists need
    "/v1/parameters/by-path": {"path": "/app"},
    "/v1/parameters/history": {"name": "/app/prod/db-password"},
    "/v1/inventory/items": {"type": "AWS:Application"},
    "/v1/inventory/nodes/{node_id}/items": {"type": "AWS:Application"},
    "/v1/inventory/summary": {"type": "AWS:Application", "group_by": "Name"},
    "/v1/patch/nodes/{node_id}/effective-patches": {"baseline": "AWS-UbuntuDefaultPatchBaseline"},
}


def test_every_list_takes_limit_and_next_token_and_refuses_bad_ones(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    routes = get_routes(server_dir)
    lists = list_routes(server_dir)
    assert len(lists) >= 13

    async def scenario(api: Api) -> None:
        api.cp.rate_limits = RateLimits(operator_rate=0, auth_base_delay=0, clock=api.clock)
        world = await build_world(api)
        world.token_id = (await token(api, "t", role="viewer"))["id"]
        # Every GET that answers a list is one of the paged routes.
        for route in routes:
            base = REQUIRED.get(route.path, {})
            response = await api.client.get(url(route, world), params=base, headers=api.admin)
            if response.headers.get("content-type", "").split(";")[0] == "application/json":
                shown = response.json()
                lists_in = [
                    k
                    for k, v in shown.items()
                    if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
                ]
                if lists_in and route.path not in NOT_LISTS:
                    assert route in lists, f"{route.path} answers a list without paging"
                    assert "next_token" in shown, route.path
        for route in lists:
            base = REQUIRED.get(route.path, {})
            for bad in BAD_LIMITS:
                response = await api.client.get(
                    url(route, world), params={**base, "limit": bad}, headers=api.admin
                )
                message = assert_error(response, 400, "invalid_request")
                assert "limit" in message, (route.path, bad, message)
            for bad_token in ("garbage!", "eyJ4Ijox", "W10", "WyJhIiwgMSwgMl0"):
                response = await api.client.get(
                    url(route, world), params={**base, "next_token": bad_token},
                    headers=api.admin,
                )  # fmt: skip
                message = assert_error(response, 400, "invalid_request")
                assert "next_token" in message, (route.path, message)
            response = await api.client.get(
                url(route, world), params={**base, "limt": "5"}, headers=api.admin
            )
            assert "unknown query parameter 'limt'" in assert_error(
                response, 400, "invalid_request"
            )

    run_api(scenario)


def test_the_reviews_reproduction(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for bad in ("-1", "999999999", "abc"):
            response = await api.client.get(
                "/v1/commands", params={"limit": bad}, headers=api.admin
            )
            assert response.status_code == 400, (bad, response.text)

    run_api(scenario)


async def walk(
    api: Api, route_path: str, key: str, headers: dict[str, str], **query: Any
) -> list[Any]:
    """Every page of a list, at ``limit`` per page: the items in order."""
    items: list[Any] = []
    seen_tokens: set[str] = set()
    params = dict(query)
    while True:
        response = await api.client.get(route_path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page[key]) <= int(query["limit"])
        items += page[key]
        token_ = page["next_token"]
        if token_ is None:
            return items
        assert token_ not in seen_tokens
        seen_tokens.add(token_)
        params["next_token"] = token_


def test_more_than_a_thousand_parameters_page_through(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for i in range(1050):
            await api.cp.parameters.put(name=f"/bulk/p{i:04d}", value="v", by="test")
        names = [p["name"] for p in await walk(api, "/v1/parameters", "parameters",
                                               api.admin, limit="1000")]  # fmt: skip
        assert names == sorted(f"/bulk/p{i:04d}" for i in range(1050))
        by_path = await walk(
            api, "/v1/parameters/by-path", "parameters", api.admin, path="/bulk", limit="400"
        )
        assert [p["name"] for p in by_path] == names
        default = await api.client.get("/v1/parameters", headers=api.admin)
        assert len(default.json()["parameters"]) == 100 and default.json()["next_token"]

    run_api(scenario)


ODD_ONLY = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "parameters:List",
            "Resource": [f"parameter/p/?{d}" for d in "13579"],
        },
        {"Effect": "Allow", "Action": ["commands:List", "nodes:List"], "Resource": "*"},
    ],
}


@pytest.mark.parametrize("limit", ["1", "3", "7"])
def test_filtered_lists_skip_nothing(run_api: RunApi, limit: str) -> None:
    async def scenario(api: Api) -> None:
        for i in range(30):
            await api.cp.parameters.put(name=f"/p/{i:02d}", value="v", by="test")
        odd = hdr(await token(api, "odd", policy=ODD_ONLY))
        shown = await walk(api, "/v1/parameters", "parameters", odd, limit=limit)
        assert [p["name"] for p in shown] == [f"/p/{i:02d}" for i in range(1, 30, 2)]

        nodes = [await api.new_node() for _ in range(8)]
        listed = await walk(api, "/v1/nodes", "nodes", api.admin, limit=limit)
        assert sorted(n["node_id"] for n in listed) == sorted(n.node_id for n in nodes)
        for _ in range(9):
            sent = await api.client.post(
                "/v1/commands",
                json={"targets": ["all"], "parameters": {"commands": ["true"]}},
                headers=api.admin,
            )
            assert sent.status_code == 201
            api.clock.advance(0.001 * (_ % 2))  # some share a creation time
        commands = await walk(api, "/v1/commands", "commands", odd, limit=limit)
        assert len(commands) == 9 and len({c["command_id"] for c in commands}) == 9
        assert commands == sorted(commands, key=lambda c: c["created_at"], reverse=True)

    run_api(scenario)


def test_the_cli_follows_pages_and_stops_at_max_items(server_dir: ServerDir) -> None:
    """The CLI's list commands read every page (or --max-items)."""
    import httpx
    from click.testing import CliRunner

    from control_plane.cli.context import Runtime
    from control_plane.cli.main import cli

    pages = {
        None: {"groups": [{"name": f"g{i}"} for i in range(3)], "next_token": "t1"},
        "t1": {"groups": [{"name": f"g{i}"} for i in range(3, 5)], "next_token": None},
    }
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        return httpx.Response(200, json=pages[params.get("next_token")])

    env = {
        "CORRAL_URL": "https://corral.test",
        "CORRAL_TOKEN": "crl_x",
        "CORRAL_CA_FILE": "/nonexistent",
        "CORRAL_CONFIG": str(server_dir.path / "c.toml"),
    }
    runner = CliRunner()
    rt = Runtime(transport=httpx.MockTransport(handler))
    result = runner.invoke(cli, ["groups", "list", "-o", "json"], obj=rt, env=env)
    assert result.exit_code == 0, result.output
    assert [g["name"] for g in json.loads(result.stdout)] == ["g0", "g1", "g2", "g3", "g4"]
    assert asked == [{"limit": "1000"}, {"limit": "1000", "next_token": "t1"}]
    asked.clear()
    result = runner.invoke(
        cli, ["groups", "list", "--max-items", "2", "-o", "json"], obj=rt, env=env
    )
    assert [g["name"] for g in json.loads(result.stdout)] == ["g0", "g1"]
    assert asked == [{"limit": "2"}]
