"""Hybrid activations: an id + code that lets up to N nodes register before an expiry."""

from __future__ import annotations

import uuid
from typing import Any

from control_plane.errors import InvalidRequest, NotFound
from control_plane.security import secrets
from control_plane.services import audit_context
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.validation import check_tags, check_text
from control_plane.store import activations as store
from control_plane.store.db import Database

MAX_EXPIRY_SECONDS = 30 * 24 * 3600
DEFAULT_EXPIRY_SECONDS = 24 * 3600
MAX_REGISTRATION_LIMIT = 1000


def view(row: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "activation_id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "registration_limit": row["registration_limit"],
        "registrations_count": row["registrations_count"],
        "expires_at": rfc3339(row["expires_at"]),
        "expired": row["expires_at"] <= now,
        "created_at": rfc3339(row["created_at"]),
        "tags": row["tags"],
    }


class ActivationService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self,
        *,
        name: str = "",
        description: str = "",
        registration_limit: int = 1,
        expires_in_seconds: int = DEFAULT_EXPIRY_SECONDS,
        tags: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        check_text("name", name, 256)
        check_text("description", description, 256)
        if (
            isinstance(registration_limit, bool)
            or not 1 <= registration_limit <= MAX_REGISTRATION_LIMIT
        ):
            raise InvalidRequest(f"registration_limit must be 1 to {MAX_REGISTRATION_LIMIT}")
        if (
            isinstance(expires_in_seconds, bool)
            or not 60 <= expires_in_seconds <= MAX_EXPIRY_SECONDS
        ):
            raise InvalidRequest("expiry must be between 1 minute and 30 days")
        clean_tags = check_tags(tags or {})
        now = self._clock()
        code = secrets.new_activation_code()
        row = {
            "id": str(uuid.uuid4()),
            "code_digest": secrets.digest(code),
            "name": name,
            "description": description,
            "registration_limit": registration_limit,
            "registrations_count": 0,
            "tags": clean_tags,
            "created_at": now,
            "expires_at": now + expires_in_seconds,
        }
        async with self._db.transaction() as conn:
            await store.insert(conn, row)
            audit_context.name_resource(f"activation/{row['id']}")
        return {**view(row, now), "activation_code": code}

    async def list_all(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await store.list_all(conn)
        now = self._clock()
        return [view(r, now) for r in rows]

    async def get(self, activation_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.get(conn, activation_id)
        if row is None:
            raise NotFound(f"activation {activation_id} not found")
        return view(row, self._clock())

    async def delete(self, activation_id: str) -> None:
        """Nodes registered with it stay registered (as in SSM)."""
        async with self._db.transaction() as conn:
            if not await store.delete(conn, activation_id):
                raise NotFound(f"activation {activation_id} not found")
