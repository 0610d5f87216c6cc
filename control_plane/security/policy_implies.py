"""Does one Condition imply another?  Used to compare policies, never to evaluate them.

Clause by clause and conservative: ``a`` implies ``b`` when every clause of ``b`` is implied
by one clause of ``a`` on the same operator and key.  Anything it cannot prove is "no".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network

from control_plane.security.policy_conditions import (
    OPERATORS,
    Clause,
    Condition,
    parse_date,
    parse_network,
)
from control_plane.security.policy_glob import glob_covers

Rule = Callable[[tuple[str, ...], tuple[str, ...]], bool]


def condition_implies(a: Condition | None, b: Condition | None) -> bool:
    """True when ``b`` holds whenever ``a`` holds (None is the always-true condition)."""
    if b is None or not b.clauses:
        return True
    if a is None:
        return False
    return all(any(clause_implies(x, y) for x in a.clauses) for y in b.clauses)


def clause_implies(x: Clause, y: Clause) -> bool:
    if x.operator != y.operator or x.key != y.key:
        return False
    negated = OPERATORS[x.operator][1]
    # A negated clause holds when the value avoids all its values: more values, stronger.
    strong, weak = (y, x) if negated else (x, y)
    rule = _RULES.get(x.operator.replace("Not", "", 1) if negated else x.operator)
    return rule(strong.values, weak.values) if rule else set(x.values) == set(y.values)


def _each_within(within: Callable[[str, str], bool]) -> Rule:
    """Every strong value lies within some weak value."""

    def rule(strong: tuple[str, ...], weak: tuple[str, ...]) -> bool:
        return all(any(within(s, w) for w in weak) for s in strong)

    return rule


def _subnet(inner: str, outer: str) -> bool:
    a, b = parse_network(inner, ""), parse_network(outer, "")
    if isinstance(a, IPv4Network) and isinstance(b, IPv4Network):
        return a.subnet_of(b)
    if isinstance(a, IPv6Network) and isinstance(b, IPv6Network):
        return a.subnet_of(b)
    return False


def _dates(values: tuple[str, ...]) -> list[datetime]:
    return [parse_date(v, "") for v in values]


def _same_date(s: str, w: str) -> bool:
    return parse_date(s, "") == parse_date(w, "")


def _earlier_bound(strong: tuple[str, ...], weak: tuple[str, ...]) -> bool:
    """``t < any(strong)`` implies ``t < any(weak)`` when max(strong) <= max(weak)."""
    return max(_dates(strong)) <= max(_dates(weak))


def _later_bound(strong: tuple[str, ...], weak: tuple[str, ...]) -> bool:
    return min(_dates(strong)) >= min(_dates(weak))


_RULES: Mapping[str, Rule] = {
    "StringEquals": _each_within(str.__eq__),
    "StringEqualsIgnoreCase": _each_within(lambda s, w: s.casefold() == w.casefold()),
    "StringLike": _each_within(lambda s, w: glob_covers(w, s)),
    "IpAddress": _each_within(_subnet),
    "DateEquals": _each_within(_same_date),
    "DateLessThan": _earlier_bound,
    "DateLessThanEquals": _earlier_bound,
    "DateGreaterThan": _later_bound,
    "DateGreaterThanEquals": _later_bound,
    "Bool": _each_within(lambda s, w: s.lower() == w.lower()),
}
