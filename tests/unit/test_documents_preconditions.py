"""Step preconditions, table-driven: platformType and document-parameter comparisons run or
skip the step; every other form fails it as an unrecognized precondition."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agent.documents import (
    PreconditionResult,
    document_from_content,
    evaluate_precondition,
    parse_document,
    resolve_parameters,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "documents"

PARAMETERS = {
    "os": {"type": "String", "default": "Linux"},
    "role": {"type": "String", "default": "web"},
    "flag": {"type": "Boolean", "default": True},
    "count": {"type": "Integer", "default": 3},
    "other": {"type": "String", "default": "web"},
}


def outcome(precondition: Any, platform: str = "Linux", given: dict[str, Any] | None = None,
            version: str = "2.2") -> PreconditionResult:
    doc = document_from_content({
        "schemaVersion": version,
        "parameters": PARAMETERS,
        "mainSteps": [{"action": "aws:runShellScript", "name": "theStep",
                       "inputs": {"runCommand": ["true"]}, "precondition": precondition}],
    })
    values = resolve_parameters(doc, given or {})
    return evaluate_precondition(doc.steps[0], doc, platform, values)


def equals(a: str, b: str) -> dict[str, list[str]]:
    return {"StringEquals": [a, b]}


RUNS = [
    (equals("platformType", "Linux"), "Linux"),
    (equals("Linux", "platformType"), "Linux"),
    (equals("platformType", "linux"), "Linux"),
    (equals("platformType", "LINUX"), "linux"),
    (equals("platformType", "Windows"), "Windows"),
    (equals("platformType", "windows"), "Windows"),
    (equals("platformType", "MacOS"), "MacOS"),
    (equals("macos", "platformType"), "MacOS"),
    (equals("platformType", "{{ os }}"), "Linux"),
    (equals("{{ role }}", "web"), "Linux"),
    (equals("web", "{{role}}"), "Windows"),
    (equals("{{ flag }}", "true"), "Linux"),
    (equals("{{ count }}", "3"), "MacOS"),
    ({}, "Linux"),
    (None, "Windows"),
]


@pytest.mark.parametrize(("precondition", "platform"), RUNS)
def test_the_step_runs(precondition: Any, platform: str) -> None:
    assert outcome(precondition, platform) == PreconditionResult("run", "")
    assert outcome(precondition, platform).run


SKIPS = [
    (equals("platformType", "Windows"), "Linux", "incompatible platform"),
    (equals("MacOS", "platformType"), "Linux", "incompatible platform"),
    (equals("platformType", "Linux"), "MacOS", "incompatible platform"),
    (equals("platformType", "{{ os }}"), "Windows", "incompatible platform"),
    (equals("{{ role }}", "db"), "Linux", "unsatisfied precondition"),
    (equals("{{ role }}", "Web"), "Linux", "unsatisfied precondition"),  # values: case matters
    (equals("{{ flag }}", "false"), "Linux", "unsatisfied precondition"),
]


@pytest.mark.parametrize(("precondition", "platform", "why"), SKIPS)
def test_the_step_is_skipped_with_its_reason(precondition: Any, platform: str, why: str) -> None:
    result = outcome(precondition, platform)
    assert result.outcome == "skip" and not result.run
    assert result.reason == f"Step execution skipped due to {why}. Step name: theStep"


FAILS = [
    ({"StringNotEquals": ["platformType", "Linux"]}, "the only operator is StringEquals"),
    ({"stringEquals": ["platformType", "Linux"]}, "the only operator is StringEquals"),
    ({"StringEquals": ["platformType"]}, "exactly two strings"),
    ({"StringEquals": ["platformType", "Linux", "Windows"]}, "exactly two strings"),
    ({"StringEquals": []}, "exactly two strings"),
    (equals("platformType", "platformType"), "identical"),
    (equals("{{ role }}", "{{ role }}"), "identical"),
    (equals("Linux", "Linux"), "identical"),
    (equals("platformType", "{{ssm:/platform}}"), "Parameter Store references"),
    (equals("{{ ssm-secure:/x }}", "web"), "Parameter Store references"),
    (equals("platformType", "FreeBSD"), "Linux, Windows or MacOS"),
    (equals("platformType", "{{ role }}"), "Linux, Windows or MacOS"),
    (equals("platformType", "{{ missing }}"), "names no declared parameter"),
    (equals("{{ missing }}", "x"), "names no declared parameter"),
    (equals("{{ role }}", "{{ other }}"), "one document parameter with a value"),
    (equals("Linux", "Windows"), "one document parameter with a value"),
    (equals("{{ role }}", "x{{ other }}"), "the value must be plain text"),
    (equals("platformType", "Li{{ os }}"), "cannot read"),
]


@pytest.mark.parametrize(("precondition", "why"), FAILS)
def test_an_unrecognized_precondition_fails_the_step(precondition: Any, why: str) -> None:
    result = outcome(precondition)
    assert result.outcome == "fail"
    assert result.reason.startswith("Unrecognized precondition(s): ")
    assert why in result.reason and result.reason.endswith("Step name: theStep")


def test_a_false_operator_wins_over_an_unrecognized_one_as_in_the_ssm_agent() -> None:
    both = {"StringEquals": ["platformType", "Windows"], "Matches": ["a", "b"]}
    assert outcome(both, "Linux").outcome == "skip"
    assert outcome(both, "Windows").outcome == "fail"


def test_a_precondition_before_schema_22_fails_the_step() -> None:
    version = "2.0"
    result = outcome(equals("platformType", "Linux"), version=version)
    assert result == PreconditionResult(
        "fail", "Precondition is not supported for document schema version prior to 2.2. "
                "Step name: theStep")
    assert outcome(None, version=version).run


def test_given_values_decide_parameter_preconditions() -> None:
    assert outcome(equals("{{ role }}", "db"), given={"role": "db"}).run
    assert outcome(equals("platformType", "{{ os }}"), "Windows", {"os": "windows"}).run


def test_the_cross_platform_fixture_runs_one_branch_per_platform() -> None:
    doc = parse_document((FIXTURES / "cross-platform.yaml").read_text())
    values = resolve_parameters(doc, {})
    table = {
        platform: [evaluate_precondition(s, doc, platform, values).outcome for s in doc.steps]
        for platform in ("Linux", "Windows", "MacOS")
    }
    assert table == {
        "Linux": ["run", "skip", "run"],
        "Windows": ["skip", "run", "run"],
        "MacOS": ["skip", "skip", "run"],
    }


def test_evaluation_never_raises_even_for_a_hand_made_step() -> None:
    doc = parse_document((FIXTURES / "cross-platform.json").read_text())
    odd = dataclasses.replace(doc.steps[0], precondition=["not", "an", "object"])
    result = evaluate_precondition(odd, doc, "Linux", {})
    assert result.outcome == "fail" and "not an object" in result.reason


def test_a_schema_12_step_has_no_precondition() -> None:
    doc = parse_document((FIXTURES / "legacy-1.2.json").read_text())
    values = resolve_parameters(doc, {"commands": ["x"]})
    assert all(evaluate_precondition(s, doc, "Linux", values).run for s in doc.steps)
    odd = dataclasses.replace(doc.steps[0], precondition={"StringEquals": ["platformType", "x"]})
    assert evaluate_precondition(odd, doc, "Linux", values).outcome == "fail"
