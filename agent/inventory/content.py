"""A type's content as it travels: cleaned items, its hash, and its parts.

The hash is what makes uploads deltas (as SSM's ContentHash): the same items, in any order,
hash the same; a node uploads a type only when its hash differs from the one it last queued.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent import wire
from agent.inventory import schema
from agent.inventory.base import Item


def clean(type_name: str, raw: list[dict[str, Any]]) -> tuple[list[Item], int]:
    """Items as stored: a built-in type's own attributes only, every value a string cut to
    VALUE_MAX_CHARS, empty values left out, at most MAX_ITEMS_PER_TYPE items.  Returns the
    items and how many were cut off."""
    known = schema.known_type(type_name)
    allowed = set(known.all_attributes) if known is not None else None
    items: list[Item] = []
    for entry in raw[: schema.MAX_ITEMS_PER_TYPE]:
        item: Item = {}
        for key, value in entry.items():
            if allowed is not None and key not in allowed:
                continue
            if value is None or isinstance(value, dict | list):
                continue
            text = value if isinstance(value, str) else _text(value)
            if text:
                item[str(key)] = text[: schema.VALUE_MAX_CHARS]
        if item:
            items.append(item)
    return items, max(len(raw) - schema.MAX_ITEMS_PER_TYPE, 0)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical(item: Item) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(items: list[Item]) -> str:
    """The type's hash: SHA-256 over its items' canonical JSON, in sorted order."""
    digest = hashlib.sha256()
    for line in sorted(canonical(item) for item in items):
        digest.update(line.encode("ascii"))
        digest.update(b"\n")
    return wire.INVENTORY_HASH_PREFIX + digest.hexdigest()


def split(items: list[Item], max_bytes: int = schema.PART_MAX_BYTES) -> list[list[Item]]:
    """The items in parts whose JSON stays under ``max_bytes`` each (at least one part, maybe
    empty: an empty type is content too).  Items are sorted, so the same content always
    makes the same parts."""
    parts: list[list[Item]] = [[]]
    size = 2
    for line, item in sorted((canonical(item), item) for item in items):
        cost = len(line) + 1
        if parts[-1] and size + cost > max_bytes:
            parts.append([])
            size = 2
        parts[-1].append(item)
        size += cost
    return parts


def canonical_message(message: wire.Message) -> str:
    """A message as JSON, as the outbox sends it (for the byte counts the step reports)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True)
