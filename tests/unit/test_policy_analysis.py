"""Static checks on policies: warnings for policies that allow nothing, and covers(), which
keeps a token from creating a token with more rights than it has."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.security.policy import VERSION, Policy, covers, parse_policy, policy_warnings
from control_plane.security.policy_glob import glob_covers, glob_may_start_with, globs_may_overlap
from control_plane.security.roles import role_policy


def stmt(
    effect: str = "Allow", action: Any = "*", resource: Any = "*", **more: Any
) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **more}


def policy(*statements: dict[str, Any], name: str = "p") -> Policy:
    return parse_policy({"Version": VERSION, "Statement": list(statements)}, name=name)


WEB = {"StringEquals": {"node:tag/team": "web"}}
TEAM = policy(
    stmt(action=["commands:Send", "nodes:*"], resource="node/*", Condition=WEB),
    stmt(action=["documents:Get", "commands:Send"], resource="document/AWS-*"),
    name="team",
)

# --- warnings -----------------------------------------------------------------------------------

WARNINGS: list[tuple[list[dict[str, Any]], list[str]]] = [
    ([stmt()], []),
    ([stmt(action="nodes:Get", resource="node/*", Condition=WEB)], []),
    ([stmt("Deny")], ["policy allows nothing: it has no Allow statement"]),
    (
        [
            stmt(action="nodes:*", resource="node/web-*"),
            stmt("Deny", "nodes:*", "node/*", Sid="No"),
        ],
        [
            'Statement[0] allows nothing: overridden by the Deny in Statement[1] ("No")',
            "policy allows nothing: every Allow statement is void",
        ],
    ),
    (
        [
            stmt(action=["nodes:Get", "nodes:Tag"], resource="node/*"),
            stmt("Deny", "nodes:Get", "*"),
            stmt("Deny", "nodes:Tag", "node/*"),
            stmt(action="documents:Get", resource="document/*"),
        ],
        ["Statement[0] allows nothing: overridden by the Deny in Statement[1], Statement[2]"],
    ),
    # a Deny that covers only part of the Allow, or only under a condition, leaves the rest
    ([stmt(action="nodes:*", resource="node/*"), stmt("Deny", "nodes:Tag", "node/*")], []),
    ([stmt(action="nodes:*", resource="node/*"), stmt("Deny", "nodes:*", "node/db-*")], []),
    ([stmt(action="nodes:Get", resource="node/*"), stmt("Deny", "nodes:Get", Condition=WEB)], []),
    (
        [stmt(action=["documents:Get", "nodes:Get"], resource="parameter/app/*")],
        [
            "Statement[0] allows nothing: no resource in it is of a type its actions act on "
            "(document, node)",
            "policy allows nothing: every Allow statement is void",
        ],
    ),
    (
        [stmt(action="identity:WhoAmI", resource="node/*"), stmt(action="nodes:Get", resource="*")],
        [
            "Statement[0] allows nothing: no resource in it is of a type its actions act on (*)",
        ],
    ),
]


@pytest.mark.parametrize(("statements", "expected"), WARNINGS)
def test_policies_that_allow_nothing_are_warned_about(
    statements: list[dict[str, Any]], expected: list[str]
) -> None:
    assert policy_warnings(policy(*statements)) == expected


# --- covers -------------------------------------------------------------------------------------


def test_admin_covers_every_role_and_every_policy() -> None:
    admin = [role_policy("admin")]
    for requested in (role_policy("admin"), role_policy("operator"), role_policy("viewer"), TEAM):
        assert covers(admin, [requested]) == []


def test_operator_cannot_grant_admin_and_is_told_what_it_lacks() -> None:
    assert covers([role_policy("operator")], [role_policy("admin")]) == [
        "tokens:Create on *",
        "tokens:Revoke on *",
        "parameters:GetDecrypted on *",
        "sessions:Start on *",  # as root
    ]


def test_viewer_cannot_grant_operator_nor_run_commands() -> None:
    missing = covers([role_policy("viewer")], [role_policy("operator")])
    assert "commands:Send on *" in missing
    assert "commands:GetOutput on *" in missing
    assert "nodes:List on *" not in missing


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_every_role_may_grant_itself_and_the_narrower_roles(role: str) -> None:
    order = ["viewer", "operator", "admin"]
    granter = [role_policy(role)]
    for narrower in order[: order.index(role) + 1]:
        assert covers(granter, [role_policy(narrower)]) == []


def test_a_tag_scoped_token_cannot_grant_all_nodes() -> None:
    everything_on_nodes = policy(stmt(action="nodes:List", resource="node/*"))
    assert covers([TEAM], [everything_on_nodes]) == ["nodes:List on node/*"]
    other_team = policy(
        stmt(
            action="nodes:List",
            resource="node/*",
            Condition={"StringEquals": {"node:tag/team": "db"}},
        )
    )
    assert covers([TEAM], [other_team]) == ["nodes:List on node/*"]


def test_an_equal_or_narrower_policy_is_covered() -> None:
    assert covers([TEAM], [TEAM]) == []
    narrower = policy(
        stmt(
            action="nodes:Get",
            resource="node/mi-0*",
            Condition={**WEB, "IpAddress": {"source_ip": "10.0.0.0/8"}},
        ),
        stmt(action="documents:Get", resource="document/AWS-RunShellScript"),
    )
    assert covers([TEAM], [narrower]) == []


GRANTS: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # (granter statement, requested statement, covered)
    (stmt(resource="node/*"), stmt(action="nodes:Get", resource="node/mi-?*"), True),
    (stmt(resource="node/mi-*"), stmt(action="nodes:Get", resource="node/*"), False),
    (stmt(resource="node/mi-1"), stmt(action="nodes:Get", resource="node/mi-1"), True),
    (stmt(resource="node/mi-1"), stmt(action="nodes:Get", resource="node/mi-?"), False),
    (stmt(action="nodes:Get"), stmt(action="nodes:*"), False),
    (stmt(action="nodes:*"), stmt(action="nodes:?et"), True),
    # conditions: the requested one must imply the granter's
    (stmt(Condition=WEB), stmt(action="nodes:Get"), False),
    (stmt(), stmt(action="nodes:Get", Condition=WEB), True),
    (
        stmt(Condition={"StringEquals": {"node:tag/team": ["web", "api"]}}),
        stmt(action="nodes:Get", Condition=WEB),
        True,
    ),
    (
        stmt(Condition=WEB),
        stmt(action="nodes:Get", Condition={"StringEquals": {"node:tag/team": ["web", "api"]}}),
        False,
    ),
    (
        stmt(Condition={"StringLike": {"node:tag/team": "web-*"}}),
        stmt(action="nodes:Get", Condition={"StringLike": {"node:tag/team": "web-eu-*"}}),
        True,
    ),
    (
        stmt(Condition={"StringNotEquals": {"node:tag/env": "prod"}}),
        stmt(action="nodes:Get", Condition={"StringNotEquals": {"node:tag/env": ["prod", "stg"]}}),
        True,
    ),
    (
        stmt(Condition={"StringNotEquals": {"node:tag/env": ["prod", "stg"]}}),
        stmt(action="nodes:Get", Condition={"StringNotEquals": {"node:tag/env": "prod"}}),
        False,
    ),
    (
        stmt(Condition={"IpAddress": {"source_ip": "10.0.0.0/8"}}),
        stmt(action="nodes:Get", Condition={"IpAddress": {"source_ip": "10.1.0.0/16"}}),
        True,
    ),
    (
        stmt(Condition={"IpAddress": {"source_ip": "10.1.0.0/16"}}),
        stmt(action="nodes:Get", Condition={"IpAddress": {"source_ip": "10.0.0.0/8"}}),
        False,
    ),
    (
        stmt(Condition={"DateLessThan": {"current_time": "2027-01-01T00:00:00Z"}}),
        stmt(action="nodes:Get", Condition={"DateLessThan": {"current_time": "2026-06-01"}}),
        True,
    ),
    (
        stmt(Condition={"DateLessThan": {"current_time": "2026-06-01"}}),
        stmt(action="nodes:Get", Condition={"DateLessThan": {"current_time": "2027-01-01"}}),
        False,
    ),
    (
        stmt(Condition={"DateGreaterThan": {"current_time": "2026-01-01"}}),
        stmt(action="nodes:Get", Condition={"DateGreaterThan": {"current_time": "2026-06-01"}}),
        True,
    ),
    (
        stmt(Condition={"StringEquals": {"node:tag/team": "web"}}),
        stmt(action="nodes:Get", Condition={"StringLike": {"node:tag/team": "web"}}),
        False,  # different operators: not provable, so refused
    ),
]


@pytest.mark.parametrize(("granter", "requested", "covered"), GRANTS)
def test_covers_compares_actions_resources_and_conditions(
    granter: dict[str, Any], requested: dict[str, Any], covered: bool
) -> None:
    assert (covers([policy(granter)], [policy(requested)]) == []) is covered


def test_denies_in_the_requested_policy_only_narrow() -> None:
    granter = policy(stmt(action="nodes:*", resource="node/*"))
    requested = policy(
        stmt(action="*", resource="node/*"),
        stmt(
            "Deny",
            [
                "commands:*",
                "compliance:*",
                "associations:*",
                "inventory:*",
                "patch:*",
                "sessions:*",
                "nodes:Deregister",
            ],
            "*",
        ),
    )
    assert covers([granter], [requested]) == []
    unguarded = policy(stmt(action="*", resource="node/*"))
    assert covers([granter], [unguarded]) == [
        "commands:Send on node/*",
        "commands:GetOutput on node/*",
        "compliance:ListItems on node/*",
        "compliance:ListSummaries on node/*",
        "compliance:GetHistory on node/*",
        "compliance:PutItems on node/*",
        "associations:Create on node/*",
        "associations:Update on node/*",
        "associations:StartOnce on node/*",
        "inventory:Get on node/*",
        "inventory:List on node/*",
        "inventory:GetHistory on node/*",
        "patch:DescribeInstancePatchStates on node/*",
        "patch:DescribeInstancePatches on node/*",
        "patch:GetHistory on node/*",
        "patch:DescribeEffectivePatches on node/*",
        "sessions:Start on node/*",
        "sessions:Terminate on node/*",
        "sessions:List on node/*",
        "sessions:Get on node/*",
        "sessions:GetRecording on node/*",
    ]


def test_a_granter_deny_must_be_carried_into_what_it_grants() -> None:
    office = {"NotIpAddress": {"source_ip": "10.0.0.0/8"}}
    granter = policy(stmt(), stmt("Deny", Condition=office))
    assert covers([granter], [policy(stmt(action="nodes:Get"))]) == ["nodes:Get on *"]
    carried = policy(stmt(action="nodes:Get"), stmt("Deny", "nodes:*", Condition=office))
    assert covers([granter], [carried]) == []
    wider = policy(
        stmt(action="nodes:Get"),
        stmt("Deny", "nodes:*", Condition={"NotIpAddress": {"source_ip": "10.0.0.0/16"}}),
    )
    assert covers([granter], [wider]) == []  # denies outside a smaller range: stronger
    weaker = policy(
        stmt(action="nodes:Get"),
        stmt("Deny", "nodes:*", Condition={"NotIpAddress": {"source_ip": "0.0.0.0/0"}}),
    )
    assert covers([granter], [weaker]) == ["nodes:Get on *"]


def test_a_granter_deny_elsewhere_does_not_matter() -> None:
    granter = policy(stmt(), stmt("Deny", "parameters:*", "parameter/prod/*"))
    assert (
        covers([granter], [policy(stmt(action="parameters:Get", resource="parameter/dev/*"))]) == []
    )
    assert covers([granter], [policy(stmt(action="parameters:Get", resource="parameter/*"))]) == [
        "parameters:Get on parameter/*"
    ]


def test_grants_may_come_from_several_granter_policies() -> None:
    granter = [policy(stmt(action="nodes:*")), policy(stmt(action="documents:*"))]
    requested = policy(stmt(action=["nodes:Get", "documents:Get"]))
    assert covers(granter, [requested]) == []
    assert covers(granter[:1], [requested]) == ["documents:Get on *"]


# --- globs --------------------------------------------------------------------------------------

GLOB_COVERS = [
    ("*", "anything/at/all", True),
    ("*", "node/*", True),
    ("node/*", "node/mi-*", True),
    ("node/mi-*", "node/*", False),
    ("node/*", "node/*", True),
    ("node/**", "node/*", True),
    ("node/?", "node/a", True),
    ("node/?", "node/?", True),
    ("node/?", "node/*", False),
    ("node/a", "node/?", False),
    ("a*b", "a*b", True),
    ("a*b", "axxb", True),
    ("a*b", "a*bc", False),
    ("a*", "a?", True),
    ("*/prod-*", "node/prod-eu-*", True),
    ("a?c", "abc", True),
    ("abc", "abc", True),
    ("abc", "abd", False),
    ("*?", "?*", False),  # equal languages, but not provable this way: refused, which is safe
]


@pytest.mark.parametrize(("outer", "inner", "covered"), GLOB_COVERS)
def test_glob_covers(outer: str, inner: str, covered: bool) -> None:
    assert glob_covers(outer, inner) is covered


@pytest.mark.parametrize(
    ("pattern", "prefix", "possible"),
    [
        ("*", "node/", True),
        ("node/*", "node/", True),
        ("n*/x", "node/", True),
        ("p*x/y", "parameter/", True),
        ("?ode/x", "node/", True),
        ("nodes/*", "node/", False),
        ("document/*", "node/", False),
        ("no", "node/", False),
    ],
)
def test_glob_may_start_with(pattern: str, prefix: str, possible: bool) -> None:
    assert glob_may_start_with(pattern, prefix) is possible


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("node/*", "node/mi-1", True),
        ("node/a*", "node/b*", False),
        ("*-prod", "*-dev", False),
        ("*", "x", True),
        ("node/x", "node/x", True),
        ("node/x", "node/xy", False),
    ],
)
def test_globs_may_overlap(a: str, b: str, overlap: bool) -> None:
    assert globs_may_overlap(a, b) is overlap
