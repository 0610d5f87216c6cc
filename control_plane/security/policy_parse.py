"""Reading a policy document into a compiled :class:`Policy`, or a one-line PolicyError.

Every pattern is compiled once here: a statement knows the catalog actions it names (a set),
splits its resource globs into exact names, ``prefix*`` globs and one regular expression for
the rest, and holds its Decision; the policy indexes its statements by action, so
evaluation never looks at a statement that names another action.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from control_plane.errors import PolicyError
from control_plane.security.actions import (
    ACTIONS,
    RESOURCE_TYPES,
    matching_actions,
    valid_action_pattern,
)
from control_plane.security.policy_conditions import (
    Condition,
    did_you_mean,
    parse_condition,
    quote,
)
from control_plane.security.policy_decision import Decision
from control_plane.security.policy_glob import (
    compile_globs,
    glob_may_start_with,
    has_wildcard,
)

VERSION = "2026-01-01"
MAX_INPUT_BYTES = 64 * 1024
MAX_BYTES = 10 * 1024
MAX_STATEMENTS = 100
MAX_ENTRIES = 100
MAX_RESOURCE_LENGTH = 1024
_SID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOP_KEYS = ("Version", "Statement")
_KEYS = ("Sid", "Effect", "Action", "Resource", "Condition")
_UNSUPPORTED = {
    "NotAction": "not supported: write a Deny statement instead",
    "NotResource": "not supported: write a Deny statement instead",
    "Principal": "not supported: a policy is attached to a token",
    "NotPrincipal": "not supported: a policy is attached to a token",
}


@dataclass(frozen=True, slots=True, eq=False)
class Statement:
    """A compiled statement.  A resource matches when it is one of ``resource_exact``,
    starts with one of ``resource_prefixes`` (globs like ``node/*``), or, when
    ``resource_glob``, matches ``resource_regex`` (the other globs)."""

    index: int
    sid: str | None
    effect: Literal["Allow", "Deny"]
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Condition | None
    matched_actions: frozenset[str]
    resource_regex: re.Pattern[str]
    resource_exact: frozenset[str]
    resource_prefixes: tuple[str, ...]
    resource_glob: bool
    decision: Decision

    @property
    def label(self) -> str:
        """``Statement[2]`` or ``Statement[2] ("Sid")``."""
        return f"Statement[{self.index}]" + (f" ({quote(self.sid)})" if self.sid else "")


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A validated, compiled policy; ``document`` is the JSON object it was read from."""

    name: str
    document: Mapping[str, Any]
    statements: tuple[Statement, ...]
    allow_index: Mapping[str, tuple[Statement, ...]]
    deny_index: Mapping[str, tuple[Statement, ...]]

    def to_json(self) -> str:
        return json.dumps(self.document, indent=2)


def parse_policy(source: str | bytes | Mapping[str, Any], name: str = "policy") -> Policy:
    """Validate ``source`` (JSON text or an already-decoded object) and compile it."""
    document = _load(source) if isinstance(source, str | bytes) else source
    if not isinstance(document, Mapping):
        raise PolicyError("policy: must be a JSON object")
    try:
        compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        raise PolicyError("policy: holds values that are not JSON") from None
    size = len(compact.encode())
    if size > MAX_BYTES:
        raise PolicyError(f"policy: {size} bytes without whitespace; at most {MAX_BYTES}")
    _refuse_unknown_keys(document, _TOP_KEYS, "policy")
    if "Version" not in document:
        raise PolicyError(f'Version: required (use "{VERSION}")')
    if document["Version"] != VERSION:
        raise PolicyError(f'Version: must be "{VERSION}"')
    statements = _statements(document.get("Statement"), name)
    allows: dict[str, list[Statement]] = {}
    denies: dict[str, list[Statement]] = {}
    for statement in statements:
        index = allows if statement.effect == "Allow" else denies
        for action in statement.matched_actions:
            index.setdefault(action, []).append(statement)
    return Policy(
        name=name,
        document=copy.deepcopy(dict(document)),
        statements=statements,
        allow_index={k: tuple(v) for k, v in allows.items()},
        deny_index={k: tuple(v) for k, v in denies.items()},
    )


class _Invalid(ValueError):
    pass


def _load(source: str | bytes) -> object:
    if len(source) > MAX_INPUT_BYTES:
        raise PolicyError(f"policy: larger than {MAX_INPUT_BYTES} bytes")
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PolicyError("policy is not valid JSON: not UTF-8 text") from None
    try:
        return json.loads(source, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise PolicyError(f"policy is not valid JSON: {where}: {exc.msg}") from None
    except _Invalid as exc:
        raise PolicyError(f"policy is not valid JSON: {exc}") from None
    except RecursionError:
        raise PolicyError("policy is not valid JSON: nested too deeply") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Invalid(f"duplicate key {quote(key)}")
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise _Invalid(f"{name} is not a JSON value")


def _refuse_unknown_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key in allowed:
            continue
        why = _UNSUPPORTED.get(key)
        if why is None:
            close = did_you_mean(key, allowed)
            why = close[2:-1] if close else "allowed: " + ", ".join(allowed)
        raise PolicyError(f"{where}: unknown key {quote(key)} ({why})")


def _statements(raw: object, name: str) -> tuple[Statement, ...]:
    if raw is None:
        raise PolicyError("Statement: required")
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise PolicyError("Statement: must be a list of statements")
    if not items:
        raise PolicyError("Statement: must not be empty")
    if len(items) > MAX_STATEMENTS:
        raise PolicyError(f"Statement: at most {MAX_STATEMENTS} statements")
    out = tuple(_statement(i, item, name) for i, item in enumerate(items))
    seen: dict[str, int] = {}
    for statement in out:
        if statement.sid is None:
            continue
        if statement.sid in seen:
            also = f"also Statement[{seen[statement.sid]}]"
            raise PolicyError(
                f"Statement[{statement.index}].Sid: duplicate {quote(statement.sid)} ({also})"
            )
        seen[statement.sid] = statement.index
    return out


def _statement(index: int, raw: object, name: str) -> Statement:
    at = f"Statement[{index}]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{at}: must be an object")
    _refuse_unknown_keys(raw, _KEYS, at)
    sid = raw.get("Sid")
    if sid is not None and not (isinstance(sid, str) and _SID.fullmatch(sid)):
        raise PolicyError(f'{at}.Sid: must be 1-128 letters, digits, "-" or "_"')
    effect = raw.get("Effect")
    if effect is None:
        raise PolicyError(f"{at}.Effect: required")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{at}.Effect: must be "Allow" or "Deny"')
    actions = _strings(raw, "Action", at)
    matched: set[str] = set()
    for pattern, where in actions:
        matched.update(_action(pattern, where))
    resources = _strings(raw, "Resource", at)
    for pattern, where in resources:
        _resource(pattern, where)
    condition = parse_condition(raw["Condition"], f"{at}.Condition") if "Condition" in raw else None
    patterns = tuple(p for p, _ in resources)
    return Statement(
        index=index,
        sid=sid,
        effect=effect,
        actions=tuple(p for p, _ in actions),
        resources=patterns,
        condition=condition,
        matched_actions=frozenset(matched),
        resource_regex=compile_globs(patterns),
        resource_exact=frozenset(p for p in patterns if not has_wildcard(p)),
        resource_prefixes=tuple(p[:-1] for p in patterns if _is_prefix_glob(p)),
        resource_glob=any(has_wildcard(p) and not _is_prefix_glob(p) for p in patterns),
        decision=Decision(
            effect == "Allow", "allow" if effect == "Allow" else "explicit-deny", name, index, sid
        ),
    )


def _is_prefix_glob(pattern: str) -> bool:
    """``node/*``, ``*``: a literal head and one trailing star."""
    return pattern.endswith("*") and not has_wildcard(pattern[:-1])


def _strings(raw: dict[str, Any], field: str, at: str) -> list[tuple[str, str]]:
    """The field's strings, each with the path naming it in errors."""
    where = f"{at}.{field}"
    if field not in raw:
        raise PolicyError(f"{where}: required")
    value = raw[field]
    if isinstance(value, str):
        return [(value, where)]
    if not isinstance(value, list):
        raise PolicyError(f"{where}: must be a string or a list of strings")
    if not value:
        raise PolicyError(f"{where}: must not be empty")
    if len(value) > MAX_ENTRIES:
        raise PolicyError(f"{where}: at most {MAX_ENTRIES} entries")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(f"{where}[{i}]: must be a string")
    return [(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _action(pattern: str, where: str) -> tuple[str, ...]:
    if not valid_action_pattern(pattern):
        raise PolicyError(f'{where}: {quote(pattern)} is not "service:Verb" or "*"')
    matched = matching_actions(pattern)
    if matched:
        return matched
    if has_wildcard(pattern):
        raise PolicyError(f"{where}: {quote(pattern)} matches no known action")
    hint = did_you_mean(pattern, ACTIONS)
    raise PolicyError(f"{where}: unknown action {quote(pattern)}{hint}")


def _resource(pattern: str, where: str) -> None:
    if not pattern:
        raise PolicyError(f"{where}: must not be empty")
    if len(pattern) > MAX_RESOURCE_LENGTH:
        raise PolicyError(f"{where}: at most {MAX_RESOURCE_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in pattern):
        raise PolicyError(f"{where}: must not contain control characters")
    if pattern == "*" or any(glob_may_start_with(pattern, t + "/") for t in RESOURCE_TYPES):
        return
    if "/" not in pattern:
        raise PolicyError(f'{where}: {quote(pattern)} is not "*" or "<type>/<name>"')
    head = pattern.split("/", 1)[0]
    hint = did_you_mean(head, RESOURCE_TYPES) or " (known: " + ", ".join(RESOURCE_TYPES) + ")"
    raise PolicyError(f"{where}: unknown resource type {quote(head)}{hint}")
