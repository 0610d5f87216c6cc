"""Operator identities: tokens that authenticate API calls.

Issue 3 has one role, ``admin``; scoped policies plug in here (``Operator.role``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from control_plane.errors import TokenExpired, Unauthorized
from control_plane.security import secrets
from control_plane.services.clock import Clock
from control_plane.store import tokens as store
from control_plane.store.db import Database


@dataclass(frozen=True)
class Operator:
    token_id: str
    name: str
    role: str


class OperatorService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_token(self, name: str, role: str = "admin") -> tuple[str, str]:
        secret = secrets.new_token()
        token_id = "tok-" + uuid.uuid4().hex[:16]
        async with self._db.transaction() as conn:
            await store.insert(
                conn,
                {
                    "id": token_id,
                    "name": name,
                    "secret_digest": secrets.digest(secret),
                    "role": role,
                    "created_at": self._clock(),
                    "expires_at": None,
                    "revoked_at": None,
                },
            )
        return token_id, secret

    async def authenticate(self, secret: str) -> Operator:
        if not secret.startswith(secrets.TOKEN_PREFIX):
            raise Unauthorized("invalid token")
        async with self._db.read() as conn:
            row = await store.by_digest(conn, secrets.digest(secret))
        if row is None or row["revoked_at"] is not None:
            raise Unauthorized("invalid or revoked token")
        if row["expires_at"] is not None and row["expires_at"] <= self._clock():
            raise TokenExpired("token expired")
        return Operator(token_id=row["id"], name=row["name"], role=row["role"])
