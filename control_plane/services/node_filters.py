"""Filters of the node list (``corral nodes list --filter``), all of which must match:

- ``tag:KEY=VALUE``: the node has that tag (answered by the database);
- ``agent_version<0.2.0``: the version its agent last reported, with ``<``, ``<=``, ``>``,
  ``>=``, ``=`` or ``!=``, compared as versions (``0.10.0 > 0.9.0``); a node that has not
  reported a version matches none;
- ``platform=Linux``, ``status=Online`` (and ``!=``), any case.

The last three look at each node's view as the list pages through it, so paging stays exact.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.updates.versions import is_version, version_key
from control_plane.errors import InvalidRequest

MAX_FILTERS = 50
MAX_FILTER = 300
STATUSES = ("Online", "ConnectionLost", "Deregistered")
_COMPARISON = re.compile(r"^(agent_version|platform|status)(<=|>=|!=|<|>|=)(.*)$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
}
EXPECTED = "tag:KEY=VALUE, agent_version<OP>VERSION (OP: < <= > >= = !=), platform=P or status=S"

View = dict[str, Any]


@dataclass
class NodeFilters:
    tags: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Callable[[View], bool]] = field(default_factory=list)

    def matches(self, view: View) -> bool:
        return all(check(view) for check in self.checks)


def parse(filters: list[str]) -> NodeFilters:
    """The filters, or InvalidRequest naming the first bad one and what is expected."""
    if len(filters) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} filters")
    out = NodeFilters()
    for item in filters:
        if len(item) > MAX_FILTER:
            raise InvalidRequest(f"a filter is at most {MAX_FILTER} characters")
        if item.startswith("tag:"):
            key, eq, value = item.removeprefix("tag:").partition("=")
            if not eq or not key:
                raise InvalidRequest(f"unsupported filter {item!r}: expected tag:KEY=VALUE")
            out.tags.append((key, value))
            continue
        match = _COMPARISON.match(item)
        if match is None:
            raise InvalidRequest(f"unsupported filter {item!r}: expected {EXPECTED}")
        name, op, value = match.groups()
        out.checks.append(_check(item, name, op, value))
    return out


def _check(item: str, name: str, op: str, value: str) -> Callable[[View], bool]:
    compare = _OPS[op]
    if name == "agent_version":
        if not is_version(value):
            raise InvalidRequest(f"filter {item!r}: {value!r} is not a version such as 0.2.0")
        wanted = version_key(value)

        def by_version(view: View) -> bool:
            have = view.get("agent_version")
            if not isinstance(have, str) or not is_version(have):
                return False
            return compare(version_key(have), wanted)

        return by_version
    if op not in ("=", "!="):
        raise InvalidRequest(f"filter {item!r}: {name} takes = or !=")
    if name == "status" and value.lower() not in {s.lower() for s in STATUSES}:
        raise InvalidRequest(f"filter {item!r}: status is one of {', '.join(STATUSES)}")
    if not value:
        raise InvalidRequest(f"filter {item!r}: give a value")
    lowered = value.lower()
    return lambda view: compare(str(view.get(name) or "").lower(), lowered)
