"""Input rules shared by several services: tags (AWS's rules), durations, names."""

from __future__ import annotations

import re
from collections.abc import Mapping

from control_plane.errors import InvalidRequest

MAX_TAGS = 50
_TAG_CHARS = re.compile(r"[\w .:/=+\-@]*")
_ALLOWED = "letters, digits, spaces and _ . : / = + - @"


def check_tag_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 128:
        raise InvalidRequest(f"tag key {key!r} must be 1 to 128 characters")
    if key.lower().startswith("aws:"):
        raise InvalidRequest(f"tag key {key!r} may not start with 'aws:'")
    if not _TAG_CHARS.fullmatch(key):
        raise InvalidRequest(f"tag key {key!r} may contain only {_ALLOWED}")
    return key


def check_tags(tags: Mapping[str, object], existing: int = 0) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tags.items():
        check_tag_key(key)
        if not isinstance(value, str) or len(value) > 256:
            raise InvalidRequest(
                f"tag value for {key!r} must be a string of at most 256 characters"
            )
        if not _TAG_CHARS.fullmatch(value):
            raise InvalidRequest(f"tag value for {key!r} may contain only {_ALLOWED}")
        out[key] = value
    if len(out) + existing > MAX_TAGS:
        raise InvalidRequest(f"a resource may have at most {MAX_TAGS} tags")
    return out


def check_text(field: str, value: object, max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidRequest(f"{field} must be a string of at most {max_len} characters")
    if any(ord(c) < 32 for c in value):
        raise InvalidRequest(f"{field} may not contain control characters")
    return value
