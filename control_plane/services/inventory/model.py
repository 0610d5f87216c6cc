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


def full_version(type_name: str, item: dict[str, str]) -> str | None:
    """The version compared in filters: rpm's items split it (SSM's Epoch, Version, Release),
    and rpm orders by all three; everyone else's Version holds the whole of it."""
    known = schema.known_type(type_name)
    attribute = known.version_attribute if known is not None else None
    version = item.get(attribute) if attribute else None
    if version is None or manager_of(type_name, item) != "rpm":
        return version
    epoch, release = item.get("Epoch"), item.get("Release")
    return (
        (f"{epoch}:" if epoch and epoch != "0" else "")
        + version
        + (f"-{release}" if release else "")
    )


def unique_keys(type_name: str, items: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Each item by its key.  Items sharing a key (a kernel installed in two releases, a
    program listed twice) are told apart by their version, then by their content, so none is
    lost; an item alone under its key keeps the plain key (its upgrade is a change)."""
    groups: dict[str, list[dict[str, str]]] = {}
    for item in items:
        groups.setdefault(item_key(type_name, item), []).append(item)
    found: dict[str, dict[str, str]] = {}
    for key, members in groups.items():
        if len(members) == 1:
            found[key] = members[0]
            continue
        for item in members:
            extended = f"{key}\x1f{full_version(type_name, item) or ''}"
            if extended in found or len(extended) > KEY_MAX_CHARS - 10:
                extended = "sha256:" + hashlib.sha256(canonical(item).encode()).hexdigest()
            found.setdefault(extended, item)
    return found


def columns(type_name: str, item: dict[str, str]) -> dict[str, Any]:
    """The indexed copies of an item's attributes."""
    from control_plane.services.inventory.versions import sort_key

    version = full_version(type_name, item)
    manager = manager_of(type_name, item)
    name = item.get(schema.indexed_attribute(type_name))
    return {
        "name": name[:NAME_MAX_CHARS] if name is not None else None,
        "version": _shown_version(type_name, item),
        "manager": (manager or "")[:16] or None,
        "version_key": sort_key(manager or "", version) if version is not None else None,
        "data": item,
    }


def _shown_version(type_name: str, item: dict[str, str]) -> str | None:
    known = schema.known_type(type_name)
    attribute = known.version_attribute if known is not None else None
    version = item.get(attribute) if attribute else None
    return version[:NAME_MAX_CHARS] if version is not None else None
