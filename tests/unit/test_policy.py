"""The policy language: every parse error names its statement and field, and evaluation follows
IAM (explicit Deny, then Allow, else implicit deny) with wildcards and conditions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any

import pytest

from control_plane.errors import InvalidRequest
from control_plane.security.policy import (
    VERSION,
    Policy,
    PolicyError,
    evaluate,
    parse_policy,
)


def stmt(
    effect: str = "Allow", action: Any = "*", resource: Any = "*", **more: Any
) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **more}


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": list(statements)}


def policy(*statements: dict[str, Any], name: str = "p") -> Policy:
    return parse_policy(doc(*statements), name=name)


def error_of(source: Any) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(source)
    return info.value.message


# --- parsing ------------------------------------------------------------------------------------

COND = "Statement[0].Condition"
PARSE_ERRORS: list[tuple[Any, str]] = [
    # JSON itself
    ("not json", "policy is not valid JSON: line 1 column 1: Expecting value"),
    (
        '{\n  "Version": "2026-01-01",\n  "Statement": [\n    {"Effect": "Allow" "Action": "*"}',
        "policy is not valid JSON: line 4 column 24: Expecting ',' delimiter",
    ),
    (
        '{"Version": "2026-01-01", "Version": "x"}',
        'policy is not valid JSON: duplicate key "Version"',
    ),
    ('{"Version": NaN}', "policy is not valid JSON: NaN is not a JSON value"),
    (b'{"Version": "\xff"}', "policy is not valid JSON: not UTF-8 text"),
    ("[" * 5000, "policy is not valid JSON: nested too deeply"),
    (" " * 70000, "policy: larger than 65536 bytes"),
    # the document
    ("[]", "policy: must be a JSON object"),
    (
        {"Version": VERSION, "Statement": [stmt()], "Statment": []},
        'policy: unknown key "Statment" (did you mean "Statement"?)',
    ),
    (
        {"Version": VERSION, "Id": "x", "Statement": [stmt()]},
        'policy: unknown key "Id" (allowed: Version, Statement)',
    ),
    ({"Statement": [stmt()]}, 'Version: required (use "2026-01-01")'),
    ({"Version": "2012-10-17", "Statement": [stmt()]}, 'Version: must be "2026-01-01"'),
    ({"Version": VERSION}, "Statement: required"),
    ({"Version": VERSION, "Statement": "Allow"}, "Statement: must be a list of statements"),
    ({"Version": VERSION, "Statement": []}, "Statement: must not be empty"),
    (doc(*[stmt()] * 101), "Statement: at most 100 statements"),
    ({"Version": VERSION, "Statement": [stmt(), "Allow"]}, "Statement[1]: must be an object"),
    (
        {"Version": VERSION, "Statement": {"x": 1}},
        'Statement[0]: unknown key "x" (allowed: Sid, Effect, Action, Resource, Condition)',
    ),
    # statement keys
    (
        doc(stmt(), stmt(Actions="*")),
        'Statement[1]: unknown key "Actions" (did you mean "Action"?)',
    ),
    (
        doc(stmt(NotAction="x")),
        'Statement[0]: unknown key "NotAction" (not supported: write a Deny statement instead)',
    ),
    (
        doc(stmt(Principal="*")),
        'Statement[0]: unknown key "Principal" (not supported: a policy is attached to a token)',
    ),
    (doc(stmt(Sid="has space")), 'Statement[0].Sid: must be 1-128 letters, digits, "-" or "_"'),
    (doc(stmt(Sid=7)), 'Statement[0].Sid: must be 1-128 letters, digits, "-" or "_"'),
    (
        doc(stmt(Sid="A"), stmt(), stmt(Sid="A")),
        'Statement[2].Sid: duplicate "A" (also Statement[0])',
    ),
    (doc({"Action": "*", "Resource": "*"}), "Statement[0].Effect: required"),
    (doc(stmt(effect="allow")), 'Statement[0].Effect: must be "Allow" or "Deny"'),
    # Action
    (doc({"Effect": "Allow", "Resource": "*"}), "Statement[0].Action: required"),
    (doc(stmt(action=[])), "Statement[0].Action: must not be empty"),
    (doc(stmt(action=3)), "Statement[0].Action: must be a string or a list of strings"),
    (doc(stmt(action=["nodes:Get", None])), "Statement[0].Action[1]: must be a string"),
    (doc(stmt(action=["nodes:Get"] * 101)), "Statement[0].Action: at most 100 entries"),
    (doc(stmt(action="commands")), 'Statement[0].Action: "commands" is not "service:Verb" or "*"'),
    (
        doc(stmt(action="commands:Send Now")),
        'Statement[0].Action: "commands:Send Now" is not "service:Verb" or "*"',
    ),
    (
        doc(stmt(), stmt(), stmt(action=["comands:Send"])),
        'Statement[2].Action[0]: unknown action "comands:Send" (did you mean "commands:Send"?)',
    ),
    (doc(stmt(action="zzz:Qqq")), 'Statement[0].Action: unknown action "zzz:Qqq"'),
    (
        doc(stmt(action=["nodes:*", "comands:*"])),
        'Statement[0].Action[1]: "comands:*" matches no known action',
    ),
    # Resource
    (doc({"Effect": "Allow", "Action": "*"}), "Statement[0].Resource: required"),
    (doc(stmt(resource="")), "Statement[0].Resource: must not be empty"),
    (doc(stmt(resource=["node/*", {}])), "Statement[0].Resource[1]: must be a string"),
    (doc(stmt(resource="node/a\nb")), "Statement[0].Resource: must not contain control characters"),
    (doc(stmt(resource="node/" + "a" * 1020)), "Statement[0].Resource: at most 1024 characters"),
    (
        doc(stmt(resource="mi-0123")),
        'Statement[0].Resource: "mi-0123" is not "*" or "<type>/<name>"',
    ),
    (doc(stmt(resource="?")), 'Statement[0].Resource: "?" is not "*" or "<type>/<name>"'),
    (
        doc(stmt(resource=["node/*", "nodes/*"])),
        'Statement[0].Resource[1]: unknown resource type "nodes" (did you mean "node"?)',
    ),
    (
        doc(stmt(resource="xyz/1")),
        'Statement[0].Resource: unknown resource type "xyz" (known: activation, association, '
        "audit, baseline, calendar, command, document, group, inventory, node, parameter, policy, "
        "session, token, "
        "webhook, window)",
    ),
    # Condition
    (
        doc(stmt(Condition=[])),
        "Statement[0].Condition: must be a non-empty object of operator: {key: value}",
    ),
    (
        doc(stmt(Condition={})),
        "Statement[0].Condition: must be a non-empty object of operator: {key: value}",
    ),
    (
        doc(stmt(Condition={"StringEqual": {"node:tag/team": "web"}})),
        'Statement[0].Condition: unknown operator "StringEqual" (did you mean "StringEquals"?)',
    ),
    (
        doc(stmt(Condition={"ForAnyValue:StringLike": {}})),
        'Statement[0].Condition: unknown operator "ForAnyValue:StringLike"'
        ' (did you mean "StringLike"?)',
    ),
    (
        doc(stmt(Condition={"StringEquals": "web"})),
        "Statement[0].Condition.StringEquals: must be a non-empty object of key: value(s)",
    ),
    (
        doc(stmt(Condition={"IpAddress": {"soruce_ip": "10.0.0.0/8"}})),
        f'{COND}.IpAddress: unknown condition key "soruce_ip" (did you mean "source_ip"?)',
    ),
    (
        doc(stmt(Condition={"StringEquals": {"node:tag/": "x"}})),
        f'{COND}.StringEquals: unknown condition key "node:tag/" (did you mean "node:tag/<key>"?)',
    ),
    (
        doc(stmt(Condition={"IpAddress": {"token:id": "10.0.0.0/8"}})),
        f'{COND}.IpAddress: "token:id" is a string key; IpAddress needs an IP address key',
    ),
    (
        doc(stmt(Condition={"StringEquals": {"source_ip": "10.0.0.1"}})),
        f'{COND}.StringEquals: "source_ip" is an IP address key; StringEquals needs a string key',
    ),
    (
        doc(stmt(Condition={"StringEquals": {"node:tag/team": 5}})),
        "Statement[0].Condition.StringEquals.node:tag/team: must be a string or a list of strings",
    ),
    (
        doc(stmt(Condition={"StringEquals": {"node:tag/team": []}})),
        "Statement[0].Condition.StringEquals.node:tag/team: must not be empty",
    ),
    (
        doc(stmt(Condition={"StringEquals": {"node:tag/team": ["x"] * 101}})),
        "Statement[0].Condition.StringEquals.node:tag/team: at most 100 values",
    ),
    (
        doc(stmt(Condition={"IpAddress": {"source_ip": ["10.0.0.0/8", "10.0.0.0/33"]}})),
        f'{COND}.IpAddress.source_ip: "10.0.0.0/33" is not an IP address or CIDR block',
    ),
    (
        doc(stmt(Condition={"DateLessThan": {"current_time": "next tuesday"}})),
        f'{COND}.DateLessThan.current_time: "next tuesday" is not an ISO 8601 date-time',
    ),
    (
        doc(stmt(Condition={"Bool": {"secure_transport": "yes"}})),
        'Statement[0].Condition.Bool.secure_transport: "yes" is not "true" or "false"',
    ),
    (
        doc(stmt(Condition={"StringEquals": {"node:tag/team": True}})),
        "Statement[0].Condition.StringEquals.node:tag/team: must be a string or a list of strings",
    ),
    # size, as decoded objects too
    (
        doc(*[stmt(action=["nodes:Get"] * 60)] * 20),
        "policy: 15338 bytes without whitespace; at most 10240",
    ),
    (
        {"Version": VERSION, "Statement": [stmt(Sid={1, 2})]},
        "policy: holds values that are not JSON",
    ),
]


@pytest.mark.parametrize(("source", "message"), PARSE_ERRORS)
def test_a_bad_policy_is_refused_with_one_line_naming_the_field(source: Any, message: str) -> None:
    assert error_of(source) == message


def test_a_policy_error_is_a_400_of_the_error_tree() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_policy("{")
    assert info.value.status == 400
    assert "\n" not in info.value.message


def test_text_bytes_and_objects_read_alike_and_keep_the_document() -> None:
    document = doc(stmt(action=["commands:Send"], resource="node/*", Sid="Run"))
    text = json.dumps(document, indent=4)
    for source in (document, text, text.encode(), b"\xef\xbb\xbf" + text.encode()):
        parsed = parse_policy(source, name="ci")
        assert parsed.name == "ci"
        assert parsed.document == document
        assert json.loads(parsed.to_json()) == document
        assert parsed.statements[0].sid == "Run"


def test_whitespace_does_not_count_towards_the_size_limit() -> None:
    statements = [stmt(action=["nodes:Get"] * 40)] * 14
    text = json.dumps(doc(*statements), indent=8)
    assert len(text) > 10 * 1024
    assert len(parse_policy(text).statements) == 14


def test_single_statement_object_and_single_strings_are_accepted() -> None:
    parsed = parse_policy({"Version": VERSION, "Statement": stmt(action="nodes:Get")})
    assert evaluate([parsed], "nodes:Get", "node/mi-1").allowed


def test_the_document_kept_is_a_copy() -> None:
    document = doc(stmt(action=["nodes:Get"]))
    parsed = parse_policy(document)
    document["Statement"][0]["Action"].append("nodes:Tag")
    assert parsed.document["Statement"][0]["Action"] == ["nodes:Get"]


# --- evaluation ---------------------------------------------------------------------------------

NODE = "node/mi-0123456789abcdef0"

EVALUATIONS: list[tuple[list[dict[str, Any]], str, str, str, int | None]] = [
    # (statements, action, resource, reason, deciding statement index)
    ([stmt()], "commands:Send", NODE, "allow", 0),
    ([stmt(action="nodes:Get")], "commands:Send", NODE, "implicit-deny", None),
    ([stmt(resource="document/*")], "nodes:Get", NODE, "implicit-deny", None),
    ([stmt(), stmt("Deny", "commands:Send", "node/*")], "commands:Send", NODE, "explicit-deny", 1),
    ([stmt("Deny", "commands:Send", "node/*"), stmt()], "commands:Send", NODE, "explicit-deny", 0),
    ([stmt(), stmt("Deny", "commands:Send", "node/*")], "nodes:Get", NODE, "allow", 0),
    ([stmt("Deny")], "nodes:Get", NODE, "explicit-deny", 0),
    ([stmt("Deny", resource="document/*")], "nodes:Get", NODE, "implicit-deny", None),
    # action wildcards, case-insensitive as in IAM
    ([stmt(action="commands:*")], "commands:GetOutput", "command/c1", "allow", 0),
    ([stmt(action="commands:*")], "nodes:Get", NODE, "implicit-deny", None),
    ([stmt(action="*:Get")], "documents:Get", "document/AWS-RunShellScript", "allow", 0),
    ([stmt(action="*:Get")], "documents:List", "document/x", "implicit-deny", None),
    ([stmt(action="nodes:?ag")], "nodes:Tag", NODE, "allow", 0),
    ([stmt(action="nodes:?ag")], "nodes:Untag", NODE, "implicit-deny", None),
    ([stmt(action="COMMANDS:send")], "commands:Send", NODE, "allow", 0),
    ([stmt(action="commands:Send")], "Commands:SEND", NODE, "allow", 0),
    ([stmt(action="parameters:Get*")], "parameters:GetDecrypted", "parameter/a", "allow", 0),
    # resource wildcards, case-sensitive; * crosses "/"
    ([stmt(resource="node/mi-0123456789abcdef?")], "nodes:Get", NODE, "allow", 0),
    (
        [stmt(resource="node/mi-0123456789abcdef?")],
        "nodes:Get",
        "node/mi-0123456789abcdef00",
        "implicit-deny",
        None,
    ),
    ([stmt(resource="node/mi-0123456789abcdef0")], "nodes:Get", NODE, "allow", 0),
    ([stmt(resource="node/mi-0123456789abcdef0")], "nodes:Get", NODE + "1", "implicit-deny", None),
    ([stmt(resource="document/AWS-*")], "documents:Get", "document/AWS-RunShellScript", "allow", 0),
    (
        [stmt(resource="document/AWS-*")],
        "documents:Get",
        "document/aws-RunShellScript",
        "implicit-deny",
        None,
    ),
    (
        [stmt(resource="parameter/app/prod/*")],
        "parameters:Get",
        "parameter/app/prod/db/url",
        "allow",
        0,
    ),
    (
        [stmt(resource="parameter/app/prod/*")],
        "parameters:Get",
        "parameter/app/staging/db",
        "implicit-deny",
        None,
    ),
    ([stmt(resource="parameter/app/*/db")], "parameters:Get", "parameter/app/prod/db", "allow", 0),
    (
        [stmt(resource="parameter/app/*/db")],
        "parameters:Get",
        "parameter/app/prod/dbx",
        "implicit-deny",
        None,
    ),
    ([stmt(resource="*/prod-*")], "nodes:Get", "node/prod-1", "allow", 0),
    ([stmt(resource=["document/*", "node/mi-?*"])], "nodes:Get", NODE, "allow", 0),
    ([stmt(resource="node/*")], "identity:WhoAmI", "*", "implicit-deny", None),
    ([stmt(resource="*")], "identity:WhoAmI", "*", "allow", 0),
    # the first Allow that applies decides
    ([stmt(action="nodes:List"), stmt(action="nodes:Get"), stmt()], "nodes:Get", NODE, "allow", 1),
]


@pytest.mark.parametrize(("statements", "action", "resource", "reason", "index"), EVALUATIONS)
def test_evaluation_follows_iam(
    statements: list[dict[str, Any]], action: str, resource: str, reason: str, index: int | None
) -> None:
    decision = evaluate([policy(*statements)], action, resource)
    assert (decision.allowed, decision.reason, decision.statement_index) == (
        reason == "allow",
        reason,
        index,
    )


def test_a_deny_in_any_policy_wins_over_an_allow_in_another() -> None:
    allow = policy(stmt(), name="team")
    deny = policy(stmt("Deny", "commands:Send", "node/*", Sid="NoRun"), name="guard")
    decision = evaluate([allow, deny], "commands:Send", NODE)
    assert (decision.allowed, decision.reason) == (False, "explicit-deny")
    assert (decision.policy_name, decision.statement_index, decision.sid) == ("guard", 0, "NoRun")
    assert decision.describe() == 'denied by guard Statement[0] ("NoRun")'
    other = evaluate([allow, deny], "nodes:Get", NODE)
    assert other.describe() == "allowed by team Statement[0]"


def test_no_policy_at_all_is_an_implicit_deny() -> None:
    decision = evaluate([], "identity:WhoAmI", "*")
    assert (decision.allowed, decision.reason, decision.policy_name) == (
        False,
        "implicit-deny",
        None,
    )
    assert decision.describe() == "denied: no statement allows it"


def test_an_action_missing_from_the_catalog_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="nodes:Reboot"):
        evaluate([policy(stmt())], "nodes:Reboot", NODE)


# --- conditions ---------------------------------------------------------------------------------

T0 = "2026-06-01T00:00:00Z"
CONDITIONS: list[tuple[str, str, Any, dict[str, Any], bool]] = [
    # (operator, key, values, context, applies)
    ("StringEquals", "node:tag/team", "web", {"node:tag/team": "web"}, True),
    ("StringEquals", "node:tag/team", "web", {"node:tag/team": "Web"}, False),
    ("StringEquals", "node:tag/team", "web", {}, False),
    ("StringEquals", "node:tag/team", ["db", "web"], {"node:tag/team": "web"}, True),
    ("StringEquals", "node:tag/team", ["db", "web"], {"node:tag/team": "api"}, False),
    ("StringNotEquals", "node:tag/team", "web", {"node:tag/team": "web"}, False),
    ("StringNotEquals", "node:tag/team", "web", {"node:tag/team": "db"}, True),
    ("StringNotEquals", "node:tag/team", "web", {}, True),
    ("StringNotEquals", "node:tag/team", ["db", "web"], {"node:tag/team": "db"}, False),
    ("StringEqualsIgnoreCase", "token:name", "CI", {"token:name": "ci"}, True),
    ("StringEqualsIgnoreCase", "token:name", "CI", {"token:name": "cd"}, False),
    ("StringEqualsIgnoreCase", "token:name", "CI", {}, False),
    ("StringNotEqualsIgnoreCase", "token:name", "CI", {"token:name": "Ci"}, False),
    ("StringNotEqualsIgnoreCase", "token:name", "CI", {"token:name": "cd"}, True),
    ("StringNotEqualsIgnoreCase", "token:name", "CI", {}, True),
    ("StringLike", "node:tag/env", "prod-*", {"node:tag/env": "prod-eu"}, True),
    ("StringLike", "node:tag/env", "prod-*", {"node:tag/env": "PROD-eu"}, False),
    ("StringLike", "node:tag/env", "prod-*", {}, False),
    ("StringLike", "node:tag/env", ["dev", "p?od"], {"node:tag/env": "prod"}, True),
    ("StringLike", "node:tag/env", "p?od", {"node:tag/env": "pod"}, False),
    ("StringNotLike", "node:tag/env", "prod-*", {"node:tag/env": "prod-eu"}, False),
    ("StringNotLike", "node:tag/env", "prod-*", {"node:tag/env": "dev"}, True),
    ("StringNotLike", "node:tag/env", "prod-*", {}, True),
    ("IpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "10.20.30.40"}, True),
    ("IpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "192.168.1.1"}, False),
    ("IpAddress", "source_ip", "10.0.0.0/8", {}, False),
    ("IpAddress", "source_ip", "203.0.113.7", {"source_ip": "203.0.113.7"}, True),
    ("IpAddress", "source_ip", "203.0.113.7", {"source_ip": "203.0.113.8"}, False),
    ("IpAddress", "source_ip", ["192.168.0.0/16", "10.0.0.0/8"], {"source_ip": "10.0.0.1"}, True),
    ("IpAddress", "source_ip", "2001:db8::/32", {"source_ip": "2001:db8::1"}, True),
    ("IpAddress", "source_ip", "2001:db8::/32", {"source_ip": "2001:db9::1"}, False),
    ("IpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "::ffff:10.1.2.3"}, True),
    ("IpAddress", "source_ip", "::/0", {"source_ip": "10.1.2.3"}, False),
    ("IpAddress", "source_ip", "10.0.0.0/8", {"source_ip": ip_address("10.9.9.9")}, True),
    ("NotIpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "10.1.1.1"}, False),
    ("NotIpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "8.8.8.8"}, True),
    ("NotIpAddress", "source_ip", "10.0.0.0/8", {}, True),
    ("DateLessThan", "current_time", T0, {"current_time": "2026-05-31T23:59:59Z"}, True),
    ("DateLessThan", "current_time", T0, {"current_time": T0}, False),
    ("DateLessThan", "current_time", T0, {"current_time": "2026-06-01T01:00:00+02:00"}, True),
    ("DateLessThan", "current_time", T0, {"current_time": datetime(2026, 5, 1, tzinfo=UTC)}, True),
    ("DateLessThan", "current_time", T0, {"current_time": datetime(2026, 7, 1)}, False),
    ("DateLessThan", "current_time", "2999-01-01T00:00:00Z", {}, True),  # the clock fills it
    ("DateLessThan", "current_time", "2000-01-01T00:00:00Z", {}, False),
    ("DateLessThanEquals", "current_time", T0, {"current_time": T0}, True),
    ("DateLessThanEquals", "current_time", T0, {"current_time": "2026-06-01T00:00:01Z"}, False),
    ("DateGreaterThan", "current_time", T0, {"current_time": "2026-06-01T00:00:01Z"}, True),
    ("DateGreaterThan", "current_time", T0, {"current_time": T0}, False),
    ("DateGreaterThan", "current_time", "2000-01-01", {}, True),
    ("DateGreaterThanEquals", "current_time", T0, {"current_time": T0}, True),
    ("DateGreaterThanEquals", "current_time", T0, {"current_time": "2026-05-31T00:00:00Z"}, False),
    ("DateEquals", "current_time", T0, {"current_time": "2026-06-01T02:00:00+02:00"}, True),
    ("DateEquals", "current_time", T0, {"current_time": "2026-06-01T02:00:00Z"}, False),
    ("DateNotEquals", "current_time", T0, {"current_time": T0}, False),
    ("DateNotEquals", "current_time", T0, {"current_time": "2026-06-02T00:00:00Z"}, True),
    ("Bool", "secure_transport", "true", {"secure_transport": True}, True),
    ("Bool", "secure_transport", "true", {"secure_transport": False}, False),
    ("Bool", "secure_transport", "true", {}, False),
    ("Bool", "secure_transport", True, {"secure_transport": "true"}, True),
    ("Bool", "secure_transport", ["false"], {"secure_transport": False}, True),
    ("Null", "node:tag/team", "true", {}, True),
    ("Null", "node:tag/team", "true", {"node:tag/team": "web"}, False),
    ("Null", "node:tag/team", "false", {"node:tag/team": "web"}, True),
    ("Null", "node:tag/team", "false", {}, False),
]


@pytest.mark.parametrize(("operator", "key", "values", "context", "applies"), CONDITIONS)
def test_condition_operators(
    operator: str, key: str, values: Any, context: dict[str, Any], applies: bool
) -> None:
    condition = {operator: {key: values}}
    allow = policy(stmt(Condition=condition))
    assert evaluate([allow], "nodes:Get", NODE, context).allowed is applies
    deny = policy(stmt(), stmt("Deny", Condition=condition))
    assert evaluate([deny], "nodes:Get", NODE, context).allowed is not applies


@pytest.mark.parametrize(
    ("context", "allowed"),
    [
        ({"node:tag/team": "web", "node:tag/env": "prod", "source_ip": "10.0.0.1"}, True),
        ({"node:tag/team": "web", "node:tag/env": "dev", "source_ip": "10.0.0.1"}, False),
        ({"node:tag/team": "web", "node:tag/env": "prod", "source_ip": "11.0.0.1"}, False),
        ({"node:tag/team": "web", "source_ip": "10.0.0.1"}, False),
        ({}, False),
    ],
)
def test_keys_and_operators_of_a_condition_are_all_required(
    context: dict[str, Any], allowed: bool
) -> None:
    condition = {
        "StringEquals": {"node:tag/team": "web", "node:tag/env": "prod"},
        "IpAddress": {"source_ip": "10.0.0.0/8"},
    }
    assert (
        evaluate([policy(stmt(Condition=condition))], "nodes:Get", NODE, context).allowed is allowed
    )


@pytest.mark.parametrize(
    ("operator", "key", "values", "context"),
    [
        ("IpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "not-an-ip"}),
        ("NotIpAddress", "source_ip", "10.0.0.0/8", {"source_ip": "not-an-ip"}),
        ("DateLessThan", "current_time", T0, {"current_time": "soon"}),
        ("Bool", "secure_transport", "true", {"secure_transport": "maybe"}),
        ("StringEquals", "node:tag/team", "web", {"node:tag/team": datetime(2026, 1, 1)}),
        ("StringNotEquals", "node:tag/team", "web", {"node:tag/team": datetime(2026, 1, 1)}),
    ],
)
def test_an_unreadable_context_value_fails_closed_for_allow_and_deny(
    operator: str, key: str, values: str, context: dict[str, Any]
) -> None:
    condition = {operator: {key: values}}
    assert not evaluate([policy(stmt(Condition=condition))], "nodes:Get", NODE, context).allowed
    guarded = policy(stmt(), stmt("Deny", Condition=condition))
    assert evaluate([guarded], "nodes:Get", NODE, context).reason == "explicit-deny"


def test_a_team_scoped_statement_only_reaches_its_nodes() -> None:
    team = policy(
        stmt(
            action=["commands:Send", "nodes:*"],
            resource="node/*",
            Condition={
                "StringEquals": {"node:tag/team": "web"},
                "IpAddress": {"source_ip": "10.0.0.0/8"},
            },
        ),
        stmt("Deny", "parameters:GetDecrypted", "parameter/*"),
        stmt(action="parameters:Get*", resource="parameter/web/*"),
    )
    office = {"source_ip": "10.1.1.1"}
    assert evaluate([team], "commands:Send", NODE, {**office, "node:tag/team": "web"}).allowed
    assert not evaluate([team], "commands:Send", NODE, {**office, "node:tag/team": "db"}).allowed
    assert not evaluate([team], "commands:Send", NODE, {"node:tag/team": "web"}).allowed
    assert evaluate([team], "parameters:Get", "parameter/web/db-url").allowed
    decision = evaluate([team], "parameters:GetDecrypted", "parameter/web/db-url")
    assert (decision.reason, decision.statement_index) == ("explicit-deny", 1)
