"""Webhooks: each matching event is POSTed as JSON, signed with HMAC-SHA256 of the body in
``X-Corral-Signature: sha256=<hex>`` when the webhook has a secret, and retried with
exponential backoff until the receiver answers 2xx (deliveries are stored, so a restart loses
none).  After MAX_ATTEMPTS the delivery is dropped and logged.

A webhook acts as the token that made it: an event is delivered only if that token, now, may
read it (``events.read_permission``: ``commands:Get`` on its command, ``parameters:List`` on
its parameter); a revoked or expired token's webhook delivers nothing.  Events carry statuses
and names, never output or values."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from control_plane.errors import InvalidRequest, NotFound
from control_plane.security.policy import evaluate
from control_plane.security.policy_conditions import ContextValue
from control_plane.services import audit_context
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.events import EventBus, read_permission
from control_plane.services.operators import Operator, OperatorService
from control_plane.store import webhooks as store
from control_plane.store.db import Database

log = logging.getLogger("corral.webhooks")

_EVENTS = re.compile(r"^(command|parameter|node)\.[a-z_*?]+$|^\*$")
MAX_ATTEMPTS = 12
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0
POLL_SECONDS = 1.0
SIGNATURE_HEADER = "X-Corral-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "webhook_id": row["id"],
        "url": row["url"],
        "events": row["events"],
        "signed": bool(row["secret"]),
        "created_at": rfc3339(row["created_at"]),
        "created_by": row.get("created_by"),
    }


class _Owners:
    """Whether a webhook's owner may read an event, looked up once per delivery round."""

    def __init__(self, operators: OperatorService, clock: Clock) -> None:
        self._operators = operators
        self._clock = clock
        self._owners: dict[str, Operator | None] = {}

    async def may_see(self, owner: str | None, event: dict[str, Any]) -> bool:
        if owner is None:  # made before owners were recorded
            return True
        if owner not in self._owners:
            self._owners[owner] = await self._operators.active_operator(owner)
        operator = self._owners[owner]
        if operator is None:
            return False
        context: dict[str, ContextValue] = {
            "current_time": dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            "token:id": operator.token_id,
            "token:name": operator.name,
        }
        needed = read_permission(event)
        return needed is not None and evaluate(operator.policies, *needed, context).allowed


class WebhookService:
    def __init__(
        self,
        db: Database,
        events: EventBus,
        clock: Clock,
        operators: OperatorService,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        self._operators = operators
        self._verify = verify

    async def create(
        self, url: str, events: str, secret: str | None, created_by: str | None
    ) -> dict[str, Any]:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or len(url) > 2048:
            raise InvalidRequest(f"webhook url {url!r} must be an http(s) URL")
        if not _EVENTS.match(events):
            raise InvalidRequest(
                f"events {events!r} must look like command.* or command.status_changed"
            )
        if secret is not None and not 8 <= len(secret) <= 256:
            raise InvalidRequest("secret must be 8 to 256 characters")
        row = {
            "id": "wh-" + secrets.token_hex(8),
            "url": url,
            "events": events,
            "secret": secret,
            "created_at": self._clock(),
            "created_by": created_by,
        }
        async with self._db.transaction() as conn:
            await store.insert(conn, row)
            audit_context.name_resource(f"webhook/{row['id']}")
        self._events.invalidate_hooks()
        return _view(row)

    async def list_all(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            return [_view(r) for r in await store.list_all(conn)]

    async def delete(self, webhook_id: str) -> None:
        async with self._db.transaction() as conn:
            if not await store.delete(conn, webhook_id):
                raise NotFound(f"webhook {webhook_id} not found")
        self._events.invalidate_hooks()

    async def run(self, passed: Callable[[], None] = lambda: None) -> None:
        """Deliver due events until cancelled; ``passed()`` after each round (a database
        error ends the loop: its supervisor starts it again)."""
        async with httpx.AsyncClient(timeout=10.0, verify=self._verify, trust_env=True) as client:
            while True:
                delivered_any = await self.deliver_due(client)
                passed()
                if not delivered_any:
                    await asyncio.sleep(POLL_SECONDS)

    async def deliver_due(self, client: httpx.AsyncClient) -> bool:
        now = self._clock()
        async with self._db.read() as conn:
            due = await store.due(conn, now, 50)
        owners = _Owners(self._operators, self._clock)
        for delivery in due:
            if not await owners.may_see(delivery["created_by"], delivery["event"]):
                async with self._db.transaction() as conn:
                    await store.delivered(conn, delivery["id"])
                log.info(
                    "webhook event withheld: its owner may not read it",
                    extra={"webhook_id": delivery["webhook_id"], "owner": delivery["created_by"]},
                )
                continue
            body = json.dumps(delivery["event"], separators=(",", ":")).encode()
            headers = {"content-type": "application/json", "user-agent": "corral-webhooks"}
            if delivery["secret"]:
                headers[SIGNATURE_HEADER] = sign(delivery["secret"], body)
            error = ""
            try:
                response = await client.post(delivery["url"], content=body, headers=headers)
                if response.is_success:
                    async with self._db.transaction() as conn:
                        await store.delivered(conn, delivery["id"])
                    continue
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            attempts = delivery["attempts"] + 1
            async with self._db.transaction() as conn:
                if attempts >= MAX_ATTEMPTS:
                    log.error(
                        "webhook delivery dropped after retries",
                        extra={"webhook_id": delivery["webhook_id"], "error": error},
                    )
                    await store.delivered(conn, delivery["id"])
                else:
                    delay = min(BACKOFF_CAP, BACKOFF_BASE**attempts)
                    await store.retry_later(conn, delivery["id"], attempts, now + delay, error)
        return bool(due)
