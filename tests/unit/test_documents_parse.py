"""Parsing and validating Command documents: formats, size, document type, JSON Schema errors
with their exact paths, the extra checks, schema 1.2 normalization, the built-in documents."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.documents import (
    KNOWN_ACTIONS,
    MISSING,
    builtin_documents,
    document_from_content,
    parse_document,
)
from agent.errors import DocumentError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "documents"


def minimal(**steps_inputs: Any) -> dict[str, Any]:
    inputs = {"runCommand": ["echo hi"], **steps_inputs}
    return {
        "schemaVersion": "2.2",
        "mainSteps": [{"action": "aws:runShellScript", "name": "one", "inputs": inputs}],
    }


def error_of(content: Any) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        if isinstance(content, str | bytes):
            parse_document(content)
        else:
            document_from_content(content)
    return info.value


# --- formats --------------------------------------------------------------------------------


def test_json_and_yaml_of_the_same_document_are_the_same_document() -> None:
    from_json = parse_document((FIXTURES / "cross-platform.json").read_text())
    from_yaml = parse_document((FIXTURES / "cross-platform.yaml").read_text())
    assert from_json.content == from_yaml.content
    assert from_json.sha256 == from_yaml.sha256
    assert [s.name for s in from_yaml.steps] == ["helloUnix", "helloWindows", "cleanup"]


def test_the_parsed_document_describes_parameters_and_steps() -> None:
    doc = parse_document((FIXTURES / "cross-platform.json").read_bytes(), "json")
    assert doc.schema_version == "2.2"
    assert doc.description == "Say hello on any platform, then clean up."
    greeting = doc.parameters["greeting"]
    assert (greeting.type, greeting.default, greeting.max_chars) == ("String", "hello", 40)
    assert greeting.allowed_pattern == "^[a-zA-Z0-9 ]+$" and not greeting.required
    assert doc.parameters["repeat"].allowed_values == [1, 2, 3]
    assert doc.parameters["extraCommands"].display_type == "textarea"
    first, second, last = doc.steps
    assert (first.index, first.action, first.on_failure) == (0, "aws:runShellScript", "exit")
    assert first.inputs == {
        "runCommand": [
            "for i in $(seq {{ repeat }}); do echo {{ greeting }}; done",
            "{{ extraCommands }}",
        ],
        "workingDirectory": "/tmp",
        "timeoutSeconds": 60,
    }  # the shared inputs are fields, not inputs
    assert first.timeout_seconds == 60
    assert first.precondition == {"StringEquals": ["platformType", "Linux"]}
    assert (second.on_success, second.timeout_seconds) == ("exit", 3600)
    assert last.finally_step and not first.finally_step


def test_the_digest_is_of_the_canonical_json_so_key_order_does_not_matter() -> None:
    content = minimal()
    reordered = dict(reversed(list(content.items())))
    assert document_from_content(content).sha256 == document_from_content(reordered).sha256
    assert document_from_content(content).sha256 != document_from_content(minimal(
        workingDirectory="/")).sha256


def test_content_is_a_private_json_serializable_copy() -> None:
    content = minimal()
    doc = document_from_content(content)
    content["mainSteps"][0]["inputs"]["runCommand"].append("rm -rf /")
    assert doc.content["mainSteps"][0]["inputs"]["runCommand"] == ["echo hi"]
    assert json.loads(json.dumps(doc.content)) == doc.content


def test_yaml_schema_version_written_as_a_number_is_read_as_text() -> None:
    doc = parse_document("schemaVersion: 2.2\nmainSteps:\n- action: aws:runShellScript\n"
                         "  name: a\n  inputs: {runCommand: [date]}\n")
    assert doc.schema_version == "2.2" and doc.content["schemaVersion"] == "2.2"


def test_forced_format_is_honoured() -> None:
    text = json.dumps(minimal())
    assert parse_document(text, "yaml").content == parse_document(text, "json").content
    with pytest.raises(DocumentError, match="invalid JSON"):
        parse_document("schemaVersion: '2.2'\n", "json")
    with pytest.raises(DocumentError, match="unknown document format"):
        parse_document(text, "toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"schemaVersion": "2.2",', "invalid JSON: Expecting property name enclosed in double"),
        ('{"a": NaN}', "invalid JSON"),
        ("schemaVersion: '2.2'\nmainSteps: [\n", "invalid YAML"),
        ("a: b\n c: d\n", "invalid YAML: mapping values are not allowed"),
        ("a: &anchor [1, 2]\nb: *anchor\n", "aliases (*anchor) are not supported"),
        ("a: 1\n---\nb: 2\n", "exactly one YAML document"),
        ("- just\n- a list\n", "must be an object"),
        ("   \n", "the document is empty"),
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("when: 2024-01-01\n", "when: a date value is not allowed"),
        ("1: one\n", "keys must be strings"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_unparseable_text_is_refused_with_a_clear_error(text: str | bytes, message: str) -> None:
    assert message in str(error_of(text))


def test_yaml_errors_say_where() -> None:
    assert str(error_of("a: b\n c: d\n")).endswith("(line 2, column 3)")


DEEP_JSON = "[" * 30_000 + "]" * 30_000
DEEP_YAML = "a: " + "[" * 30_000 + "]" * 30_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEEP_JSON, "nested too deeply"),
        (DEEP_YAML, "invalid YAML: exceeded maximum nesting depth"),
    ],
)
def test_nesting_too_deep_is_an_error_not_a_crash(text: str, message: str) -> None:
    assert message in str(error_of(text))


def test_without_libyaml_yaml_still_parses_and_deep_nesting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import yaml  # type: ignore[import-untyped, unused-ignore]

    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    text = (FIXTURES / "cross-platform.yaml").read_text()
    assert parse_document(text).sha256 == parse_document(
        (FIXTURES / "cross-platform.json").read_text()).sha256
    assert "write the document as JSON" in str(error_of(DEEP_YAML))
    assert "aliases (*x) are not supported" in str(error_of("a: &x 1\nb: *x\n"))


def test_content_nested_too_deeply_is_an_error_not_a_crash() -> None:
    deep: list[Any] = []
    for _ in range(30_000):
        deep = [deep]
    assert "nested too deeply" in str(error_of({**minimal(), "x": deep}))


def test_a_document_over_64_kib_is_refused_before_parsing() -> None:
    padding = "x" * wire.MAX_DOCUMENT_BYTES
    text = json.dumps({**minimal(), "description": padding})
    assert "the limit is 65536 bytes" in str(error_of(text))
    assert "larger than 65536 bytes" in str(error_of({**minimal(), "description": padding}))


def test_a_document_just_under_the_limit_is_accepted() -> None:
    base = json.dumps({**minimal(), "description": ""})
    text = json.dumps({**minimal(), "description": "x" * (wire.MAX_DOCUMENT_BYTES - len(base))})
    assert len(text.encode()) == wire.MAX_DOCUMENT_BYTES
    parse_document(text)


# --- document type ---------------------------------------------------------------------------


def test_an_automation_runbook_is_the_wrong_type() -> None:
    error = error_of((FIXTURES / "automation-runbook.yaml").read_text())
    assert error.path == "assumeRole"
    assert "Automation runbook" in error.reason and "Command documents only" in error.reason


@pytest.mark.parametrize(
    ("content", "path", "words"),
    [
        ({**minimal(), "documentType": "Automation"}, "documentType", "'Automation'"),
        ({**minimal(), "documentType": "Session"}, "documentType", "'Session'"),
        ({"schemaVersion": "0.3", "mainSteps": []}, "schemaVersion", "schemaVersion 0.3"),
        ({"schemaVersion": "1.0", "sessionType": "Standard_Stream"}, "sessionType", "Session"),
        (
            {"schemaVersion": "2.2", "mainSteps": [
                {"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": "x"}},
                {"action": "aws:executeScript", "name": "b", "inputs": {"Script": "x"}},
            ]},
            "mainSteps[1].action",
            "aws:executeScript is an Automation action",
        ),
    ],
)
def test_documents_of_other_types_are_refused(content: Any, path: str, words: str) -> None:
    error = error_of(content)
    assert error.path == path and words in error.reason


def test_document_type_command_is_accepted() -> None:
    assert document_from_content({**minimal(), "documentType": "Command"}).steps


# --- JSON Schema errors name the exact path ----------------------------------------------------


def test_missing_run_command_names_the_step() -> None:
    error = error_of((FIXTURES / "missing-runcommand.json").read_text())
    assert str(error) == "mainSteps[1].inputs.runCommand: required"
    assert (error.path, error.reason) == ("mainSteps[1].inputs.runCommand", "required")


def step(**fields: Any) -> dict[str, Any]:
    return {"schemaVersion": "2.2", "mainSteps": [fields]}


SHELL = "aws:runShellScript"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"mainSteps": []}, "schemaVersion: required"),
        ({"schemaVersion": "3.0"}, "schemaVersion: unsupported schema version '3.0'"),
        ({"schemaVersion": 22}, "schemaVersion: unsupported schema version 22"),
        ({"schemaVersion": "2.2"}, "mainSteps: required"),
        ({"schemaVersion": "2.2", "mainSteps": []}, "mainSteps: must have at least 1 item(s)"),
        ({"schemaVersion": "2.2", "mainSteps": {}}, "mainSteps: must be a list"),
        ({**minimal(), "outputs": {}}, "outputs: unknown field"),
        ({**minimal(), "description": 5}, "description: must be a string"),
        (step(name="a", inputs={"runCommand": "x"}), "mainSteps[0].action: required"),
        (step(action=SHELL, inputs={"runCommand": "x"}), "mainSteps[0].name: required"),
        (step(action=SHELL, name="a"), "mainSteps[0].inputs: required"),
        (step(action="", name="a"), "mainSteps[0].action: must not be empty"),
        (step(action=SHELL, name="a b", inputs={"runCommand": "x"}),
         "mainSteps[0].name: must match"),
        (step(action=SHELL, name="../x", inputs={"runCommand": "x"}),
         "mainSteps[0].name: must match"),
        (step(action=SHELL, name="a", inputs={"runCommand": 5}),
         "mainSteps[0].inputs.runCommand: must be a string or a list of strings"),
        (step(action=SHELL, name="a", inputs={"runCommand": ["a", 1]}),
         "mainSteps[0].inputs.runCommand: must be a string or a list of strings"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x", "runCommands": "y"}),
         "mainSteps[0].inputs.runCommands: unknown field"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x", "workingDirectory": ["/"]}),
         "mainSteps[0].inputs.workingDirectory: must be a string"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x", "timeoutSeconds": 1.5}),
         "mainSteps[0].inputs.timeoutSeconds: must be a whole number of seconds"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x", "onFailure": "continue"}),
         "mainSteps[0].inputs.onFailure: must be one of: exit, successAndExit"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x", "onSuccess": "successAndExit"}),
         "mainSteps[0].inputs.onSuccess: must be one of: exit"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x", "finallyStep": "yes"}),
         "mainSteps[0].inputs.finallyStep: must be true or false"),
        (step(action=SHELL, name="a", onFailure="exit", inputs={"runCommand": "x"}),
         "mainSteps[0].onFailure: unknown field (it belongs inside inputs)"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x"}, precondition=["a", "b"]),
         "mainSteps[0].precondition: must be an object or null"),
        (step(action=SHELL, name="a", inputs={"runCommand": "x"},
              precondition={"StringEquals": ["platformType", 1]}),
         "mainSteps[0].precondition.StringEquals[1]: must be a string"),
        (step(action="aws:runDocument", name="a", inputs={"documentPath": "x"}),
         "mainSteps[0].inputs.documentType: required"),
        (step(action="aws:downloadContent", name="a", inputs={"sourceType": "HTTP"}),
         "mainSteps[0].inputs.sourceInfo: required"),
        (step(action="aws:downloadContent", name="a",
              inputs={"sourceType": "HTTP", "sourceInfo": 5}),
         "mainSteps[0].inputs.sourceInfo: must be an object or a string"),
        (step(action="custom:thing", name="a", inputs={"onFailure": "never"}),
         "mainSteps[0].inputs.onFailure: must be one of: exit, successAndExit"),
        ({**minimal(), "parameters": {"a": {}}}, "parameters.a.type: required"),
        ({**minimal(), "parameters": {"a": {"type": "Float"}}},
         "parameters.a.type: must be one of: String, StringList, Boolean, Integer, MapList, "
         "StringMap"),
        ({**minimal(), "parameters": {"a": {"type": "String", "secret": True}}},
         "parameters.a.secret: unknown field"),
        ({**minimal(), "parameters": {"a-b": {"type": "String"}}},
         "parameters.a-b: invalid name: use letters and digits only"),
        ({**minimal(), "parameters": {"a": {"type": "String", "minChars": -1}}},
         "parameters.a.minChars: must be at least 0"),
        ({**minimal(), "parameters": {"a": {"type": "String", "displayType": "big"}}},
         "parameters.a.displayType: must be one of: textfield, textarea"),
        ({**minimal(), "parameters": {"a": {"type": "String", "interpolationType": "SHELL"}}},
         "parameters.a.interpolationType: must be one of: ENV_VAR"),
        ({**minimal(), "runtimeConfig": {}}, "runtimeConfig: not allowed with schemaVersion 2.2"),
        ({"schemaVersion": "1.2", "mainSteps": []},
         "mainSteps: not allowed with schemaVersion 1.2"),
        ({"schemaVersion": "1.2"}, "runtimeConfig: required"),
        ({"schemaVersion": "1.2", "runtimeConfig": {}}, "runtimeConfig: must not be empty"),
        ({"schemaVersion": "1.2", "runtimeConfig": {SHELL: {"properties": [{}]}}},
         "runtimeConfig.aws:runShellScript.properties[0].runCommand: required"),
        ({"schemaVersion": "1.2", "runtimeConfig": {SHELL: {"properties": {"runCommand": "x"}}}},
         "runtimeConfig.aws:runShellScript.properties: must be a list"),
        ({"schemaVersion": "1.2", "runtimeConfig": {"aws:other": {"properties": "x"}}},
         "runtimeConfig.aws:other.properties: must be a list or an object"),
    ],
)
def test_schema_violations_name_the_path(content: dict[str, Any], expected: str) -> None:
    assert str(error_of(content)).startswith(expected)


def test_the_first_error_in_document_order_is_reported() -> None:
    content = {
        "schemaVersion": "2.2",
        "mainSteps": [
            {"action": SHELL, "name": f"s{i}", "inputs": {"runCommand": "x"}} for i in range(12)
        ],
    }
    broken = copy.deepcopy(content)
    del broken["mainSteps"][11]["inputs"]["runCommand"]
    del broken["mainSteps"][9]["inputs"]["runCommand"]
    assert error_of(broken).path == "mainSteps[9].inputs.runCommand"


def test_an_unknown_action_is_not_a_validation_error() -> None:
    doc = document_from_content(step(action="aws:softwareInventory", name="a",
                                     inputs={"applications": "Enabled"}))
    assert doc.steps[0].action == "aws:softwareInventory"
    assert "aws:softwareInventory" not in KNOWN_ACTIONS
    assert {"aws:runShellScript", "aws:runPowerShellScript", "aws:runDocument",
            "aws:downloadContent"} == KNOWN_ACTIONS


# --- the extra checks --------------------------------------------------------------------------


def two_steps(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": "2.2", "mainSteps": [
        {"action": SHELL, "name": "a", **first},
        {"action": SHELL, "name": "b", **second},
    ]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (two_steps({"inputs": {"runCommand": "x"}}, {"name": "a", "inputs": {"runCommand": "y"}}),
         "mainSteps[1].name: duplicate step name 'a'"),
        (two_steps({"inputs": {"runCommand": "x", "finallyStep": True}},
                   {"inputs": {"runCommand": "y"}}),
         "mainSteps[0].inputs.finallyStep: only the last step can be a finallyStep"),
        (minimal(timeoutSeconds=4), "mainSteps[0].inputs.timeoutSeconds: must be between 5 and "
                                    "172800 seconds, not 4"),
        (minimal(timeoutSeconds=172801), "mainSteps[0].inputs.timeoutSeconds: must be between"),
        (minimal(timeoutSeconds="0"), "mainSteps[0].inputs.timeoutSeconds: must be between"),
        (minimal(timeoutSeconds="ten"),
         "mainSteps[0].inputs.timeoutSeconds: must be a whole number of seconds, not 'ten'"),
        (minimal(runCommand=["echo {{ target }}"]),
         "mainSteps[0].inputs.runCommand[0]: {{ target }} names no declared parameter"),
        (minimal(workingDirectory="{{dir}}"),
         "mainSteps[0].inputs.workingDirectory: {{dir}} names no declared parameter"),
        ({**minimal(), "parameters": {"a": {"type": "String", "allowedPattern": "(["}}},
         "parameters.a.allowedPattern: not a valid regular expression"),
        ({**minimal(), "parameters": {"a": {"type": "StringList", "minItems": 3, "maxItems": 1}}},
         "parameters.a.maxItems: is less than minItems (3)"),
        ({**minimal(), "parameters": {"a": {"type": "Integer", "default": "many"}}},
         "parameters.a.default: must be an integer"),
        ({**minimal(), "parameters": {"a": {"type": "StringList", "default": [1]}}},
         "parameters.a.default[0]: must be a string"),
    ],
)
def test_extra_checks(content: dict[str, Any], expected: str) -> None:
    assert str(error_of(content)).startswith(expected)


@pytest.mark.parametrize("seconds", [5, 172800, "5", "172800", " 60 ", 3600.0, "", "{{ t }}"])
def test_timeouts_in_range_or_left_to_interpolation_are_accepted(seconds: Any) -> None:
    content = minimal(timeoutSeconds=seconds)
    content["parameters"] = {"t": {"type": "String", "default": "60"}}
    document_from_content(content)


def test_foreign_double_braces_and_ssm_references_are_not_parameter_references() -> None:
    content = minimal(runCommand=["docker ps --format '{{.Names}}'", "echo {{ssm:/app/host}}",
                                  "echo {{ ssm-secure:db-password }}", "echo {{ a.b }}"])
    assert document_from_content(content).steps[0].inputs["runCommand"][0].startswith("docker")


def test_a_finally_step_on_the_last_step_and_an_empty_precondition_are_fine() -> None:
    doc = document_from_content(two_steps({"inputs": {"runCommand": "x"}, "precondition": {}},
                                          {"inputs": {"runCommand": "y", "finallyStep": True}}))
    assert doc.steps[1].finally_step and doc.steps[0].precondition == {}


# --- schema 1.2 ----------------------------------------------------------------------------------


def test_schema_12_runtime_config_becomes_steps() -> None:
    doc = parse_document((FIXTURES / "legacy-1.2.json").read_text())
    assert doc.schema_version == "1.2"
    assert [(s.index, s.name, s.action) for s in doc.steps] == [
        (0, "aws:runShellScript", "aws:runShellScript"),
        (1, "aws:runShellScript.1", "aws:runShellScript"),
        (2, "aws:runPowerShellScript", "aws:runPowerShellScript"),
    ]
    first, second, third = doc.steps
    assert first.inputs == {"runCommand": "{{ commands }}",
                            "timeoutSeconds": "{{ executionTimeout }}"}  # "id" dropped
    assert first.inputs_path == "runtimeConfig.aws:runShellScript.properties[0]"
    assert second.inputs == {"runCommand": ["echo second"], "workingDirectory": "/var/tmp"}
    assert third.inputs == {"runCommand": "Write-Output third"}
    assert all(s.precondition is None and not s.finally_step for s in doc.steps)


def test_schema_12_properties_as_one_object_and_unknown_plugins() -> None:
    doc = document_from_content({"schemaVersion": "1.2", "runtimeConfig": {
        "aws:cloudWatch": {"settings": {"startType": "Enabled"}, "properties": {"a": 1}},
    }})
    assert [(s.name, s.inputs, s.inputs_path) for s in doc.steps] == [
        ("aws:cloudWatch", {"a": 1}, "runtimeConfig.aws:cloudWatch.properties")]


def test_schema_12_timeout_out_of_range_is_refused() -> None:
    content = {"schemaVersion": "1.2", "runtimeConfig": {
        SHELL: {"properties": [{"runCommand": "x", "timeoutSeconds": "200000"}]}}}
    assert str(error_of(content)).startswith(
        "runtimeConfig.aws:runShellScript.properties[0].timeoutSeconds: must be between")


def test_schema_20_steps_are_read() -> None:
    doc = document_from_content({**minimal(), "schemaVersion": "2.0"})
    assert doc.schema_version == "2.0" and doc.steps[0].name == "one"


# --- built-in documents -------------------------------------------------------------------------


def test_the_builtin_documents_parse() -> None:
    docs = builtin_documents()
    assert sorted(docs) == [
        "AWS-GatherSoftwareInventory",
        "AWS-RunPatchBaseline",
        "AWS-RunPowerShellScript",
        "AWS-RunShellScript",
        "Corral-EnsureFile",
        "Corral-EnsurePackage",
        "Corral-EnsureService",
        "Corral-RunDocument",
        "Corral-UpdateAgent",
    ]
    for name in ("AWS-RunShellScript", "AWS-RunPowerShellScript"):
        doc = docs[name]
        commands, workdir, timeout = (doc.parameters[p] for p in
                                      ("commands", "workingDirectory", "executionTimeout"))
        assert (commands.type, commands.required, commands.min_items) == ("StringList", True, 1)
        assert (workdir.type, workdir.default) == ("String", "")
        assert (timeout.type, timeout.default) == ("String", "3600")
        assert timeout.allowed_pattern == (
            "([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)")
        [only] = doc.steps
        assert only.inputs["timeoutSeconds"] == "{{ executionTimeout }}"
    assert docs["AWS-RunShellScript"].steps[0].action == "aws:runShellScript"
    assert docs["AWS-RunPowerShellScript"].steps[0].action == "aws:runPowerShellScript"
    run_doc = docs["Corral-RunDocument"]
    assert run_doc.steps[0].action == "aws:runDocument"
    assert run_doc.parameters["documentType"].default == "SSMDocument"
    assert run_doc.parameters["documentPath"].default is MISSING
    assert run_doc.parameters["documentParameters"].type == "StringMap"


def test_builtin_documents_returns_a_new_mapping_each_time() -> None:
    first = builtin_documents()
    first.clear()
    assert len(builtin_documents()) == 9


# --- import cost --------------------------------------------------------------------------------


def test_importing_the_package_loads_neither_yaml_nor_jsonschema() -> None:
    code = ("import sys, agent.documents; "
            "print(sorted(m for m in ('yaml', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parsing_json_content_does_not_load_yaml() -> None:
    code = ("import sys, json; from agent.documents import parse_document; "
            f"parse_document({json.dumps(json.dumps(minimal()))}); print('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- small pieces -------------------------------------------------------------------------------


def test_the_json_schema_is_a_valid_draft_7_schema() -> None:
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    from agent.documents._schema import SCHEMA

    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_document(b"\xef\xbb\xbf" + json.dumps(minimal()).encode()).steps


@pytest.mark.parametrize(("value", "seconds"), [(None, 3600), (90, 90), ("90", 90),
                                                 ("{{ t }}", 3600), ("", 3600)])
def test_a_steps_static_timeout(value: Any, seconds: int) -> None:
    content = minimal() if value is None else minimal(timeoutSeconds=value)
    content["parameters"] = {"t": {"type": "String", "default": "60"}}
    assert document_from_content(content).steps[0].timeout_seconds == seconds


def test_missing_is_one_falsy_value_that_survives_copies() -> None:
    assert repr(MISSING) == "MISSING" and not MISSING
    assert copy.deepcopy(MISSING) is MISSING and copy.copy(MISSING) is MISSING
    doc = parse_document((FIXTURES / "env-var.yaml").read_text())
    assert copy.deepcopy(doc.parameters["Message"]).default is MISSING
    assert doc.parameters["Message"].required and doc.parameters["Message"].env_var
