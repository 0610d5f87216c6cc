"""Patch Manager end to end: a real server sends AWS-RunPatchBaseline to a real agent that
patches a throw-away Debian root (agent.toml ``patch_root``) with the real apt against a
repository the test builds (a ``stable`` and a ``stable-security`` suite).

Scan finds the security updates MISSING and changes nothing; Install (NoReboot) installs
exactly them and they wait for a reboot; a patch group's baseline is the one delivered; a
BLOCKed dependency fails the install with apt's reason and installs nothing; RebootIfNeeded
reboots through the agent's reboot path and reports after it.  Nothing touches this
machine's own packages."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.aptrepo import build_repo, copy_root, patch_root
from tests.integration.harness import Agent, Server, wait_for
from tests.integration.test_run_agent import finished, started_agent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("apt-get", "dpkg-deb", "apt-ftparchive")),
        reason="needs apt-get, dpkg-deb and apt-ftparchive (apt-utils)",
    ),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("patch-repo")
    repo = build_repo(base / "repo", base / "build")
    return patch_root(base / "template", repo)


def versions(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    name = ""
    for line in (root / "var/lib/dpkg/status").read_text().splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: "):
            found[name] = line.split(": ", 1)[1]
    return found


def run_patch(server: Server, node_id: str, **params: str) -> str:
    with server.api() as api:
        response = api.post(
            "/v1/commands",
            json={
                "targets": [node_id],
                "document": "AWS-RunPatchBaseline",
                "parameters": params,
                "timeout_seconds": 600,
            },
        )
    assert response.status_code == 201, response.text
    command_id: str = response.json()["command_id"]
    return command_id


def get(server: Server, path: str, **query: Any) -> Any:
    with server.api() as api:
        response = api.get(path, params=query)
    assert response.status_code == 200, response.text
    return response.json()


def reported(server: Server, node_id: str, command_id: str) -> dict[str, Any] | None:
    """The node's patch summary once it is the one ``command_id`` made."""
    found = get(server, f"/v1/patch/nodes/{node_id}")
    return found if found.get("CommandId") == command_id else None


def states(server: Server, node_id: str) -> dict[str, str]:
    patches = get(server, f"/v1/patch/nodes/{node_id}/patches", limit=1000)["patches"]
    return {p["Name"]: p["State"] for p in patches}


def done(server: Server, command_id: str) -> dict[str, Any]:
    inv = wait_for(lambda: finished(server, command_id), 120, "the patch command to end")
    assert isinstance(inv, dict)
    return inv


def agent_for(make_agent: Callable[..., Agent], root: Path, **toml: Any) -> Agent:
    return started_agent(make_agent, patch_root=str(root), **toml)


def test_scan_then_install_with_the_default_debian_baseline(
    server: Server, make_agent: Callable[..., Agent], template: Path, tmp_path: Path
) -> None:
    root = copy_root(template, tmp_path / "node")
    agent = agent_for(make_agent, root)
    before = (root / "var/lib/dpkg/status").read_bytes()
    scan = run_patch(server, agent.node_id, Operation="Scan")
    inv = done(server, scan)
    assert inv["status"] == "Success", inv
    assert (root / "var/lib/dpkg/status").read_bytes() == before  # Scan changes nothing
    summary = wait_for(lambda: reported(server, agent.node_id, scan), 60, "the scan's report")
    assert summary["BaselineId"] == "AWS-DebianDefaultPatchBaseline"
    assert summary["OperationType"] == "Scan" and summary["ComplianceStatus"] == "NON_COMPLIANT"
    found = states(server, agent.node_id)
    # The two security updates are missing; corral-tool's installed version came from the
    # security suite (INSTALLED), its newer plain update is not approved by the default.
    assert found["corral-base"] == "MISSING" and found["linux-image-corral"] == "MISSING"
    assert found["corral-tool"] == "INSTALLED"
    assert found["corral-app"] == "INSTALLED_OTHER" and found["corral-static"] == "INSTALLED_OTHER"
    compliance = get(server, f"/v1/compliance/nodes/{agent.node_id}/items", type="Patch")
    statuses = {i["id"].split(".")[0]: i["status"] for i in compliance["items"]}
    assert statuses["corral-base"] == "NON_COMPLIANT"

    install = run_patch(server, agent.node_id, Operation="Install", RebootOption="NoReboot")
    inv = done(server, install)
    assert inv["status"] == "Success", inv
    now = versions(root)
    assert now["corral-base"] == "1.0-2" and now["linux-image-corral"] == "1.1-1"
    assert now["corral-app"] == "1.0-1" and now["corral-tool"] == "1.0-1"  # not approved
    summary = wait_for(lambda: reported(server, agent.node_id, install), 60, "the report")
    assert summary["InstalledPendingRebootCount"] == "2"
    assert summary["ComplianceStatus"] == "NON_COMPLIANT"  # until the node reboots
    assert summary["LastNoRebootInstallOperationTime"]
    found = states(server, agent.node_id)
    assert found["corral-base"] == "INSTALLED_PENDING_REBOOT"
    fleet = get(server, "/v1/patch/summary")["counts"]
    assert fleet["pending_reboot"] == 1 and fleet["non_compliant"] == 1


def test_a_patch_groups_baseline_blocks_a_rejected_dependency(
    server: Server, make_agent: Callable[..., Agent], template: Path, tmp_path: Path
) -> None:
    root = copy_root(template, tmp_path / "node")
    agent = agent_for(make_agent, root)
    with server.api() as api:
        made = api.post(
            "/v1/baselines",
            json={
                "Name": "debian-apps",
                "OperatingSystem": "DEBIAN",
                "ApprovedPatches": ["corral-app"],
                "ApprovedPatchesEnableNonSecurity": True,
                "RejectedPatches": ["corral-lib"],
                "RejectedPatchesAction": "BLOCK",
            },
        )
        assert made.status_code == 201, made.text
        baseline_id = made.json()["BaselineId"]
        assert api.post(
            f"/v1/baselines/{baseline_id}/patch-groups", json={"patch_group": "apps"}
        ).is_success
        assert api.post(f"/v1/nodes/{agent.node_id}/tags",
                        json={"tags": {"Patch Group": "apps"}}).is_success  # fmt: skip
    before = versions(root)
    install = run_patch(server, agent.node_id, Operation="Install", RebootOption="NoReboot")
    inv = done(server, install)
    assert inv["status"] == "Failed", inv
    stderr = inv["steps"][0]["stderr"]
    assert "corral-lib is rejected (RejectedPatchesAction BLOCK)" in stderr, stderr
    assert versions(root) == before  # nothing installed
    summary = wait_for(lambda: reported(server, agent.node_id, install), 60, "the report")
    assert summary["BaselineId"] == baseline_id and summary["PatchGroup"] == "apps"
    found = states(server, agent.node_id)
    assert found["corral-app"] == "FAILED"
    assert found["corral-lib"] == "INSTALLED_REJECTED"  # installed before it was rejected
    patches = get(server, f"/v1/patch/nodes/{agent.node_id}/patches", state="FAILED")
    assert "corral-lib is rejected" in patches["patches"][0]["Reason"]


def test_reboot_if_needed_reboots_through_the_agent_and_reports_after(
    server: Server, make_agent: Callable[..., Agent], template: Path, tmp_path: Path
) -> None:
    root = copy_root(template, tmp_path / "node")
    reboot = tmp_path / "reboot.sh"
    reboot.write_text(
        "#!/bin/sh\n"
        f'echo "$CORRAL_COMMAND_ID" >> {tmp_path}/reboots\n'
        'kill -TERM "$CORRAL_AGENT_PID"\n'
    )
    reboot.chmod(0o755)
    agent = agent_for(make_agent, root, reboot_command=[str(reboot)])
    install = run_patch(server, agent.node_id, Operation="Install")  # RebootIfNeeded
    assert agent.proc is not None
    assert agent.proc.wait(120) == 0  # "rebooted": the reboot command stopped the agent
    assert (tmp_path / "reboots").read_text() == f"{install}\n"
    # Before the reboot the node said what it installed and that it waits for the reboot.
    early = wait_for(lambda: reported(server, agent.node_id, install), 60, "the first report")
    assert early["InstalledPendingRebootCount"] == "2"
    agent.start()
    inv = done(server, install)
    assert inv["status"] == "Success", inv
    final = wait_for(
        lambda: (s := reported(server, agent.node_id, install))
        and s["InstalledPendingRebootCount"] == "0"
        and s,
        60,
        "the report after the reboot",
    )
    assert final["ComplianceStatus"] == "COMPLIANT"
    assert states(server, agent.node_id)["corral-base"] == "INSTALLED"
    assert (tmp_path / "reboots").read_text() == f"{install}\n"  # rebooted once
    history = get(server, f"/v1/patch/nodes/{agent.node_id}/history")["changes"]
    changed = [c for c in history if c["type_name"] == "Corral:Patch" and c["change"] == "changed"]
    base = [c for c in changed if c["key"].get("KBId", "").startswith("corral-base")]
    assert base, json.dumps(history)[:500]
    assert base[0]["new"]["State"] == "INSTALLED"  # newest first: after the reboot
