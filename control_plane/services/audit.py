"""The audit trail: who did what, to what, from where, and with what outcome; tamper-evident.

``record`` writes an entry in the caller's transaction, so the entry exists exactly when the
change it records commits (``record_standalone`` is for denied calls, which change nothing).
Entries are hash-chained (:mod:`control_plane.security.audit_chain`); ``sign_checkpoint`` signs
the chain's head with the data dir's ``audit.key`` (hourly and at shutdown); ``verify`` names
the first entry edited, deleted or reordered behind the server's back; ``export`` writes the
self-contained JSON Lines format of :mod:`control_plane.security.audit_verify`; ``prune``
deletes old entries behind a signed retention checkpoint, where the chain then starts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.wire import NODE_ID_RE
from control_plane.errors import Conflict, CorralError, InvalidRequest
from control_plane.security import audit_verify as fmt
from control_plane.security.audit_chain import (
    GENESIS_HASH,
    PERIODIC,
    RETENTION,
    AuditKey,
    clean_text,
    entry_hash,
    make_checkpoint,
    redact,
)
from control_plane.security.audit_verify import ChainVerifier, VerifyResult
from control_plane.services.clock import Clock
from control_plane.store import audit as store
from control_plane.store.db import Database

IdentityType = Literal["token", "node", "anonymous"]
Outcome = Literal["allowed", "denied", "error"]
IDENTITY_TYPES: tuple[str, ...] = get_args(IdentityType)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
SIGN_INTERVAL = 3600.0
MAX_LIST = 1000
_PAGE = 1000
# Column widths (schema.audit_entries): longer values are cut, never refused.
_LIMITS = {
    "identity_id": 128,
    "identity_name": 256,
    "source_ip": 64,
    "action": 128,
    "resource": 2048,
    "error": 512,
    "request_id": 128,
}


@dataclass(frozen=True)
class AuditEvent:
    """What the caller knows about one API call; ``request`` is redacted again on record."""

    action: str
    resource: str
    outcome: Outcome
    identity_type: IdentityType = "anonymous"
    identity_id: str | None = None
    identity_name: str | None = None
    source_ip: str | None = None
    request: Any = None
    error: str | None = None
    request_id: str | None = None


def _fields(event: AuditEvent) -> dict[str, Any]:
    """The event's fields as stored: request redacted, text cleaned and cut to its column."""
    fields: dict[str, Any] = {
        "identity_type": event.identity_type,
        "outcome": event.outcome,
        "request": redact(event.request),
    }
    for name, limit in _LIMITS.items():
        value = getattr(event, name)
        fields[name] = None if value is None else clean_text(str(value), limit)
    fields["action"] = fields["action"] or ""
    fields["resource"] = fields["resource"] or ""
    return fields


MAX_CONCERNED = 1000  # nodes of one entry indexed (a send names at most 1,000: its first by id)


def concerned_resources(entry: dict[str, Any]) -> list[str]:
    """What else the entry is about, besides ``resource``, for ``list_entries(resource=...)``:
    ``node/<id>`` for each node its (hashed) ``request.nodes`` names: the nodes a command
    resolved to.  An index derived from the entry: it never says more than the entry does.
    (Migration 0010 applies this rule to the entries written before it.)"""
    request = entry.get("request")
    nodes = request.get("nodes") if isinstance(request, dict) else None
    if not isinstance(nodes, list):
        return []
    ids = {n for n in nodes[:MAX_CONCERNED] if isinstance(n, str) and NODE_ID_RE.match(n)}
    return [f"node/{n}" for n in sorted(ids)]


@dataclass(frozen=True)
class AuditPage:
    entries: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class _Range:
    """The entries ``start..end`` (end None: to the head) and the checkpoints over them."""

    full: bool
    start: int
    end: int | None
    checkpoints: list[dict[str, Any]]
    empty: bool = False


class AuditService:
    def __init__(self, db: Database, clock: Clock, data_dir: Path) -> None:
        self._db = db
        self._clock = clock
        self._data_dir = data_dir
        self._key: AuditKey | None = None
        self._head: tuple[int, str] | None = None  # a guess; see record()

    async def signing_key(self) -> AuditKey:
        if self._key is None:
            self._key = await asyncio.to_thread(AuditKey.load_or_create, self._data_dir)
        return self._key

    # Writing ------------------------------------------------------------------------------

    async def record(self, conn: AsyncConnection, event: AuditEvent) -> dict[str, Any]:
        """Append an entry inside the caller's transaction (``db.transaction()``).

        Two statements: the head moves by compare-and-swap from the head this service last
        wrote, then the entry is inserted.  When that guess is stale (first call, a rolled
        back transaction, another process) the head is read under its row lock instead.
        """
        if event.identity_type not in IDENTITY_TYPES or event.outcome not in OUTCOMES:
            raise ValueError(f"bad audit event {event.identity_type!r}/{event.outcome!r}")
        fields = _fields(event)
        entry: dict[str, Any] | None = None
        if self._head is not None:
            entry = self._seal(fields, *self._head)
            if not await store.advance_head(conn, self._head, entry["seq"], entry["hash"]):
                entry = None
        if entry is None:
            head = await store.head(conn, lock=True)
            if head is None:
                raise CorralError("the audit_head row is missing (tampered with, or not migrated)")
            entry = self._seal(fields, *head)
            await store.set_head(conn, entry["seq"], entry["hash"])
        await store.insert_entry(conn, entry, concerned_resources(entry))
        self._head = (entry["seq"], entry["hash"])
        return entry

    def _seal(self, fields: dict[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
        entry = {
            **fields,
            "seq": seq + 1,
            "id": str(uuid.uuid4()),
            "time": float(self._clock()),
            "prev_hash": prev_hash,
        }
        entry["hash"] = entry_hash(entry)
        return entry

    async def record_standalone(self, event: AuditEvent) -> dict[str, Any]:
        """Record in a transaction of its own: for calls that change nothing (denied)."""
        async with self._db.transaction() as conn:
            return await self.record(conn, event)

    async def sign_checkpoint(self) -> dict[str, Any] | None:
        """Sign the chain's head; None when nothing was recorded since the last checkpoint."""
        key = await self.signing_key()
        async with self._db.transaction() as conn:
            head = await store.head(conn, lock=True)
            last = await store.latest_checkpoint(conn, PERIODIC)
            if head is None or head[0] == 0 or (last and last["seq_upto"] == head[0]):
                return None
            prev = last["checkpoint_hash"] if last else GENESIS_HASH
            cp = make_checkpoint(key, PERIODIC, head[0], head[1], self._clock(), prev)
            await store.insert_checkpoint(conn, cp)
        return cp

    async def run_signer(self, interval_seconds: float = SIGN_INTERVAL) -> None:
        """Sign a checkpoint every interval until cancelled (sign once more at shutdown)."""
        while True:
            await asyncio.sleep(interval_seconds)
            await self.sign_checkpoint()

    async def prune(self, older_than_seconds: float, *, force: bool = False) -> int:
        """Delete entries older than this, behind a signed retention checkpoint at the last
        deleted entry.  Refuses (Conflict) if the part to delete does not verify, so pruning
        never erases the evidence of tampering, unless ``force``.  Returns how many went."""
        if not older_than_seconds > 0:
            raise InvalidRequest("retention must be a positive number of seconds")
        key = await self.signing_key()
        cutoff = self._clock() - older_than_seconds
        # Verify from a read snapshot: a long scan must not hold the write lock.
        async with self._db.read() as conn:
            upto = await store.last_seq_before(conn, cutoff)
            if upto is None:
                return 0
            if not force:
                result = await self._verify(conn, await self._full_range(conn, upto), key)
                if not result.ok:
                    raise Conflict(f"the audit chain does not verify, not pruning: {result.reason}")
            verified = await store.entry_hash(conn, upto)
        async with self._db.transaction() as conn:
            hash_upto = await store.entry_hash(conn, upto)
            if hash_upto is None:  # pruned meanwhile
                return 0
            if hash_upto != verified and not force:
                raise Conflict(f"audit entry {upto} changed while pruning, not pruning")
            last = await store.latest_checkpoint(conn, PERIODIC)
            prev = last["checkpoint_hash"] if last else GENESIS_HASH
            cp = make_checkpoint(key, RETENTION, upto, hash_upto, self._clock(), prev)
            await store.insert_checkpoint(conn, cp)
            deleted = await store.delete_entries_upto(conn, upto)
            await store.delete_checkpoints_before(conn, upto)
        return deleted

    # Reading ------------------------------------------------------------------------------

    async def list_entries(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        identity: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AuditPage:
        """Entries newest first; ``action`` and ``resource`` take ``*``/``?`` wildcards.

        ``resource`` matches an entry's own resource or one it concerns
        (:func:`concerned_resources`): ``node/mi-...`` finds the commands sent to that node."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be 1 to {MAX_LIST}")
        if outcome is not None and outcome not in OUTCOMES:
            raise InvalidRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
        before: int | None = None
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19:
                raise InvalidRequest("invalid cursor")
            before = int(cursor)
        async with self._db.read() as conn:
            rows = await store.search(
                conn,
                before_seq=before,
                since=since,
                until=until,
                identity=identity,
                action=action,
                resource=resource,
                outcome=outcome,
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(rows, str(rows[-1]["seq"]) if more else None)

    async def verify(self, since: float | None = None, until: float | None = None) -> VerifyResult:
        """Check the chain (or the entries from ``since`` to ``until``) and its signatures."""
        key = await self.signing_key()
        async with self._db.read() as conn:
            span = await self._range(conn, since, until)
            return await self._verify(conn, span, key)

    async def export(
        self, since: float | None = None, until: float | None = None
    ) -> AsyncIterator[str]:
        """The export file, line by line (see :mod:`control_plane.security.audit_verify`)."""
        async with self._db.read() as conn:
            span = await self._range(conn, since, until)
            yield fmt.header_line(self._clock(), since, until)
            pending = deque(span.checkpoints)
            entries = checkpoints = 0
            while pending and pending[0]["seq_upto"] < span.start:
                checkpoints += 1
                yield fmt.checkpoint_line(pending.popleft())
            async for entry in self._entries(conn, span):
                entries += 1
                yield fmt.entry_line(entry)
                while pending and pending[0]["seq_upto"] <= entry["seq"]:
                    checkpoints += 1
                    yield fmt.checkpoint_line(pending.popleft())
            for cp in pending:  # beyond the last entry: the verifier reports what is missing
                checkpoints += 1
                yield fmt.checkpoint_line(cp)
            yield fmt.end_line(entries, checkpoints)

    # Internals ----------------------------------------------------------------------------

    async def _full_range(self, conn: AsyncConnection, end: int | None) -> _Range:
        anchor = await store.latest_checkpoint(conn, RETENTION)
        start = anchor["seq_upto"] + 1 if anchor else 1
        return _Range(True, start, end, await store.checkpoints(conn, None, end))

    async def _range(
        self, conn: AsyncConnection, since: float | None, until: float | None
    ) -> _Range:
        """What to check or export: from the nearest signed checkpoint before ``since`` (or
        the chain's start) to the last entry at or before ``until``."""
        end = None if until is None else await store.last_seq_until(conn, until)
        if until is not None and end is None:
            return _Range(since is None, 1, 0, [], empty=True)
        if since is None:
            return await self._full_range(conn, end)
        first = await store.first_seq_since(conn, since)
        if first is None or (end is not None and end < first):
            return _Range(False, first or 1, 0, [], empty=True)
        anchor = await store.latest_checkpoint(conn, before_seq=first)
        start = anchor["seq_upto"] + 1 if anchor else 1
        return _Range(False, start, end, await store.checkpoints(conn, start - 1, end))

    async def _entries(self, conn: AsyncConnection, span: _Range) -> AsyncIterator[dict[str, Any]]:
        if span.empty:
            return
        after = span.start - 1
        while True:
            page = await store.entries(conn, after, span.end, _PAGE)
            for entry in page:
                yield entry
            if len(page) < _PAGE:
                return
            after = page[-1]["seq"]

    async def _verify(self, conn: AsyncConnection, span: _Range, key: AuditKey) -> VerifyResult:
        verifier = ChainVerifier(key.public_key, full=span.full)
        for cp in span.checkpoints:
            verifier.add_checkpoint(cp)
        async for entry in self._entries(conn, span):
            verifier.add_entry(entry)
            if verifier.failed:
                break
        whole = span.full and span.end is None and not span.empty
        return verifier.finish(await store.head(conn) if whole else None)
