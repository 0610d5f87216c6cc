"""The audit trail answers "who changed what" (issue 9, item 6): every route that changes
something is called once, successfully, and its audit entry must name the concrete resource
it changed (no ``*``, no unfilled ``{...}``), with the version for resources that have
versions (parameters, documents).  A changing route without a case here fails the test."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIRoute

from control_plane.api.app import create_app
from control_plane.api.authz import Allow
from control_plane.config import load_config
from control_plane.services.hub import ControlPlane
from control_plane.services.ratelimit import RateLimits
from tests.unit.conftest import Api, RunApi, ServerDir
from tests.unit.test_authz_routes import READS_BY_POST, _declarations, _walk

DOC = json.dumps(
    {
        "schemaVersion": "2.2",
        "description": "d",
        "mainSteps": [
            {"action": "aws:runShellScript", "name": "s", "inputs": {"runCommand": ["true"]}}
        ],
    }
)


@dataclass
class Case:
    """One call: ``body``/``params`` may be functions of the world (ids made on the way)."""

    resource: str  # a regex the entry's resource must match in full
    body: Any = None
    params: Any = None
    version: bool = False  # the entry must carry the version it made or touched
    more: list[str] = field(default_factory=list)  # further entries' resources (regexes)
    answers: tuple[int, ...] = (200, 201)


World = dict[str, str]


def cases(world: World) -> dict[tuple[str, str], Case]:
    node, doc, window = world["node"], "Audit-Doc", world["window"]
    return {
        ("POST", "/v1/activations"): Case(r"activation/[0-9a-f-]{36}", {"name": "a"}),
        ("DELETE", "/v1/activations/{activation_id}"): Case(f"activation/{world['activation']}"),
        ("POST", "/v1/nodes/{node_id}/tags"): Case(f"node/{node}", {"tags": {"k": "v"}}),
        ("POST", "/v1/nodes/{node_id}/untag"): Case(f"node/{node}", {"keys": ["k"]}),
        ("POST", "/v1/nodes/{node_id}/ping"): Case(
            f"node/{node}",
            {"timeout_seconds": 0.1},
            answers=(200, 504),  # nobody answers
        ),
        ("POST", "/v1/nodes/{node_id}/deregister"): Case(f"node/{world['spare']}"),
        ("POST", "/v1/commands"): Case(
            r"command/[0-9a-f-]{36}", {"targets": [node], "parameters": {"commands": ["true"]}}
        ),
        ("POST", "/v1/commands/{command_id}/cancel"): Case(f"command/{world['command']}"),
        ("POST", "/v1/groups"): Case("group/web", {"name": "web", "targets": ["all"]}),
        ("DELETE", "/v1/groups/{name}"): Case("group/old"),
        ("POST", "/v1/webhooks"): Case(r"webhook/wh-[0-9a-f]{16}", {"url": "https://h.test/x"}),
        ("DELETE", "/v1/webhooks/{webhook_id}"): Case(f"webhook/{world['webhook']}"),
        ("POST", "/v1/login"): Case(r"token/tok-[0-9a-f]{16}"),
        ("POST", "/v1/tokens"): Case(r"token/tok-[0-9a-f]{16}", {"name": "n", "role": "viewer"}),
        ("POST", "/v1/tokens/{token_id}/revoke"): Case(f"token/{world['token']}"),
        ("PUT", "/v1/parameters"): Case(
            "parameter/app/db-url", {"name": "/app/db-url", "value": "x"}, version=True
        ),
        ("POST", "/v1/parameters/label"): Case(
            "parameter/app/db-url", {"name": "/app/db-url", "labels": ["stable"]}, version=True
        ),
        ("POST", "/v1/parameters/unlabel"): Case(
            "parameter/app/db-url",
            {"name": "/app/db-url", "version": 1, "labels": ["stable"]},
            version=True,
        ),
        ("POST", "/v1/parameters/delete"): Case(
            "parameter/app/one", {"names": ["/app/one", "/app/two"]}, more=["parameter/app/two"]
        ),
        ("POST", "/v1/documents"): Case(
            f"document/{doc}", {"name": doc, "content": DOC}, version=True
        ),
        ("POST", "/v1/documents/{name}/versions"): Case(
            f"document/{doc}", {"content": DOC.replace('"d"', '"d2"')}, version=True
        ),
        ("PUT", "/v1/documents/{name}/default"): Case(
            f"document/{doc}", {"version": 2}, version=True
        ),
        ("DELETE", "/v1/documents/{name}"): Case(
            f"document/{doc}", params={"version": "1"}, version=True
        ),
        ("POST", "/v1/associations"): Case(
            r"association/[0-9a-f-]{36}",
            {
                "name": "audit-association",
                "document": "AWS-RunShellScript",
                "parameters": {"commands": ["true"]},
                "targets": [node],
            },
            version=True,
        ),
        ("PATCH", "/v1/associations/{association_id}"): Case(
            f"association/{world['association']}", {"max_errors": "1"}, version=True
        ),
        ("POST", "/v1/associations/{association_id}/run"): Case(
            f"association/{world['association']}", answers=(201,)
        ),
        ("DELETE", "/v1/associations/{association_id}"): Case(
            f"association/{world['association']}"
        ),
        ("POST", "/v1/windows"): Case(
            r"window/mw-[0-9a-f]{17}",
            {"name": "audit-window", "schedule": "cron(0 2 ? * SUN *)", "duration": 3, "cutoff": 1},
        ),
        ("POST", "/v1/windows/{window_id}/enable"): Case(f"window/{window}"),
        ("POST", "/v1/windows/{window_id}/disable"): Case(f"window/{window}"),
        ("POST", "/v1/windows/{window_id}/targets"): Case(f"window/{window}", {"targets": [node]}),
        ("DELETE", "/v1/windows/{window_id}/targets/{target_id}"): Case(f"window/{window}"),
        ("POST", "/v1/windows/{window_id}/tasks"): Case(
            f"window/{window}",
            {"document": "AWS-RunShellScript", "parameters": {"commands": ["true"]}},
        ),
        ("DELETE", "/v1/windows/{window_id}/tasks/{task_id}"): Case(f"window/{window}"),
        ("DELETE", "/v1/windows/{window_id}"): Case(f"window/{window}"),
        ("POST", "/v1/calendars"): Case(
            "calendar/audit-calendar",
            {"name": "audit-calendar", "schedule": "cron(0 2 1 1 ? 2199)", "duration": 1},
        ),
        ("DELETE", "/v1/calendars/{name}"): Case("calendar/old"),
        ("DELETE", "/v1/inventory/types/{type_name}"): Case("inventory/Custom:Audit"),
        ("POST", "/v1/baselines"): Case(
            r"baseline/pb-[0-9a-f]{17}", {"Name": "audit-made", "OperatingSystem": "UBUNTU"}
        ),
        ("PATCH", "/v1/baselines/{baseline_id}"): Case(
            f"baseline/{world['baseline']}", {"Description": "changed"}
        ),
        ("POST", "/v1/baselines/{baseline_id}/patch-groups"): Case(
            f"baseline/{world['baseline']}", {"patch_group": "audit"}
        ),
        ("DELETE", "/v1/baselines/{baseline_id}/patch-groups"): Case(
            f"baseline/{world['baseline']}", params={"patch_group": "audit"}
        ),
        ("DELETE", "/v1/baselines/{baseline_id}"): Case(f"baseline/{world['baseline']}"),
        ("POST", "/v1/baselines/{baseline_id}/default"): Case(
            f"baseline/{world['spare_baseline']}"
        ),
        ("POST", "/v1/sessions"): Case(f"node/{node}", {"node_id": node, "run_as": "nobody"}),
        ("POST", "/v1/sessions/{session_id}/terminate"): Case(f"node/{node}"),
        ("PUT", "/v1/compliance/nodes/{node_id}/items"): Case(
            f"node/{node}",
            {
                "compliance_type": "Custom:Audit",
                "items": [{"id": "x", "severity": "LOW", "status": "COMPLIANT"}],
            },
        ),
    }


def changing_routes(server_dir: ServerDir) -> list[APIRoute]:
    app = create_app(ControlPlane(load_config(server_dir.path)))
    found = []
    for route in _walk(list(app.routes)):
        if route.methods & {"GET"} or route.path in READS_BY_POST:
            continue
        if any(isinstance(d, Allow) and d.audited for d in _declarations(route.dependant)):
            found.append(route)
    return found


async def build_world(api: Api) -> World:
    async def ok(call: Awaitable[Any]) -> dict[str, Any]:
        response = await call
        assert response.status_code < 300, response.text
        result: dict[str, Any] = response.json()
        return result

    post, put, h = api.client.post, api.client.put, api.admin
    node = await api.new_node()
    spare = await api.new_node()
    activation = await api.create_activation()
    from tests.unit.test_inventory_api import send_ok, upload

    await send_ok(api, node, upload("Custom:Audit", [{"Name": "x"}]))
    command = await ok(post("/v1/commands", json={"targets": [node.node_id],
                                                  "parameters": {"commands": ["sleep 1"]}},
                            headers=h))  # fmt: skip
    await ok(post("/v1/groups", json={"name": "old", "targets": ["all"]}, headers=h))
    hook = await ok(post("/v1/webhooks", json={"url": "https://h.test/y"}, headers=h))
    token = await ok(post("/v1/tokens", json={"name": "t", "role": "viewer"}, headers=h))
    for name in ("/app/one", "/app/two"):
        await ok(put("/v1/parameters", json={"name": name, "value": "v"}, headers=h))
    association = await ok(
        post(
            "/v1/associations",
            json={
                "name": "audited",
                "document": "AWS-RunShellScript",
                "parameters": {"commands": ["true"]},
                "targets": [node.node_id],
            },
            headers=h,
        )
    )
    window = await ok(
        post(
            "/v1/windows",
            json={"name": "audited", "schedule": "cron(0 2 ? * SUN *)", "duration": 3, "cutoff": 1},
            headers=h,
        )
    )
    window_id = window["window_id"]
    target = await ok(
        post(f"/v1/windows/{window_id}/targets", json={"targets": [node.node_id]}, headers=h)
    )
    task = await ok(
        post(
            f"/v1/windows/{window_id}/tasks",
            json={"document": "AWS-RunShellScript", "parameters": {"commands": ["true"]}},
            headers=h,
        )
    )
    await ok(
        post(
            "/v1/calendars",
            json={"name": "old", "schedule": "cron(0 2 1 1 ? 2199)", "duration": 1},
            headers=h,
        )
    )
    baselines = [
        await ok(post("/v1/baselines", json={"Name": n, "OperatingSystem": "DEBIAN"}, headers=h))
        for n in ("audit-old", "audit-spare")
    ]
    session = await ok(post("/v1/sessions", json={"node_id": node.node_id}, headers=h))
    return {
        "session": session["session_id"],
        "baseline": baselines[0]["BaselineId"],
        "spare_baseline": baselines[1]["BaselineId"],
        "association": association["association_id"],
        "window": window_id,
        "target": target.get("window_target_id") or target.get("target_id", ""),
        "task": task.get("window_task_id") or task.get("task_id", ""),
        "node": node.node_id,
        "spare": spare.node_id,
        "activation": activation["activation_id"],
        "command": command["command_id"],
        "webhook": hook["webhook_id"],
        "token": token["token_id"],
    }


ORDER = [  # calls that depend on an earlier one come after it
    ("POST", "/v1/documents"),
    ("POST", "/v1/documents/{name}/versions"),
    ("PUT", "/v1/documents/{name}/default"),
    ("DELETE", "/v1/documents/{name}"),
    ("PUT", "/v1/parameters"),
    ("POST", "/v1/parameters/label"),
    ("POST", "/v1/parameters/unlabel"),
    ("PATCH", "/v1/associations/{association_id}"),
    ("POST", "/v1/associations/{association_id}/run"),
    ("DELETE", "/v1/associations/{association_id}"),
    ("POST", "/v1/windows/{window_id}/targets"),
    ("DELETE", "/v1/windows/{window_id}/targets/{target_id}"),
    ("POST", "/v1/windows/{window_id}/tasks"),
    ("DELETE", "/v1/windows/{window_id}/tasks/{task_id}"),
    ("DELETE", "/v1/windows/{window_id}"),
    ("PATCH", "/v1/baselines/{baseline_id}"),
    ("POST", "/v1/baselines/{baseline_id}/patch-groups"),
    ("DELETE", "/v1/baselines/{baseline_id}/patch-groups"),
    ("DELETE", "/v1/baselines/{baseline_id}"),
]


def test_every_change_names_the_resource_it_changed(run_api: RunApi, server_dir: ServerDir) -> None:
    routes = changing_routes(server_dir)
    assert len(routes) > 20

    async def scenario(api: Api) -> None:
        # One call per changing route, and a world to change: more than one token's burst.
        api.cp.rate_limits = RateLimits(auth_base_delay=0, operator_burst=10_000)
        world = await build_world(api)
        table = cases(world)
        keys = [(m, r.path) for r in routes for m in sorted(r.methods)]
        missing = [k for k in keys if k not in table]
        assert not missing, f"add a case for {missing}"
        keys.sort(key=lambda k: ORDER.index(k) if k in ORDER else -1)
        wrong = []
        for method, path in keys:
            case = table[(method, path)]
            values = {"name": "Audit-Doc" if "/documents/" in path else "old", **{
                "activation_id": world["activation"], "node_id": world["node"],
                "command_id": world["command"], "webhook_id": world["webhook"],
                "token_id": world["token"], "association_id": world["association"],
                "window_id": world["window"], "target_id": world["target"],
                "task_id": world["task"], "type_name": "Custom:Audit",
                "session_id": world["session"],
                "baseline_id": world["baseline"]}}  # fmt: skip
            if path == "/v1/nodes/{node_id}/deregister":
                values["node_id"] = world["spare"]
            if path == "/v1/baselines/{baseline_id}/default":
                values["baseline_id"] = world["spare_baseline"]
            request_id = uuid.uuid4().hex[:16]
            response = await api.client.request(
                method,
                path.format(**values),
                json=case.body,
                params=case.params,
                headers={**api.admin, "x-request-id": request_id},
            )
            assert response.status_code in case.answers, (method, path, response.text)
            entries = await entries_of(api, request_id)
            expected = [case.resource, *case.more]
            resources = [e["resource"] for e in entries]
            if len(resources) != len(expected) or not all(
                re.fullmatch(want, got) for want, got in zip(expected, resources, strict=True)
            ):
                wrong.append(f"{method} {path}: {resources} (expected {expected})")
            elif case.version and not all(
                isinstance(e["request"], dict) and e["request"].get("version") for e in entries
            ):
                wrong.append(f"{method} {path}: no version in {entries[0]['request']}")
        assert not wrong, "audit entries that do not say what changed:\n" + "\n".join(wrong)

    run_api(scenario)


async def entries_of(api: Api, request_id: str) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/audit", params={"limit": 1000}, headers=api.admin)
    entries: list[dict[str, Any]] = response.json()["entries"]
    return sorted((e for e in entries if e.get("request_id") == request_id), key=lambda e: e["seq"])
