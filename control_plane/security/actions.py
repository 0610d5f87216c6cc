"""The action catalog: every operator API action as ``service:Verb``, with its resource type.

A policy names actions from this table (with ``*``/``?`` wildcards); an API route declares
one of them.  Names compare case-insensitively, as IAM's do.

Resource strings are ``<type>/<id>``: ``node/mi-0123456789abcdef0``,
``document/AWS-RunShellScript``, ``command/<id>``, ``token/<id>``,
``parameter/app/prod/db-url`` (the parameter's path without its leading ``/``).  An action
whose resource type is ``*`` (``identity:WhoAmI``, ``events:Subscribe``) is evaluated against
the resource ``*``.  List actions name their item type: the API evaluates them per item and
shows only the items the caller may list, so a token scoped to ``node/*`` with a tag
condition lists only its own nodes.

``read_only``: changes nothing (what the viewer role may do, unless ``sensitive``).
``sensitive``: answers with command output or secret values.
``implicit``: every valid token may do it, whatever its policies say, as every AWS identity
may call STS GetCallerIdentity: asking who you are (``corral whoami``, ``corral login``) needs
no permission, so a token made for one job can still log in.  Its route authenticates, rate
limits and audits the call; no policy is evaluated, so none can grant or deny it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from control_plane.security.policy_glob import compile_globs

RESOURCE_TYPES = (
    "activation",
    "association",
    "audit",
    "baseline",
    "calendar",
    "command",
    "document",
    "group",
    "inventory",
    "node",
    "parameter",
    "policy",
    "session",
    "token",
    "webhook",
    "window",
)


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    resource_types: tuple[str, ...]
    read_only: bool = False
    sensitive: bool = False
    implicit: bool = False

    @property
    def resource_type(self) -> str:
        """The primary resource type (the first one)."""
        return self.resource_types[0]


def _catalog(*entries: tuple[str, str, str]) -> dict[str, Action]:
    """Rows of (name, resource types separated by ",", flags: "r" read-only, "s" sensitive,
    "i" implicit)."""
    out: dict[str, Action] = {}
    for name, types, flags in entries:
        out[name] = Action(name, tuple(types.split(",")), "r" in flags, "s" in flags, "i" in flags)
    return out


ACTIONS: Mapping[str, Action] = _catalog(
    ("activations:Create", "activation", ""),
    ("activations:List", "activation", "r"),
    ("activations:Get", "activation", "r"),
    ("activations:Delete", "activation", ""),
    ("nodes:List", "node", "r"),
    ("nodes:Get", "node", "r"),
    ("nodes:Tag", "node", ""),
    ("nodes:Untag", "node", ""),
    ("nodes:Ping", "node", ""),
    ("nodes:Deregister", "node", ""),
    ("documents:Create", "document", ""),
    ("documents:List", "document", "r"),
    ("documents:Get", "document", "r"),
    ("documents:ListVersions", "document", "r"),
    ("documents:Update", "document", ""),
    ("documents:SetDefault", "document", ""),
    ("documents:Delete", "document", ""),
    # Send is checked per target node and on the document it runs.
    ("commands:Send", "node,document", ""),
    ("commands:List", "command", "r"),
    ("commands:Get", "command", "r"),
    ("commands:Cancel", "command", ""),
    ("commands:GetOutput", "command,node", "rs"),
    ("groups:Create", "group", ""),
    ("groups:List", "group", "r"),
    ("groups:Get", "group", "r"),
    ("groups:Delete", "group", ""),
    ("webhooks:Create", "webhook", ""),
    ("webhooks:List", "webhook", "r"),
    ("webhooks:Delete", "webhook", ""),
    ("events:Subscribe", "*", "r"),
    ("tokens:Create", "token", ""),
    ("tokens:List", "token", "r"),
    ("tokens:Get", "token", "r"),
    ("tokens:Revoke", "token", ""),
    ("policies:List", "policy", "r"),
    ("policies:Get", "policy", "r"),
    ("policies:Simulate", "policy", "r"),
    ("audit:List", "audit", "r"),
    ("audit:Export", "audit", "r"),
    ("audit:Verify", "audit", "r"),
    ("parameters:Put", "parameter", ""),
    ("parameters:Get", "parameter", "r"),
    ("parameters:GetDecrypted", "parameter", "rs"),
    ("parameters:List", "parameter", "r"),
    ("parameters:GetHistory", "parameter", "r"),
    ("parameters:Label", "parameter", ""),
    ("parameters:Unlabel", "parameter", ""),
    ("parameters:Delete", "parameter", ""),
    # Compliance: on the node whose compliance it is (its tags in conditions, as nodes:Get).
    ("compliance:ListItems", "node", "r"),
    ("compliance:ListSummaries", "node", "r"),
    ("compliance:GetHistory", "node", "r"),
    ("compliance:PutItems", "node", ""),
    # State Manager.  Create and Update are checked on the association, on the document it
    # runs and on every node it targets (as commands:Send); StartOnce on its nodes too.
    ("associations:Create", "association,document,node", ""),
    ("associations:List", "association", "r"),
    ("associations:Get", "association", "r"),
    ("associations:Update", "association,document,node", ""),
    ("associations:Delete", "association", ""),
    ("associations:ListVersions", "association", "r"),
    ("associations:StartOnce", "association,node", ""),
    ("associations:ListExecutions", "association", "r"),
    # Maintenance Windows.  RegisterTask is checked on the window and on the document the
    # task runs (as commands:Send is); the task's commands run as "window:<id>".
    ("windows:Create", "window", ""),
    ("windows:List", "window", "r"),
    ("windows:Get", "window", "r"),
    ("windows:Update", "window", ""),
    ("windows:Delete", "window", ""),
    ("windows:RegisterTargets", "window", ""),
    ("windows:DeregisterTarget", "window", ""),
    ("windows:RegisterTask", "window,document", ""),
    ("windows:DeregisterTask", "window", ""),
    ("windows:ListExecutions", "window", "r"),
    ("windows:GetExecution", "window", "r"),
    # Change calendars.
    ("calendars:Create", "calendar", ""),
    ("calendars:List", "calendar", "r"),
    ("calendars:Get", "calendar", "r"),
    ("calendars:Delete", "calendar", ""),
    # Inventory: on the node whose inventory it is (its tags in conditions, as nodes:Get);
    # List is evaluated per node for the fleet-wide search and summary.
    ("inventory:Get", "node", "r"),
    ("inventory:List", "node", "r"),
    ("inventory:GetHistory", "node", "r"),
    ("inventory:GetSchema", "*", "r"),
    ("inventory:DeleteCustomType", "inventory", ""),
    # Patch Manager: baselines (``baseline/<id>``), and what nodes reported, on the node
    # (its tags in conditions, as inventory:Get); the fleet summary is evaluated per node.
    ("patch:CreateBaseline", "baseline", ""),
    ("patch:UpdateBaseline", "baseline", ""),
    ("patch:DeleteBaseline", "baseline", ""),
    ("patch:GetBaseline", "baseline", "r"),
    ("patch:ListBaselines", "baseline", "r"),
    ("patch:SetDefaultBaseline", "baseline", ""),
    ("patch:RegisterPatchGroup", "baseline", ""),
    ("patch:DeregisterPatchGroup", "baseline", ""),
    ("patch:ListPatchGroups", "*", "r"),
    ("patch:DescribeInstancePatchStates", "node", "r"),
    ("patch:DescribeInstancePatches", "node", "r"),
    ("patch:GetHistory", "node", "r"),
    ("patch:DescribeEffectivePatches", "node,baseline", "r"),
    # Session Manager: on the node (its tags in conditions), as SSM's StartSession; Start is
    # also evaluated on the session document (``document/<name>``) and may condition on the
    # run-as user (``sessions:run_as``: ``root`` only where a policy allows it).  Terminate and
    # Get on the session's node (a session's owner may always see and end its own); the
    # recording carries the node's output: GetRecording, sensitive.
    ("sessions:Start", "node,document", ""),
    ("sessions:Terminate", "node,session", ""),
    ("sessions:List", "node", "r"),
    ("sessions:Get", "node,session", "r"),
    ("sessions:GetRecording", "node,session", "rs"),
    # Prometheus' scrape of ``GET /metrics`` (fleet-wide figures, no output, no secrets).
    ("metrics:Read", "*", "r"),
    # Package distribution: the agent packages, their signed manifest and signing key (node
    # tokens and valid activations may read them too; see api/packages.py).
    ("packages:Read", "*", "r"),
    ("identity:WhoAmI", "*", "ri"),
)

_BY_LOWER = {name.lower(): action for name, action in ACTIONS.items()}
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9*?]+:[A-Za-z0-9*?]+|\*")


def lookup(name: str) -> Action | None:
    """The action called ``name`` (any case), or None."""
    return _BY_LOWER.get(name.lower())


def known_action(name: str) -> bool:
    return name.lower() in _BY_LOWER


def valid_action_pattern(pattern: str) -> bool:
    """``*`` or ``service:Verb`` made of letters, digits and wildcards."""
    return _PATTERN_CHARS.fullmatch(pattern) is not None


@lru_cache(maxsize=1024)
def matching_actions(pattern: str) -> tuple[str, ...]:
    """Canonical names of the catalog actions ``pattern`` matches (``*``/``?``, any case)."""
    regex = compile_globs((pattern,), ignore_case=True)
    return tuple(name for name in ACTIONS if regex.fullmatch(name))


def resource_name(resource_type: str, ident: str) -> str:
    """``resource_name("parameter", "/app/db")`` is ``parameter/app/db``."""
    return f"{resource_type}/{ident.removeprefix('/')}"
