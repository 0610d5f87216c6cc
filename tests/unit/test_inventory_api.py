"""Inventory through the API: uploads in parts replace a type on a node by a diff (history,
inventory.changed), an unchanged upload stores nothing, a node is asked to resend a type the
server lacks, fleet-wide search and summaries filter in SQL with version-aware comparisons,
bad input is refused with one line naming it, and a token sees the inventory of the nodes it
may see and no other."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from agent import wire
from agent.inventory import content
from control_plane.store import messages as inbox
from tests.unit.conftest import Api, Node, RunApi, assert_error
from tests.unit.test_authz_api import hdr, token

APP = "AWS:Application"


def pkg(name: str, version: str, manager: str = "dpkg", arch: str = "amd64") -> dict[str, str]:
    return {"Name": name, "Version": version, "PackageManager": manager, "Architecture": arch}


def upload(
    type_name: str,
    items: list[dict[str, str]],
    *,
    max_bytes: int = 192 * 1024,
    hashes: dict[str, str] | None = None,
    custom_complete: bool = False,
    errors: list[dict[str, str]] | None = None,
    capture: float = 1_800_000_000.0,
) -> list[dict[str, Any]]:
    """The messages an agent queues for one changed type: its parts, then the summary."""
    digest = content.content_hash(items)
    parts = content.split(items, max_bytes)
    messages: list[dict[str, Any]] = [
        dict(
            wire.make_message(
                wire.MSG_INVENTORY_PART,
                {
                    "type_name": type_name,
                    "schema_version": "1.0",
                    "content_hash": digest,
                    "capture_time": capture,
                    "part": i,
                    "parts": len(parts),
                    "items": p,
                },
            )
        )
        for i, p in enumerate(parts)
    ]
    messages.append(summary({type_name: digest, **(hashes or {})}, custom_complete, errors))
    return messages


def summary(
    hashes: dict[str, str],
    custom_complete: bool = False,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body = {
        "capture_time": 1_800_000_000.0,
        "hashes": hashes,
        "custom_complete": custom_complete,
        "errors": errors or [],
    }
    return dict(wire.make_message(wire.MSG_INVENTORY, body))


async def send_ok(api: Api, node: Node, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await api.send(node, messages)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()[wire.KEY_RESULTS]
    return results


async def get(api: Api, path: str, headers: dict[str, str] | None = None, **query: Any) -> Any:
    response = await api.client.get(path, params=query, headers=headers or api.admin)
    assert response.status_code == 200, response.text
    return response.json()


async def resyncs(api: Api, node_id: str) -> list[list[str]]:
    async with api.cp.db.read() as conn:
        pending = await inbox.pending(conn, node_id, 100)
    return [m["body"]["types"] for m in pending if m["type"] == wire.MSG_INVENTORY_RESYNC]


def test_parts_replace_a_type_by_a_diff_with_history_and_unchanged_stores_nothing(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        first = [pkg(f"lib{i:04}", f"1.{i}-1") for i in range(300)]
        messages = upload(APP, first, max_bytes=8 * 1024)
        assert len(messages) > 3  # several parts
        results = await send_ok(api, node, messages)
        assert {r["status"] for r in results} == {wire.RESULT_ACCEPTED}
        shown = await get(api, f"/v1/inventory/nodes/{node.node_id}")
        (app,) = [t for t in shown["types"] if t["type_name"] == APP]
        assert app["item_count"] == 300 and app["content_hash"] == content.content_hash(first)
        changes = (await get(api, f"/v1/inventory/nodes/{node.node_id}/changes"))["changes"]
        assert [c["change"] for c in changes] == ["captured"]
        # Unchanged: the same hash again stores nothing and changes nothing
        again = await send_ok(api, node, upload(APP, first))
        assert {r["status"] for r in again} == {wire.RESULT_ACCEPTED}
        assert (await get(api, f"/v1/inventory/nodes/{node.node_id}/changes"))["changes"] == changes
        assert await resyncs(api, node.node_id) == []
        # One upgraded, one removed, one added
        second = [i for i in first if i["Name"] not in ("lib0001", "lib0002")]
        second += [pkg("lib0001", "1.1-2"), pkg("openssl", "3.0.2-0ubuntu1")]
        await send_ok(api, node, upload(APP, second))
        changes = (await get(api, f"/v1/inventory/nodes/{node.node_id}/changes"))["changes"]
        kinds = sorted((c["change"], c["key"]["Name"]) for c in changes[:3])
        assert kinds == [("added", "openssl"), ("changed", "lib0001"), ("removed", "lib0002")]
        upgraded = next(c for c in changes if c["change"] == "changed")
        assert (upgraded["old"]["Version"], upgraded["new"]["Version"]) == ("1.1-1", "1.1-2")
        items = await get(api, f"/v1/inventory/nodes/{node.node_id}/items", type=APP, limit=1000)
        assert len(items["items"]) == 300 and items["next_token"] is None
        since = await get(
            api, f"/v1/inventory/nodes/{node.node_id}/changes", since="2100-01-01T00:00:00Z"
        )
        assert since["changes"] == []

    run_api(scenario)


def test_fleet_search_and_summary_with_version_aware_filters(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        nodes = [await api.new_node() for _ in range(3)]
        versions = ["3.0.2-0ubuntu1.10", "3.0.10-1", "1:1.1.1-1"]
        for node, version in zip(nodes, versions, strict=True):
            items = [pkg("openssl", version), pkg("bash", "5.2-1"), pkg("openssh", "9.2")]
            await send_ok(api, node, upload(APP, items))
        await send_ok(
            api, nodes[0], upload(APP, [pkg("openssl", "3.0.7", "rpm", "x86_64")], hashes={})
        )

        async def search(*filters: str) -> list[tuple[str, str]]:
            found = await get(api, "/v1/inventory/items", type=APP, filter=list(filters))
            return sorted((i["node_id"], i["item"]["Version"]) for i in found["items"])

        ids = [n.node_id for n in nodes]
        assert sorted(v for _, v in await search("Name=openssl")) == sorted(
            ["3.0.7", "3.0.10-1", "1:1.1.1-1"]
        )
        # Version-aware: 3.0.10 > 3.0.8 (text order would say otherwise); the epoch wins
        assert await search("Name=openssl", "Version<3.0.8") == [(ids[0], "3.0.7")]
        assert await search("Name=openssl", "Version>=3.0.8") == sorted(
            [(ids[1], "3.0.10-1"), (ids[2], "1:1.1.1-1")]
        )
        assert len(await search("Name^=opens")) == 5
        assert len(await search("Name=openssl,bash")) == 5
        assert len(await search("AWS:Application.Name!=bash")) == 5
        ports = [
            {"Protocol": "tcp", "Address": "0.0.0.0", "Port": p, "ProcessName": "x"}
            for p in ("22", "5432", "80", "10000")
        ]
        await send_ok(api, nodes[1], upload("Corral:ListeningPort", ports))
        found = await get(
            api, "/v1/inventory/items", type="Corral:ListeningPort", filter=["Port=5432"]
        )
        assert [i["item"]["Port"] for i in found["items"]] == ["5432"]
        found = await get(
            api, "/v1/inventory/items", type="Corral:ListeningPort", filter=["Port>=80"]
        )
        assert sorted(int(i["item"]["Port"]) for i in found["items"]) == [80, 5432, 10000]
        grouped = await get(api, "/v1/inventory/summary", type=APP, group_by="Name")
        counts = {g["values"]["Name"]: (g["nodes"], g["items"]) for g in grouped["groups"]}
        assert counts == {"bash": (2, 2), "openssh": (2, 2), "openssl": (3, 3)}
        grouped = await get(
            api, "/v1/inventory/summary", type=APP, group_by="Name,Version", filter="Name=bash"
        )
        assert grouped["groups"] == [
            {"values": {"Name": "bash", "Version": "5.2-1"}, "nodes": 2, "items": 2}
        ]

    run_api(scenario)


def test_bad_filters_and_bad_uploads_get_one_line_each_and_change_nothing(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()

        async def refused(status: int, code: str, **query: Any) -> str:
            response = await api.client.get("/v1/inventory/items", params=query, headers=api.admin)
            return assert_error(response, status, code)

        assert "known:" in await refused(400, "invalid_request", type="AWS:Nope")
        why = await refused(400, "invalid_request", type=APP, filter="Colour=red")
        assert "Colour" in why and "Name, ApplicationType" in why
        why = await refused(400, "invalid_request", type="Corral:ListeningPort", filter="Port<abc")
        assert "Port is a number" in why
        assert "expected KEY=VALUE" in await refused(
            400, "invalid_request", type=APP, filter="Name"
        )
        bad_parts = [
            {"type_name": "AWS:Nope"},
            {"type_name": "AWS:ComplianceItem"},
            {"type_name": APP, "items": [{"Colour": "red"}]},
            {"type_name": "Custom:X", "items": [{f"a{i}": "v" for i in range(51)}]},
            {"type_name": "Custom:Big", "items": [{"Blob": "x" * 4000}] * 60},
            {"type_name": APP, "items": [{"Name": 7}]},
            {"type_name": APP, "part": 5, "parts": 2},
        ]
        base = upload(APP, [pkg("bash", "5.2-1")])[0]
        messages = []
        for change in bad_parts:
            body = {**base["body"], "items": [pkg("a", "1")], **change}
            messages.append(dict(wire.make_message(wire.MSG_INVENTORY_PART, body)))
        results = await send_ok(api, node, messages)
        assert [r["status"] for r in results] == [wire.RESULT_REJECTED] * len(bad_parts)
        reasons = [r["reason"] for r in results]
        assert "unknown inventory type 'AWS:Nope'" in reasons[0]
        assert "server's own" in reasons[1]
        assert "unknown attribute 'Colour'" in reasons[2]
        assert "at most 50" in reasons[3]
        assert "bytes of content" in reasons[4]
        assert "must be a string" in reasons[5]
        assert (await get(api, f"/v1/inventory/nodes/{node.node_id}"))["types"] == []

    run_api(scenario)


def test_the_server_asks_for_what_it_lacks_and_a_custom_type_can_be_deleted(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        rack = [{"RackLocation": "B/C/D", "Name": "r1"}]
        await send_ok(api, node, upload("Custom:Rack", rack, custom_complete=True))
        assert await resyncs(api, node.node_id) == []
        deleted = await api.client.delete("/v1/inventory/types/Custom:Rack", headers=api.admin)
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"type_name": "Custom:Rack", "nodes": 1, "items": 1}
        # The node still reports it (unchanged, so only its hash): it is asked to resend it
        await send_ok(api, node, [summary({"Custom:Rack": content.content_hash(rack)}, True)])
        assert await resyncs(api, node.node_id) == [["Custom:Rack"]]
        refused = await api.client.delete(f"/v1/inventory/types/{APP}", headers=api.admin)
        assert "only a custom type" in assert_error(refused, 400, "invalid_request")
        # A custom file gone from the node (custom_complete) drops its type there
        await send_ok(api, node, upload("Custom:Rack", rack, custom_complete=True))
        await send_ok(api, node, [summary({}, True)])
        types = (await get(api, f"/v1/inventory/nodes/{node.node_id}"))["types"]
        assert types == []

    run_api(scenario)


def test_a_flooding_node_is_refused_past_its_budget(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        api.cp.inventory_ingest.budget.per_hour = 20_000
        node = await api.new_node()
        first = await send_ok(api, node, upload("Custom:A", [{"Name": "x" * 3000}] * 5))
        assert first[0]["status"] == wire.RESULT_ACCEPTED
        second = await send_ok(api, node, upload("Custom:B", [{"Name": "y" * 3000}] * 5))
        assert second[0]["status"] == wire.RESULT_REJECTED
        assert "MiB an hour" in second[0]["reason"]

    run_api(scenario)


def test_a_token_sees_the_inventory_of_the_nodes_it_may_see_and_no_other(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"Env": "web"})
        db = await api.new_node(tags={"Env": "db"})
        for node in (web, db):
            await send_ok(api, node, upload(APP, [pkg("openssl", "3.0.2")]))
        policy = {
            "Version": "2026-01-01",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["inventory:*"],
                    "Resource": ["node/*"],
                    "Condition": {"StringEquals": {"node:tag/Env": "web"}},
                }
            ],
        }
        scoped = hdr(await token(api, "web-only", policy=policy))
        found = await get(api, "/v1/inventory/items", scoped, type=APP, filter="Name=openssl")
        assert [i["node_id"] for i in found["items"]] == [web.node_id]
        grouped = await get(api, "/v1/inventory/summary", scoped, type=APP, group_by="Name")
        assert grouped["groups"] == [{"values": {"Name": "openssl"}, "nodes": 1, "items": 1}]
        for path in ("", "/items?type=AWS:Application", "/changes"):
            denied = await api.client.get(f"/v1/inventory/nodes/{db.node_id}{path}", headers=scoped)
            assert denied.status_code == 403, (path, denied.text)
            assert "openssl" not in denied.text
        shown = await api.client.get(f"/v1/inventory/nodes/{web.node_id}", headers=scoped)
        assert shown.status_code == 200
        nothing = hdr(await token(api, "nothing", policy={"Version": "2026-01-01", "Statement": [
            {"Effect": "Allow", "Action": ["nodes:List"], "Resource": ["*"]}
        ]}))  # fmt: skip
        for path, query in (
            ("/v1/inventory/items", {"type": APP}),
            ("/v1/inventory/summary", {"type": APP, "group_by": "Name"}),
        ):
            response = await api.client.get(path, params=query, headers=nothing)
            assert response.status_code in (200, 403), response.text
            assert "openssl" not in response.text
        deleting = await api.client.delete("/v1/inventory/types/Custom:X", headers=scoped)
        assert deleting.status_code == 403

    run_api(scenario)


def test_inventory_changed_events_carry_the_items(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        queue = api.cp.events.subscribe()
        await send_ok(api, node, upload(APP, [pkg("bash", "5.2-1")]))
        await send_ok(api, node, upload(APP, [pkg("bash", "5.2-1"), pkg("nginx", "1.22")]))
        events = []
        while not queue.empty():
            events.append(queue.get_nowait())
        changed = [e for e in events if e["type"] == "inventory.changed"]
        assert [e["first_capture"] for e in changed] == [True, False]
        assert changed[1]["added"] == [pkg("nginx", "1.22")]
        assert changed[1]["counts"] == {"added": 1, "removed": 0, "changed": 0}
        await asyncio.sleep(0)

    run_api(scenario)


__all__ = ["httpx"]


def test_compliance_items_are_inventory_too(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        put = await api.client.put(
            f"/v1/compliance/nodes/{node.node_id}/items",
            json={
                "compliance_type": "Custom:Ssh",
                "items": [
                    {"id": "root-login", "status": "NON_COMPLIANT", "severity": "HIGH",
                     "title": "root login", "details": {"DocumentName": "Ssh-Check"}},
                ],
            },
            headers=api.admin,
        )  # fmt: skip
        assert put.status_code == 200, put.text
        found = await get(
            api, "/v1/inventory/items", type="AWS:ComplianceItem", filter="Status=NON_COMPLIANT"
        )
        (item,) = [i["item"] for i in found["items"]]
        assert item["ComplianceType"] == "Custom:Ssh" and item["Id"] == "root-login"
        assert item["Severity"] == "HIGH" and item["DocumentName"] == "Ssh-Check"
        assert item["ExecutionType"] == "Custom"

    run_api(scenario)


def test_history_is_pruned_after_its_retention(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await send_ok(api, node, upload(APP, [pkg("bash", "5.2-1")], capture=api.clock()))
        path = f"/v1/inventory/nodes/{node.node_id}/changes"
        assert len((await get(api, path))["changes"]) == 1
        service = api.cp.inventory
        api.clock.advance(service.retention_seconds + 3700)
        assert await service.prune_if_due(api.clock()) == 1
        assert (await get(api, path))["changes"] == []
        assert await service.prune_if_due(api.clock()) == 0  # not due again within the hour

    run_api(scenario)


def test_a_package_installed_twice_is_kept_twice_and_rpm_compares_its_release(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()

        def kernel(release: str) -> dict[str, str]:
            return {"Name": "kernel", "Version": "5.14.0", "Release": release,
                    "PackageManager": "rpm", "Architecture": "x86_64"}  # fmt: skip

        await send_ok(api, node, upload(APP, [kernel("427.el9"), kernel("503.el9")]))
        found = await get(api, "/v1/inventory/items", type=APP, filter="Name=kernel")
        assert sorted(i["item"]["Release"] for i in found["items"]) == ["427.el9", "503.el9"]
        older = await get(
            api, "/v1/inventory/items", type=APP, filter=["Name=kernel", "Version<5.14.0-500"]
        )
        assert [i["item"]["Release"] for i in older["items"]] == ["427.el9"]

    run_api(scenario)
