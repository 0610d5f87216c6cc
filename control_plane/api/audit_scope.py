"""An audited call's entry is written in the same transaction as the change it records.

The route's authorization (``Allow``) says what to record (``expect``); the database calls
``write_pending`` just before each transaction commits, so the first transaction of the
request that commits carries the entry: if the change commits, its entry exists; if it rolls
back, neither does.  A call that succeeded without writing anything (a no-op, a ping) gets
its entry in a transaction of its own once the response is known; a call that failed leaves
none (a denied call was recorded when it was denied).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.services.audit import AuditEvent, AuditService
from control_plane.store.db import BeforeCommit, Database


@dataclass
class Pending:
    event: AuditEvent | None = None
    written: bool = False


_current: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "corral_audit_pending", default=None
)


def expect(event: AuditEvent) -> None:
    """This request changes something: record ``event`` with the change."""
    pending = _current.get()
    if pending is not None:
        pending.event = event


def discard() -> None:
    """The call is refused after all: its pending entry must not be written (the refusal is
    recorded instead)."""
    pending = _current.get()
    if pending is not None and not pending.written:
        pending.event = None


def name_resource(resource: str, **details: Any) -> None:
    """The pending entry is about ``resource`` (a route that learns which item it creates,
    e.g. the new token's id, says so before the change commits); ``details`` join its
    request summary (e.g. the nodes a command's targets resolved to)."""
    pending = _current.get()
    if pending is not None and pending.event is not None and not pending.written:
        request = pending.event.request
        if details:
            request = {**(request if isinstance(request, dict) else {}), **details}
        pending.event = replace(pending.event, resource=resource, request=request)


def hook(audit: AuditService) -> BeforeCommit:
    """The database's before-commit hook."""

    async def write_pending(conn: AsyncConnection) -> None:
        pending = _current.get()
        if pending is not None and pending.event is not None and not pending.written:
            pending.written = True
            await audit.record(conn, pending.event)

    return write_pending


class AuditMiddleware:
    """Gives each HTTP request its pending entry (pure ASGI: no extra task per request)."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending = Pending()
        token = _current.set(pending)
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
            if pending.event is not None and not pending.written and status < 400:
                async with self.db.transaction():
                    pass  # the hook writes the entry
        finally:
            _current.reset(token)
