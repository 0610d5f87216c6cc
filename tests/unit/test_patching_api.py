"""Patch Manager through the API: baselines (AWS's JSON, refused with one line naming the
field, predefined ones untouchable, a default or a group's baseline not deletable), patch
groups, the snapshot a command runs against (delivered per node by its group, unchanged by a
later edit, shared by SnapshotId, a bad BaselineOverride refused before anything is stored),
what a node reported (states, summary, history, compliance Patch, effective patches), and a
token that may not see a node never seeing its patches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.inventory import content, schema
from agent.patching import states
from agent.patching.baseline import parse
from agent.patching.operation import PendingReboots, Request, run
from tests.unit.conftest import Api, Node, RunApi
from tests.unit.test_authz_api import hdr, token
from tests.unit.test_inventory_api import send_ok, summary, upload
from tests.unit.test_patching_operation import Manager, offered

NOW = 1_800_000_000.0
UBUNTU_STRICT = {
    "Name": "ubuntu-strict",
    "OperatingSystem": "UBUNTU",
    "Description": "security of Required priority only",
    "ApprovalRules": {
        "PatchRules": [
            {
                "PatchFilterGroup": {"PatchFilters": [{"Key": "PRIORITY", "Values": ["Required"]}]},
                "ComplianceLevel": "CRITICAL",
            }
        ]
    },
    "RejectedPatches": ["telnet"],
    "RejectedPatchesAction": "BLOCK",
}


async def ok(api: Api, method: str, path: str, **kw: Any) -> Any:
    response = await api.client.request(method, path, headers=api.admin, **kw)
    assert response.status_code in (200, 201), (method, path, response.text)
    return response.json()


async def refused(api: Api, method: str, path: str, status: int, words: str, **kw: Any) -> None:
    response = await api.client.request(method, path, headers=api.admin, **kw)
    assert response.status_code == status, (method, path, response.text)
    message = response.json()["error"]["message"]
    assert words in message and "\n" not in message, message


def test_baselines_groups_and_defaults(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        made = await ok(api, "POST", "/v1/baselines", json=UBUNTU_STRICT)
        bid = made["BaselineId"]
        assert bid.startswith("pb-") and len(bid) == 20
        shown = await ok(api, "GET", f"/v1/baselines/{bid}")
        assert shown["RejectedPatchesAction"] == "BLOCK" and shown["Predefined"] is False
        assert (await ok(api, "GET", "/v1/baselines/ubuntu-strict"))["BaselineId"] == bid
        await refused(api, "POST", "/v1/baselines", 409, "already exists", json=UBUNTU_STRICT)
        bad = {**UBUNTU_STRICT, "Name": "bad-one", "GlobalFilters": {"PatchFilters": [
            {"Key": "MSRC_SEVERITY", "Values": ["Critical"]}]}}  # fmt: skip
        await refused(api, "POST", "/v1/baselines", 400, "'MSRC_SEVERITY' is not valid for "
                      "UBUNTU", json=bad)  # fmt: skip
        listed = await ok(api, "GET", "/v1/baselines", params={"operating_system": "UBUNTU"})
        ids = {b["BaselineId"]: b for b in listed["baselines"]}
        assert ids["AWS-UbuntuDefaultPatchBaseline"]["DefaultBaseline"] is True
        assert ids[bid]["DefaultBaseline"] is False
        # Update: given fields replace; the OS never changes; nothing changes on bad input.
        changed = await ok(api, "PATCH", "/v1/baselines/ubuntu-strict", json={"Description": "v2"})
        assert changed["Description"] == "v2" and changed["RejectedPatches"] == ["telnet"]
        await refused(api, "PATCH", f"/v1/baselines/{bid}", 400, "OperatingSystem cannot "
                      "change", json={"OperatingSystem": "DEBIAN"})  # fmt: skip
        await refused(api, "PATCH", f"/v1/baselines/{bid}", 400, "not supported on UBUNTU",
                      json={"ApprovalRules": {"PatchRules": [{"PatchFilterGroup": {
                          "PatchFilters": []}, "ApproveAfterDays": 7}]}})  # fmt: skip
        assert (await ok(api, "GET", f"/v1/baselines/{bid}"))["Description"] == "v2"
        await refused(api, "PATCH", "/v1/baselines/AWS-UbuntuDefaultPatchBaseline", 400,
                      "is predefined", json={"Description": "x"})  # fmt: skip
        await refused(api, "GET", "/v1/baselines/pb-00000000000000000", 404, "not found")
        # Groups: one baseline per group and OS.
        await ok(api, "POST", f"/v1/baselines/{bid}/patch-groups", json={"patch_group": "web"})
        await refused(api, "POST", "/v1/baselines/AWS-UbuntuDefaultPatchBaseline/patch-groups",
                      409, "already has baseline", json={"patch_group": "web"})  # fmt: skip
        await ok(api, "POST", "/v1/baselines/AWS-DebianDefaultPatchBaseline/patch-groups",
                 json={"patch_group": "web"})  # fmt: skip
        groups = (await ok(api, "GET", "/v1/patch/groups"))["patch_groups"]
        assert {(g["OperatingSystem"], g["BaselineId"]) for g in groups} == {
            ("UBUNTU", bid), ("DEBIAN", "AWS-DebianDefaultPatchBaseline")}  # fmt: skip
        await refused(api, "DELETE", f"/v1/baselines/{bid}", 409, "serves patch group(s) web")
        await refused(api, "POST", f"/v1/baselines/{bid}/patch-groups", 400, "patch group",
                      json={"patch_group": "bad\u0000name"})  # fmt: skip
        await ok(api, "DELETE", f"/v1/baselines/{bid}/patch-groups",
                 params={"patch_group": "web"})  # fmt: skip
        # Default: while it is one it cannot go; the predefined one takes its place back.
        await ok(api, "POST", f"/v1/baselines/{bid}/default")
        assert (await ok(api, "GET", "/v1/patch/defaults"))["defaults"]["UBUNTU"] == bid
        await refused(api, "DELETE", f"/v1/baselines/{bid}", 409, "is the default for UBUNTU")
        await ok(api, "POST", "/v1/baselines/AWS-UbuntuDefaultPatchBaseline/default")
        await ok(api, "DELETE", f"/v1/baselines/{bid}")
        await refused(api, "GET", f"/v1/baselines/{bid}", 404, "not found")

    run_api(scenario)


def patch_command(api: Api, node: Node, **params: Any) -> Any:
    return ok(api, "POST", "/v1/commands", json={
        "targets": [node.node_id], "document": "AWS-RunPatchBaseline",
        "parameters": {"Operation": "Scan", **params}})  # fmt: skip


def test_a_command_runs_against_the_baselines_of_when_it_was_sent(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"Patch Group": "web"})
        plain = await api.new_node()
        made = await ok(api, "POST", "/v1/baselines", json=UBUNTU_STRICT)
        bid = made["BaselineId"]
        await ok(api, "POST", f"/v1/baselines/{bid}/patch-groups", json={"patch_group": "web"})
        sent = await patch_command(api, web)
        await ok(api, "PATCH", f"/v1/baselines/{bid}", json={"Description": "edited later"})
        body = await api.cp.dispatcher.expand({"command_id": sent["command_id"]}, web.node_id)
        patch = body["patch"]
        assert patch["patch_group"] == "web"
        ubuntu = patch["baselines"]["UBUNTU"]
        assert ubuntu["BaselineId"] == bid
        assert ubuntu["Description"] == "security of Required priority only"  # as at send
        assert patch["baselines"]["DEBIAN"]["BaselineId"] == "AWS-DebianDefaultPatchBaseline"
        assert parse(ubuntu).rejected_action == "BLOCK"
        # A node in no group gets the defaults; a later command the edited baseline.
        other = await patch_command(api, plain)
        body = await api.cp.dispatcher.expand({"command_id": other["command_id"]}, plain.node_id)
        assert body["patch"]["patch_group"] == ""
        assert body["patch"]["baselines"]["UBUNTU"]["BaselineId"] == (
            "AWS-UbuntuDefaultPatchBaseline")  # fmt: skip
        # One SnapshotId: the second command gets the first one's baselines.
        snap = "0e2b8a3c-6f4d-4c36-9d3a-2a8f3b1c5d7e"
        first = await patch_command(api, web, SnapshotId=snap)
        await ok(api, "PATCH", f"/v1/baselines/{bid}", json={"Description": "edited again"})
        second = await patch_command(api, web, SnapshotId=snap, Operation="Install")
        for command in (first, second):
            body = await api.cp.dispatcher.expand({"command_id": command["command_id"]},
                                                  web.node_id)  # fmt: skip
            assert body["patch"]["snapshot_id"] == snap
            assert body["patch"]["baselines"]["UBUNTU"]["Description"] == "edited later"
        # A node known to be Windows gets the Windows baseline only; a Linux one the Linux
        # ones (its agent picks its own); a name gives the OS when the set is too big.
        from control_plane.services.patching.snapshots import guess_os
        from control_plane.store.schema import nodes

        async with api.cp.db.transaction() as conn:
            await conn.execute(nodes.update().where(nodes.c.id == plain.node_id)
                               .values(platform="Windows"))  # fmt: skip
        body = await api.cp.dispatcher.expand({"command_id": other["command_id"]}, plain.node_id)
        assert list(body["patch"]["baselines"]) == ["WINDOWS"]
        async with api.cp.db.transaction() as conn:
            await conn.execute(nodes.update().where(nodes.c.id == plain.node_id)
                               .values(platform="Linux"))  # fmt: skip
        body = await api.cp.dispatcher.expand({"command_id": other["command_id"]}, plain.node_id)
        shown = body["patch"]["baselines"]
        assert "UBUNTU" in shown and "WINDOWS" not in shown
        assert guess_os("Debian GNU/Linux") == "DEBIAN" and guess_os("Rocky Linux") == "ROCKY_LINUX"
        # Other documents carry no baselines.
        shell = await ok(api, "POST", "/v1/commands", json={
            "targets": [web.node_id], "parameters": {"commands": ["true"]}})  # fmt: skip
        body = await api.cp.dispatcher.expand({"command_id": shell["command_id"]}, web.node_id)
        assert "patch" not in body

    run_api(scenario)


def test_bad_patch_parameters_are_refused_and_nothing_is_stored(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        before = await ok(api, "GET", "/v1/commands")
        for params, words in (
            ({"BaselineOverride": "not json"}, "BaselineOverride is not a baseline"),
            ({"BaselineOverride": json.dumps({"Name": "x1x", "OperatingSystem": "UBUNTU",
                                              "ApprovedPatches": ["Bad Name"]})},
             "BaselineOverride[0] is not a baseline: ApprovedPatches[0]"),
            ({"BaselineOverride": json.dumps({"Name": "ovr", "OperatingSystem": "UBUNTU"}),
              "InstallOverrideList": "patches: []"}, "cannot be used together"),
            ({"Operation": "Upgrade"}, "Operation"),
            ({"SnapshotId": "not-a-guid"}, "SnapshotId"),
        ):  # fmt: skip
            response = await api.client.post("/v1/commands", headers=api.admin, json={
                "targets": [node.node_id], "document": "AWS-RunPatchBaseline",
                "parameters": {"Operation": "Scan", **params}})  # fmt: skip
            assert response.status_code == 400, response.text
            assert words in response.json()["error"]["message"], response.text
        assert (await ok(api, "GET", "/v1/commands")) == before
        override = json.dumps([{"Name": "ovr", "OperatingSystem": "UBUNTU",
                                "ApprovedPatches": ["openssl"]}])  # fmt: skip
        sent = await patch_command(api, node, BaselineOverride=override)
        body = await api.cp.dispatcher.expand({"command_id": sent["command_id"]}, node.node_id)
        assert body["patch"]["baselines"]["UBUNTU"]["ApprovedPatches"] == ["openssl"]

    run_api(scenario)


def report(tmp: Path, op: str = "Scan", group: str = "") -> list[dict[str, Any]]:
    """The inventory messages an agent queues after an operation on the test's manager."""
    manager = Manager(
        {"openssl": "3.0.1", "curl": "7.88", "vim": "9.0.1", "telnet": "0.17"},
        {"openssl": offered("openssl", "3.0.2"), "curl": offered("curl", "7.89"),
         "vim": offered("vim", "9.0.2", security=False)},
    )  # fmt: skip
    baseline = parse({"Name": "debian-x", "OperatingSystem": "DEBIAN", "ApprovalRules": {
        "PatchRules": [{"PatchFilterGroup": {"PatchFilters": []}, "ComplianceLevel": "HIGH"}]},
        "RejectedPatches": ["telnet"], "RejectedPatchesAction": "BLOCK"},
        baseline_id="pb-0123456789abcdef0")  # fmt: skip
    done = run(manager, Request(op, "NoReboot", baseline, patch_group=group, command_id="c-1"),
               PendingReboots(tmp / "pending.json", 1.0), clock=lambda: NOW)  # fmt: skip
    items = [states.patch_item(s, "DEBIAN") for s in done.states]
    parts = upload(schema.PATCH, items)[:-1] + upload(schema.PATCH_SUMMARY, [done.summary])[:-1]
    hashes = {schema.PATCH: content.content_hash(items),
              schema.PATCH_SUMMARY: content.content_hash([done.summary])}  # fmt: skip
    last = summary(hashes, False, None)
    last["body"]["partial"] = True
    return [*parts, last]


def test_what_a_node_reported_states_summary_compliance_and_effective_patches(
    run_api: RunApi, tmp_path: Path
) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"Patch Group": "web"})
        other = await api.new_node(tags={"Patch Group": "db"})
        results = await send_ok(api, web, report(tmp_path, group="web"))
        assert all(r["status"] == "accepted" for r in results), results
        node = await ok(api, "GET", f"/v1/patch/nodes/{web.node_id}")
        assert node["reported"] is True and node["MissingCount"] == "2"
        assert node["InstalledRejectedCount"] == "1" and node["ComplianceStatus"] == "NON_COMPLIANT"
        missing = await ok(api, "GET", f"/v1/patch/nodes/{web.node_id}/patches",
                           params={"state": "MISSING"})  # fmt: skip
        assert [p["KBId"] for p in missing["patches"]] == ["curl.amd64", "openssl.amd64"]
        await refused(api, "GET", f"/v1/patch/nodes/{web.node_id}/patches", 400,
                      "state 'GONE'", params={"state": "GONE"})  # fmt: skip
        # Compliance type Patch follows, in the same transaction as the inventory.
        items = await ok(api, "GET", f"/v1/compliance/nodes/{web.node_id}/items",
                         params={"type": "Patch"})  # fmt: skip
        found = {i["id"]: i for i in items["items"]}
        assert found["openssl.amd64"]["status"] == "NON_COMPLIANT"
        assert found["openssl.amd64"]["severity"] == "HIGH"
        assert found["telnet.amd64"]["details"]["PatchState"] == "INSTALLED_REJECTED"
        assert "vim.amd64" not in found  # INSTALLED_OTHER: counted, not listed
        # The fleet: one node reported, non-compliant; the other unreported.
        fleet = await ok(api, "GET", "/v1/patch/summary")
        counts = fleet["counts"]
        assert (counts["nodes"], counts["reported"], counts["non_compliant"],
                counts["unreported"], counts["missing"]) == (2, 1, 1, 1, 1)  # fmt: skip
        db = await ok(api, "GET", "/v1/patch/summary", params={"group": "db"})
        assert db["counts"]["nodes"] == 1 and db["counts"]["reported"] == 0
        await refused(api, "GET", "/v1/patch/summary", 404, "patch group dbb: no node is "
                      "tagged with it", params={"group": "dbb"})  # fmt: skip
        rows = await ok(api, "GET", "/v1/patch/states")
        assert [r["node_id"] for r in rows["nodes"]] == [web.node_id]
        # An Install later: history shows the operation and each patch that changed.
        await send_ok(api, web, report(tmp_path, op="Install", group="web"))
        history = await ok(api, "GET", f"/v1/patch/nodes/{web.node_id}/history")
        kinds = {(c["type_name"], c["change"]) for c in history["changes"]}
        assert (schema.PATCH, "changed") in kinds and (schema.PATCH_SUMMARY, "changed") in kinds
        after = await ok(api, "GET", f"/v1/patch/nodes/{web.node_id}")
        assert after["OperationType"] == "Install" and after["InstalledPendingRebootCount"] == "2"
        # Effective patches: what another baseline would approve on its last scan.
        strict = await ok(api, "POST", "/v1/baselines", json={
            "Name": "debian-only-vim", "OperatingSystem": "DEBIAN",
            "ApprovedPatches": ["vim"], "ApprovedPatchesEnableNonSecurity": True})  # fmt: skip
        effective = await ok(api, "GET", f"/v1/patch/nodes/{web.node_id}/effective-patches",
                             params={"baseline": strict["BaselineId"]})  # fmt: skip
        status = {e["Patch"]["Name"]: e["PatchStatus"]["DeploymentStatus"]
                  for e in effective["EffectivePatches"]}  # fmt: skip
        assert status == {"vim": "EXPLICIT_APPROVED"}
        await refused(
            api,
            "GET",
            f"/v1/patch/nodes/{web.node_id}/effective-patches",
            400,
            "is for UBUNTU; node",
            params={"baseline": "AWS-UbuntuDefaultPatchBaseline"},
        )
        await refused(
            api,
            "GET",
            f"/v1/patch/nodes/{other.node_id}/effective-patches",
            400,
            "has not reported a patch scan",
            params={"baseline": strict["BaselineId"]},
        )

    run_api(scenario)


def test_a_token_never_sees_the_patches_of_a_node_it_may_not_see(
    run_api: RunApi, tmp_path: Path
) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"Env": "web"})
        db = await api.new_node(tags={"Env": "db"})
        for node in (web, db):
            await send_ok(api, node, report(tmp_path))
        scoped = hdr(await token(api, "web-only", policy={"Version": "2026-01-01", "Statement": [
            {"Effect": "Allow", "Action": ["patch:*"], "Resource": ["node/*"],
             "Condition": {"StringEquals": {"node:tag/Env": "web"}}},
            {"Effect": "Allow", "Action": ["patch:*"], "Resource": ["baseline/*"]}]}))  # fmt: skip
        fleet = (await api.client.get("/v1/patch/summary", headers=scoped)).json()
        assert fleet["counts"]["nodes"] == 1
        states_page = (await api.client.get("/v1/patch/states", headers=scoped)).json()
        assert [r["node_id"] for r in states_page["nodes"]] == [web.node_id]
        for path in ("", "/patches", "/history",
                     "/effective-patches?baseline=AWS-DebianDefaultPatchBaseline"):  # fmt: skip
            denied = await api.client.get(f"/v1/patch/nodes/{db.node_id}{path}", headers=scoped)
            assert denied.status_code == 403, (path, denied.text)
            assert "openssl" not in denied.text
        seen = await api.client.get(f"/v1/patch/nodes/{web.node_id}/patches", headers=scoped)
        assert seen.status_code == 200 and "openssl" in seen.text
        nodes_only = hdr(await token(api, "nodes-only", policy={"Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": ["nodes:*", "inventory:GetSchema"],
                           "Resource": ["*"]}]}))  # fmt: skip
        for path in (f"/v1/patch/nodes/{web.node_id}/patches", f"/v1/patch/nodes/{web.node_id}",
                     "/v1/patch/states", "/v1/patch/summary", "/v1/baselines"):  # fmt: skip
            response = await api.client.get(path, headers=nodes_only)
            assert response.status_code in (200, 403), (path, response.text)
            assert "openssl" not in response.text and "MissingCount" not in response.text
            if "/nodes/" not in path:
                assert web.node_id not in response.text
        no_baseline = hdr(await token(api, "no-baseline", policy={"Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": ["patch:DescribeEffectivePatches"],
                           "Resource": ["node/*"]}]}))  # fmt: skip
        denied = await api.client.get(
            f"/v1/patch/nodes/{web.node_id}/effective-patches",
            params={"baseline": "AWS-DebianDefaultPatchBaseline"}, headers=no_baseline,
        )  # fmt: skip
        assert denied.status_code == 403 and "patch:GetBaseline" in denied.text
        making = await api.client.post("/v1/baselines", json=UBUNTU_STRICT, headers=nodes_only)
        assert making.status_code == 403

    run_api(scenario)


def test_a_scheduled_patch_association_delivers_the_groups_baseline(run_api: RunApi) -> None:
    """State Manager's runs (send_batch) freeze a snapshot too; the node's poll carries it."""
    from tests.unit.test_associations_api import received, tick
    from tests.unit.test_execution_support import eventually

    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"PatchGroup": "nightly"})
        made = await ok(api, "POST", "/v1/baselines", json=UBUNTU_STRICT)
        await ok(api, "POST", f"/v1/baselines/{made['BaselineId']}/patch-groups",
                 json={"patch_group": "nightly"})  # fmt: skip
        await ok(api, "POST", "/v1/associations", json={
            "name": "patch-scan", "document": "AWS-RunPatchBaseline",
            "parameters": {"Operation": "Scan"}, "targets": [node.node_id],
            "schedule": "rate(1 day)"})  # fmt: skip
        await tick(api)

        async def sent() -> list[dict[str, Any]]:  # the dispatcher's next round sends it
            return [m for m in await received(api, node) if m["type"] == "run_command"]

        runs = await eventually(sent, "the association's run_command")
        assert len(runs) == 1, runs
        patch = runs[0]["body"]["patch"]
        assert patch["patch_group"] == "nightly"
        assert patch["baselines"]["UBUNTU"]["BaselineId"] == made["BaselineId"]
        assert patch["baselines"]["WINDOWS"]["BaselineId"] == "AWS-DefaultPatchBaseline"

    run_api(scenario)


def test_a_maintenance_windows_scan_and_install_share_one_snapshot(run_api: RunApi) -> None:
    """Scan at priority 1, Install at priority 2, both with SnapshotId={{WINDOW_EXECUTION_ID}}:
    a baseline edited between the two does not change what the Install runs against."""
    from tests.unit.test_windows_job import report as window_report
    from tests.unit.test_windows_job import start, targets, task, tick, window

    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"Patch Group": "web"})
        made = await ok(api, "POST", "/v1/baselines", json=UBUNTU_STRICT)
        bid = made["BaselineId"]
        await ok(api, "POST", f"/v1/baselines/{bid}/patch-groups", json={"patch_group": "web"})
        created = await window(api)
        wid = created["window_id"]
        target = await targets(api, wid, "tag:Patch Group=web")
        for priority, operation in ((1, "Scan"), (2, "Install")):
            await task(
                api, wid, priority=priority, document="AWS-RunPatchBaseline",
                targets=[f"window-target:{target}"], max_concurrency="50%", max_errors="1",
                parameters={"Operation": operation, "SnapshotId": "{{WINDOW_EXECUTION_ID}}"},
            )  # fmt: skip
        run = await start(api, created)
        scan_id = run["tasks"][0]["command_ids"][0]
        scan = await api.cp.dispatcher.expand({"command_id": scan_id}, node.node_id)
        assert scan["patch"]["snapshot_id"] == run["window_execution_id"]
        assert scan["parameters"]["Operation"] == "Scan"
        await ok(api, "PATCH", f"/v1/baselines/{bid}", json={"Description": "edited meanwhile"})
        await window_report(api, node, scan_id)
        await tick(api)
        run = await ok(api, "GET", f"/v1/windows/{wid}/executions/{run['window_execution_id']}")
        install_id = next(t for t in run["tasks"] if t["priority"] == 2)["command_ids"][0]
        install = await api.cp.dispatcher.expand({"command_id": install_id}, node.node_id)
        assert install["parameters"]["Operation"] == "Install"
        assert install["patch"]["snapshot_id"] == run["window_execution_id"]
        ubuntu = install["patch"]["baselines"]["UBUNTU"]
        assert ubuntu["Description"] == "security of Required priority only"  # the Scan's

    run_api(scenario)
