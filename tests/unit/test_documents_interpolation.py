"""{{ name }} interpolation into step inputs, ENV_VAR parameters as SSM_<name> environment
variables (hostile values passed verbatim), timeoutSeconds after interpolation, and the
{{ssm:...}} references left for Parameter Store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.documents import (
    Document,
    builtin_documents,
    document_from_content,
    interpolate_step,
    parse_document,
    resolve_parameters,
    ssm_references,
)
from agent.errors import DocumentError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "documents"
SHELL = builtin_documents()["AWS-RunShellScript"]


def one_step(inputs: dict[str, Any], parameters: dict[str, Any] | None = None,
             action: str = "aws:runShellScript") -> Document:
    return document_from_content({
        "schemaVersion": "2.2",
        "parameters": parameters or {},
        "mainSteps": [{"action": action, "name": "only", "inputs": inputs}],
    })


def run(doc: Document, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    return interpolate_step(doc.steps[0], doc, resolve_parameters(doc, given))


def test_aws_run_shell_script_interpolates_commands_and_timeout() -> None:
    inputs, env = run(SHELL, {"commands": ["cd /srv", "make"], "executionTimeout": "600"})
    assert inputs == {"runCommand": ["cd /srv", "make"], "workingDirectory": "",
                      "timeoutSeconds": 600}
    assert env == {}


def test_the_default_execution_timeout_becomes_3600_seconds() -> None:
    inputs, _ = run(SHELL, {"commands": ["true"]})
    assert inputs["timeoutSeconds"] == 3600 and isinstance(inputs["timeoutSeconds"], int)


def test_a_string_list_in_a_list_expands_into_its_elements() -> None:
    doc = one_step({"runCommand": ["set -e", "{{ commands }}", "echo done"]},
                   {"commands": {"type": "StringList"}})
    inputs, _ = run(doc, {"commands": ["a", "b"]})
    assert inputs["runCommand"] == ["set -e", "a", "b", "echo done"]


def test_inside_a_string_values_become_text() -> None:
    doc = one_step(
        {"runCommand": ["echo {{name}} {{ count }} {{ on }} {{ items }} {{ map }} {{ name }}"]},
        {"name": {"type": "String"}, "count": {"type": "Integer"}, "on": {"type": "Boolean"},
         "items": {"type": "StringList"}, "map": {"type": "StringMap"}},
    )
    inputs, _ = run(doc, {"name": "web", "count": 3, "on": True, "items": ["x", "y"],
                          "map": {"k": "v"}})
    assert inputs["runCommand"] == ['echo web 3 true x,y {"k": "v"} web']


def test_a_whole_reference_keeps_the_value_type() -> None:
    doc = one_step({"documentType": "SSMDocument", "documentPath": "{{ path }}",
                    "documentParameters": "{{ params }}"},
                   {"path": {"type": "String"}, "params": {"type": "StringMap"}},
                   action="aws:runDocument")
    inputs, _ = run(doc, {"path": "Other-Doc", "params": {"a": ["1"]}})
    assert inputs == {"documentType": "SSMDocument", "documentPath": "Other-Doc",
                      "documentParameters": {"a": ["1"]}}


def test_a_plain_string_run_command_becomes_a_list() -> None:
    inputs, _ = run(one_step({"runCommand": "uptime"}), {})
    assert inputs["runCommand"] == ["uptime"]


def test_interpolation_does_not_touch_the_document() -> None:
    values = resolve_parameters(SHELL, {"commands": ["x"]})
    inputs, _ = interpolate_step(SHELL.steps[0], SHELL, values)
    inputs["runCommand"].append("y")
    assert SHELL.steps[0].inputs["runCommand"] == "{{ commands }}"
    assert values["commands"] == ["x"]


def test_foreign_double_braces_are_left_alone() -> None:
    inputs, _ = run(one_step({"runCommand": ["docker ps --format '{{.Names}}'"]}), {})
    assert inputs["runCommand"] == ["docker ps --format '{{.Names}}'"]


def test_schema_12_steps_interpolate_too() -> None:
    doc = parse_document((FIXTURES / "legacy-1.2.json").read_text())
    values = resolve_parameters(doc, {"commands": ["one", "two"]})
    assert interpolate_step(doc.steps[0], doc, values)[0] == {
        "runCommand": ["one", "two"], "timeoutSeconds": 600}
    assert interpolate_step(doc.steps[2], doc, values)[0] == {
        "runCommand": ["Write-Output third"]}


# --- timeoutSeconds after interpolation -----------------------------------------------------


TIMED = {"runCommand": ["true"], "timeoutSeconds": "{{ t }}"}


@pytest.mark.parametrize(("value", "seconds"), [("5", 5), ("172800", 172800), (" 90 ", 90),
                                                 ("", 3600)])
def test_interpolated_timeouts_in_range(value: str, seconds: int) -> None:
    inputs, _ = run(one_step(TIMED, {"t": {"type": "String"}}), {"t": value})
    assert inputs["timeoutSeconds"] == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4", "must be between 5 and 172800 seconds, not 4"),
        ("172801", "must be between 5 and 172800 seconds, not 172801"),
        ("1h", "must be a whole number of seconds, not '1h'"),
        ("-5", "must be a whole number of seconds"),
    ],
)
def test_interpolated_timeouts_out_of_range_are_refused(value: str, message: str) -> None:
    doc = one_step(TIMED, {"t": {"type": "String"}})
    with pytest.raises(DocumentError) as info:
        run(doc, {"t": value})
    assert info.value.path == "mainSteps[0].inputs.timeoutSeconds"
    assert message in info.value.reason


def test_an_integer_parameter_as_timeout() -> None:
    doc = one_step(TIMED, {"t": {"type": "Integer", "default": 30}})
    assert run(doc, {})[0]["timeoutSeconds"] == 30
    with pytest.raises(DocumentError, match="not 0"):
        run(doc, {"t": 0})


def test_schema_12_timeout_error_names_the_properties_entry() -> None:
    doc = parse_document((FIXTURES / "legacy-1.2.json").read_text())
    values = resolve_parameters(doc, {"commands": ["x"], "executionTimeout": "999999"})
    with pytest.raises(DocumentError) as info:
        interpolate_step(doc.steps[0], doc, values)
    assert info.value.path == "runtimeConfig.aws:runShellScript.properties[0].timeoutSeconds"


def test_a_non_string_command_after_interpolation_is_refused() -> None:
    doc = one_step({"runCommand": ["{{ n }}"]}, {"n": {"type": "Integer"}})
    with pytest.raises(DocumentError) as info:
        run(doc, {"n": 5})
    assert str(info.value) == (
        "mainSteps[0].inputs.runCommand[0]: must be a string (after interpolation)")


def test_a_value_missing_from_values_falls_back_to_the_default_or_fails() -> None:
    doc = one_step({"runCommand": ["echo {{ a }} {{ b }}"]},
                   {"a": {"type": "String", "default": "A"}, "b": {"type": "String"}})
    assert interpolate_step(doc.steps[0], doc, {"b": "B"})[0]["runCommand"] == ["echo A B"]
    with pytest.raises(DocumentError) as info:
        interpolate_step(doc.steps[0], doc, {})
    assert str(info.value) == "mainSteps[0].inputs.runCommand[0]: parameter 'b' has no value"


# --- ENV_VAR ----------------------------------------------------------------------------------


HOSTILE = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "a\nb\r\nc",
    "' ; echo pwned ; '",
    "${HOME} $PATH %PATH% $env:PATH",
    "\\\"; & | > < * ? [x] {y} ~ !",
    "ünïcödé ✓ \t tab",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_env_var_parameters_reach_the_script_verbatim(hostile: str) -> None:
    doc = parse_document((FIXTURES / "env-var.yaml").read_text())
    values = resolve_parameters(doc, {"Message": hostile.replace('"', "")})
    for step in doc.steps:
        inputs, env = interpolate_step(step, doc, values)
        assert env == {"SSM_Message": hostile.replace('"', "")}
        # The script text never holds the value: it reads the variable.
        assert hostile.replace('"', "") not in " ".join(inputs["runCommand"])


def test_the_env_var_documents_pattern_refuses_quotes() -> None:
    doc = parse_document((FIXTURES / "env-var.yaml").read_text())
    with pytest.raises(DocumentError, match="does not match allowedPattern"):
        resolve_parameters(doc, {"Message": 'say "hi"'})


def test_env_var_parameters_are_still_replaced_in_the_text_as_aws_does() -> None:
    doc = one_step({"runCommand": ['echo "$SSM_msg"', "echo {{ msg }}"]},
                   {"msg": {"type": "String", "interpolationType": "ENV_VAR"},
                    "n": {"type": "Integer", "interpolationType": "ENV_VAR", "default": 7},
                    "on": {"type": "Boolean", "interpolationType": "ENV_VAR", "default": False},
                    "plain": {"type": "String", "default": "not in env"}})
    inputs, env = run(doc, {"msg": "$(id)"})
    assert inputs["runCommand"] == ['echo "$SSM_msg"', "echo $(id)"]
    assert env == {"SSM_msg": "$(id)", "SSM_n": "7", "SSM_on": "false"}


# --- Parameter Store references ----------------------------------------------------------------


SSM_DOC = {
    "runCommand": ["echo {{ssm:/app/host}}:{{ port }}", "echo {{ ssm-secure:/app/key }}",
                   "echo {{ssm:/app/host}}"],
    "workingDirectory": "{{ssm:/app/dir}}",
}


def test_ssm_references_are_found_in_values_and_inputs_once_each() -> None:
    doc = one_step(SSM_DOC, {"port": {"type": "String"}})
    values = resolve_parameters(doc, {"port": "{{ssm:/app/port}}"})
    assert ssm_references(doc, values) == [
        "ssm:/app/port", "ssm:/app/host", "ssm-secure:/app/key", "ssm:/app/dir"]


def test_no_references_no_hook() -> None:
    assert ssm_references(SHELL, resolve_parameters(SHELL, {"commands": ["{{ x }}"]})) == []


def test_resolved_ssm_values_are_substituted_and_others_left_as_written() -> None:
    doc = one_step(SSM_DOC, {"port": {"type": "String"}})
    values = resolve_parameters(doc, {"port": "{{ssm:/app/port}}"})
    resolved = {"ssm:/app/host": "db.internal", "ssm:/app/port": "5432", "ssm:/app/dir": "/srv"}
    inputs, _ = interpolate_step(doc.steps[0], doc, values, ssm_values=resolved)
    assert inputs == {
        "runCommand": ["echo db.internal:5432", "echo {{ ssm-secure:/app/key }}",
                       "echo db.internal"],
        "workingDirectory": "/srv",
    }
    unresolved, _ = interpolate_step(doc.steps[0], doc, values)
    assert unresolved["runCommand"][0] == "echo {{ssm:/app/host}}:{{ssm:/app/port}}"
