"""State Manager associations through the API, with the scheduler's job driven by the test's
clock (``tick(now)``; nothing sleeps to wait for a schedule): create applies at once, a
schedule runs each slot once (a server down over several slots runs the latest once), two
schedulers never run a slot twice, targets are re-evaluated, each node is sent its set, the
nodes' results become each target's status and its compliance, and bad input stores nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from agent import wire
from control_plane.api.app import create_app
from control_plane.config import load_config
from control_plane.services.associations import AssociationJob
from control_plane.services.hub import ControlPlane
from control_plane.services.ratelimit import RateLimits
from tests.unit.conftest import Api, FakeClock, Node, RunApi, ServerDir, assert_error
from tests.unit.test_execution_support import eventually
from tests.unit.test_server_api_messages import poll

ECHO = {"commands": ["echo applied"]}


async def create(api: Api, **fields: Any) -> httpx.Response:
    body = {"name": "keep-tidy", "document": "AWS-RunShellScript", "parameters": ECHO, **fields}
    return await api.client.post("/v1/associations", json=body, headers=api.admin)


async def created(api: Api, **fields: Any) -> dict[str, Any]:
    response = await create(api, **fields)
    assert response.status_code == 201, response.text
    view: dict[str, Any] = response.json()
    return view


async def show(api: Api, association_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/associations/{association_id}", headers=api.admin)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def executions(api: Api, association_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"/v1/associations/{association_id}/executions", headers=api.admin
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["executions"]
    return found


async def tick(api: Api) -> None:
    """A scheduler pass; results are applied whatever events have arrived yet (the event
    path has its own test)."""
    await api.cp.association_job.tick(api.clock())
    await api.cp.association_job.sync(api.clock(), sweep=True)


async def report(api: Api, node: Node, command_id: str, status: str = wire.ST_SUCCESS) -> None:
    body = {"command_id": command_id, "status": status, "status_details": status, "steps": []}
    stored = await api.send(node, [dict(wire.make_message(wire.MSG_INVOCATION_UPDATE, body))])
    assert stored.status_code == 200, stored.text


async def closed_calendar(api: Api) -> None:
    """``freeze``: closed by default, open one hour a year from 2199: CLOSED now."""
    calendar = await api.client.post(
        "/v1/calendars",
        json={
            "name": "freeze",
            "calendar_type": "DEFAULT_CLOSED",
            "schedule": "cron(0 2 1 1 ? 2199)",
            "duration": 1,
        },
        headers=api.admin,
    )
    assert calendar.status_code == 201, calendar.text


async def received(api: Api, node: Node) -> list[dict[str, Any]]:
    """What the node's agent would be handed now (acknowledged: not handed again)."""
    messages = await poll(api, node, [], 0)
    if messages:
        await poll(api, node, [m["id"] for m in messages], 0)
    return messages


def test_create_applies_at_once_and_the_node_learns_its_set(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"role": "web"})
        other = await api.new_node(tags={"role": "db"})
        view = await created(api, targets=["tag:role=web"], schedule="rate(30 minutes)")
        assert view["version"] == 1 and "warnings" not in view
        await tick(api)
        runs = await executions(api, view["association_id"])
        assert [r["trigger"] for r in runs] == ["create"]
        command_id = runs[0]["command_id"]
        got = await received(api, web)
        kinds = {m["type"] for m in got}
        assert kinds >= {wire.MSG_ASSOCIATIONS}
        sets = [m for m in got if m["type"] == wire.MSG_ASSOCIATIONS]
        held = sets[-1]["body"]["associations"]
        assert [a["name"] for a in held] == ["keep-tidy"]
        assert held[0]["offline"] is True and held[0]["schedule"] == "rate(30 minutes)"
        assert held[0]["document"]["schemaVersion"], "the node keeps the document to run it alone"
        assert not [m for m in await received(api, other) if m["type"] == wire.MSG_ASSOCIATIONS]
        await report(api, web, command_id)
        await tick(api)
        shown = await show(api, view["association_id"])
        assert shown["overview"]["status"] == "Success"
        assert shown["overview"]["status_counts"] == {"Success": 1}
        assert (await executions(api, view["association_id"]))[0]["status"] == "Success"
        items = await api.cp.compliance.list_items(web.node_id, compliance_type="Association")
        assert [(i["id"], i["status"]) for i in _items(items)] == [
            (view["association_id"], "COMPLIANT")
        ]
        succeeded = shown["node_statuses"][0]["last_success_at"]
        assert succeeded is not None
        # A new run is Pending on the node and keeps when it last succeeded.
        ran = await api.client.post(
            f"/v1/associations/{view['association_id']}/run", headers=api.admin
        )
        assert ran.status_code == 201, ran.text
        again = (await show(api, view["association_id"]))["node_statuses"][0]
        assert (again["status"], again["last_success_at"]) == ("Pending", succeeded)
        await received(api, web)
        # Nothing changed: the node is not sent its set again, nothing runs again.
        await tick(api)
        assert not [m for m in await received(api, web) if m["type"] == wire.MSG_ASSOCIATIONS]
        assert len(await executions(api, view["association_id"])) == 2

    run_api(scenario)


def _items(listed: Any) -> list[dict[str, Any]]:
    items = listed.items if hasattr(listed, "items") and not isinstance(listed, dict) else listed
    if isinstance(items, dict):
        items = items.get("items", [])
    return [{k.lower(): v for k, v in i.items()} for i in items]


def test_each_slot_runs_once_and_missed_slots_run_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        view = await created(
            api, targets=[node.node_id], schedule="rate(30 minutes)", name="every-half-hour"
        )
        association_id = view["association_id"]
        start = api.clock()
        await tick(api)  # applied at creation
        api.clock.advance(30 * 60 + 1)
        await tick(api)
        await tick(api)  # the same slot again: nothing more
        runs = await executions(api, association_id)
        scheduled = [r for r in runs if r["trigger"] == "schedule"]
        assert len(scheduled) == 1
        slot = start + 30 * 60
        assert scheduled[0]["execution_id"] == wire.association_command_id(association_id, slot)
        # The server was down for 3 hours (6 slots): the latest one runs, once.
        api.clock.advance(3 * 3600)
        await tick(api)
        scheduled = [r for r in await executions(api, association_id) if r["trigger"] == "schedule"]
        assert len(scheduled) == 2
        latest = start + 7 * 30 * 60
        assert scheduled[0]["execution_id"] == wire.association_command_id(association_id, latest)
        shown = await show(api, association_id)
        assert shown["next_run_at"] is not None

    run_api(scenario)


def test_two_schedulers_never_run_a_slot_twice(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        view = await created(api, targets=[node.node_id], schedule="rate(30 minutes)")
        await tick(api)
        cp = api.cp
        second = AssociationJob(
            cp.db, cp.association_runs, cp.commands.check_run, cp.presence, api.clock
        )
        api.clock.advance(30 * 60 + 1)
        # Both read the association as due before either claims it.
        await asyncio.gather(second.run_due(api.clock()), cp.association_job.run_due(api.clock()))
        scheduled = [
            r for r in await executions(api, view["association_id"]) if r["trigger"] == "schedule"
        ]
        assert len(scheduled) == 1

    run_api(scenario)


def test_apply_only_at_cron_interval_waits_for_the_schedule(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        view = await created(
            api,
            targets=[node.node_id],
            schedule="cron(0 2 ? * SUN *)",
            timezone="Europe/Berlin",
            apply_only_at_cron_interval=True,
        )
        await tick(api)
        assert await executions(api, view["association_id"]) == []
        shown = await show(api, view["association_id"])
        assert shown["node_statuses"][0]["status"] == "Pending"

    run_api(scenario)


def test_targets_are_re_evaluated(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"role": "web"})
        view = await created(api, targets=["tag:role=web"])  # no schedule: once per node
        await tick(api)
        later = await api.new_node()
        tagged = await api.client.post(
            f"/v1/nodes/{later.node_id}/tags", json={"tags": {"role": "web"}}, headers=api.admin
        )
        assert tagged.status_code in (200, 201), tagged.text
        await tick(api)
        runs = await executions(api, view["association_id"])
        assert sorted(r["trigger"] for r in runs) == ["create", "targets"]
        shown = await show(api, view["association_id"])
        assert sorted(s["node_id"] for s in shown["node_statuses"]) == sorted(
            [web.node_id, later.node_id]
        )
        untag = await api.client.post(
            f"/v1/nodes/{web.node_id}/untag", json={"keys": ["role"]}, headers=api.admin
        )
        assert untag.status_code in (200, 204), untag.text
        await tick(api)
        shown = await show(api, view["association_id"])
        assert [s["node_id"] for s in shown["node_statuses"]] == [later.node_id]
        # Its set is now empty: the node is told so.
        sets = [m for m in await received(api, web) if m["type"] == wire.MSG_ASSOCIATIONS]
        assert sets and sets[-1]["body"]["associations"] == []

    run_api(scenario)


def test_update_makes_a_version_and_a_stale_version_changes_nothing(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        view = await created(api, targets=[node.node_id])
        association_id = view["association_id"]
        changed = await api.client.patch(
            f"/v1/associations/{association_id}",
            json={"max_errors": "1", "expect_version": 1},
            headers=api.admin,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 2
        stale = await api.client.patch(
            f"/v1/associations/{association_id}",
            json={"max_errors": "5", "expect_version": 1},
            headers=api.admin,
        )
        assert "version 2" in assert_error(stale, 409, "conflict")
        shown = await show(api, association_id)
        assert shown["max_errors"] == "1" and shown["version"] == 2
        versions = await api.client.get(
            f"/v1/associations/{association_id}/versions", headers=api.admin
        )
        assert [v["version"] for v in versions.json()["versions"]] == [2, 1]

    run_api(scenario)


def test_run_now_runs_on_every_target(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        view = await created(
            api,
            targets=[node.node_id],
            schedule="cron(0 2 ? * SUN *)",
            apply_only_at_cron_interval=True,
        )
        ran = await api.client.post(
            f"/v1/associations/{view['association_id']}/run", headers=api.admin
        )
        assert ran.status_code == 201, ran.text
        assert ran.json()["trigger"] == "run-now"
        assert ran.json()["target_count"] == 1

    run_api(scenario)


def test_targets_matching_nothing_are_accepted_with_a_warning(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        view = await created(api, targets=["tag:role=future"])
        assert "match no node yet" in view["warnings"][0]

    run_api(scenario)


BAD = [
    ({"schedule": "cron(0 2 ? * SUN * *)"}, "cron("),
    ({"schedule": "cron(0 2 1 * SUN *)"}, "?"),
    ({"schedule": "rate(0 minutes)"}, "rate(0 minutes)"),
    ({"schedule": "rate(5 minutes)"}, "30 minutes"),
    ({"schedule": "cron(0 25 ? * SUN *)"}, "25"),
    ({"schedule": "rate(1 day)", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ({"schedule": "rate(1 day)", "apply_only_at_cron_interval": True}, "rate()"),
    ({"schedule": "cron(0 2 ? * SUN *)", "schedule_offset": 2}, "apply-only-at-cron-interval"),
    ({"schedule_offset": 2}, "cron()"),
    ({"apply_only_at_cron_interval": True}, "needs a schedule"),
    ({"document": "No-Such-Document"}, "No-Such-Document"),
    ({"document_version": "99"}, "99"),
    ({"parameters": {"commands": ["x"], "workingDirectory": 5}}, "workingDirectory"),
    ({"parameters": {"nope": "x"}}, "nope"),
    ({"name": "x"}, "3 to 128"),
    ({"name": "has space"}, "3 to 128"),
    ({"max_concurrency": "0"}, "max_concurrency"),
    ({"compliance_severity": "SEVERE"}, "compliance severity"),
    ({"sync_compliance": "NEVER"}, "AUTO or MANUAL"),
    ({"targets": ["bogus:thing"]}, "bogus"),
]


@pytest.mark.parametrize(("fields", "named"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_refused_and_nothing_is_stored(
    run_api: RunApi, fields: dict[str, Any], named: str
) -> None:
    async def scenario(api: Api) -> None:
        body = {"targets": ["all"], **fields}
        response = await create(api, **body)
        assert response.status_code in (400, 404, 422), response.text
        message = response.json()["error"]["message"]
        assert named in message and "\n" not in message, message
        listed = await api.client.get("/v1/associations", headers=api.admin)
        assert listed.json()["associations"] == []

    run_api(scenario)


def test_a_name_is_taken_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api, targets=["all"])
        assert_error(await create(api, targets=["all"]), 409, "conflict")

    run_api(scenario)


def test_a_closed_change_calendar_skips_the_run_with_its_reason(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await closed_calendar(api)
        unknown = await create(api, targets=[node.node_id], calendars=["nope"])
        assert "nope" in assert_error(unknown, 400, "invalid_request")
        view = await created(api, targets=[node.node_id], calendars=["freeze"])
        await tick(api)
        runs = await executions(api, view["association_id"])
        assert [(r["status"], r["command_id"]) for r in runs] == [("Skipped", None)]
        assert "freeze is CLOSED" in runs[0]["detailed_status"]
        shown = await show(api, view["association_id"])
        assert shown["node_statuses"][0]["status"] == "Skipped"
        targets = await api.client.get(
            f"/v1/associations/{view['association_id']}/executions/{runs[0]['execution_id']}"
            "/targets",
            headers=api.admin,
        )
        assert [t["status"] for t in targets.json()["targets"]] == ["Skipped"]

    run_api(scenario)


def test_a_restarted_server_runs_a_missed_slot_once(
    server_dir: ServerDir, clock: FakeClock
) -> None:
    """The server is stopped, stays down over five slots, and starts again: the latest slot
    runs once; a second restart at the same time runs nothing more."""

    async def life(scenario: Any) -> Any:
        cp = ControlPlane(load_config(server_dir.path), clock=clock)
        cp.rate_limits = RateLimits(auth_base_delay=0, clock=clock)
        app = create_app(cp)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://corral.test") as c:
                return await scenario(Api(c, cp, clock, server_dir.admin_token))

    async def first(api: Api) -> str:
        node = await api.new_node()
        view = await created(api, targets=[node.node_id], schedule="rate(30 minutes)")
        await tick(api)
        return str(view["association_id"])

    async def later(api: Api) -> list[str]:
        await tick(api)
        runs = await executions(api, association_id)
        return [r["trigger"] for r in runs]

    association_id = asyncio.run(life(first))
    clock.advance(5 * 30 * 60 + 60)
    assert asyncio.run(life(later)) == ["schedule", "create"]
    assert asyncio.run(life(later)) == ["schedule", "create"]


def test_run_command_gated_by_a_closed_calendar_runs_nothing(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await closed_calendar(api)
        sent = await api.client.post(
            "/v1/commands",
            json={"targets": [node.node_id], "parameters": ECHO, "calendars": ["freeze"]},
            headers=api.admin,
        )
        assert "freeze is CLOSED" in assert_error(sent, 409, "calendar_closed")
        listed = await api.client.get("/v1/commands", headers=api.admin)
        assert listed.json()["commands"] == []
        unknown = await api.client.post(
            "/v1/commands",
            json={"targets": [node.node_id], "parameters": ECHO, "calendars": ["nope"]},
            headers=api.admin,
        )
        assert "nope" in assert_error(unknown, 400, "invalid_request")

    run_api(scenario)


def test_a_node_that_lost_its_set_is_sent_it_again(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await created(api, targets=[node.node_id], schedule="rate(1 day)")
        await tick(api)
        sets = [m for m in await received(api, node) if m["type"] == wire.MSG_ASSOCIATIONS]
        revision = sets[-1]["body"]["revision"]

        async def heartbeat(held: str | None) -> None:
            body: dict[str, Any] = {"agent_version": "1", "hostname": "h", "platform": "Linux"}
            if held is not None:
                body["associations_revision"] = held
            sent = await api.send(node, [dict(wire.make_message(wire.MSG_HEARTBEAT, body))])
            assert sent.status_code == 200, sent.text

        api.clock.advance(3600)
        await heartbeat(revision)  # holds what it was sent: nothing to do
        await tick(api)
        assert not [m for m in await received(api, node) if m["type"] == wire.MSG_ASSOCIATIONS]
        await heartbeat(None)  # its state dir lost the file
        await tick(api)
        again = [m for m in await received(api, node) if m["type"] == wire.MSG_ASSOCIATIONS]
        assert [m["body"]["revision"] for m in again] == [revision]

    run_api(scenario)


def test_results_follow_the_commands_events(run_api: RunApi) -> None:
    """No sweep: the dispatcher's event for the node's result makes the next tick apply it."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        view = await created(api, targets=[node.node_id])
        job = api.cp.association_job
        await job.tick(api.clock())
        runs = await executions(api, view["association_id"])
        job._next_sweep = api.clock() + 3600  # no sweep in this test
        await report(api, node, runs[0]["command_id"])
        # The dispatcher's round publishes the event; it wakes the scheduler's loop, whose
        # tick applies the result.

        async def applied() -> bool:
            shown = await show(api, view["association_id"])
            return bool(shown["overview"]["status"] == "Success")

        await eventually(applied, "the result applied without a sweep", timeout=5)

    run_api(scenario)


WEB_ONLY = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["associations:*"],
            "Resource": ["association/*", "document/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["associations:Create", "associations:Update", "associations:StartOnce"],
            "Resource": "node/*",
            "Condition": {"StringEquals": {"node:tag/team": "web"}},
        },
    ],
}


def test_a_token_acts_only_on_the_nodes_its_policy_allows(run_api: RunApi) -> None:
    from tests.unit.test_authz_api import audit, hdr, token

    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"team": "web"})
        db = await api.new_node(tags={"team": "db"})
        team = await token(api, "web-team", policy=WEB_ONLY)
        body = {"name": "web-only", "document": "AWS-RunShellScript", "parameters": ECHO}
        refused = await api.client.post(
            "/v1/associations",
            json={**body, "targets": ["tag:team=web", db.node_id]},
            headers=hdr(team),
        )
        assert db.node_id in assert_error(refused, 403, "forbidden")
        listed = await api.client.get("/v1/associations", headers=api.admin)
        assert listed.json()["associations"] == []
        denied = [e for e in await audit(api, outcome="denied") if "associations" in e["action"]]
        assert denied, "the refusal is in the audit trail"
        made = await api.client.post(
            "/v1/associations", json={**body, "targets": ["tag:team=web"]}, headers=hdr(team)
        )
        assert made.status_code == 201, made.text
        association_id = made.json()["association_id"]
        # Widening it to the db node is refused too, and changes nothing.
        widened = await api.client.patch(
            f"/v1/associations/{association_id}",
            json={"targets": ["all"]},
            headers=hdr(team),
        )
        assert_error(widened, 403, "forbidden")
        shown = await api.client.get(f"/v1/associations/{association_id}", headers=api.admin)
        assert shown.json()["targets"] == ["tag:team=web"] and shown.json()["version"] == 1
        del web

    run_api(scenario)
