"""Static checks on policies: what allows nothing, and what one set grants beyond another.

Both are conservative: a warning is only given when a statement certainly allows nothing,
and :func:`covers` reports a grant as missing whenever it cannot prove the granter holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from control_plane.security.actions import ACTIONS
from control_plane.security.policy_conditions import Condition
from control_plane.security.policy_glob import (
    compile_globs,
    glob_covers,
    glob_may_start_with,
    globs_may_overlap,
)
from control_plane.security.policy_implies import condition_implies
from control_plane.security.policy_parse import Policy, Statement

_ORDER = {name: i for i, name in enumerate(ACTIONS)}


def _in_order(actions: Iterable[str]) -> list[str]:
    return sorted(actions, key=_ORDER.__getitem__)


def fits(action: str, pattern: str) -> bool:
    """True when ``pattern`` can match a resource that ``action`` is evaluated against."""
    for kind in ACTIONS[action].resource_types:
        if kind == "*":
            if compile_globs((pattern,)).fullmatch("*"):
                return True
        elif glob_may_start_with(pattern, kind + "/"):
            return True
    return False


def _hard_denier(denies: Iterable[Statement], action: str, pattern: str) -> Statement | None:
    """An unconditional Deny that covers ``action`` on everything ``pattern`` matches."""
    for deny in denies:
        if deny.condition is not None or action not in deny.matched_actions:
            continue
        if any(glob_covers(outer, pattern) for outer in deny.resources):
            return deny
    return None


def policy_warnings(policy: Policy) -> list[str]:
    """Warnings for statements, or a whole policy, that can never allow anything."""
    allows = [s for s in policy.statements if s.effect == "Allow"]
    if not allows:
        return ["policy allows nothing: it has no Allow statement"]
    denies = [s for s in policy.statements if s.effect == "Deny"]
    warnings = []
    for statement in allows:
        pairs = [(a, r) for a in _in_order(statement.matched_actions) for r in statement.resources]
        fitting = [(a, r) for a, r in pairs if fits(a, r)]
        if not fitting:
            types = sorted({t for a, _ in pairs for t in ACTIONS[a].resource_types})
            warnings.append(
                f"{statement.label} allows nothing: no resource in it is of a type its actions "
                f"act on ({', '.join(types)})"
            )
            continue
        deciders = [_hard_denier(denies, a, r) for a, r in fitting]
        if all(deciders):
            labels = sorted({d.label for d in deciders if d}, key=lambda s: s)
            warnings.append(
                f"{statement.label} allows nothing: overridden by the Deny in {', '.join(labels)}"
            )
    if len(warnings) == len(allows):
        warnings.append("policy allows nothing: every Allow statement is void")
    return warnings


def covers(granter: Sequence[Policy], requested: Sequence[Policy]) -> list[str]:
    """The grants (``"action on resource-pattern"``) in ``requested`` that ``granter`` lacks.

    Empty means ``requested`` is no wider than ``granter``.  For every Allow statement of
    ``requested``, every catalog action it names and every resource pattern it lists, the
    granter must hold one Allow naming the action whose resource glob covers the pattern and
    whose Condition is implied by the requested one; and every granter Deny that may touch
    the pair must be matched by a requested Deny at least as strong.  Pairs that grant
    nothing are skipped: those the requested policies deny unconditionally, and those whose
    pattern cannot name a resource of the action's types (the catalog is the contract: an
    action is only ever evaluated on resources of its declared types).
    """
    granted_denies = [s for p in granter for s in p.statements if s.effect == "Deny"]
    granter_allows = [s for p in granter for s in p.statements if s.effect == "Allow"]
    own_denies = [s for p in requested for s in p.statements if s.effect == "Deny"]
    missing: list[str] = []
    for policy in requested:
        for statement in policy.statements:
            if statement.effect != "Allow":
                continue
            for action in _in_order(statement.matched_actions):
                for pattern in statement.resources:
                    if not fits(action, pattern) or _hard_denier(own_denies, action, pattern):
                        continue
                    held = _allowed(granter_allows, action, pattern, statement.condition)
                    if held and not _exposed(granted_denies, own_denies, action, pattern):
                        continue
                    grant = f"{action} on {pattern}"
                    if grant not in missing:
                        missing.append(grant)
    return missing


def _allowed(
    allows: Iterable[Statement], action: str, pattern: str, condition: Condition | None
) -> bool:
    for allow in allows:
        if action not in allow.matched_actions:
            continue
        if not any(glob_covers(outer, pattern) for outer in allow.resources):
            continue
        if condition_implies(condition, allow.condition):
            return True
    return False


def _exposed(
    granter_denies: Iterable[Statement], own_denies: Sequence[Statement], action: str, pattern: str
) -> bool:
    """True when a granter Deny may touch the pair and no requested Deny is as strong."""
    for deny in granter_denies:
        if action not in deny.matched_actions:
            continue
        for resource in deny.resources:
            if not globs_may_overlap(resource, pattern):
                continue
            if not any(_as_strong(own, deny, action, resource, pattern) for own in own_denies):
                return True
    return False


def _as_strong(own: Statement, deny: Statement, action: str, resource: str, pattern: str) -> bool:
    """``own`` denies ``action`` wherever and whenever ``deny`` does (within ``pattern``)."""
    if action not in own.matched_actions:
        return False
    if not any(glob_covers(r, resource) or glob_covers(r, pattern) for r in own.resources):
        return False
    return condition_implies(deny.condition, own.condition)
