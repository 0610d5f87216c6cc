"""Queueing a gathering's uploads in the outbox, as deltas.

The hashes of the types last queued live in the outbox's own database
(``inventory_hashes``), written in the same transaction as the messages that carry them: a
type is either queued with its hash recorded, or neither.  The outbox then delivers them
(nothing lost across outages).  When the server finds it lacks a type the node reports
(a deleted custom type, a restored database, a part it rejected), it sends
``inventory_resync``; :func:`forget` drops those hashes so the next gathering sends them whole.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from agent import wire
from agent.inventory import content, schema
from agent.inventory.base import Item
from agent.outbox import Outbox

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory_hashes (
    type_name TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    queued_at REAL NOT NULL
)
"""


@dataclass
class TypeUpload:
    type_name: str
    items: int
    content_hash: str
    changed: bool
    parts: int = 0
    bytes: int = 0


@dataclass
class Queued:
    types: list[TypeUpload] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0  # of every message queued, as JSON


def queue(
    outbox: Outbox,
    gathered: dict[str, list[Item]],
    *,
    custom_complete: bool,
    errors: list[wire.InventoryError],
    schema_versions: dict[str, str] | None = None,
    now: float | None = None,
    partial: bool = False,
) -> Queued:
    """Queue the parts of every type whose hash changed, then the summary; record the
    hashes.  One transaction.  ``partial``: ``gathered`` is not the whole inventory (a
    Patch Manager operation's types): the server keeps the node's other types as they are."""
    capture = time.time() if now is None else now
    hashes = {name: content.content_hash(items) for name, items in gathered.items()}
    result = Queued()

    def work(conn: sqlite3.Connection) -> list[wire.Message]:
        conn.execute(_SCHEMA)
        known = dict(conn.execute("SELECT type_name, content_hash FROM inventory_hashes"))
        messages: list[wire.Message] = []
        for name in sorted(gathered):
            digest = hashes[name]
            upload = TypeUpload(name, len(gathered[name]), digest, known.get(name) != digest)
            result.types.append(upload)
            if not upload.changed:
                continue
            parts = content.split(gathered[name])
            if len(parts) > schema.MAX_PARTS:
                errors.append(
                    wire.InventoryError(
                        source=name,
                        reason=f"{len(gathered[name])} items need {len(parts)} parts, "
                        f"more than {schema.MAX_PARTS}: not uploaded",
                    )
                )
                hashes.pop(name)
                upload.changed = False
                continue
            version = (schema_versions or {}).get(name) or _version(name)
            for index, items in enumerate(parts):
                body = wire.InventoryPartBody(
                    type_name=name,
                    schema_version=version,
                    content_hash=digest,
                    capture_time=capture,
                    part=index,
                    parts=len(parts),
                    items=items,
                )
                messages.append(wire.make_message(wire.MSG_INVENTORY_PART, _plain(body)))
            upload.parts = len(parts)
            conn.execute(
                "INSERT OR REPLACE INTO inventory_hashes (type_name, content_hash, queued_at) "
                "VALUES (?, ?, ?)",
                (name, digest, capture),
            )
        summary = wire.InventoryBody(
            capture_time=capture,
            hashes=hashes,
            custom_complete=custom_complete,
            errors=errors[: wire.INVENTORY_MAX_ERRORS],
        )
        if partial:
            summary["partial"] = True
        messages.append(wire.make_message(wire.MSG_INVENTORY, _plain(summary)))
        return messages

    sent = outbox.put_many_with(work)
    for message in sent:
        size = len(content.canonical_message(message))
        result.bytes += size
        result.messages += 1
        if message["type"] == wire.MSG_INVENTORY_PART:
            name = message["body"]["type_name"]
            for upload in result.types:
                if upload.type_name == name:
                    upload.bytes += size
    return result


def forget(outbox: Outbox, types: list[str]) -> int:
    """Drop the hashes of ``types`` (``inventory_resync``): the next gathering sends them."""

    def work(conn: sqlite3.Connection) -> list[wire.Message]:
        conn.execute(_SCHEMA)
        conn.executemany("DELETE FROM inventory_hashes WHERE type_name = ?", [(t,) for t in types])
        return []

    outbox.put_many_with(work)
    return len(types)


def _version(type_name: str) -> str:
    known = schema.known_type(type_name)
    return known.version if known is not None else "1.0"


def _plain(body: Any) -> dict[str, Any]:
    return dict(body)
