"""What an agent's inventory messages must be; a wrong one is refused whole, with one line."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from agent import wire
from agent.inventory import schema
from control_plane.errors import InvalidRequest

HASH_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
VERSION_RE: Final = re.compile(r"^[0-9]{1,6}\.[0-9]{1,6}$")


def part(body: dict[str, Any]) -> wire.InventoryPartBody:
    type_name = body.get("type_name")
    if not isinstance(type_name, str):
        raise InvalidRequest("inventory_part: type_name must be a string")
    check_type_name(type_name)
    digest = body.get("content_hash")
    if not isinstance(digest, str) or not HASH_RE.match(digest):
        raise InvalidRequest("inventory_part: content_hash must be sha256:<64 hex digits>")
    index, parts = body.get("part"), body.get("parts")
    if not (
        isinstance(index, int)
        and isinstance(parts, int)
        and 1 <= parts <= schema.MAX_PARTS
        and 0 <= index < parts
    ):
        raise InvalidRequest(
            f"inventory_part: part must be 0 to parts-1, parts 1 to {schema.MAX_PARTS}"
        )
    version = body.get("schema_version", "1.0")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise InvalidRequest("inventory_part: schema_version must look like 1.0")
    capture = body.get("capture_time")
    if not isinstance(capture, int | float) or isinstance(capture, bool):
        raise InvalidRequest("inventory_part: capture_time must be a number")
    items = body.get("items")
    if not isinstance(items, list):
        raise InvalidRequest("inventory_part: items must be a list")
    known = schema.known_type(type_name)
    allowed = set(known.all_attributes) if known is not None else None
    for index_, item in enumerate(items):
        check_item(type_name, item, allowed, index_)
    if known is None:
        size = len(json.dumps(items, separators=(",", ":")))
        if size > schema.CUSTOM_MAX_BYTES:
            raise InvalidRequest(
                f"{type_name}: {size} bytes of content, at most {schema.CUSTOM_MAX_BYTES}"
            )
    return wire.InventoryPartBody(
        type_name=type_name,
        schema_version=version,
        content_hash=digest,
        capture_time=float(capture),
        part=index,
        parts=parts,
        items=items,
    )


def check_type_name(type_name: str) -> None:
    known = schema.known_type(type_name)
    if known is not None:
        if known.server_side:
            raise InvalidRequest(f"{type_name} is the server's own: a node cannot upload it")
        return
    if not schema.CUSTOM_TYPE_RE.match(type_name):
        raise InvalidRequest(
            f"unknown inventory type {type_name[:100]!r} (built-in: "
            f"{', '.join(sorted(schema.TYPES))}; custom: Custom:NAME)"
        )


def check_item(type_name: str, item: Any, allowed: set[str] | None, index: int) -> None:
    if not isinstance(item, dict) or not item:
        raise InvalidRequest(f"{type_name} item {index}: must be a non-empty object")
    if allowed is None and len(item) > schema.CUSTOM_MAX_ATTRIBUTES:
        raise InvalidRequest(
            f"{type_name} item {index}: {len(item)} attributes, "
            f"at most {schema.CUSTOM_MAX_ATTRIBUTES}"
        )
    for key, value in item.items():
        if allowed is not None and key not in allowed:
            raise InvalidRequest(f"{type_name} item {index}: unknown attribute {str(key)[:64]!r}")
        if allowed is None and not schema.ATTRIBUTE_NAME_RE.match(key):
            raise InvalidRequest(f"{type_name} item {index}: bad attribute name {key[:64]!r}")
        if not isinstance(value, str) or len(value) > schema.VALUE_MAX_CHARS:
            raise InvalidRequest(
                f"{type_name} item {index}.{key[:64]}: must be a string of at most "
                f"{schema.VALUE_MAX_CHARS} characters"
            )


def summary(body: dict[str, Any]) -> wire.InventoryBody:
    hashes = body.get("hashes")
    if not isinstance(hashes, dict) or len(hashes) > len(schema.TYPES) + schema.CUSTOM_MAX_TYPES:
        raise InvalidRequest("inventory: hashes must be an object of at most the known types")
    for type_name, digest in hashes.items():
        check_type_name(str(type_name))
        if not isinstance(digest, str) or not HASH_RE.match(digest):
            raise InvalidRequest(f"inventory: hash of {str(type_name)[:100]} is not sha256:<hex>")
    capture = body.get("capture_time")
    if not isinstance(capture, int | float) or isinstance(capture, bool):
        raise InvalidRequest("inventory: capture_time must be a number")
    errors = body.get("errors", [])
    if not isinstance(errors, list):
        raise InvalidRequest("inventory: errors must be a list")
    kept: list[wire.InventoryError] = []
    for error in errors[: wire.INVENTORY_MAX_ERRORS]:
        if isinstance(error, dict):
            kept.append(
                wire.InventoryError(
                    source=str(error.get("source", ""))[:200],
                    reason=str(error.get("reason", ""))[:500],
                )
            )
    checked = wire.InventoryBody(
        capture_time=float(capture),
        hashes={str(k): str(v) for k, v in hashes.items()},
        custom_complete=body.get("custom_complete") is True,
        errors=kept,
    )
    if body.get("partial") is True:
        checked["partial"] = True
        checked["custom_complete"] = False
    return checked
