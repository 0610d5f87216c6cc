"""The audit entry of the change under way, named by whoever learns what it changed.

An API call that changes something expects an entry (the route's authorization fills it in:
who, what action, which request); the database writes it in the transaction that makes the
change (``api/audit_scope.py``).  Between the two, the code that makes the change says what
it changed: the service that creates a parameter knows its version, the one that creates an
activation its id, before the transaction commits.  One call may change several resources
(a delete of several parameters): each gets an entry of its own.

A context variable per request (the API's middleware sets it); outside a request every call
here does nothing, so services stay usable from the scheduler and from tests.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from control_plane.services.audit import AuditEvent


@dataclass
class Pending:
    event: AuditEvent | None = None
    more: list[AuditEvent] = field(default_factory=list)
    written: bool = False

    def events(self) -> list[AuditEvent]:
        return [] if self.event is None else [self.event, *self.more]


_current: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "corral_audit_pending", default=None
)


@contextmanager
def request_scope() -> Iterator[Pending]:
    """The pending entry of one request (the API's middleware opens it)."""
    pending = Pending()
    token = _current.set(pending)
    try:
        yield pending
    finally:
        _current.reset(token)


def current() -> Pending | None:
    pending = _current.get()
    return pending if pending is not None and not pending.written else None


def expect(event: AuditEvent) -> None:
    """This request changes something: record ``event`` with the change."""
    pending = _current.get()
    if pending is not None:
        pending.event = event
        pending.more.clear()


def discard() -> None:
    """The call is refused after all: its pending entries must not be written (the refusal
    is recorded instead)."""
    pending = current()
    if pending is not None:
        pending.event = None
        pending.more.clear()


def name_resource(resource: str, **details: Any) -> None:
    """The pending entry is about ``resource`` (``parameter/app/db``, ``activation/<id>``);
    ``details`` join its request summary (a version, the nodes a command resolved to)."""
    pending = current()
    if pending is not None and pending.event is not None:
        pending.event = _named(pending.event, resource, details)


def also(resource: str, **details: Any) -> None:
    """The same call changed ``resource`` too: it gets an entry of its own."""
    pending = current()
    if pending is not None and pending.event is not None:
        pending.more.append(_named(pending.event, resource, details))


def _named(event: AuditEvent, resource: str, details: dict[str, Any]) -> AuditEvent:
    request = event.request
    if details:
        request = {**(request if isinstance(request, dict) else {}), **details}
    return replace(event, resource=resource, request=request)
