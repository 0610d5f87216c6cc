"""Compliance end to end: a real server and a real agent run a document whose
corral:putComplianceItems step reports items; they reach the server with the command's
result, replace that type's items on the node, and the history shows when it drifted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Agent, Server
from tests.integration.test_run_command import Corral, agents, corral
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

__all__ = ["corral"]

DOC = {
    "schemaVersion": "2.2",
    "description": "Check sshd and report it as Custom:Ssh compliance.",
    "parameters": {"Items": {"type": "String", "default": "[]"}},
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "check",
            "inputs": {"runCommand": ["echo checking sshd"]},
        },
        {
            "action": "corral:putComplianceItems",
            "name": "report",
            "inputs": {"ComplianceType": "Custom:Ssh", "Items": "{{ Items }}"},
        },
    ],
}


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def items(*statuses: tuple[str, str]) -> str:
    return json.dumps(
        [{"Id": i, "Title": f"sshd {i}", "Severity": "HIGH", "Status": s} for i, s in statuses]
    )


def run_check(corral: Corral, node_id: str, found: str) -> dict[str, Any]:
    code, out, err = corral(
        "run", "--node", node_id, "--document", "Ssh-Check", "--param", f"Items={found}",
        "--wait", "--output", "json",
    )  # fmt: skip
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    assert result["status"] == "Success", result
    return result


def compliance(corral: Corral, *args: str) -> Any:
    code, out, err = corral("compliance", *args, "--output", "json")
    assert code == 0, err
    return json.loads(out)


def test_a_document_step_puts_compliance_items(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    doc = tmp_path / "ssh-check.json"
    doc.write_text(json.dumps(DOC))
    assert corral("documents", "create", "--name", "Ssh-Check", "--file", str(doc))[0] == 0

    first = run_check(
        corral, agent.node_id, items(("root-login", "COMPLIANT"), ("password-auth", "COMPLIANT"))
    )
    shown = compliance(corral, "list", "--node", agent.node_id)
    assert [(i["id"], i["status"]) for i in shown] == [
        ("password-auth", "COMPLIANT"),
        ("root-login", "COMPLIANT"),
    ]
    assert shown[0]["execution_summary"]["execution_id"] == first["command_id"]

    second = run_check(corral, agent.node_id, items(("password-auth", "NON_COMPLIANT")))
    shown = compliance(corral, "list", "--node", agent.node_id)
    assert [(i["id"], i["status"]) for i in shown] == [("password-auth", "NON_COMPLIANT")]
    summary = compliance(corral, "summary", "--type", "Custom:Ssh")
    assert summary[0]["non_compliant"]["count"] == 1
    assert summary[0]["non_compliant"]["severity"]["HIGH"] == 1
    history = compliance(corral, "history", "--node", agent.node_id)
    assert [(c["id"], c["old_status"], c["new_status"]) for c in history[:2]] == [
        ("root-login", "COMPLIANT", None),
        ("password-auth", "COMPLIANT", "NON_COMPLIANT"),
    ]
    assert {c["execution_id"] for c in history[:2]} == {second["command_id"]}

    # a step with bad items fails, names what is wrong, and changes nothing
    code, out, err = corral(
        "run", "--node", agent.node_id, "--document", "Ssh-Check", "--param",
        'Items=[{"Id": "x", "Severity": "HIGH", "Status": "MAYBE"}]', "--wait", "--output",
        "json",
    )  # fmt: skip
    assert code == 1, err
    failed = json.loads(out)
    assert failed["status"] == "Failed"
    step = failed["invocations"][0]["steps"][1]
    assert "Items[0].Status 'MAYBE'" in step["stderr"]
    shown = compliance(corral, "list", "--node", agent.node_id)
    assert [(i["id"], i["status"]) for i in shown] == [("password-auth", "NON_COMPLIANT")]
