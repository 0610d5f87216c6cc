"""Command output and secret values reach only the tokens allowed to read them, through every
route (issue 9, item 1).

The second route walk: a world with a command whose steps printed unique marks on two nodes
of two teams and a SecureString with a unique value; every GET route of the API (path
parameters filled from that world) is called with each restricted token, and no response may
carry a mark the token may not read.  A new route whose path parameters the walk cannot fill
fails here until it is added to :data:`PATH_VALUES`.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from fastapi.routing import APIRoute

from agent import wire
from control_plane.api.app import create_app
from control_plane.config import load_config
from control_plane.services.hub import ControlPlane
from tests.unit.conftest import Api, Node, RunApi, ServerDir
from tests.unit.test_authz_api import hdr, token
from tests.unit.test_authz_routes import _walk
from tests.unit.test_server_api_messages import poll

SECRET = "SECRET-VALUE-7e1f0c"
PARAMETER = "/app/prod/db-password"

# Reads every command and its output on the team's nodes only; decrypts nothing.
WEB_TEAM = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Sid": "ReadEverything",
            "Effect": "Allow",
            "Action": [
                "commands:List", "commands:Get", "events:Subscribe", "documents:*",
                "parameters:Get", "parameters:List", "parameters:GetHistory", "audit:*",
                "activations:List", "activations:Get", "groups:*", "webhooks:List",
                "tokens:List", "tokens:Get", "policies:*", "identity:WhoAmI",
                "associations:List", "associations:Get", "associations:ListVersions",
                "associations:ListExecutions", "windows:List", "windows:Get",
                "windows:ListExecutions", "windows:GetExecution", "calendars:List",
                "calendars:Get",
            ],
            "Resource": "*",
        },
        {
            "Sid": "OutputOfWebCommands",
            "Effect": "Allow",
            "Action": "commands:GetOutput",
            "Resource": "command/*",
        },
        {
            "Sid": "WebNodes",
            "Effect": "Allow",
            "Action": ["nodes:*", "commands:GetOutput"],
            "Resource": "node/*",
            "Condition": {"StringEquals": {"node:tag/team": "web"}},
        },
    ],
}  # fmt: skip

# Routes that stream until the client leaves: checked in tests/integration/test_run_output.py.
STREAMING = {"/v1/events"}


def mark(node: Node, stream: str) -> str:
    return f"{stream.upper()}-MARK-{node.node_id}"


def report(node: Node, command_id: str) -> dict[str, Any]:
    step = {
        "name": "run",
        "action": "aws:runShellScript",
        "status": wire.ST_SUCCESS,
        "response_code": 0,
        "stdout": mark(node, "stdout") + "\n",
        "stderr": mark(node, "stderr") + "\n",
        "stdout_bytes": 40,
        "stderr_bytes": 40,
    }
    return dict(
        wire.make_message(
            wire.MSG_INVOCATION_UPDATE,
            {
                "command_id": command_id,
                "status": wire.ST_SUCCESS,
                "status_details": wire.ST_SUCCESS,
                "response_code": 0,
                "steps": [step],
            },
        )
    )


async def run_on(api: Api, nodes: list[Node], command_id: str) -> None:
    """Play the nodes' agents: poll until the command arrives, report its result (the
    dispatcher ramps up, so the second node gets it once the first has answered)."""
    waiting = list(nodes)
    for _ in range(40):
        for node in list(waiting):
            messages = await poll(api, node, [], 0.05)
            if any(m["body"].get("command_id") == command_id for m in messages):
                stored = await api.send(node, [report(node, command_id)])
                assert stored.status_code == 200, stored.text
                waiting.remove(node)
        if not waiting:
            return
    raise AssertionError(f"command {command_id} never reached {waiting}")


class World:
    """What the walk fills path parameters from."""

    def __init__(self, web: Node, db: Node, command_id: str, activation_id: str) -> None:
        self.web, self.db, self.command_id = web, db, command_id
        self.activation_id = activation_id
        self.token_id = ""
        self.webhook_id = ""
        self.association_id = ""
        self.association_run = ""  # an association execution: its nodes printed marks
        self.window_id = ""
        self.session_id = ""

    def path_values(self, path: str) -> dict[str, str]:
        values = {
            "command_id": self.command_id,
            "node_id": self.db.node_id,
            "activation_id": self.activation_id,
            "token_id": self.token_id,
            "webhook_id": self.webhook_id,
        }
        if path.startswith("/v1/documents/"):
            values["name"] = "AWS-RunShellScript"
        elif path.startswith("/v1/groups/"):
            values["name"] = "everything"
        elif path.startswith("/v1/policies/"):
            values["name"] = "operator"
        elif path.startswith("/v1/docs/assets/"):
            values["name"] = "swagger-ui.css"
        elif path.startswith("/v1/calendars/"):
            values["name"] = "freeze"
        values["baseline_id"] = "AWS-UbuntuDefaultPatchBaseline"
        values["file"] = "corral-agent_0.1.0_amd64.deb"  # /v1/packages/files/{file}
        values["session_id"] = self.session_id
        values["association_id"] = self.association_id
        values["window_id"] = self.window_id
        values["execution_id"] = (
            self.association_run
            if path.startswith("/v1/associations/")
            else "00000000-0000-4000-8000-000000000000"  # no window has run: a 404 to walk
        )
        return values


# Query parameters that ask for more: every route gets those it declares.
REVEALING_QUERY = {
    "baseline": "AWS-UbuntuDefaultPatchBaseline",
    "decrypt": "true",
    "content": "true",
    "name": PARAMETER,
    "path": "/app",
    "recursive": "true",
}


def get_routes(server_dir: ServerDir) -> list[APIRoute]:
    app = create_app(ControlPlane(load_config(server_dir.path)))
    return [r for r in _walk(list(app.routes)) if "GET" in r.methods and r.path not in STREAMING]


async def build_world(api: Api) -> World:
    web = await api.new_node(tags={"team": "web"})
    db = await api.new_node(tags={"team": "db"})
    for node in (web, db):  # online: the command goes out at once
        await poll(api, node, [], 0)
    sent = await api.client.post(
        "/v1/commands",
        json={"targets": [web.node_id, db.node_id], "parameters": {"commands": ["echo"]}},
        headers=api.admin,
    )
    assert sent.status_code == 201, sent.text
    command_id = sent.json()["command_id"]
    await run_on(api, [web, db], command_id)
    put = await api.client.put(
        "/v1/parameters",
        json={"name": PARAMETER, "value": SECRET, "type": "SecureString"},
        headers=api.admin,
    )
    assert put.status_code == 200, put.text
    group = await api.client.post(
        "/v1/groups", json={"name": "everything", "targets": ["all"]}, headers=api.admin
    )
    assert group.status_code == 201, group.text
    activation = await api.create_activation()
    world = World(web, db, command_id, activation["activation_id"])
    hook = await api.client.post(
        "/v1/webhooks", json={"url": "https://hooks.example.net/x"}, headers=api.admin
    )
    assert hook.status_code == 201, hook.text
    world.webhook_id = hook.json()["webhook_id"]
    await association_world(api, world)
    return world


async def association_world(api: Api, world: World) -> None:
    """An association that ran on both nodes (their marks in its execution's output), a
    maintenance window and a change calendar."""
    made = await api.client.post(
        "/v1/associations",
        json={
            "name": "walked",
            "document": "AWS-RunShellScript",
            "parameters": {"commands": ["echo"]},
            "targets": [world.web.node_id, world.db.node_id],
        },
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    world.association_id = made.json()["association_id"]
    await api.cp.association_job.tick(api.clock())
    runs = await api.client.get(
        f"/v1/associations/{world.association_id}/executions", headers=api.admin
    )
    world.association_run = runs.json()["executions"][0]["execution_id"]
    await run_on(api, [world.web, world.db], world.association_run)
    window = await api.client.post(
        "/v1/windows",
        json={"name": "sunday", "schedule": "cron(0 2 ? * SUN *)", "duration": 3, "cutoff": 1},
        headers=api.admin,
    )
    assert window.status_code == 201, window.text
    world.window_id = window.json()["window_id"]
    calendar = await api.client.post(
        "/v1/calendars",
        json={"name": "freeze", "schedule": "cron(0 2 1 1 ? 2199)", "duration": 1},
        headers=api.admin,
    )
    assert calendar.status_code == 201, calendar.text
    session = await api.client.post(
        "/v1/sessions", json={"node_id": world.db.node_id}, headers=api.admin
    )
    assert session.status_code == 201, session.text
    world.session_id = session.json()["session_id"]


async def walk(
    api: Api, routes: list[APIRoute], world: World, auth: dict[str, str], never: list[str]
) -> int:
    """GET every route as ``auth``; none may answer with a string of ``never``.  Returns how
    many answered 200 (so the walk is known to have read something)."""
    ok = 0
    for route in routes:
        fields = [f for _, f, _, _ in string.Formatter().parse(route.path) if f]
        values = world.path_values(route.path)
        missing = [f for f in fields if not values.get(f)]
        assert not missing, f"{route.path}: add a value for {missing} to World.path_values"
        declared = {p.name for p in route.dependant.query_params}
        query = {k: v for k, v in REVEALING_QUERY.items() if k in declared}
        response = await api.client.get(
            route.path.format(**values), params=query, headers=hdr(auth)
        )
        ok += response.status_code == 200
        leaked = [s for s in never if s in response.text]
        assert not leaked, f"GET {route.path} showed {leaked} to a token that may not read it"
    return ok


def test_no_route_shows_output_or_secrets_to_a_token_without_the_action(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    routes = get_routes(server_dir)
    assert any(r.path == "/v1/commands/{command_id}" for r in routes)

    async def scenario(api: Api) -> None:
        world = await build_world(api)
        web, db = world.web, world.db
        everything = [mark(n, s) for n in (web, db) for s in ("stdout", "stderr")]

        # The admin sees it all (the marks are really there to be found).
        shown = await api.client.get(f"/v1/commands/{world.command_id}", headers=api.admin)
        assert all(m in shown.text for m in everything)

        viewer = await token(api, "viewer", role="viewer")
        world.token_id = viewer["id"]
        assert await walk(api, routes, world, viewer, [*everything, SECRET]) > 20

        operator = await token(api, "operator", role="operator")
        await walk(api, routes, world, operator, [SECRET])

        team = await token(api, "web-team", policy=WEB_TEAM)
        db_marks = [mark(db, "stdout"), mark(db, "stderr")]
        await walk(api, routes, world, team, [*db_marks, SECRET])
        # ... while it does read its own team's output.
        shown = await api.client.get(f"/v1/commands/{world.command_id}", headers=hdr(team))
        assert mark(web, "stdout") in shown.text
        targets = f"/v1/associations/{world.association_id}/executions/{world.association_run}"
        shown = await api.client.get(targets + "/targets", headers=hdr(team))
        assert mark(web, "stdout") in shown.text and mark(db, "stdout") not in shown.text

    run_api(scenario)


@pytest.mark.parametrize("who", ["viewer", "web-team"])
def test_views_say_where_output_was_omitted(
    run_api: RunApi, server_dir: ServerDir, who: str
) -> None:
    async def scenario(api: Api) -> None:
        world = await build_world(api)
        auth = await (
            token(api, who, role="viewer") if who == "viewer" else token(api, who, policy=WEB_TEAM)
        )
        command = (
            await api.client.get(f"/v1/commands/{world.command_id}", headers=hdr(auth))
        ).json()
        by_node = {inv["node_id"]: inv for inv in command["invocations"]}
        db = by_node[world.db.node_id]
        assert db["status"] == "Success" and db["response_code"] == 0
        assert db["output_omitted"] == (
            f"output omitted: you may not commands:GetOutput on node/{world.db.node_id}"
        )
        assert (db["steps"][0]["stdout"], db["steps"][0]["stderr"]) == (None, None)
        assert db["steps"][0]["status"] == "Success"
        web = by_node[world.web.node_id]
        if who == "viewer":
            assert web["output_omitted"] and web["steps"][0]["stdout"] is None
        else:
            assert web["output_omitted"] is None
            assert web["steps"][0]["stdout"] == mark(world.web, "stdout") + "\n"

        # The invocation list and detail say the same.
        listed = await api.client.get(
            f"/v1/commands/{world.command_id}/invocations", headers=hdr(auth)
        )
        assert listed.status_code == 200, listed.text
        assert {i["node_id"]: i["output_omitted"] for i in listed.json()["invocations"]} == {
            world.web.node_id: web["output_omitted"],
            world.db.node_id: db["output_omitted"],
        }
        detail = await api.client.get(
            f"/v1/commands/{world.command_id}/invocations/{world.db.node_id}", headers=hdr(auth)
        )
        assert detail.json()["output_omitted"] == db["output_omitted"]
        raw = await api.client.get(
            f"/v1/commands/{world.command_id}/invocations/{world.db.node_id}/output",
            headers=hdr(auth),
        )
        assert raw.status_code == 403

    run_api(scenario)


def test_the_invocation_list_pages_and_filters(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        world = await build_world(api)
        base = f"/v1/commands/{world.command_id}/invocations"
        whole = (await api.client.get(base, headers=api.admin)).json()
        order = [i["node_id"] for i in whole["invocations"]]
        assert sorted(order) == sorted([world.web.node_id, world.db.node_id])
        assert whole["next_token"] is None
        first = (await api.client.get(base, params={"limit": 1}, headers=api.admin)).json()
        assert [i["node_id"] for i in first["invocations"]] == order[:1]
        assert first["next_token"]
        second = await api.client.get(
            base, params={"limit": 1, "next_token": first["next_token"]}, headers=api.admin
        )
        assert [i["node_id"] for i in second.json()["invocations"]] == order[1:]
        assert second.json()["next_token"] is None
        only = await api.client.get(base, params={"node": world.db.node_id}, headers=api.admin)
        assert [i["node_id"] for i in only.json()["invocations"]] == [world.db.node_id]
        for params in ({"limit": 0}, {"limit": 1001}, {"next_token": "x"}, {"node": "web-1"}):
            bad = await api.client.get(base, params=params, headers=api.admin)
            assert bad.status_code == 400, (params, bad.text)
        missing = await api.client.get(f"{base}/mi-00000000000000000", headers=api.admin)
        assert missing.status_code == 404

    run_api(scenario)


def test_every_event_needs_a_read_permission() -> None:
    """Events reach a subscriber or a webhook only through read_permission; a type without a
    rule is shown to no one."""
    from control_plane.services.events import read_permission

    assert read_permission({"type": "command.status_changed", "command_id": "c1"}) == (
        "commands:Get",
        "command/c1",
    )
    assert read_permission(
        {"type": "command.invocation_status_changed", "command_id": "c1", "node_id": "mi-1"}
    ) == ("commands:Get", "command/c1")
    assert read_permission({"type": "parameter.changed", "name": "/app/db"}) == (
        "parameters:List",
        "parameter/app/db",
    )
    assert read_permission({"type": "something.new"}) is None
