"""Checking ``corral inventory``'s arguments before anything is sent: type names, filters,
attribute lists, ``--since`` and AWS's ``Key=...,Values=...`` targets (a usage error, one line)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Final

import click

from agent.inventory import schema

MAX_FILTERS: Final = 10  # the server's limit
MAX_GROUP_BY: Final = 5  # the server's limits
FILTER_HELP: Final = "KEY=V[,V2] | KEY!=V | KEY^=PREFIX | KEY<V | KEY>V | KEY<=V | KEY>=V"
_FILTER: Final = re.compile(r"^\s*[^=!<>^\s][^=!<>^]*?\s*(!=|\^=|<=|>=|=|<|>)\s*\S")
_DURATION: Final = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def check_type(text: str) -> str:
    """A built-in type's name or ``Custom:NAME``; BadParameter suggesting the right name."""
    if schema.known_type(text) is not None or schema.CUSTOM_TYPE_RE.match(text):
        return text
    if schema.is_custom(text):
        raise click.BadParameter(
            f"{text[:120]!r}: a custom type is Custom:NAME, NAME 1-93 letters, digits, _ - or ."
        )
    wanted = text.lower()
    near = [t for t in schema.TYPES if wanted in (t.lower(), t.partition(":")[2].lower())]
    if near:
        raise click.BadParameter(
            f"{text[:120]!r} is not an inventory type; did you mean {near[0]}?"
        )
    raise click.BadParameter(
        f"{text[:120]!r} is not an inventory type "
        f"(known: {', '.join(schema.TYPES)}; or Custom:NAME)"
    )


def check_filter(text: str) -> str:
    if not _FILTER.match(text):
        raise click.BadParameter(
            f"filter {text[:80]!r}: expected KEY=VALUE, KEY!=VALUE, KEY^=PREFIX, KEY<VALUE, "
            "KEY>VALUE, KEY<=VALUE or KEY>=VALUE (quote it: '<' and '>' are the shell's)",
            param_hint="'--filter'",
        )
    return text


def attribute_names(text: str) -> list[str]:
    """``Name,Version`` → ``["Name", "Version"]``; BadParameter for an empty or repeated one."""
    names = [name.strip() for name in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise click.BadParameter(
            f"{text[:80]!r} must be attribute names separated by commas (Name,Version)"
        )
    if len(set(names)) != len(names):
        raise click.BadParameter(f"{text[:80]!r} names an attribute twice")
    return names


def check_group_by(text: str) -> list[str]:
    names = attribute_names(text)
    if len(names) > MAX_GROUP_BY:
        raise click.BadParameter(
            f"at most {MAX_GROUP_BY} attributes, got {len(names)}", param_hint="'--group-by'"
        )
    return names


def parse_since(text: str, now: float) -> str:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` before ``now``, a date (its midnight, UTC) or
    an RFC 3339 time → the RFC 3339 UTC time the API takes."""
    value = text.strip()
    found = _DURATION.match(value.lower())
    if found:
        stamp = now - int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
        return _rfc3339(datetime.fromtimestamp(max(stamp, 0), UTC))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"{text[:40]!r} is not a date") from None
        return f"{day.isoformat()}T00:00:00Z"
    try:
        when = datetime.fromisoformat(value.upper())
    except ValueError:
        raise click.BadParameter(
            f"{text[:40]!r}: expected a duration before now (7d, 12h, 30m), a date "
            "(2026-12-01) or an RFC 3339 time (2026-12-01T09:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise click.BadParameter(f"{text[:40]!r}: give a time zone (Z or +HH:MM)")
    return _rfc3339(when.astimezone(UTC))


def _rfc3339(when: datetime) -> str:
    return when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def aws_target(text: str) -> list[str]:
    """Corral's target specs, as ``corral run --targets`` takes them; AWS's
    ``Key=tag:role,Values=web,db``, ``Key=tag-key,Values=K`` and ``Key=InstanceIds,Values=mi-..``
    are translated."""
    if not text.startswith("Key="):
        return [text]
    key, sep, values = text[len("Key=") :].partition(",Values=")
    names = [v for v in values.split(",") if v]
    if not sep or not key or not names:
        raise click.BadParameter(
            f"target {text[:80]!r} must be Key=KEY,Values=V1[,V2...]", param_hint="'--targets'"
        )
    if key.startswith("tag:") and len(key) > 4:
        return [f"tag:{key[4:]}={','.join(names)}"]
    if key == "tag-key":
        return [f"tag-key:{name}" for name in names]
    if key == "InstanceIds":
        return names
    if key == "resource-groups:Name":
        return [f"group:{name}" for name in names]
    raise click.BadParameter(
        f"target key {key[:40]!r}: use tag:KEY, tag-key, InstanceIds or resource-groups:Name "
        "(or a Corral spec: all, tag:KEY=V, name:GLOB ...)",
        param_hint="'--targets'",
    )
