"""Parameter Store: hierarchical, versioned values; SecureString values encrypted at rest.

A put is one transaction: the parameter row is locked, the next version written (the oldest
dropped beyond 100, refused if it carries a label), the policies' schedule replaced, and a
``parameter.changed`` event queued for webhooks.  A SecureString value is stored only as its
envelope (control_plane/security/envelope.py); plaintext exists in memory while it is put or
read with decryption, and is never logged, audited or put in an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.rules import parameters as rules
from control_plane.security import envelope
from control_plane.security.actions import resource_name
from control_plane.security.keyring import KeyRing
from control_plane.services import audit_context, paging
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.events import EventBus
from control_plane.store import parameters as store
from control_plane.store.db import Database

log = logging.getLogger("corral.parameters")

# (parameter name, its type) -> may the caller see it / read its value
Visible = Callable[[str, str], bool]

MASK = "****"
SECURE = "SecureString"


class ParameterService:
    def __init__(
        self, db: Database, clock: Clock, events: EventBus, keyring: Callable[[], KeyRing]
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._keyring = keyring

    # Writing -----------------------------------------------------------------------------
    async def put(
        self,
        *,
        name: str,
        value: str,
        type: str | None = None,
        description: str | None = None,
        overwrite: bool = False,
        tier: str | None = None,
        allowed_pattern: str | None = None,
        data_type: str = "text",
        policies: Any = None,
        tags: dict[str, str] | None = None,
        by: str,
    ) -> dict[str, Any]:
        rules.check_name(name)
        if type is not None:
            rules.check_type(type)
        rules.check_data_type(data_type)
        if description is not None and len(description) > 1024:
            raise InvalidRequest("description: at most 1024 characters")
        if allowed_pattern is not None:
            rules.check_allowed_pattern(allowed_pattern)
        now = self._clock()
        stored_value: str | None = None
        async with self._db.transaction() as conn:
            current = await store.get(conn, name, lock=True)
            if current is not None and not overwrite:
                raise Conflict(f"parameter {name} already exists: give --overwrite to change it")
            if current is None and tags is None:
                tags = {}
            # An overwrite without a type keeps the current one: a secret never turns into
            # plain text because a client left the type out.
            type = type or (current["type"] if current else "String")
            tier = tier or (current["tier"] if current else "Standard")
            rules.check_tier(tier)
            if current is not None and current["tier"] == "Advanced" and tier == "Standard":
                raise InvalidRequest(f"parameter {name} is Advanced: it cannot go back to Standard")
            rules.check_value(value, type, tier)
            pattern = allowed_pattern
            if pattern is None and current is not None:
                pattern = current["allowed_pattern"]
            if pattern is not None:
                rules.check_value_matches(pattern, value)
            parsed = rules.parse_policies(policies, tier, now) if policies is not None else None
            if parsed is None and current is not None:
                parsed = rules.parse_policies(current["policies"] or None, tier)
            stored_value = (
                json.dumps(envelope.encrypt(self._keyring(), name, value), separators=(",", ":"))
                if type == SECURE
                else value
            )
            version = 1
            if current is not None:
                version = current["version"] + 1
                existing = await store.versions(conn, name)
                drop = rules.version_to_drop(
                    name, [(v["version"], list(v["labels"])) for v in existing]
                )
                if drop is not None:
                    await store.delete_version(conn, name, drop)
            await store.insert_version(
                conn,
                {
                    "name": name,
                    "version": version,
                    "type": type,
                    "value": stored_value,
                    "labels": [],
                    "description": description or "",
                    "created_at": now,
                    "created_by": by,
                },
            )
            policy_json = rules.policies_json(parsed) if parsed else []
            fields = {
                "type": type,
                "tier": tier,
                "data_type": data_type,
                "description": description
                if description is not None
                else (current["description"] if current else ""),
                "allowed_pattern": pattern,
                "policies": policy_json,
                "version": version,
                "last_modified_at": now,
                "last_modified_by": by,
            }
            if current is None:
                await store.insert(conn, {"name": name, "created_at": now, "tags": tags, **fields})
            else:
                if tags is not None:
                    fields["tags"] = {**current["tags"], **tags}
                await store.update(conn, name, **fields)
            fires = rules.next_fire_times(parsed, now) if parsed else []
            await store.replace_schedule(conn, name, fires)
            audit_context.name_resource(resource_name("parameter", name), version=version)
            event = self._event(
                "parameter.changed", name, now, version=version, parameter_type=type
            )
            await self._events.record(conn, [event], now)
        self._events.publish([event])
        log.info("parameter put", extra={"parameter": name, "version": version, "type": type})
        return {"name": name, "version": version, "tier": tier, "type": type}

    async def label(self, name: str, version: int | None, labels: list[str]) -> dict[str, Any]:
        """Attach labels to a version (the latest by default); a label on another version
        of the parameter moves here, as AWS does."""
        if not labels:
            raise InvalidRequest("give at least one label")
        for label in labels:
            rules.check_label(label)
        async with self._db.transaction() as conn:
            current = await self._existing(conn, name, lock=True)
            version = version or current["version"]
            rows = {v["version"]: v for v in await store.versions(conn, name)}
            if version not in rows:
                raise NotFound(f"parameter {name} has no version {version}")
            moved = []
            for other, row in rows.items():
                kept = [lbl for lbl in row["labels"] if lbl not in labels or other == version]
                if other != version and kept != list(row["labels"]):
                    moved.append(other)
                    await store.set_labels(conn, name, other, kept)
            mine = list(rows[version]["labels"])
            new = [lbl for lbl in labels if lbl not in mine]
            rules.check_label_count(mine, new)
            await store.set_labels(conn, name, version, mine + new)
            audit_context.name_resource(resource_name("parameter", name), version=version)
        return {"name": name, "version": version, "labels": mine + new, "moved_from": moved}

    async def unlabel(self, name: str, version: int, labels: list[str]) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            await self._existing(conn, name, lock=True)
            row = await store.get_version(conn, name, version)
            if row is None:
                raise NotFound(f"parameter {name} has no version {version}")
            present = [lbl for lbl in labels if lbl in row["labels"]]
            kept = [lbl for lbl in row["labels"] if lbl not in labels]
            await store.set_labels(conn, name, version, kept)
            audit_context.name_resource(resource_name("parameter", name), version=version)
        missing = [lbl for lbl in labels if lbl not in present]
        return {"name": name, "version": version, "removed": present, "invalid": missing}

    async def delete(self, names: list[str]) -> dict[str, Any]:
        deleted, invalid = [], []
        now = self._clock()
        async with self._db.transaction() as conn:
            events = []
            for name in names:
                if await store.delete(conn, name):
                    deleted.append(name)
                    events.append(self._event("parameter.deleted", name, now))
                else:
                    invalid.append(name)
            for i, name in enumerate(deleted):  # one audit entry per parameter deleted
                name_it = audit_context.also if i else audit_context.name_resource
                name_it(resource_name("parameter", name))
            await self._events.record(conn, events, now)
        self._events.publish(events)
        return {"deleted": deleted, "invalid": invalid}

    async def rewrap_all(self) -> int:
        """Re-wrap every SecureString's data key under the current key (``keys rotate
        --rewrap``): the values are not re-encrypted, only their keys.  One transaction."""
        keyring = self._keyring()
        async with self._db.transaction() as conn:
            rows = await store.secure_versions(conn)
            for row in rows:
                blob = envelope.rewrap(keyring, row["name"], json.loads(row["value"]))
                await store.set_value(
                    conn, row["name"], row["version"], json.dumps(blob, separators=(",", ":"))
                )
        return len(rows)

    # Policies ----------------------------------------------------------------------------
    async def fire_due(self) -> int:
        """Fire the parameter policies that are due: ``parameter.expired`` deletes the
        parameter; the notifications are events.  Each fires once (marked in the same
        transaction as its event), also across restarts.  Returns how many fired."""
        now = self._clock()
        async with self._db.transaction() as conn:
            due = await store.due(conn, now)
            events = []
            for fire in due:
                name, kind = fire["name"], fire["event"]
                await store.mark_fired(conn, name, kind, now)
                events.append(self._event(kind, name, now, due_at=fire["fire_at"]))
                if kind == rules.EXPIRED:
                    await store.delete(conn, name)
            await self._events.record(conn, events, now)
        self._events.publish(events)
        for event in events:
            log.info(
                "parameter policy fired", extra={"parameter": event["name"], "event": event["type"]}
            )
        return len(events)

    async def run_policies(self, interval_seconds: float = 10.0) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.fire_due()
            except SQLAlchemyError as exc:
                log.warning("parameter policies: will retry", extra={"error": str(exc)[:200]})

    # Reading -----------------------------------------------------------------------------
    async def get(self, selector: str, *, decrypt: bool) -> dict[str, Any]:
        name, version, label = rules.parse_selector(selector)
        async with self._db.read() as conn:
            row = await self._existing(conn, name)
            chosen = await self._version(conn, row, version, label)
        return self._view(row, chosen, decrypt, selector)

    async def metadata(self, name: str) -> dict[str, Any] | None:
        """The parameter's row (type, tier...) or None: for authorization checks."""
        async with self._db.read() as conn:
            return await store.get(conn, name)

    async def by_path(
        self,
        path: str,
        *,
        recursive: bool,
        decrypt: Visible,
        visible: Visible,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """Parameters under ``path`` (direct children unless ``recursive``) that the caller
        may see, by name, a page at a time; values decrypted where ``decrypt(name, type)``."""
        rules.check_path(path)
        path = path.rstrip("/") or "/"
        depth = 0 if path == "/" else path.count("/")

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            last = None if after is None else str(after[0])
            async with self._db.read() as conn:
                if path == "/":
                    return await store.list_page(conn, type_=None, limit=n, after=last)
                return await store.under_path(conn, path, limit=n, after=last)

        page = await paging.scan(
            fetch,
            key=lambda row: (row["name"],),
            limit=limit,
            next_token=next_token,
            shape=(str,),
            visible=lambda r: (recursive or r["name"].count("/") == depth + 1)
            and visible(r["name"], r["type"]),
        )
        async with self._db.read() as conn:
            values = await store.current_values(conn, page.items)
        shown = [
            self._view(r, values[r["name"]], decrypt(r["name"], r["type"]), r["name"])
            for r in page.items
        ]
        return paging.Page(shown, page.next_token)

    async def list_page(
        self,
        *,
        path: str | None,
        type_: str | None,
        visible: Visible,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """Parameters' metadata by name (under ``path``, of ``type_``), those the caller may
        see, a page at a time."""
        if type_ is not None:
            rules.check_type(type_)

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            last = None if after is None else str(after[0])
            async with self._db.read() as conn:
                if path:
                    return await store.under_path(conn, path, limit=n, after=last)
                return await store.list_page(conn, type_=type_, limit=n, after=last)

        page = await paging.scan(
            fetch,
            key=lambda row: (row["name"],),
            limit=limit,
            next_token=next_token,
            shape=(str,),
            visible=lambda r: (type_ is None or r["type"] == type_)
            and visible(r["name"], r["type"]),
        )
        return paging.Page([self._meta(r) for r in page.items], page.next_token)

    async def history(self, name: str, *, decrypt: bool) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            row = await self._existing(conn, name)
            versions = await store.versions(conn, name)
        return [self._view(row, v, decrypt, f"{name}:{v['version']}") for v in versions]

    async def pin(self, selector: str) -> tuple[str, int, str]:
        """(name, version, type) a reference names now: a command pins it when sent."""
        name, version, label = rules.parse_selector(selector)
        async with self._db.read() as conn:
            row = await self._existing(conn, name)
            chosen = await self._version(conn, row, version, label)
        return name, chosen["version"], str(chosen["type"])

    async def values_for(self, pins: dict[str, dict[str, Any]]) -> dict[str, str]:
        """The plaintext of pinned references, for a run_command being delivered; a version
        gone since (more than 100 newer ones, or deleted) is left out: the agent fails the
        command with a clear message rather than run it with the reference unresolved."""
        out: dict[str, str] = {}
        async with self._db.read() as conn:
            for text, pin in pins.items():
                row = await store.get_version(conn, pin["name"], int(pin["version"]))
                if row is not None:
                    out[text] = self._plaintext(pin["name"], row)
        return out

    async def resolve(self, selector: str) -> tuple[str, int, str]:
        """(name, version, plaintext value) for a document reference: the server resolves
        ``{{ssm:...}}`` and ``{{ssm-secure:...}}`` when a command is delivered."""
        name, version, label = rules.parse_selector(selector)
        async with self._db.read() as conn:
            row = await self._existing(conn, name)
            chosen = await self._version(conn, row, version, label)
        return name, chosen["version"], self._plaintext(name, chosen)

    # Helpers -----------------------------------------------------------------------------
    async def _existing(self, conn: Any, name: str, lock: bool = False) -> dict[str, Any]:
        row = await store.get(conn, name, lock=lock)
        if row is None:
            raise NotFound(f"parameter {name} not found")
        return row

    async def _version(
        self, conn: Any, row: dict[str, Any], version: int | None, label: str | None
    ) -> dict[str, Any]:
        name = row["name"]
        if label is not None:
            for v in await store.versions(conn, name):
                if label in v["labels"]:
                    return v
            raise NotFound(f"parameter {name} has no version labelled {label!r}")
        chosen = await store.get_version(conn, name, version or row["version"])
        if chosen is None:
            raise NotFound(f"parameter {name} has no version {version}")
        return chosen

    def _plaintext(self, name: str, version_row: dict[str, Any]) -> str:
        if version_row["type"] != SECURE:
            return str(version_row["value"])
        return envelope.decrypt(self._keyring(), name, json.loads(version_row["value"]))

    def _meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": row["name"],
            "type": row["type"],
            "tier": row["tier"],
            "data_type": row["data_type"],
            "description": row["description"],
            "allowed_pattern": row["allowed_pattern"],
            "policies": row["policies"],
            "tags": row["tags"],
            "version": row["version"],
            "last_modified_at": rfc3339(row["last_modified_at"]),
            "last_modified_by": row["last_modified_by"],
        }

    def _view(
        self, row: dict[str, Any], version: dict[str, Any], decrypt: bool, selector: str
    ) -> dict[str, Any]:
        secure = version["type"] == SECURE
        value = self._plaintext(row["name"], version) if (decrypt or not secure) else MASK
        return {
            **self._meta(row),
            "selector": selector,
            "type": version["type"],
            "version": version["version"],
            "value": value,
            "labels": list(version["labels"]),
            "version_created_at": rfc3339(version["created_at"]),
            "version_created_by": version["created_by"],
        }

    @staticmethod
    def _event(kind: str, name: str, now: float, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "name": name, "time": now, **fields}
