"""IAM globs: ``*`` matches any run of characters (``/`` included), ``?`` exactly one.

No character classes, no escapes: every other character is literal.
"""

from __future__ import annotations

import re
from functools import lru_cache


def glob_regex(pattern: str) -> str:
    """A regular expression source equivalent to ``pattern``."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return "(?s:" + "".join(parts) + ")"


@lru_cache(maxsize=4096)
def compile_globs(patterns: tuple[str, ...], ignore_case: bool = False) -> re.Pattern[str]:
    """One compiled alternation of ``patterns``: call ``.fullmatch`` on it."""
    source = "|".join(glob_regex(p) for p in patterns)
    return re.compile(source, re.IGNORECASE if ignore_case else 0)


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def _squeeze(pattern: str) -> str:
    return re.sub(r"\*+", "*", pattern)


@lru_cache(maxsize=4096)
def glob_covers(outer: str, inner: str) -> bool:
    """True when every string ``inner`` matches is also matched by ``outer``.

    Sound, and complete in practice: ``outer``'s ``*`` may absorb any of ``inner``'s tokens,
    its ``?`` one literal or ``?``, a literal only the same literal.  A few exotic equal
    languages (``*?`` vs ``?*``) are reported as not covered, which errs on the safe side.
    """
    outer, inner = _squeeze(outer), _squeeze(inner)
    if outer == "*":
        return True
    n, m = len(outer), len(inner)
    # reach[j]: outer[:i] can absorb inner[:j]; rows advance over outer.
    reach = [True] + [False] * m
    for i in range(n):
        token = outer[i]
        nxt = [False] * (m + 1)
        if token == "*":
            seen = False
            for j in range(m + 1):
                seen = seen or reach[j]
                nxt[j] = seen
        else:
            for j in range(m):
                if not reach[j]:
                    continue
                got = inner[j]
                if got == token or (token == "?" and got != "*"):
                    nxt[j + 1] = True
        reach = nxt
        if not any(reach):
            return False
    return reach[m]


@lru_cache(maxsize=4096)
def glob_may_start_with(pattern: str, prefix: str) -> bool:
    """True when ``pattern`` matches at least one string that starts with ``prefix``."""
    pattern = _squeeze(pattern)
    states = _closure(pattern, {0})
    for char in prefix:
        nxt = set()
        for i in states:
            if i == len(pattern):
                continue
            token = pattern[i]
            if token == "*":
                nxt.add(i)
            elif token in ("?", char):
                nxt.add(i + 1)
        states = _closure(pattern, nxt)
        if not states:
            return False
    return bool(states)


def _closure(pattern: str, states: set[int]) -> set[int]:
    return states | {i + 1 for i in states if i < len(pattern) and pattern[i] == "*"}


def globs_may_overlap(a: str, b: str) -> bool:
    """False only when no string can match both (checked on literal heads and tails)."""
    head_a, head_b = literal_head(a), literal_head(b)
    if not (head_a.startswith(head_b) or head_b.startswith(head_a)):
        return False
    tail_a, tail_b = literal_head(a[::-1]), literal_head(b[::-1])
    return tail_a.startswith(tail_b) or tail_b.startswith(tail_a)


def literal_head(pattern: str) -> str:
    """The characters before the first wildcard."""
    match = re.match(r"[^*?]*", pattern)
    return match.group(0) if match else ""
