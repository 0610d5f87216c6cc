"""Client-side checks of arguments: tags (AWS's rules) and durations.

Each check raises ``click.BadParameter`` (exit 2, one line) before any request is sent; the
server applies the same rules again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import click

MAX_TAGS = 50
MAX_KEY_LEN = 128
MAX_VALUE_LEN = 256
# AWS's tag alphabet: letters, digits, spaces and _ . : / = + - @.  A plain space, not \s:
# tabs, newlines and other control characters are refused.
_TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MIN_EXPIRY_SECONDS = 60
MAX_EXPIRY_SECONDS = 30 * 86400


def check_tag_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LEN:
        raise click.BadParameter(f"tag key {key!r} must be 1 to {MAX_KEY_LEN} characters")
    if key.lower().startswith("aws:"):
        raise click.BadParameter(f"tag key {key!r} may not start with 'aws:'")
    if not _TAG_CHARS.match(key):
        raise click.BadParameter(
            f"tag key {key!r} may contain only letters, digits, spaces and _ . : / = + - @"
        )
    return key


def check_tag_value(key: str, value: str) -> str:
    if len(value) > MAX_VALUE_LEN:
        raise click.BadParameter(
            f"tag value for {key!r} must be at most {MAX_VALUE_LEN} characters"
        )
    if not _TAG_CHARS.match(value):
        raise click.BadParameter(
            f"tag value for {key!r} may contain only letters, digits, spaces and _ . : / = + - @"
        )
    return value


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """``["env=prod", "team="]`` → ``{"env": "prod", "team": ""}``, checked."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"tag {pair!r} must be KEY=VALUE")
        check_tag_key(key)
        check_tag_value(key, value)
        if key in tags:
            raise click.BadParameter(f"tag key {key!r} is given more than once")
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise click.BadParameter(f"at most {MAX_TAGS} tags, got {len(tags)}")
    return tags


def parse_tag_keys(keys: Sequence[str]) -> list[str]:
    if len(keys) > MAX_TAGS:
        raise click.BadParameter(f"at most {MAX_TAGS} tag keys, got {len(keys)}")
    return [check_tag_key(key) for key in keys]


def parse_duration(text: str) -> int:
    """``90m``, ``24h``, ``30d``, ``1w`` or plain seconds → seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise click.BadParameter(
            f"{text!r} is not a duration: use a number with s, m, h, d or w (e.g. 24h)"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_expiry(text: str) -> int:
    seconds = parse_duration(text)
    if seconds > MAX_EXPIRY_SECONDS:
        raise click.BadParameter(f"{text!r} is more than 30 days")
    if seconds < MIN_EXPIRY_SECONDS:
        raise click.BadParameter(f"{text!r} is less than 1 minute")
    return seconds


# click callbacks: (ctx, param, value) -> converted value


def tags_callback(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> dict[str, str]:
    return parse_tags(value)


def tag_keys_callback(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> list[str]:
    return parse_tag_keys(value)


def expiry_callback(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    return parse_expiry(value)
