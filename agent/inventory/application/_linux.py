"""AWS:Application on Linux: every package database present on the node (a node may have
several: dpkg beside rpm, say), each read by its own module.

If one present database cannot be read the whole type fails (CollectError naming it), so
the server keeps the last complete list instead of seeing that database's packages
removed.  A node with none of the four databases is a CollectError too.
"""

from __future__ import annotations

from agent.inventory.application import _apk, _dpkg, _pacman, _rpm
from agent.inventory.base import CollectContext, CollectError, Item

SOURCES = (_dpkg, _rpm, _apk, _pacman)


def collect(ctx: CollectContext) -> list[Item]:
    items: list[Item] = []
    failed: list[str] = []
    found = False
    for source in SOURCES:
        if not source.present(ctx):
            continue
        found = True
        try:
            items.extend(source.collect(ctx))
        except CollectError as exc:
            failed.append(str(exc))
    if failed:
        raise CollectError("; ".join(failed))
    if not found:
        raise CollectError("no package database found (dpkg, rpm, apk or pacman)")
    return items
