"""An audited call's entry is written in the same transaction as the change it records.

(What the entry says is gathered in ``services/audit_context.py``: the route's authorization
expects it, the code that makes the change names the resource it changed.)

The route's authorization (``Allow``) says what to record (``expect``); the database calls
``write_pending`` just before each transaction commits, so the first transaction of the
request that commits carries the entry: if the change commits, its entry exists; if it rolls
back, neither does.  A call that succeeded without writing anything (a no-op, a ping) gets
its entry in a transaction of its own once the response is known; a call that failed leaves
none (a denied call was recorded when it was denied).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.services import audit_context
from control_plane.services.audit import AuditService
from control_plane.store.db import BeforeCommit, Database


def hook(audit: AuditService) -> BeforeCommit:
    """The database's before-commit hook."""

    async def write_pending(conn: AsyncConnection) -> None:
        pending = audit_context.current()
        if pending is not None and pending.event is not None:
            pending.written = True
            for event in pending.events():
                await audit.record(conn, event)

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
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with audit_context.request_scope() as pending:
            await self.app(scope, receive, capture)
            if pending.event is not None and not pending.written and status < 400:
                async with self.db.transaction():
                    pass  # the hook writes the entry
