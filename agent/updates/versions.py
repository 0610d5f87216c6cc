"""Version comparison for agent versions (``0.2.0``, ``0.3.0~rc1``, ``1.0.0+local``).

dpkg's rule (deb-version(7)), which the other formats' tools agree with on such versions:
runs of digits compare as numbers, other runs character by character with letters before
non-letters, and ``~`` sorts before anything, even the end (``1.0~rc1`` < ``1.0``).
"""

from __future__ import annotations

import functools
import re

MAX_VERSION = 64
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+~-]*$")
_DIGITS = re.compile(r"[0-9]+")
_TEXT = re.compile(r"[^0-9]*")


def _order(ch: str) -> int:
    if ch == "~":
        return -1
    if ch.isalpha():
        return ord(ch)
    return ord(ch) + 256


def _compare_text(a: str, b: str) -> int:
    for i in range(max(len(a), len(b))):
        x = _order(a[i]) if i < len(a) else 0
        y = _order(b[i]) if i < len(b) else 0
        if x != y:
            return -1 if x < y else 1
    return 0


def _lead(pattern: re.Pattern[str], text: str) -> str:
    found = pattern.match(text)
    return found.group(0) if found else ""


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b``."""
    while a or b:
        # The leading non-digit run of each, then the leading digit run.
        text_a, text_b = _lead(_TEXT, a), _lead(_TEXT, b)
        found = _compare_text(text_a, text_b)
        if found:
            return found
        a, b = a[len(text_a) :], b[len(text_b) :]
        num_a, num_b = _lead(_DIGITS, a), _lead(_DIGITS, b)
        if int(num_a or 0) != int(num_b or 0):
            return -1 if int(num_a or 0) < int(num_b or 0) else 1
        a, b = a[len(num_a) :], b[len(num_b) :]
    return 0


def is_version(text: str) -> bool:
    """A version as packages carry them: starts with a digit, then digits, letters, ``.+~-``."""
    return 0 < len(text) <= MAX_VERSION and _VERSION.match(text) is not None


# A sort key: ``sorted(versions, key=version_key)``; also for comparing two versions.
version_key = functools.cmp_to_key(compare)
