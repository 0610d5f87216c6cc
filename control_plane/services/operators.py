"""Operator identities: tokens that authenticate API calls, each with its policies.

A token carries a role (a stored policy: ``admin``, ``operator``, ``viewer``) or a policy
document of its own.  The secret (``crl_`` + 256 random bits) is shown once and stored as its
SHA-256 only.  Revocation and expiry are checked on every request: nothing is cached but the
compiled policy of a token, keyed by what it compiled from.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from control_plane.errors import Forbidden, InvalidRequest, NotFound, TokenExpired, Unauthorized
from control_plane.security import secrets
from control_plane.security.policy import Policy, covers, parse_policy
from control_plane.security.roles import ROLE_NAMES, role_document
from control_plane.services.clock import Clock, rfc3339
from control_plane.store import tokens as store
from control_plane.store.db import Database

MAX_NAME = 128
DEFAULT_TOKEN_SECONDS = 90 * 86400
MAX_TOKEN_SECONDS = 3650 * 86400
TOKEN_CACHE_SECONDS = 30.0


def new_token_id() -> str:
    return "tok-" + uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Operator:
    token_id: str
    name: str
    role: str | None
    policies: tuple[Policy, ...]
    expires_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def uses_node_tags(self) -> bool:
        """Whether a decision can depend on a node's tags (else they need not be read)."""
        return self.uses_key("node:tag/")

    def uses_key(self, prefix: str) -> bool:
        """Whether a condition of the policies reads a key starting with ``prefix`` (else
        what it names need not be looked up for a decision)."""
        return any(
            clause.key.startswith(prefix)
            for policy in self.policies
            for st in policy.statements
            if st.condition is not None
            for clause in st.condition.clauses
        )


class OperatorService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._compiled: dict[str, tuple[str, Policy]] = {}
        # Authenticated tokens by digest, for TOKEN_CACHE_SECONDS: a request costs no database
        # read.  Revoking through this server drops the entry at once; expiry is checked on
        # every request.  (Replicas: a revocation elsewhere takes effect within the TTL.)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        # Digests of every token that may still authenticate, read at most once per
        # TOKEN_CACHE_SECONDS and only while some address is slowed down (is_known).
        self._known: set[str] = set()
        self._known_at: float | None = None

    async def install_roles(self) -> None:
        """Store the built-in roles (refreshed at each start: an upgrade may change them)."""
        async with self._db.transaction() as conn:
            for name in ROLE_NAMES:
                await store.put_builtin_policy(conn, name, role_document(name), self._clock())

    # Tokens ------------------------------------------------------------------------------
    async def create_token(
        self,
        name: str,
        role: str | None = "admin",
        policy: dict[str, Any] | None = None,
        expires_in: float | None = None,
        created_by: Operator | None = None,
        token_id: str | None = None,
    ) -> tuple[str, str]:
        """Returns (token id, secret).  ``created_by`` (None: the server itself) may not give
        the new token a right it does not hold."""
        name = name.strip()
        if not 1 <= len(name) <= MAX_NAME:
            raise InvalidRequest(f"token name must be 1 to {MAX_NAME} characters")
        if (role is None) == (policy is None):
            raise InvalidRequest("give a token either a role or a policy, not both or neither")
        if role is not None and role not in ROLE_NAMES:
            raise InvalidRequest(f"unknown role {role!r}: one of {', '.join(ROLE_NAMES)}")
        requested = self._policy_of(role, policy, "new-token")
        if created_by is not None:
            wider = covers(created_by.policies, [requested])
            if wider:
                more = f" (and {len(wider) - 5} more)" if len(wider) > 5 else ""
                shown = ", ".join(wider[:5]) + more
                raise Forbidden(f"a token cannot grant rights it does not have: {shown}")
        now = self._clock()
        expires_at = None
        if expires_in is not None:
            if not 60 <= expires_in <= MAX_TOKEN_SECONDS:
                raise InvalidRequest("token expiry must be between 1 minute and 3650 days")
            expires_at = now + expires_in
        secret = secrets.new_token()
        token_id = token_id or new_token_id()
        async with self._db.transaction() as conn:
            await store.insert(
                conn,
                {
                    "id": token_id,
                    "name": name,
                    "secret_digest": secrets.digest(secret),
                    "role": role,
                    "policy": policy,
                    "created_by": created_by.token_id if created_by else None,
                    "created_at": now,
                    "expires_at": expires_at,
                    "revoked_at": None,
                },
            )
        self._known.add(secrets.digest(secret))
        return token_id, secret

    async def list_tokens(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await store.list_all(conn)
        now = self._clock()
        return [self._view(r, now) for r in rows]

    async def get_token(self, token_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.get(conn, token_id)
        if row is None:
            raise NotFound(f"token {token_id} not found")
        return self._view(row, self._clock(), full=True)

    async def revoke(self, token_id: str) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            if await store.get(conn, token_id) is None:
                raise NotFound(f"token {token_id} not found")
            changed = await store.revoke(conn, token_id, self._clock())
            row = await store.get(conn, token_id)
        self._cache = {d: c for d, c in self._cache.items() if c[1]["id"] != token_id}
        self._known_at = None  # re-read: the revoked digest must no longer count as known
        assert row is not None
        view = self._view(row, self._clock())
        view["message"] = f"token {token_id} revoked" if changed else "token was already revoked"
        return view

    async def operator_for(self, token_id: str) -> Operator:
        """The identity a token has now (for the policy simulator)."""
        async with self._db.read() as conn:
            row = await store.get(conn, token_id)
        if row is None:
            raise NotFound(f"token {token_id} not found")
        return self._operator(row)

    async def active_operator(self, token_id: str) -> Operator | None:
        """The identity of a token that may still act (not revoked, not expired), or None:
        what a webhook's deliveries are evaluated as."""
        async with self._db.read() as conn:
            row = await store.get(conn, token_id)
        if row is None or row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= self._clock():
            return None
        return self._operator(row)

    # Policies ----------------------------------------------------------------------------
    async def list_policies(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await store.list_policies(conn)
        return [
            {"name": r["name"], "builtin": r["builtin"], "updated_at": rfc3339(r["updated_at"])}
            for r in rows
        ]

    async def get_policy(self, name: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.get_policy(conn, name)
        if row is None:
            raise NotFound(f"policy {name} not found")
        return {
            "name": row["name"],
            "builtin": row["builtin"],
            "updated_at": rfc3339(row["updated_at"]),
            "document": row["document"],
        }

    # Authentication ----------------------------------------------------------------------
    async def is_known(self, secret: str) -> bool:
        """Whether ``secret`` is a token this server issued that may still authenticate,
        without a database read per call: a caller slowed down for others' failures is let
        through when its own credential is known.  The set of digests is re-read at most
        once per TOKEN_CACHE_SECONDS (tokens made by another replica appear within that)."""
        if not secret.startswith(secrets.TOKEN_PREFIX) or len(secret) > 256:
            return False
        digest = secrets.digest(secret)
        now = self._clock()
        if digest in self._cache and now - self._cache[digest][0] < TOKEN_CACHE_SECONDS:
            return True
        if self._known_at is None or now - self._known_at >= TOKEN_CACHE_SECONDS:
            async with self._db.read() as conn:
                self._known = set(await store.active_digests(conn, now))
            self._known_at = now
        return digest in self._known

    async def authenticate(self, secret: str) -> Operator:
        if not secret.startswith(secrets.TOKEN_PREFIX) or len(secret) > 256:
            raise Unauthorized("invalid token")
        digest = secrets.digest(secret)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < TOKEN_CACHE_SECONDS:
            row: dict[str, Any] | None = cached[1]
        else:
            async with self._db.read() as conn:
                row = await store.by_digest(conn, digest)
            if row is not None:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, row)
        if row is None or row["revoked_at"] is not None:
            raise Unauthorized("invalid or revoked token")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise TokenExpired("token expired")
        return self._operator(row)

    def _operator(self, row: dict[str, Any]) -> Operator:
        policy = self._compiled_for(row)
        return Operator(
            token_id=row["id"],
            name=row["name"],
            role=row["role"],
            policies=(policy,),
            expires_at=row["expires_at"],
        )

    def _compiled_for(self, row: dict[str, Any]) -> Policy:
        key = row["role"] or json.dumps(row["policy"], sort_keys=True)
        cached = self._compiled.get(row["id"])
        if cached is not None and cached[0] == key:
            return cached[1]
        policy = self._policy_of(row["role"], row["policy"], row["role"] or row["name"])
        if len(self._compiled) > 10_000:
            self._compiled.clear()
        self._compiled[row["id"]] = (key, policy)
        return policy

    @staticmethod
    def _policy_of(role: str | None, document: dict[str, Any] | None, name: str) -> Policy:
        if role is not None:
            return parse_policy(role_document(role), name=role)
        return parse_policy(document or {}, name=name)

    def _view(self, row: dict[str, Any], now: float, full: bool = False) -> dict[str, Any]:
        if row["revoked_at"] is not None:
            state = "revoked"
        elif row["expires_at"] is not None and row["expires_at"] <= now:
            state = "expired"
        else:
            state = "active"
        view = {
            "token_id": row["id"],
            "name": row["name"],
            "role": row["role"],
            "state": state,
            "created_at": rfc3339(row["created_at"]),
            "expires_at": rfc3339(row["expires_at"]),
            "revoked_at": rfc3339(row["revoked_at"]),
            "created_by": row["created_by"],
        }
        if full:
            view["policy"] = row["policy"] if row["role"] is None else role_document(row["role"])
        return view
