"""Parameter values: CLI name=value strings, and resolving given values against the document's
declarations (defaults, types, allowedValues, allowedPattern, item and character bounds)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.documents import (
    Document,
    builtin_documents,
    document_from_content,
    parse_param_args,
    resolve_parameters,
)
from agent.errors import DocumentError


def doc_with(**parameters: dict[str, Any]) -> Document:
    return document_from_content({
        "schemaVersion": "2.2",
        "parameters": parameters,
        "mainSteps": [{"action": "aws:runShellScript", "name": "a",
                       "inputs": {"runCommand": ["true"]}}],
    })


def resolve_error(doc: Document, given: dict[str, Any]) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        resolve_parameters(doc, given)
    return info.value


SHELL = builtin_documents()["AWS-RunShellScript"]


# --- resolve_parameters ---------------------------------------------------------------------


def test_defaults_fill_what_was_not_given() -> None:
    assert resolve_parameters(SHELL, {"commands": ["uptime"]}) == {
        "commands": ["uptime"], "workingDirectory": "", "executionTimeout": "3600"}


def test_a_parameter_without_default_is_required() -> None:
    error = resolve_error(SHELL, {})
    assert error.path == "parameters.commands"
    assert "required parameter missing" in error.reason


def test_an_unknown_parameter_is_refused() -> None:
    error = resolve_error(SHELL, {"commands": ["x"], "command": ["y"]})
    assert str(error) == "parameters.command: unknown parameter"


def test_defaults_are_copies() -> None:
    doc = doc_with(items={"type": "StringList", "default": ["a"]})
    resolve_parameters(doc, {})["items"].append("b")
    assert resolve_parameters(doc, {})["items"] == ["a"]


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("String", "text", "text"),
        ("String", ["text"], "text"),  # AWS's API form: every value a list
        ("StringList", "one", ["one"]),
        ("StringList", ["a", "b"], ["a", "b"]),
        ("StringList", [], []),
        ("Integer", 5, 5),
        ("Integer", "5", 5),
        ("Integer", " -12 ", -12),
        ("Integer", ["7"], 7),
        ("Boolean", True, True),
        ("Boolean", "true", True),
        ("Boolean", "FALSE", False),
        ("StringMap", {"Env": "Prod"}, {"Env": "Prod"}),
        ("StringMap", '{"Env": "Prod"}', {"Env": "Prod"}),
        ("MapList", [{"a": "1"}, {"b": "2"}], [{"a": "1"}, {"b": "2"}]),
        ("MapList", '[{"a": "1"}]', [{"a": "1"}]),
    ],
)
def test_values_are_typed(kind: str, given: Any, expected: Any) -> None:
    doc = doc_with(p={"type": kind})
    assert resolve_parameters(doc, {"p": given}) == {"p": expected}


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("String", 5, "parameters.p: must be a string"),
        ("String", ["a", "b"], "parameters.p: must be a string"),
        ("StringList", {"a": 1}, "parameters.p: must be a list of strings"),
        ("StringList", ["a", 2], "parameters.p[1]: must be a string"),
        ("Integer", "5.5", "parameters.p: must be an integer, not '5.5'"),
        ("Integer", True, "parameters.p: must be an integer"),
        ("Integer", 2.0, "parameters.p: must be an integer"),
        ("Boolean", "yes", "parameters.p: must be true or false, not 'yes'"),
        ("Boolean", 1, "parameters.p: must be true or false"),
        ("StringMap", ["a"], "parameters.p: must be a StringMap (JSON)"),
        ("StringMap", "{not json", "parameters.p: must be a StringMap (JSON)"),
        ("MapList", [{"a": 1}, "b"], "parameters.p[1]: must be an object"),
        ("MapList", {"a": 1}, "parameters.p: must be a list of objects"),
    ],
)
def test_values_of_the_wrong_type_are_refused(kind: str, given: Any, expected: str) -> None:
    doc = doc_with(p={"type": kind})
    assert str(resolve_error(doc, {"p": given})).startswith(expected)


def test_allowed_values() -> None:
    doc = doc_with(
        env={"type": "String", "allowedValues": ["dev", "prod"]},
        n={"type": "Integer", "allowedValues": [1, "2"], "default": 1},
        flags={"type": "StringList", "allowedValues": ["-a", "-b"], "default": []},
    )
    assert resolve_parameters(doc, {"env": "prod", "n": "2", "flags": ["-b", "-a"]})["n"] == 2
    error = resolve_error(doc, {"env": "staging"})
    assert str(error) == "parameters.env: 'staging' is not one of the allowed values: dev, prod"
    assert resolve_error(doc, {"env": "dev", "n": 3}).path == "parameters.n"
    assert resolve_error(doc, {"env": "dev", "flags": ["-a", "-c"]}).path == "parameters.flags[1]"


AWS_TIMEOUT = SHELL.parameters["executionTimeout"].allowed_pattern


@pytest.mark.parametrize("value", ["1", "5", "3600", "99999", "100000", "169999", "172799",
                                   "172800"])
def test_aws_execution_timeout_pattern_accepts(value: str) -> None:
    assert resolve_parameters(SHELL, {"commands": ["x"], "executionTimeout": value})


@pytest.mark.parametrize("value", ["0", "172801", "999999", "-1", "36o0", "", "3600\n",
                                   "3600; reboot"])
def test_aws_execution_timeout_pattern_refuses(value: str) -> None:
    error = resolve_error(SHELL, {"commands": ["x"], "executionTimeout": value})
    assert error.path == "parameters.executionTimeout"
    assert f"does not match allowedPattern {AWS_TIMEOUT}" in error.reason


def test_allowed_pattern_must_match_the_whole_value_and_applies_to_each_list_item() -> None:
    doc = doc_with(
        name={"type": "String", "allowedPattern": "^[a-zA-Z0-9]+$"},
        hosts={"type": "StringList", "allowedPattern": "[a-z.]+", "default": []},
    )
    assert resolve_parameters(doc, {"name": "web01", "hosts": ["a.example"]})
    for hostile in ["web01; rm -rf /", "$(id)", "`id`", "web01\n", "a b"]:
        assert resolve_error(doc, {"name": hostile}).path == "parameters.name"
    assert resolve_error(doc, {"name": "ok", "hosts": ["a.b", "C"]}).path == "parameters.hosts[1]"


def test_a_default_failing_its_own_pattern_is_refused_when_used() -> None:
    doc = doc_with(id={"type": "String", "default": "", "allowedPattern": "^i-[0-9a-f]+$"})
    assert resolve_parameters(doc, {"id": "i-0abc"}) == {"id": "i-0abc"}
    assert resolve_error(doc, {}).path == "parameters.id"


def test_item_and_character_bounds() -> None:
    doc = doc_with(
        cmds={"type": "StringList", "minItems": 1, "maxItems": 2, "maxChars": 5},
        word={"type": "String", "minChars": 2, "maxChars": 4, "default": "ab"},
        tags={"type": "StringMap", "maxItems": 1, "maxChars": 20, "default": {}},
    )
    assert resolve_parameters(doc, {"cmds": ["ls"]})["word"] == "ab"
    cases = [
        ({"cmds": []}, "parameters.cmds: has 0 item(s); at least 1 required"),
        ({"cmds": ["a", "b", "c"]}, "parameters.cmds: has 3 item(s); at most 2 allowed"),
        ({"cmds": ["a", "toolong"]}, "parameters.cmds[1]: has 7 character(s); at most 5 allowed"),
        ({"cmds": ["a"], "word": "a"}, "parameters.word: has 1 character(s); at least 2"),
        ({"cmds": ["a"], "word": "abcde"}, "parameters.word: has 5 character(s); at most 4"),
        ({"cmds": ["a"], "tags": {"a": "1", "b": "2"}}, "parameters.tags: has 2 item(s)"),
        ({"cmds": ["a"], "tags": {"a": "x" * 20}}, "parameters.tags: has 28 character(s)"),
    ]
    for given, expected in cases:
        assert str(resolve_error(doc, given)).startswith(expected)


def test_an_ssm_reference_is_left_for_parameter_store_and_checked_after() -> None:
    doc = doc_with(port={"type": "Integer"},
                   host={"type": "String", "allowedPattern": "^[a-z.]+$"},
                   names={"type": "StringList", "allowedPattern": "^[a-z]+$"})
    given = {"port": "{{ssm:/app/port}}", "host": "{{ ssm:/app/host }}",
             "names": ["web", "{{ssm:/app/extra}}"]}
    assert resolve_parameters(doc, given) == given
    resolved = {"port": "8080", "host": "db.internal", "names": ["web", "API"]}
    assert resolve_error(doc, resolved).path == "parameters.names[1]"


def test_parameters_whose_default_is_an_ssm_reference() -> None:
    doc = doc_with(region={"type": "String", "default": "{{ssm:/corral/region}}"})
    assert resolve_parameters(doc, {}) == {"region": "{{ssm:/corral/region}}"}


# --- parse_param_args -----------------------------------------------------------------------


def test_cli_arguments_are_typed() -> None:
    doc = doc_with(
        s={"type": "String", "default": ""}, n={"type": "Integer", "default": 0},
        b={"type": "Boolean", "default": False}, m={"type": "StringMap", "default": {}},
        ml={"type": "MapList", "default": []}, sl={"type": "StringList", "default": []},
    )
    args = ["s=a=b", "n=42", "b=true", 'm={"k": "v"}', 'ml=[{"a": "1"}]', "sl=one"]
    assert parse_param_args(doc, args) == {
        "s": "a=b", "n": 42, "b": True, "m": {"k": "v"}, "ml": [{"a": "1"}], "sl": ["one"]}


def test_a_string_list_takes_a_json_array_or_one_command_and_repeats_append() -> None:
    doc = SHELL
    args = ["commands=echo a, b", 'commands=["ls -l", "df -h"]', "commands=[ -f /x ] && echo y",
            "commands=[not json"]
    assert parse_param_args(doc, args) == {"commands": [
        "echo a, b", "ls -l", "df -h", "[ -f /x ] && echo y", "[not json"]}
    assert parse_param_args(doc, ["commands="]) == {"commands": [""]}
    assert parse_param_args(doc, ["commands=[1, 2]"]) == {"commands": ["[1, 2]"]}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope=1"], "parameters.nope: unknown parameter"),
        (["commands"], "parameters: expected name=value, got 'commands'"),
        (["=x"], "parameters: expected name=value"),
        (["workingDirectory=/a", "workingDirectory=/b"],
         "parameters.workingDirectory: given more than once"),
    ],
)
def test_bad_cli_arguments(args: list[str], expected: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_param_args(SHELL, args)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("Integer", "many", "parameters.p: must be an integer, not 'many'"),
        ("Boolean", "maybe", "parameters.p: must be true or false"),
        ("StringMap", "{oops", "parameters.p: must be JSON"),
        ("StringMap", "[1]", "parameters.p: must be an object"),
    ],
)
def test_bad_cli_values(kind: str, text: str, expected: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_param_args(doc_with(p={"type": kind}), [f"p={text}"])
    assert str(info.value).startswith(expected)


def test_cli_values_then_resolve_give_the_complete_set() -> None:
    values = resolve_parameters(SHELL, parse_param_args(SHELL, ["commands=uptime",
                                                                "executionTimeout=60"]))
    assert values == {"commands": ["uptime"], "workingDirectory": "", "executionTimeout": "60"}
