"""corral:putComplianceItems in the engine and the worker: a step's items land in its step
result, bad input fails the step with one line and puts nothing, a later step of the same
type replaces an earlier one, and a command's compliance stays within one message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.execution.outcomes import bound_compliance
from agent.wire import StepResult
from tests.unit.test_execution_support import document, run_engine, shell

ACTION = "corral:putComplianceItems"


def step(items: Any, ctype: Any = "Custom:Ssh", name: str = "report") -> dict[str, Any]:
    return {"action": ACTION, "name": name, "inputs": {"ComplianceType": ctype, "Items": items}}


def entry(item_id: str, status: str = "COMPLIANT", **more: Any) -> dict[str, Any]:
    return {"Id": item_id, "Title": f"t-{item_id}", "Severity": "HIGH", "Status": status, **more}


def test_a_steps_items_are_in_its_result(tmp_path: Path) -> None:
    items = [entry("root-login", "NON_COMPLIANT", Details={"file": "/etc/ssh/sshd_config"})]
    outcome = run_engine(document(step(items)), tmp_path)
    assert outcome.status == wire.ST_SUCCESS
    (result,) = outcome.steps
    assert result["compliance"] == {
        "compliance_type": "Custom:Ssh",
        "items": [
            {
                "id": "root-login",
                "title": "t-root-login",
                "severity": "HIGH",
                "status": "NON_COMPLIANT",
                "details": {"file": "/etc/ssh/sshd_config"},
            }
        ],
    }
    assert "1 Custom:Ssh compliance item(s) to put (1 NON_COMPLIANT)" in result["stdout"]


def test_items_may_come_as_json_text_from_a_parameter(tmp_path: Path) -> None:
    content = document(
        step("{{ Items }}"),
        parameters={"Items": {"type": "String", "default": "[]"}},
    )
    text = json.dumps([entry("a"), entry("b", "NON_COMPLIANT")])
    outcome = run_engine(content, tmp_path, {"Items": text})
    assert [i["id"] for i in outcome.steps[0]["compliance"]["items"]] == ["a", "b"]


BAD = [
    (step([entry("a")], ctype="Association"), "ComplianceType 'Association'"),
    (step([entry("a")], ctype="Custom:a b"), "expected Custom:NAME"),
    (step([entry("a")], ctype=None), "ComplianceType is required"),
    (step("not json"), "Items is not a JSON list"),
    (step({"Id": "a"}), "Items must be a list"),
    (step([entry("a", "GOOD")]), "Items[0].Status 'GOOD'"),
    (step([entry("a", Severity="URGENT")]), "Items[0].Severity 'URGENT'"),
    (step([{"Status": "COMPLIANT", "Severity": "LOW"}]), "Items[0].Id is required"),
    (step([entry("a"), entry("a")]), "Items[1].Id 'a': given twice"),
    (step([entry("a", Colour="red")]), "unknown field 'Colour'"),
    (step([entry("a", Details={"k": 5})]), "Items[0].Details.k"),
    (step([entry(str(n)) for n in range(101)]), "at most 100 per step"),
    (
        step([entry(str(n), Title="t" * 500) for n in range(80)]),
        f"at most {wire.COMPLIANCE_STEP_MAX_BYTES} per step",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_fails_the_step_and_puts_nothing(
    tmp_path: Path, content: dict[str, Any], message: str
) -> None:
    outcome = run_engine(document(content, shell("after", "echo after")), tmp_path)
    failed, after = outcome.steps
    assert failed["status"] == wire.ST_FAILED
    assert message in failed["stderr"]
    assert failed["stderr"].count("\n") == 1
    assert "compliance" not in failed
    assert after["status"] == wire.ST_SUCCESS


def _reported(ctype: str, n: int, title: str = "") -> StepResult:
    items = [
        wire.ComplianceItem(
            id=f"{ctype}-{i}", title=title, severity="LOW", status="COMPLIANT", details={}
        )
        for i in range(n)
    ]
    return StepResult(
        name=ctype,
        status=wire.ST_SUCCESS,
        stderr="",
        compliance=wire.StepCompliance(compliance_type=ctype, items=items),
    )


def test_the_last_step_of_a_type_wins_and_the_total_is_bounded() -> None:
    steps = [
        _reported("Custom:A", 1),
        _reported("Custom:B", 1),
        _reported("Custom:A", 2),
        StepResult(name="plain", status=wire.ST_SUCCESS),
    ]
    bound_compliance(steps)
    assert "compliance" not in steps[0]
    assert [len(s["compliance"]["items"]) for s in steps[1:3]] == [1, 2]
    # three full steps of ~31 KiB each: the third is left out, its stderr says so
    big = [_reported(f"Custom:Big{n}", 60, title="x" * 450) for n in range(3)]
    bound_compliance(big)
    assert ["compliance" in s for s in big] == [True, True, False]
    assert "Custom:Big2 compliance not reported" in big[2]["stderr"]
    total = sum(
        len(json.dumps(s["compliance"], separators=(",", ":"))) for s in big if "compliance" in s
    )
    assert total <= wire.COMPLIANCE_REPORT_MAX_BYTES
