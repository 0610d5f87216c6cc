"""The action catalog and the built-in roles (admin, operator, viewer)."""

from __future__ import annotations

import json

import pytest

from control_plane.security.actions import (
    ACTIONS,
    RESOURCE_TYPES,
    known_action,
    lookup,
    matching_actions,
    resource_name,
)
from control_plane.security.policy import evaluate, parse_policy, policy_warnings
from control_plane.security.roles import ROLE_NAMES, role_document, role_policy

REQUIRED = """
activations:Create activations:List activations:Get activations:Delete
nodes:List nodes:Get nodes:Tag nodes:Untag nodes:Ping nodes:Deregister
documents:Create documents:List documents:Get documents:Update documents:SetDefault
documents:Delete documents:ListVersions
commands:Send commands:List commands:Get commands:Cancel commands:GetOutput
groups:Create groups:List groups:Get groups:Delete webhooks:Create webhooks:List webhooks:Delete
events:Subscribe tokens:Create tokens:List tokens:Get tokens:Revoke
policies:Get policies:List policies:Simulate audit:List audit:Export audit:Verify
parameters:Put parameters:Get parameters:GetDecrypted parameters:List parameters:GetHistory
parameters:Label parameters:Unlabel parameters:Delete identity:WhoAmI
"""


def test_the_catalog_holds_every_action_the_api_needs() -> None:
    assert sorted(set(REQUIRED.split()) - set(ACTIONS)) == []


@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_action_is_well_formed(name: str) -> None:
    action = ACTIONS[name]
    service, verb = name.split(":")
    assert service.isalpha() and verb.isalpha() and verb[0].isupper()
    assert action.resource_types
    assert all(t in RESOURCE_TYPES or t == "*" for t in action.resource_types)
    assert not action.sensitive or action.read_only


def test_only_command_output_and_secret_values_are_sensitive() -> None:
    sensitive = {name for name, action in ACTIONS.items() if action.sensitive}
    assert sensitive == {"commands:GetOutput", "parameters:GetDecrypted", "sessions:GetRecording"}


def test_lookup_and_wildcards_are_case_insensitive() -> None:
    assert known_action("commands:Send") and known_action("COMMANDS:send")
    assert not known_action("commands:Sned")
    assert lookup("nodes:get") is ACTIONS["nodes:Get"]
    assert lookup("nodes:Reboot") is None
    assert matching_actions("nodes:*tag") == ("nodes:Tag", "nodes:Untag")
    assert matching_actions("*:Simulate") == ("policies:Simulate",)
    assert matching_actions("documents:?et") == ("documents:Get",)
    assert matching_actions("*") == tuple(ACTIONS)
    assert matching_actions("nope:*") == ()


def test_resource_names() -> None:
    assert resource_name("parameter", "/app/prod/db-url") == "parameter/app/prod/db-url"
    assert resource_name("node", "mi-0123456789abcdef0") == "node/mi-0123456789abcdef0"


# --- roles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_roles_are_documents_of_the_policy_language(role: str) -> None:
    document = role_document(role)
    text = json.dumps(document, indent=2)
    parsed = parse_policy(text, name=role)
    assert parsed.document == document
    assert policy_warnings(parsed) == []
    assert role_policy(role).name == role
    assert json.loads(role_policy(role).to_json()) == document


def test_role_documents_are_copies() -> None:
    role_document("admin")["Statement"].clear()
    assert role_document("admin")["Statement"]
    with pytest.raises(KeyError):
        role_document("root")


def resource_for(name: str) -> str:
    kind = ACTIONS[name].resource_type
    return "*" if kind == "*" else f"{kind}/x"


@pytest.mark.parametrize("name", list(ACTIONS))
def test_admin_may_do_everything(name: str) -> None:
    assert evaluate([role_policy("admin")], name, resource_for(name)).allowed


OPERATOR_DENIED = {"tokens:Create", "tokens:Revoke", "parameters:GetDecrypted"}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_operator_may_do_everything_but_manage_tokens_and_read_secrets(name: str) -> None:
    decision = evaluate([role_policy("operator")], name, resource_for(name))
    assert decision.allowed is (name not in OPERATOR_DENIED)
    if name in OPERATOR_DENIED:
        assert decision.reason == "explicit-deny"


@pytest.mark.parametrize("name", list(ACTIONS))
def test_viewer_only_reads_and_never_sees_output_or_secrets(name: str) -> None:
    action = ACTIONS[name]
    decision = evaluate([role_policy("viewer")], name, resource_for(name))
    assert decision.allowed is (action.read_only and not action.sensitive)


@pytest.mark.parametrize(
    ("role", "action", "resource", "allowed"),
    [
        ("viewer", "commands:Send", "node/mi-0123456789abcdef0", False),
        ("viewer", "commands:GetOutput", "command/c-1", False),
        ("viewer", "parameters:GetDecrypted", "parameter/app/db", False),
        ("viewer", "nodes:Tag", "node/mi-1", False),
        ("viewer", "nodes:List", "node/mi-1", True),
        ("viewer", "audit:Verify", "audit/trail", True),
        ("operator", "commands:Send", "node/mi-0123456789abcdef0", True),
        ("operator", "commands:GetOutput", "command/c-1", True),
        ("operator", "parameters:GetDecrypted", "parameter/app/db", False),
        ("operator", "parameters:Get", "parameter/app/db", True),
        ("operator", "tokens:List", "token/t-1", True),
        ("operator", "tokens:Create", "token/t-2", False),
        ("admin", "parameters:GetDecrypted", "parameter/app/db", True),
    ],
)
def test_roles_behave_as_documented(role: str, action: str, resource: str, allowed: bool) -> None:
    assert evaluate([role_policy(role)], action, resource).allowed is allowed
