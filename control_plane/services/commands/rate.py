"""Rate and error control values as SSM takes them: an absolute number or a percentage of the
target count (``50``, ``10%``)."""

from __future__ import annotations

import math
import re

from control_plane.errors import InvalidRequest

_CONCURRENCY = re.compile(r"^([1-9][0-9]{0,4}|[1-9][0-9]?%|100%)$")
_ERRORS = re.compile(r"^(0|[1-9][0-9]{0,4}|[0-9]{1,2}%|100%)$")

DEFAULT_MAX_CONCURRENCY = "50"
DEFAULT_MAX_ERRORS = "0"


def check_max_concurrency(value: str) -> str:
    if not _CONCURRENCY.match(value):
        raise InvalidRequest(
            f"max_concurrency {value!r} must be 1 to 99999 or a percentage 1% to 100%"
        )
    return value


def check_max_errors(value: str) -> str:
    if not _ERRORS.match(value):
        raise InvalidRequest(f"max_errors {value!r} must be 0 to 99999 or a percentage 0% to 100%")
    return value


def concurrency_limit(value: str, targets: int) -> int:
    """How many nodes may run at once; a percentage rounds up, and is at least 1."""
    if value.endswith("%"):
        return max(1, math.ceil(targets * int(value[:-1]) / 100))
    return int(value)


def error_threshold(value: str, targets: int) -> int:
    """The number of errors allowed; one more stops new starts.  A percentage rounds down:
    10% of 50 nodes allows 5, so the sixth error stops sending (AWS's documented example)."""
    if value.endswith("%"):
        return targets * int(value[:-1]) // 100
    return int(value)
