"""Compliance through the API (SSM's PutComplianceItems and the lists over it): a put replaces
a type's items on a node, summaries count nodes by status and severity, the history says
when a node drifted and is pruned after its retention, bad input is refused whole, a token
sees the compliance of the nodes it may see and no other, and a document step's items
arrive with the node's report."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agent import wire
from control_plane.errors import InvalidRequest
from control_plane.services.clock import rfc3339
from control_plane.services.compliance import HistoryPruning
from tests.unit.conftest import Api, Node, RunApi, assert_error
from tests.unit.test_authz_api import audit, hdr, token
from tests.unit.test_dispatcher_final_status import send_command, start, unlimited, update

DAY = 86400.0


def item(item_id: str, status: str = "COMPLIANT", severity: str = "HIGH", **more: Any) -> Any:
    return {"id": item_id, "status": status, "severity": severity, "title": f"t-{item_id}", **more}


async def put(
    api: Api,
    node_id: str,
    items: list[Any],
    ctype: str = "Custom:Baseline",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    return await api.client.put(
        f"/v1/compliance/nodes/{node_id}/items",
        json={"compliance_type": ctype, "items": items, **body},
        headers=headers or api.admin,
    )


async def get(api: Api, path: str, headers: dict[str, str] | None = None, **query: Any) -> Any:
    response = await api.client.get(path, params=query, headers=headers or api.admin)
    assert response.status_code == 200, response.text
    return response.json()


async def items_of(api: Api, node_id: str, **query: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await get(api, f"/v1/compliance/nodes/{node_id}/items", **query)
    )["items"]
    return found


async def history_of(api: Api, node_id: str, **query: Any) -> list[tuple[str, Any, Any]]:
    changes = (await get(api, f"/v1/compliance/nodes/{node_id}/history", **query))["changes"]
    return [(c["id"], c["old_status"], c["new_status"]) for c in changes]


def test_a_put_replaces_the_types_items_and_the_history_says_when_it_drifted(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        first = await put(api, node.node_id, [item("a"), item("b"), item("c")])
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "COMPLIANT"
        assert first.json()["changes"] == 3
        api.clock.advance(3600)
        drift_at = api.clock()
        # b drifts, c goes away, d appears: the put is the whole list (SSM's semantics)
        second = await put(
            api, node.node_id, [item("a"), item("b", "NON_COMPLIANT", "CRITICAL"), item("d")]
        )
        assert second.json() | {"execution_time": None} == {
            "node_id": node.node_id,
            "compliance_type": "Custom:Baseline",
            "status": "NON_COMPLIANT",
            "overall_severity": "CRITICAL",
            "item_count": 3,
            "execution_time": None,
            "changes": 3,
        }
        shown = await items_of(api, node.node_id)
        assert [(i["id"], i["status"]) for i in shown] == [
            ("a", "COMPLIANT"),
            ("b", "NON_COMPLIANT"),
            ("d", "COMPLIANT"),
        ]
        b = shown[1]
        assert b["severity"] == "CRITICAL" and b["title"] == "t-b"
        assert b["execution_summary"]["execution_type"] == "Custom"
        # a kept its status: its "since" is the first put's time, b's the drift's
        assert shown[0]["status_since"] < b["status_since"]
        assert [i["id"] for i in await items_of(api, node.node_id, status="NON_COMPLIANT")] == ["b"]
        history = await history_of(api, node.node_id)
        assert history[:3] == [
            ("c", "COMPLIANT", None),
            ("d", None, "COMPLIANT"),
            ("b", "COMPLIANT", "NON_COMPLIANT"),
        ]
        assert sorted(history[3:]) == [
            ("a", None, "COMPLIANT"),
            ("b", None, "COMPLIANT"),
            ("c", None, "COMPLIANT"),
        ]
        drift = (await get(api, f"/v1/compliance/nodes/{node.node_id}/history"))["changes"][2]
        assert drift["time"] == rfc3339(drift_at)
        # An empty list clears the type; the type stays, compliant
        cleared = await put(api, node.node_id, [])
        assert cleared.json()["status"] == "COMPLIANT" and cleared.json()["changes"] == 3
        assert await items_of(api, node.node_id) == []
        summaries = (await get(api, f"/v1/compliance/nodes/{node.node_id}/summaries"))["summaries"]
        assert [(s["compliance_type"], s["status"]) for s in summaries] == [
            ("Custom:Baseline", "COMPLIANT")
        ]

    run_api(scenario)


def test_summaries_count_nodes_by_status_and_severity(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        nodes = [await api.new_node() for _ in range(3)]
        await put(api, nodes[0].node_id, [item("x"), item("y", "NON_COMPLIANT", "LOW")])
        await put(api, nodes[1].node_id, [item("x", severity="MEDIUM")])
        await put(
            api,
            nodes[2].node_id,
            [item("x", "NON_COMPLIANT", "CRITICAL"), item("y", "NON_COMPLIANT", "LOW")],
        )
        await put(api, nodes[2].node_id, [item("k")], ctype="Custom:Other")
        fleet = (await get(api, "/v1/compliance/summaries"))["summaries"]
        baseline, other = fleet
        assert baseline["compliance_type"] == "Custom:Baseline"
        assert baseline["compliant"]["count"] == 1
        assert baseline["compliant"]["severity"]["MEDIUM"] == 1
        assert baseline["non_compliant"]["count"] == 2
        assert baseline["non_compliant"]["severity"]["CRITICAL"] == 1
        assert baseline["non_compliant"]["severity"]["LOW"] == 1
        assert other["compliance_type"] == "Custom:Other"
        assert (other["compliant"]["count"], other["non_compliant"]["count"]) == (1, 0)
        only = (await get(api, "/v1/compliance/summaries", type="Custom:Other"))["summaries"]
        assert [s["compliance_type"] for s in only] == ["Custom:Other"]
        bad = (await get(api, "/v1/compliance/resources", status="NON_COMPLIANT"))["resources"]
        assert sorted(r["node_id"] for r in bad) == sorted([nodes[0].node_id, nodes[2].node_id])
        mine = (await get(api, f"/v1/compliance/nodes/{nodes[2].node_id}/summaries"))["summaries"]
        assert [(s["compliance_type"], s["non_compliant"]["count"]) for s in mine] == [
            ("Custom:Baseline", 2),
            ("Custom:Other", 0),
        ]
        # a deregistered node leaves the fleet's counts
        response = await api.client.post(
            f"/v1/nodes/{nodes[2].node_id}/deregister", headers=api.admin
        )
        assert response.status_code == 200, response.text
        fleet = (await get(api, "/v1/compliance/summaries"))["summaries"]
        assert [s["compliance_type"] for s in fleet] == ["Custom:Baseline"]
        assert fleet[0]["non_compliant"]["count"] == 1

    run_api(scenario)


def test_lists_are_paged_and_take_only_their_query_parameters(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await put(api, node.node_id, [item(f"i{n:02}") for n in range(25)])
        seen: list[str] = []
        token_: str | None = None
        while True:
            query: dict[str, Any] = {"limit": 10}
            if token_:
                query["next_token"] = token_
            page = await get(api, f"/v1/compliance/nodes/{node.node_id}/items", **query)
            seen += [i["id"] for i in page["items"]]
            token_ = page["next_token"]
            if token_ is None:
                break
        assert seen == [f"i{n:02}" for n in range(25)]
        history = await get(api, f"/v1/compliance/nodes/{node.node_id}/history", limit=20)
        assert len(history["changes"]) == 20 and history["next_token"]
        rest = await get(
            api,
            f"/v1/compliance/nodes/{node.node_id}/history",
            limit=20,
            next_token=history["next_token"],
        )
        assert len(rest["changes"]) == 5 and rest["next_token"] is None
        response = await api.client.get(
            f"/v1/compliance/nodes/{node.node_id}/items", params={"limt": 5}, headers=api.admin
        )
        assert "limt" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


BAD_PUTS = [
    ({"compliance_type": "Association"}, "only the server writes Association"),
    ({"compliance_type": "Patch"}, "only the server writes Patch"),
    ({"compliance_type": "Custom:x"}, "Custom:NAME"),
    ({"compliance_type": "Custom:bad name"}, "Custom:NAME"),
    ({"compliance_type": "Baseline"}, "Custom:NAME"),
    ({"compliance_type": "Custom:" + "a" * 94}, "at most 100"),
    ({"items": [item("a", status="OK")]}, "items[0].status"),
    ({"items": [item("a", severity="SEVERE")]}, "items[0].severity"),
    ({"items": [{"status": "COMPLIANT", "severity": "LOW"}]}, "items[0].id: required"),
    ({"items": [item("a"), item("a")]}, "given twice"),
    ({"items": [item("a", title="t" * 501)]}, "items[0].title"),
    ({"items": [item("a" * 101)]}, "items[0].id: at most 100"),
    ({"items": [item("a", details={f"k{n}": "v" for n in range(21)})]}, "at most 20 entries"),
    ({"items": [item("a", details={"k": "v" * 4097})]}, "items[0].details.k"),
    ({"items": [item("a", details={"k": 1})]}, "items[0].details.k"),
    ({"items": [item("a", colour="red")]}, "unknown field 'colour'"),
    ({"execution_time": 4_000_000_000}, "in the future"),
]


@pytest.mark.parametrize(("change", "message"), BAD_PUTS, ids=[m for _, m in BAD_PUTS])
def test_bad_puts_are_refused_whole(run_api: RunApi, change: dict[str, Any], message: str) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await put(api, node.node_id, [item("kept")])
        body: dict[str, Any] = {
            "compliance_type": "Custom:Baseline",
            "items": [item("new", "NON_COMPLIANT")],
            **change,
        }
        response = await api.client.put(
            f"/v1/compliance/nodes/{node.node_id}/items", json=body, headers=api.admin
        )
        assert message in assert_error(response, 400, "invalid_request")
        assert "\n" not in response.json()["error"]["message"]
        assert [i["id"] for i in await items_of(api, node.node_id)] == ["kept"]
        assert len(await history_of(api, node.node_id)) == 1

    run_api(scenario)


def test_too_many_items_and_types_and_unknown_nodes_are_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        response = await put(api, node.node_id, [item(str(n)) for n in range(10_001)])
        assert_error(response, 400, "invalid_request")
        for n in range(10):
            assert (await put(api, node.node_id, [], ctype=f"Custom:T{n}")).status_code == 200
        eleventh = await put(api, node.node_id, [item("a")], ctype="Custom:T10")
        assert "10 custom compliance types" in assert_error(eleventh, 400, "invalid_request")
        # a type it has already may be put again
        assert (await put(api, node.node_id, [item("a")], ctype="Custom:T3")).status_code == 200
        assert (
            len((await get(api, f"/v1/compliance/nodes/{node.node_id}/summaries"))["summaries"])
            == 10
        )
        unknown = "mi-00000000000000000"
        assert_error(await put(api, unknown, [item("a")]), 404, "not_found")
        response = await api.client.get(f"/v1/compliance/nodes/{unknown}/items", headers=api.admin)
        assert_error(response, 404, "not_found")
        response = await api.client.get(
            "/v1/compliance/summaries", params={"type": "nope"}, headers=api.admin
        )
        assert "Custom:NAME" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_an_older_put_does_not_replace_a_newer_one(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await put(api, node.node_id, [item("a", "NON_COMPLIANT")])
        older = await put(api, node.node_id, [item("a")], execution_time=api.clock() - 60)
        assert older.status_code == 200
        assert older.json()["ignored"] == "older than the compliance stored"
        assert (await items_of(api, node.node_id))[0]["status"] == "NON_COMPLIANT"

    run_api(scenario)


def test_history_is_pruned_after_its_retention(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await put(api, node.node_id, [item("a")])
        api.clock.advance(80 * DAY)
        await put(api, node.node_id, [item("a", "NON_COMPLIANT")])
        assert api.cp.compliance.retention_seconds == 90 * DAY
        assert await api.cp.compliance.prune_history() == 0
        api.clock.advance(20 * DAY)
        assert await api.cp.compliance.prune_history() == 1
        assert await history_of(api, node.node_id) == [("a", "COMPLIANT", "NON_COMPLIANT")]
        # the items themselves stay
        assert (await items_of(api, node.node_id))[0]["status"] == "NON_COMPLIANT"

    run_api(scenario)


TEAM_WEB = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "compliance:*",
            "Resource": "node/*",
            "Condition": {"StringEquals": {"node:tag/team": "web"}},
        }
    ],
}


def test_a_token_sees_only_the_compliance_of_nodes_it_may_see(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"team": "web"})
        db = await api.new_node(tags={"team": "db"})
        await put(api, web.node_id, [item("a")])
        await put(api, db.node_id, [item("a", "NON_COMPLIANT", "CRITICAL")])
        scoped = hdr(await token(api, "web-team", policy=TEAM_WEB))
        fleet = (await get(api, "/v1/compliance/summaries", headers=scoped))["summaries"]
        assert [(s["compliant"]["count"], s["non_compliant"]["count"]) for s in fleet] == [(1, 0)]
        listed = (await get(api, "/v1/compliance/resources", headers=scoped))["resources"]
        assert [r["node_id"] for r in listed] == [web.node_id]
        assert len(await get(api, f"/v1/compliance/nodes/{web.node_id}/items", scoped)) == 2
        for path in ("items", "summaries", "history"):
            response = await api.client.get(
                f"/v1/compliance/nodes/{db.node_id}/{path}", headers=scoped
            )
            assert_error(response, 403, "forbidden")
        refused = await put(api, db.node_id, [item("z")], headers=scoped)
        assert_error(refused, 403, "forbidden")
        assert [i["id"] for i in await items_of(api, db.node_id)] == ["a"]
        allowed = await put(api, web.node_id, [item("b")], headers=scoped)
        assert allowed.status_code == 200, allowed.text
        viewer = hdr(await token(api, "viewer", role="viewer"))
        assert_error(await put(api, web.node_id, [], headers=viewer), 403, "forbidden")
        assert len((await get(api, "/v1/compliance/summaries", headers=viewer))["summaries"]) == 1

    run_api(scenario)


def test_puts_are_audited_on_the_node(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await put(api, node.node_id, [item("a")])
        entries = await audit(api, action="compliance:PutItems")
        assert len(entries) == 1
        assert entries[0]["resource"] == f"node/{node.node_id}"
        assert entries[0]["outcome"] == "allowed"
        assert entries[0]["request"]["compliance_type"] == "Custom:Baseline"

    run_api(scenario)


def compliant_step(ctype: str, items: list[Any], name: str = "check") -> dict[str, Any]:
    return {
        "name": name,
        "action": "corral:putComplianceItems",
        "status": wire.ST_SUCCESS,
        "status_details": wire.ST_SUCCESS,
        "compliance": {"compliance_type": ctype, "items": items},
    }


async def report(api: Api, node: Node, steps: list[dict[str, Any]]) -> str:
    command_id = await send_command(api, [node])
    await start(api, node, command_id)
    final = update(command_id, wire.ST_SUCCESS, steps=steps, ended_at=api.clock())
    stored = await api.send(node, [final])
    assert stored.status_code == 200, stored.text
    assert stored.json()["results"][0]["status"] == wire.RESULT_ACCEPTED
    return command_id


def test_a_steps_items_arrive_with_the_nodes_report(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        unlimited(api)
        node = await api.new_node()
        command_id = await report(
            api,
            node,
            [
                compliant_step("Custom:Ssh", [item("root-login", "NON_COMPLIANT", "HIGH")]),
                {"name": "script", "action": "aws:runShellScript", "status": wire.ST_SUCCESS},
                # Association compliance is the server's: a step cannot put it
                compliant_step("Association", [item("x")], "sneaky"),
                # a malformed one is left out; the report is stored all the same
                compliant_step("Custom:Bad", [{"id": "x", "status": "maybe"}], "bad"),
            ],
        )
        shown = await items_of(api, node.node_id)
        assert [(i["compliance_type"], i["id"], i["status"]) for i in shown] == [
            ("Custom:Ssh", "root-login", "NON_COMPLIANT")
        ]
        assert shown[0]["execution_summary"]["execution_id"] == command_id
        assert shown[0]["execution_summary"]["execution_type"] == "Command"
        response = await api.client.get(f"/v1/commands/{command_id}", headers=api.admin)
        invocation = response.json()["invocations"][0]
        assert invocation["status"] == wire.ST_SUCCESS

    run_api(scenario)


def test_the_server_puts_association_compliance_which_reads_like_any_other(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        done = await api.cp.compliance.put_items(
            node.node_id,
            "Association",
            [item("assoc-1", "NON_COMPLIANT", "MEDIUM")],
            execution_id="exec-1",
            execution_type="Association",
        )
        assert done["status"] == "NON_COMPLIANT"
        shown = await items_of(api, node.node_id, type="Association")
        assert [(i["id"], i["execution_summary"]["execution_id"]) for i in shown] == [
            ("assoc-1", "exec-1")
        ]
        fleet = (await get(api, "/v1/compliance/summaries", type="Association"))["summaries"]
        assert fleet[0]["non_compliant"]["severity"]["MEDIUM"] == 1
        with pytest.raises(InvalidRequest, match=r"items\[0\]\.status"):
            await api.cp.compliance.put_items(
                node.node_id,
                "Association",
                [item("x", "BROKEN")],
                execution_id="exec-2",
                execution_type="Association",
            )
        assert len(await items_of(api, node.node_id)) == 1

    run_api(scenario)


def test_pruning_runs_hourly_as_a_scheduled_job_and_from_housekeeping(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        service = api.cp.compliance
        node = await api.new_node()
        await put(api, node.node_id, [item("a")])
        job = HistoryPruning(service)
        now = api.clock()
        assert await job.tick(now) == now + 3600
        later = now + 91 * DAY
        assert await service.prune_if_due(later) == 1
        await put(api, node.node_id, [item("a", "NON_COMPLIANT")], execution_time=now + 1)
        # asked again within the hour: nothing is done; an hour on, the old row goes
        assert await service.prune_if_due(later + 60) == 0
        assert await service.prune_if_due(later + 3600) == 1
        assert await history_of(api, node.node_id) == []

    run_api(scenario)
