"""IAM-style policies: parse, evaluate, lint, and compare.

Public surface (the ``policy_*`` modules are its parts)::

    parse_policy(source, name) -> Policy          raises PolicyError (one line, names the field)
    evaluate(policies, action, resource, context) -> Decision
    policy_warnings(policy) -> list[str]          e.g. "policy allows nothing: ..."
    covers(granter, requested) -> list[str]       grants ``requested`` has beyond ``granter``

Evaluation is IAM's: an explicit Deny that applies wins, else an Allow that applies, else
the request is implicitly denied.  A statement applies when the action is one it names, the
resource matches one of its resource globs, and its Condition holds (see policy_conditions
for missing keys and unreadable context values).
"""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.errors import PolicyError
from control_plane.security.actions import ACTIONS, lookup
from control_plane.security.policy_analysis import covers, policy_warnings
from control_plane.security.policy_conditions import Context
from control_plane.security.policy_decision import IMPLICIT_DENY, Decision
from control_plane.security.policy_parse import VERSION, Policy, Statement, parse_policy

__all__ = [
    "VERSION",
    "Context",
    "Decision",
    "Policy",
    "PolicyError",
    "Statement",
    "covers",
    "evaluate",
    "parse_policy",
    "policy_warnings",
]

_NO_CONTEXT: Context = {}


def evaluate(
    policies: Sequence[Policy], action: str, resource: str, context: Context | None = None
) -> Decision:
    """Decide ``action`` on ``resource``; an action missing from the catalog is a bug."""
    if action not in ACTIONS:
        known = lookup(action)
        if known is None:
            raise ValueError(f"unknown action {action!r}: add it to security/actions.py")
        action = known.name
    ctx = _NO_CONTEXT if context is None else context
    for policy in policies:
        for st in policy.deny_index.get(action, ()):
            if not (
                resource in st.resource_exact
                or resource.startswith(st.resource_prefixes)
                or (st.resource_glob and st.resource_regex.fullmatch(resource))
            ):
                continue
            if st.condition is None or st.condition.check(ctx) is not False:
                return st.decision
    for policy in policies:
        for st in policy.allow_index.get(action, ()):
            if not (
                resource in st.resource_exact
                or resource.startswith(st.resource_prefixes)
                or (st.resource_glob and st.resource_regex.fullmatch(resource))
            ):
                continue
            if st.condition is None or st.condition.check(ctx) is True:
                return st.decision
    return IMPLICIT_DENY
