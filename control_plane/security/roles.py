"""Built-in roles, written in the policy language itself (``corral policies show admin``).

- ``admin``: every action on every resource.
- ``operator``: everything, except creating or revoking tokens, reading SecureString
  values (``parameters:GetDecrypted``) and sessions as root.  It may read tokens, policies
  and the audit trail.
- ``viewer``: every read-only action that exposes neither command output nor secrets.

The viewer's list is derived from the action catalog, so a new read-only action reaches it
without an edit here.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from control_plane.security.actions import ACTIONS
from control_plane.security.policy_parse import VERSION, Policy, parse_policy

ROLE_NAMES = ("admin", "operator", "viewer")

OPERATOR_DENIED = ("tokens:Create", "tokens:Revoke", "parameters:GetDecrypted")


def _documents() -> dict[str, dict[str, Any]]:
    readable = [a.name for a in ACTIONS.values() if a.read_only and not a.sensitive]
    return {
        "admin": {
            "Version": VERSION,
            "Statement": [{"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"}],
        },
        "operator": {
            "Version": VERSION,
            "Statement": [
                {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"},
                {
                    "Sid": "NoTokenAdminNorSecrets",
                    "Effect": "Deny",
                    "Action": list(OPERATOR_DENIED),
                    "Resource": "*",
                },
                {
                    "Sid": "NoRootSessions",
                    "Effect": "Deny",
                    "Action": ["sessions:Start"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"sessions:run_as": ["root"]}},
                },
            ],
        },
        "viewer": {
            "Version": VERSION,
            "Statement": [
                {"Sid": "ReadOnly", "Effect": "Allow", "Action": readable, "Resource": "*"}
            ],
        },
    }


_DOCUMENTS = _documents()


def role_document(name: str) -> dict[str, Any]:
    """A fresh copy of the role's policy document; KeyError for an unknown role."""
    return copy.deepcopy(_DOCUMENTS[name])


@cache
def role_policy(name: str) -> Policy:
    """The role's compiled policy (named after the role); KeyError for an unknown role."""
    return parse_policy(_DOCUMENTS[name], name=name)
