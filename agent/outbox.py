"""The durable outbox: every report the agent owes the server, in SQLite in the state dir.

A message is removed only after the server acknowledged storing it, so a restart, a kill -9 or
a server outage loses nothing (the server is idempotent by message id, so a resend is harmless).
A message the server rejects (agent/transport/sender.py says when) moves to the ``dead``
table instead of blocking the queue forever, and so does a row whose body cannot be read; it
is kept there, with the reason, for inspection (``corral-agent outbox list-dead``), and goes
back into the queue with ``corral-agent outbox retry-dead`` once the cause is fixed: that
command works on the file while the daemon runs (SQLite in WAL mode, both wait on a lock for
up to BUSY_SECONDS), and the daemon finds the rows within OUTBOX_RESCAN_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import wire
from agent.errors import AgentError, ConfigError
from agent.wire import Message

BUSY_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""


class OutboxCorrupt(ConfigError):
    """The outbox file is not a database or is damaged (the agent moves it aside)."""


class OutboxUnavailable(AgentError):
    """The outbox cannot be used now (locked, a full or read-only disk): exit code 1, so
    systemd starts the agent again later (78 would stop it for good)."""


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=BUSY_SECONDS
            )
        except sqlite3.Error as exc:  # cannot open it at all (permissions, a directory...)
            raise ConfigError(f"outbox {path} is unusable: {exc}") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            (check,) = self._conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(str(check))
        except sqlite3.OperationalError as exc:  # locked, read-only, out of space: not its fault
            self._conn.close()
            raise OutboxUnavailable(f"outbox {path} is unusable now: {exc}") from None
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            self._conn.close()
            raise OutboxCorrupt(f"outbox {path} is corrupt: {exc}") from None
        self._new = asyncio.Event()
        # Rows peek() found unreadable and buried: (id, why), for the daemon to report.
        self.buried_unreadable: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # Synchronous core (runs in a worker thread) -------------------------------------------
    def _put(self, message: Message) -> None:
        with self._lock:
            _insert(self._conn, message)

    def put_many_with(self, work: Callable[[sqlite3.Connection], list[Message]]) -> list[Message]:
        """One transaction: ``work`` reads and writes tables of its own in this database and
        returns the messages to queue with them (inventory: hashes and their uploads are
        recorded together or not at all).  Synchronous: for a document worker, or a thread.
        Another process's daemon finds the messages within its rescan interval."""
        with self._lock, _transaction(self._conn):
            messages = work(self._conn)
            for message in messages:
                _insert(self._conn, message)
        if messages:
            self._new_from_thread()
        return messages

    def _peek(self, limit: int) -> list[Message]:
        """The oldest ``limit`` messages; a row that cannot be read as one goes to the dead
        table with the reason (never a crash at every start)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, type, body, created_at FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        found: list[Message] = []
        for msg_id, msg_type, body, created_at in rows:
            try:
                found.append(_message(msg_id, msg_type, body, created_at))
            except ValueError as exc:
                self._bury([str(msg_id)], f"unreadable outbox row: {exc}"[: wire.MAX_REASON_CHARS])
                self.buried_unreadable.append((str(msg_id), str(exc)))
        return found

    def _remove(self, ids: list[str]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def _bury(self, ids: list[str], reason: str) -> None:
        now = time.time()
        with self._lock, _transaction(self._conn):
            for msg_id in ids:
                self._conn.execute(
                    "INSERT OR REPLACE INTO dead (id, type, body, created_at, reason, dead_at) "
                    "SELECT id, type, body, created_at, ?, ? FROM outbox WHERE id = ?",
                    (reason, now, msg_id),
                )
                self._conn.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))

    def _contains(self, msg_id: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM outbox WHERE id = ?", (msg_id,)).fetchone()
        return row is not None

    def depth(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    def dead_count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM dead").fetchone()
        return int(row[0])

    def counts(self) -> tuple[int, int]:
        """(depth, dead), for the heartbeat."""
        with self._lock:
            row = self._conn.execute(
                "SELECT (SELECT COUNT(*) FROM outbox), (SELECT COUNT(*) FROM dead)"
            ).fetchone()
        return int(row[0]), int(row[1])

    def list_dead(self) -> list[DeadMessage]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, type, reason, dead_at, created_at FROM dead ORDER BY dead_at, id"
            ).fetchall()
        return [
            DeadMessage(str(r[0]), str(r[1]), str(r[2]), float(r[3]), float(r[4])) for r in rows
        ]

    def retry_dead(self, ids: list[str] | None = None) -> int:
        """Move dead messages (all, or those of ``ids``) back to the end of the queue; how
        many moved.  One that is queued again already (same id) just leaves the dead table."""
        with self._lock, _transaction(self._conn):
            chosen = "" if ids is None else f"WHERE id IN ({', '.join('?' * len(ids))})"
            args = [] if ids is None else list(ids)
            moved = self._conn.execute(
                "INSERT OR IGNORE INTO outbox (id, type, body, created_at) "
                f"SELECT id, type, body, created_at FROM dead {chosen} ORDER BY dead_at, id",
                args,
            ).rowcount
            self._conn.execute(f"DELETE FROM dead {chosen}", args)
        self._new_from_thread()
        return max(int(moved), 0)

    def _new_from_thread(self) -> None:
        """Wake the sender if this outbox belongs to a running loop (else it rescans)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._new.set)

    # Async surface -----------------------------------------------------------------------
    async def put(self, message: Message) -> None:
        """Returns once the message is on disk."""
        await asyncio.to_thread(self._put, message)
        self._new.set()

    async def peek(self, limit: int) -> list[Message]:
        self._loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._peek, limit)

    async def remove(self, ids: list[str]) -> None:
        if ids:
            await asyncio.to_thread(self._remove, ids)

    async def bury(self, ids: list[str], reason: str) -> None:
        if ids:
            await asyncio.to_thread(self._bury, ids, reason[: wire.MAX_REASON_CHARS])

    async def contains(self, msg_id: str) -> bool:
        """Whether the message is still waiting to be delivered."""
        return await asyncio.to_thread(self._contains, msg_id)

    async def wait_for_new(self, at_most: float | None = None) -> None:
        """Until a message is put (or ``at_most`` s: another process may have written)."""
        try:
            async with asyncio.timeout(at_most):
                await self._new.wait()
        except TimeoutError:
            return
        self._new.clear()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass(frozen=True)
class DeadMessage:
    id: str
    type: str
    reason: str
    dead_at: float
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "reason": self.reason,
            "dead_at": self.dead_at,
            "created_at": self.created_at,
        }


def _message(msg_id: Any, msg_type: Any, body: Any, created_at: Any) -> Message:
    """A stored row as a message; ValueError if it is not one."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("the body is not a JSON object")
    if not isinstance(msg_type, str) or not isinstance(created_at, int | float):
        raise ValueError("the type or creation time is missing")
    return Message(id=str(msg_id), type=msg_type, body=data, created_at=float(created_at))


def _insert(conn: sqlite3.Connection, message: Message) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO outbox (id, type, body, created_at) VALUES (?, ?, ?, ?)",
        (message["id"], message["type"], json.dumps(message["body"]), message["created_at"]),
    )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _read_only(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_SECONDS)


def read_depth(path: Path) -> int | None:
    """Outbox depth for ``corral-agent status``, read-only, without creating the file."""
    counts = read_counts(path)
    return None if counts is None else counts[0]


def read_counts(path: Path) -> tuple[int, int] | None:
    """(depth, dead) for ``corral-agent status``, read-only, without creating the file; None
    when there is no outbox or it cannot be read."""
    conn = _read_only(path)
    if conn is None:
        return None
    try:
        depth = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        try:
            dead = int(conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])
        except sqlite3.OperationalError:  # an outbox from before the dead table
            dead = 0
        return depth, dead
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
