"""AWS:Application: the packages installed on this node, one item per package.

Per platform (chosen in agent/inventory/registry.py): Linux gathers from every package
database present (``_linux``: dpkg, rpm, apk, pacman, one module each), macOS from
Homebrew (``_darwin``), Windows from the installed programs that Add/Remove Programs shows
(``_windows``).  Attributes follow amazon-ssm-agent's application gatherer (dpkg's Version
is the full version, rpm splits Version/Release/Epoch, InstalledTime is RFC 3339 UTC,
amd64 is reported as x86_64), plus Corral's ``PackageManager`` naming the database, whose
version rules compare the item's Version on the server.

The helpers below are shared by the per-database modules.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from agent.inventory import schema
from agent.inventory.base import CollectContext, Item

# SSM reports these two as x86_64 and i386 on every platform (model.FormatArchitecture).
_ARCHITECTURES = {"amd64": "x86_64", "386": "i386"}


def architecture(raw: str) -> str:
    arch = raw.strip().lower()
    return _ARCHITECTURES.get(arch, arch)


def rfc3339(seconds: float) -> str:
    """Seconds since the epoch as SSM's InstalledTime (2016-07-30T18:15:37Z)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


def item(fields: Mapping[str, str | None]) -> Item:
    """An item of the given attributes: empty ones left out, each cut to the limit."""
    return {k: v[: schema.VALUE_MAX_CHARS] for k, v in fields.items() if v}


def tool_timeout(ctx: CollectContext, default: float = 120.0) -> float:
    """How long a tool may run: ``default`` seconds, less when the gathering's deadline
    is nearer (at least one second)."""
    if ctx.deadline is None:
        return default
    return max(1.0, min(default, ctx.deadline - time.monotonic()))
