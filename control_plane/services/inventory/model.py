"""How an item is stored: its key on the node, and the columns filters use."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from agent.inventory import schema

KEY_MAX_CHARS: Final = 600
NAME_MAX_CHARS: Final = 256


def canonical(item: dict[str, str]) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def item_key(type_name: str, item: dict[str, str]) -> str:
    """What makes two items "the same item" on one node: the type's key attributes; for a
    custom type (no declared key) its Name or Id attribute if it has one, else its content."""
    known = schema.known_type(type_name)
    if known is not None:
        fields = known.key
    elif "Name" in item:
        fields = ("Name",)
    elif "Id" in item:
        fields = ("Id",)
    else:
        fields = ()
    text = "\x1f".join(item.get(f, "") for f in fields) if fields else canonical(item)
    if len(text) > KEY_MAX_CHARS - 10:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def key_view(type_name: str, item: dict[str, str]) -> dict[str, str]:
    """The key attributes of an item, as shown in a change."""
    known = schema.known_type(type_name)
    fields = known.key if known is not None else ("Name",) if "Name" in item else ("Id",)
    found = {f: item[f] for f in fields if f in item}
    return found or dict(item)


def manager_of(type_name: str, item: dict[str, str]) -> str | None:
    if type_name == schema.APPLICATION:
        return item.get("PackageManager") or None
    return None


def columns(type_name: str, item: dict[str, str]) -> dict[str, Any]:
    """The indexed copies of an item's attributes."""
    from control_plane.services.inventory.versions import sort_key

    known = schema.known_type(type_name)
    version_attr = known.version_attribute if known is not None else None
    version = item.get(version_attr) if version_attr else None
    manager = manager_of(type_name, item)
    name = item.get(schema.indexed_attribute(type_name))
    return {
        "name": name[:NAME_MAX_CHARS] if name is not None else None,
        "version": version[:NAME_MAX_CHARS] if version is not None else None,
        "manager": (manager or "")[:16] or None,
        "version_key": sort_key(manager or "", version) if version is not None else None,
        "data": item,
    }
